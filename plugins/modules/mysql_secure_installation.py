#!/usr/bin/python
# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: mysql_secure_installation
short_description: Remove anonymous accounts, the test database and remote root logins
version_added: 0.1.0
description:
  - Idempotent equivalent of the removals C(mysql_secure_installation) and
    C(mariadb-secure-installation) perform interactively - anonymous accounts, root
    accounts reachable from other hosts than the local ones, the C(test) database and the
    grants on C(test) and C(test\_%) that let any account create databases named like it.
  - Does not touch the root password; manage root with your own vaulted option file.
  - Grants on the test patterns held by a role (MariaDB's C(PUBLIC) role gets them from a stock
    C(mariadb-install-db) since 10.11) are revoked from the role.
  - When a statement fails, the task fails and reports the statements applied before it
    (and C(changed=true) if there were any).
author:
  - MutuaPix ops team (@mutuapix)
extends_documentation_fragment:
  - mutuapix.ops.mysql
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Returns the statements that would run and changes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the accounts, databases and test grants before and after.
options:
  remove_anonymous_users:
    description:
      - Drop every account with an empty user name (C(''@host)).
    type: bool
    default: true
  remove_test_database:
    description:
      - Drop the C(test) database and revoke database grants on C(test) and C(test\_%).
    type: bool
    default: true
  remove_remote_root:
    description:
      - Drop C(root) accounts whose host is not in O(root_hosts).
      - The account the module is logged in as (C(CURRENT_USER())) is never dropped - the next
        run could not connect; it is left with a warning. Connect as C(root@localhost) over
        the socket to remove a remote root.
      - An account (anonymous or C(root)) that is the DEFINER of a trigger, view, routine or event
        is not dropped either, since they would fail once it is gone; it is left with a warning
        naming them until they get another DEFINER.
    type: bool
    default: true
  root_hosts:
    description:
      - Host parts of the C(root) accounts to keep, compared case-insensitively (the server
        stores host names in lower case).
    type: list
    elements: str
    default: [localhost, 127.0.0.1, "::1"]
seealso:
  - module: mutuapix.ops.app_db_user
"""

EXAMPLES = r"""
- name: mysql_secure_installation parity
  mutuapix.ops.mysql_secure_installation:
    login_unix_socket: /run/mysqld/mysqld.sock

- name: Keep root only on the socket, leave the test database to the developers
  mutuapix.ops.mysql_secure_installation:
    login_unix_socket: /run/mysqld/mysqld.sock
    root_hosts: [localhost]
    remove_test_database: false
"""

RETURN = r"""
removed_users:
  description: Accounts dropped (or that would be), as C(user@host).
  returned: always
  type: list
  elements: str
  sample: ["@localhost", "root@db1.example.com"]
dropped_databases:
  description: Databases dropped (or that would be).
  returned: always
  type: list
  elements: str
  sample: ["test"]
revoked:
  description:
    - Grants on the test database patterns revoked, per account (C(user@host)) or role
      (C(PUBLIC), or the role's name).
  returned: always
  type: dict
  sample: {"app@%": ["test\\_%.*"], "PUBLIC": ["test.*", "test\\_%.*"]}
statements:
  description:
    - The statements run, or in check mode that would run.
    - When the task fails part way, the statements applied before the failure.
  returned: always
  type: list
  elements: str
  sample: ["DROP USER ``@`localhost`", "DROP DATABASE `test`"]
"""

from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import MySQLError, MySQLModule, server_info
from ansible_collections.mutuapix.ops.plugins.module_utils._users import (
    LOCAL_ROOT_HOSTS,
    DriverError,
    driver_message,
    execute_statement,
    plan_secure_installation,
)


def main():
    module = MySQLModule(
        argument_spec={
            "remove_anonymous_users": {"type": "bool", "default": True},
            "remove_test_database": {"type": "bool", "default": True},
            "remove_remote_root": {"type": "bool", "default": True},
            "root_hosts": {"type": "list", "elements": "str", "default": list(LOCAL_ROOT_HOSTS)},
        },
        supports_check_mode=True,
    )
    params = module.params
    connection = module.connect()
    plan = None
    applied = 0
    try:
        with connection.cursor() as cursor:
            plan = plan_secure_installation(
                cursor,
                params["remove_anonymous_users"],
                params["remove_test_database"],
                params["remove_remote_root"],
                params["root_hosts"],
                server_info(connection),
            )
            for warning in plan.warnings:
                module.warn(warning)
            if not module.check_mode:
                for action in plan.actions:
                    execute_statement(cursor, action.statement)
                    applied += 1
    except MySQLError as exc:
        # What ran before the failure is reported (and changed=true when anything did).
        partial = secure_result(plan.applied(applied), False) if plan is not None else {}
        module.fail_json(msg=str(exc), **partial)
    except DriverError as exc:
        module.fail_json(msg=f"MySQL error while reading accounts and databases: {driver_message(exc)}")
    finally:
        connection.close()
    module.exit_json(**secure_result(plan, module._diff))


def secure_result(plan, diff):
    result = {
        "changed": bool(plan.statements),
        "removed_users": plan.removed_users,
        "dropped_databases": plan.dropped_databases,
        "revoked": plan.revoked,
        "statements": [s.redacted for s in plan.statements],
    }
    if diff:
        before = {"accounts": plan.removed_users, "databases": plan.dropped_databases, "test_grants": plan.revoked}
        result["diff"] = {"before": before, "after": {"accounts": [], "databases": [], "test_grants": {}}}
    return result


if __name__ == "__main__":
    main()
