#!/usr/bin/python
# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_db_user
short_description: Least-privilege MySQL/MariaDB accounts with a password policy and exact grants
version_added: 0.1.0
description:
  - Creates, updates and removes the database accounts of a Laravel application (the web
    app, migrations, backups, read-only reporting) so that each holds exactly the grants
    it needs. Privileges beyond the desired set are revoked.
  - Refuses weak passwords (length, known placeholders such as C(CHANGE_THIS_SECURE_PASSWORD),
    also repeated, with only digits and symbols added or written with look-alike characters such as
    C(P@ssw0rd), the account or database name inside
    the password, a repeated short pattern, fewer than 8 different characters, mostly runs or
    sequences such as C(aaaa) or C(1234), fewer than three character classes below 24
    characters). The error names the rule, never the password.
  - The password is hashed on the managed host and only the hash is sent to the server, so
    the plaintext never reaches the server's general log, slow log or binary log. The
    only exception is O(rotate=retain_current) on MySQL, see the notes.
  - Idempotent, with no copy of the password kept anywhere - with O(update_password=always) it
    hashes the given password with the salt of the stored credential and only changes it
    when it differs.
author:
  - MutuaPix ops team (@mutuapix)
extends_documentation_fragment:
  - mutuapix.ops.mysql
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Returns in RV(statements) the exact statements that would run (credentials redacted) and changes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: >-
      Shows each account's plugin, TLS requirement, connection limit and privileges before and after; an existing
      account's plugin changes only with its password (not with O(update_password=on_create)).
options:
  name:
    description:
      - Account name. Letters, digits, C(_), C(.) and C(-) only; at most 80 characters on
        MariaDB and 32 on MySQL.
    type: str
    required: true
  host:
    description:
      - Host part of the account (a host name, address, netmask or C(%)/C(_) pattern).
      - Host names are lowercased, as the server stores and matches them (C(App1.Example.COM)
        is the account C(app1.example.com)); results name the account in lower case.
      - Mutually exclusive with O(hosts).
    type: str
    default: localhost
  hosts:
    description:
      - Manage the same account for several host parts (for example C(localhost) and an
        application subnet). Every account gets the same password and privileges.
    type: list
    elements: str
  state:
    description:
      - V(present) creates or updates the account(s); V(absent) drops them.
      - V(absent) fails before any change when an account is the DEFINER of a trigger, view, routine
        or event (they would fail once it is gone), naming them.
    type: str
    choices: [present, absent]
    default: present
  password:
    description:
      - The account's password. Required to create an account.
      - Checked against the password policy on every run, even when it is not applied.
      - Refused when it starts or ends with white space, such as the line break of a secret encrypted
        from standard input with C(ansible-vault encrypt_string) (apply the C(trim) filter).
      - Never returned, logged or sent to the server in clear (see the description).
    type: str
  password_min_length:
    description:
      - Minimum length of O(password). Values below 16 need O(allow_weak_password=true).
    type: int
    default: 16
  allow_weak_password:
    description:
      - Turn password policy failures into warnings. Meant for throwaway test servers only.
    type: bool
    default: false
  update_password:
    description:
      - V(always) sets the password whenever it differs from the stored one (compared by
        hashing, never by storing it); V(on_create) only sets it on a new account.
    type: str
    choices: [always, on_create]
    default: always
  plugin:
    description:
      - Authentication plugin. V(auto) keeps the plugin of an existing account when it is
        one of the others, and otherwise uses the server's default (C(mysql_native_password)
        on MariaDB, C(caching_sha2_password) on MySQL 8).
      - V(ed25519) is MariaDB's (the C(auth_ed25519) plugin must be installed);
        V(mysql_native_password) is disabled by default on MySQL 8.4 and removed in 9.0.
      - The plugin is set together with the password, so with O(update_password=on_create) an existing
        account keeps its plugin; a plugin named here that is not applied for that reason is warned about.
    type: str
    choices: [auto, mysql_native_password, caching_sha2_password, ed25519]
    default: auto
  privileges:
    description:
      - Either a preset name applied to O(database), or a mapping of privilege level
        (C(db.*), C(db.table)) to a list of privileges. The account ends with exactly these
        privileges; anything else it holds is revoked - privileges on other levels, column
        privileges, routine-level grants (C(EXECUTE ON PROCEDURE ...)), C(PROXY) grants and
        roles granted to the account (its default role is set to C(NONE)). Omit it to leave
        grants alone.
      - V(app) - C(SELECT, INSERT, UPDATE, DELETE) on the database.
      - V(migrate) - what Laravel migrations need on the database - C(SELECT, INSERT, UPDATE,
        DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES, CREATE VIEW, SHOW VIEW, TRIGGER,
        CREATE ROUTINE, ALTER ROUTINE, EXECUTE, EVENT, CREATE TEMPORARY TABLES, LOCK TABLES).
      - V(readonly) - C(SELECT, SHOW VIEW) on the database.
      - V(backup) - what M(mutuapix.ops.mysql_backup) needs - C(SELECT, SHOW VIEW, TRIGGER,
        EVENT, LOCK TABLES) on the database, plus C(SELECT) on C(mysql.proc) on MariaDB (to
        dump routines), or the global C(SHOW_ROUTINE) on MySQL 8.0.20+ (global C(SELECT)
        before 8.0.20, with a warning). See O(backup_binlog_privilege).
      - Presets match the database name exactly - C(_) and C(%) in it are escaped, so
        C(app_prod) does not also match C(appXprod). Levels in the result read C(app\_prod.*).
        O(database=*) is refused, and so is a system schema (C(mysql), C(sys),
        C(performance_schema), C(information_schema)) unless O(allow_global_privileges=true).
      - In a mapping, levels are written as in C(GRANT) - C(_) and C(%) in a database name are
        wildcards unless escaped (C(app\_prod.*)); names with other characters than letters,
        digits, C(_), C($), C(%), C(-) go in backticks. C(GRANT OPTION) and global (C(*.*))
        privileges are refused unless O(allow_global_privileges=true), and so is a level whose
        database pattern matches a system schema (C(%.*), C(m%.*), C(_ysql.*), C(mysql.user))
        - write access to C(mysql) is global in effect. Column privileges cannot be requested.
    type: raw
  database:
    description:
      - Database the preset in O(privileges) applies to.
    type: str
  backup_binlog_privilege:
    description:
      - With the V(backup) preset, also grant the global privilege that lets the account read
        the binary log position - C(BINLOG MONITOR) on MariaDB 10.5+, C(REPLICATION CLIENT) on
        MySQL and older MariaDB.
      - On MySQL it lets M(mutuapix.ops.mysql_backup) record the position read just before the
        dump. MariaDB backups do not need it - the module records the exact position of the
        dump's own snapshot without any privilege.
    type: bool
    default: false
  allow_global_privileges:
    description:
      - Allow C(*.*) levels, levels on the system schemas (also through a C(%)/C(_) pattern),
        global-only privileges and C(GRANT OPTION) in a privileges mapping, and a preset on a
        system schema.
    type: bool
    default: false
  require_ssl:
    description:
      - V(true) sets C(REQUIRE SSL), V(false) sets C(REQUIRE NONE); unset leaves it as it is.
    type: bool
  max_user_connections:
    description:
      - Maximum simultaneous connections of the account (C(0) = no limit); unset leaves it.
    type: int
  rotate:
    description:
      - Dual passwords, MySQL 8.0.14 and later only (MariaDB has none and fails clearly).
      - V(retain_current) - when the password changes, keep the old one as a secondary
        password (C(RETAIN CURRENT PASSWORD)) so running application servers keep working
        until they are redeployed.
      - V(discard_old) - drop the secondary password (C(DISCARD OLD PASSWORD)) if there is one.
      - V(none) - plain password change.
    type: str
    choices: [none, retain_current, discard_old]
    default: none
notes:
  - Passwords are compared with the stored credential by hashing (C(mysql_native_password)
    and C(ed25519) are unsalted, C(caching_sha2_password) reuses the stored salt), so no
    ALTER USER runs when the password is unchanged.
  - MySQL accepts C(RETAIN CURRENT PASSWORD) only with a clear-text C(IDENTIFIED BY); with
    O(rotate=retain_current) that statement is sent (over the module's connection, use TLS
    or the socket). MySQL rewrites it in its general, slow and binary logs, MariaDB is never
    sent a clear-text password.
  - With O(privileges), roles granted to the account, its default role, routine-level and
    C(PROXY) grants are revoked too (reported in RV(revoked)). Routines an account creates get
    C(EXECUTE, ALTER ROUTINE) on them from the server (C(automatic_sp_privileges)); the next run
    revokes those - the V(migrate) preset holds both on the whole database anyway.
  - Privileges granted to MariaDB's C(PUBLIC) role (10.11+) apply to every account and are not
    managed here; M(mutuapix.ops.mysql_secure_installation) revokes its grants on C(test).
  - When a statement fails, the task fails and its result lists the statements already
    applied (RV(statements)), with C(changed), C(created), C(removed) and C(password_changed)
    set by them.
seealso:
  - module: mutuapix.ops.mysql_secure_installation
  - module: mutuapix.ops.mysql_backup
"""

EXAMPLES = r"""
- name: The web application's account (DML only)
  mutuapix.ops.app_db_user:
    login_unix_socket: /run/mysqld/mysqld.sock
    name: mutuapix_app
    hosts: [localhost, 10.0.1.%]
    password: "{{ vault_db_app_password }}"
    privileges: app
    database: mutuapix
    max_user_connections: 100

- name: The account `php artisan migrate` runs as
  mutuapix.ops.app_db_user:
    name: mutuapix_migrate
    password: "{{ vault_db_migrate_password }}"
    privileges: migrate
    database: mutuapix

- name: The backup account, able to record the binlog position
  mutuapix.ops.app_db_user:
    name: mutuapix_backup
    password: "{{ vault_db_backup_password }}"
    privileges: backup
    database: mutuapix
    backup_binlog_privilege: true

- name: An explicit grant mapping, TLS required, ed25519 on MariaDB
  mutuapix.ops.app_db_user:
    name: reporting
    host: 10.0.2.%
    password: "{{ vault_db_reporting_password }}"
    plugin: ed25519
    require_ssl: true
    privileges:
      mutuapix.transactions: [SELECT]
      mutuapix.users: [SELECT]

- name: Rotate a MySQL 8 password without downtime (old one kept until discarded)
  mutuapix.ops.app_db_user:
    name: mutuapix_app
    password: "{{ vault_db_app_password_next }}"
    rotate: retain_current

- name: Remove an account that is no longer used
  mutuapix.ops.app_db_user:
    name: legacy_app
    hosts: ["%", localhost]
    state: absent
"""

RETURN = r"""
created:
  description: Whether an account was (or in check mode would be) created.
  returned: always
  type: bool
  sample: true
removed:
  description: Whether an account was (or would be) dropped.
  returned: always
  type: bool
  sample: false
password_changed:
  description: Whether a password was (or would be) set, including on creation.
  returned: always
  type: bool
  sample: true
privileges:
  description:
    - Final privileges per account (C(user@host)), as level to sorted privilege list.
  returned: always
  type: dict
  sample: {"mutuapix_app@localhost": {"mutuapix.*": ["DELETE", "INSERT", "SELECT", "UPDATE"]}}
granted:
  description: Privileges granted per account and level by this run.
  returned: always
  type: dict
  sample: {"mutuapix_app@localhost": {"mutuapix.*": ["DELETE", "INSERT", "SELECT", "UPDATE"]}}
revoked:
  description:
    - Privileges revoked per account and level by this run (all of them when dropped).
    - Besides levels, C(roles) lists the roles revoked, C(default role) the default role
      cleared, C(PROXY) the proxied accounts and C(PROCEDURE db.name)/C(FUNCTION db.name) the
      routine-level privileges revoked.
  returned: always
  type: dict
  sample: {"mutuapix_app@localhost": {"mutuapix.*": ["DROP"], "roles": ["dba"], "default role": ["dba"]}}
statements:
  description:
    - The statements run, or in check mode that would run, in order. Password hashes and
      passwords are replaced by C(<redacted>).
    - When the task fails part way, the statements that were applied before the failure.
  returned: always
  type: list
  elements: str
  sample: ["CREATE USER `mutuapix_app`@`localhost` IDENTIFIED VIA mysql_native_password USING '<redacted>'"]
server:
  description: Flavour and version of the server.
  returned: success
  type: dict
  sample: {"flavour": "mariadb", "version": "10.11.6", "full": "10.11.6-MariaDB-0+deb12u1"}
"""

from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import MySQLError, MySQLModule, server_info
from ansible_collections.mutuapix.ops.plugins.module_utils._password_policy import (
    DEFAULT_MIN_LENGTH,
    password_problems,
)
from ansible_collections.mutuapix.ops.plugins.module_utils._users import (
    PLUGINS,
    DriverError,
    driver_message,
    execute_statement,
    merge_result,
    normalise_host,
    plan_accounts,
    record_statement,
    redact,
    validate_user_name,
)


def argument_spec():
    return {
        "name": {"type": "str", "required": True},
        "host": {"type": "str", "default": "localhost"},
        "hosts": {"type": "list", "elements": "str"},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "password": {"type": "str", "no_log": True},
        "password_min_length": {"type": "int", "default": DEFAULT_MIN_LENGTH, "no_log": False},
        "allow_weak_password": {"type": "bool", "default": False, "no_log": False},
        "update_password": {"type": "str", "default": "always", "choices": ["always", "on_create"], "no_log": False},
        "plugin": {"type": "str", "default": "auto", "choices": ["auto", *PLUGINS]},
        "privileges": {"type": "raw"},
        "database": {"type": "str"},
        "backup_binlog_privilege": {"type": "bool", "default": False},
        "allow_global_privileges": {"type": "bool", "default": False},
        "require_ssl": {"type": "bool"},
        "max_user_connections": {"type": "int"},
        "rotate": {"type": "str", "default": "none", "choices": ["none", "retain_current", "discard_old"]},
    }


def enforce_password_policy(module):
    """Fail (or warn with allow_weak_password) before anything touches the server."""
    params = module.params
    password = params["password"]
    min_length = params["password_min_length"]
    weak_ok = params["allow_weak_password"]
    if min_length < DEFAULT_MIN_LENGTH:
        text = f"password_min_length={min_length} is below {DEFAULT_MIN_LENGTH}"
        if not weak_ok:
            module.fail_json(msg=f"{text}; set allow_weak_password=true to allow it (test servers only)")
        module.warn(f"{text} (allowed because allow_weak_password=true)")
    if password is None or params["state"] == "absent":
        return
    words = tuple(w for w in (params["name"], params["database"]) if w)
    problems = password_problems(password, min_length, words)
    if problems:
        text = f"password for account {params['name']} refused by the password policy: " + "; ".join(problems)
        if not weak_ok:
            module.fail_json(msg=text)
        module.warn(text + " (allowed because allow_weak_password=true)")


def apply_changes(module, cursor, changes, result):
    """Run the planned statements in order (none in check mode), recording each one as it succeeds.

    A statement that fails raises with the result already holding the ones before it (and
    changed, created, ... set by them); granted/revoked/privileges are merged per finished account.
    """
    for change in changes:
        for statement in change.plan.statements:
            if not module.check_mode:
                execute_statement(cursor, statement)
            record_statement(result, statement)
        merge_result(result, change, module.params["state"] == "present")


def main():
    module = MySQLModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("host", "hosts")],
        supports_check_mode=True,
    )
    params = module.params
    enforce_password_policy(module)
    try:
        # Input is refused before connecting; the server-specific name limit is checked below.
        validate_user_name(params["name"])
        # Lower case: the server stores and matches host names that way (see normalise_host).
        hosts = list(dict.fromkeys(normalise_host(host) for host in params["hosts"] or [params["host"]]))
    except MySQLError as exc:
        module.fail_json(msg=str(exc))
    result = {
        "changed": False,
        "created": False,
        "removed": False,
        "password_changed": False,
        "privileges": {},
        "granted": {},
        "revoked": {},
        "statements": [],
    }
    secrets = [params["password"]] if params["password"] else []
    changes = []
    connection = module.connect()
    try:
        with connection.cursor() as cursor:
            server = server_info(connection)
            result["server"] = server.to_dict()
            changes, warnings = plan_accounts(cursor, server, params, hosts)
            for warning in warnings:
                module.warn(warning)
            for change in changes:
                secrets.extend(change.plan.secrets)
                module.no_log_values.update(change.plan.secrets)
            apply_changes(module, cursor, changes, result)
    except MySQLError as exc:
        module.fail_json(msg=redact(str(exc), secrets), **result)
    except DriverError as exc:
        module.fail_json(
            msg=redact(f"MySQL error managing account {params['name']}: {driver_message(exc)}", secrets), **result
        )
    finally:
        connection.close()
    if module._diff:
        result["diff"] = {
            "before": {c.label: c.before for c in changes},
            "after": {c.label: c.after for c in changes},
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
