#!/usr/bin/python
# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mysql_backup
short_description: Consistent, compressed, optionally encrypted MySQL/MariaDB backup with a manifest
version_added: 0.1.0
description:
  - Dumps one database with the server's own dump program (C(mariadb-dump) or C(mysqldump)) in
    one consistent snapshot (C(--single-transaction)), with routines, triggers and events.
  - On MariaDB, when every character column of the database is utf8 (utf8mb4, utf8mb3) or ascii and
    no column is of a packed type (INET6, UUID, INET4) or one the module does not know, the dump runs
    in the binary character set (C(--default-character-set=binary)); the server sends each value as
    stored and the dump program needs about 30% less CPU. Binary columns are then escaped bytes in
    the file, not hex; the dump's C(SET NAMES binary) loads them back exactly. Otherwise (MySQL, a
    column in latin1 or another character set, or of such a type) it runs in utf8mb4 with
    C(--hex-blob). The manifest records which.
  - The dump is cut at table boundaries and each part compressed as its own zstd frame or gzip
    member, so the file restores with standard tools (C(zstdcat f | mariadb db)) while its
    C(<file>.manifest.json) records, per table, the byte range, the exact row count and a digest of
    the data, which M(mutuapix.ops.mysql_restore_verify) uses to prove the backup restores.
  - The file is written to a temporary name in O(dest), fsynced and renamed; on any failure the
    temporary file is removed and earlier backups are untouched. Retention runs only after success.
  - The password is handed to the dump program in a 0600 temporary option file, never in argv or
    the environment. The dump program reads that file alone (C(--defaults-file)), so it connects
    exactly as the module's own checks did - a C([client]) group in the user's C(~/.my.cnf) is only
    used through O(config_file), and C(/etc/mysql/my.cnf) is not read. Give the socket, TLS files
    and dump settings (in O(extra_dump_args)) to the module instead. The dump runs with
    C(--max-allowed-packet=1G), so rows longer than the dump program's compiled-in 24M are dumped.
  - "Least-privilege account: C(GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON db.* TO backup)
    plus, on MariaDB, C(GRANT SELECT ON mysql.proc TO backup) to dump routines (MySQL 8.0.20+: C(SHOW_ROUTINE)).
    On MariaDB with binary logging on, the exact binlog position and GTID of the dump's snapshot are
    recorded with no further privilege. On MySQL, C(REPLICATION CLIENT) lets the module record an
    approximate position (see RV(binlog)).
    The app_db_user module's C(backup) preset grants exactly this. Grants through the account's default role count."
author:
  - MutuaPix ops team (@mutuapix)
extends_documentation_fragment:
  - mutuapix.ops.mysql
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Connects, checks the database, the account's privileges, free disk space and that O(dest) can be
        created and written, and returns the planned file name. Writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  database:
    description:
      - Database to back up. A name containing C(/) is refused, as the file is named after the database.
    type: str
    required: true
  dest:
    description:
      - Absolute path of the directory the backup is written to. Created when missing, owned by O(owner) and
        O(group) when given, with mode 0700, or 0750 when O(group) is given and O(mode) lets the group read
        the backups (V('0640'), V('0440')). An existing directory is left as it is.
    type: path
    required: true
  label:
    description:
      - Optional label in the file name, e.g. C(pre-deploy-2026.11.28). Letters, digits, C(.), C(_) and C(-).
      - Retention (O(keep_last) and the other C(keep_*) options) prunes only the backups of O(database) with
        this label (without O(label), only the unlabelled ones). Each label is a series with its own rules - a
        nightly run's retention never deletes a labelled archive or pre-deploy backup, nor the reverse.
    type: str
  compression:
    description: Compression of the file.
    type: str
    choices: [zstd, gzip, none]
    default: zstd
  compression_level:
    description:
      - Compression level, as zstd and gzip define their levels (gzip 0 to 9).
      - When unset, gzip uses level 6 and zstd a tuned level 1 (the fast strategy of level 1 with a 128 KiB
        window and 4096-entry hash and chain tables, which stay in the CPU's cache). On dumps it measured
        12% less CPU than zstd's level 1 for a file 2% larger, 12% smaller than gzip -6's
        (C(bench/bench_parse.py)). Any zstd decompresses it. The manifest then records
        C(compression_level=null).
      - Level 3 costs about twice the CPU of level 1 for a file 6% smaller; 19 is much smaller and much
        slower.
    type: int
  compression_threads:
    description:
      - Worker threads for zstd compression. C(0) compresses in the module's own compressing thread (which
        releases the interpreter lock while compressing, so reading the dump goes on beside it).
      - On a two-core machine C(0) measured slightly faster than 1 or 2 and uses less memory, as the dump
        program and the server need the other core; more threads help where more cores are free.
    type: int
    default: 0
  cpu_priority:
    description:
      - CPU priority of the module's compressing (and encrypting) thread. The database server and the dump
        program keep theirs, as does the thread reading the dump program's output.
      - C(idle) (Linux C(SCHED_IDLE)) gives it only CPU time nobody else wants. The dump is the critical path
        of a backup, so this measured the fastest backups on a busy two-core machine (see
        C(bench/bench_backup.py)), and the application's queries on the same host go first.
        On a host whose CPUs are saturated for long stretches the backup then waits for them, holding
        its snapshot transaction open; choose C(low) there.
      - C(low) is nice 19; C(normal) changes nothing. Where the system refuses, the backup runs at normal
        priority and the module warns.
    type: str
    choices: [idle, low, normal]
    default: idle
  encrypt_recipients:
    description:
      - age X25519 public keys (C(age1...)). When set, the file is encrypted to all of them in the age v1
        format (C(.age) suffix) and decrypts with C(age -d -i key.txt). Only fingerprints go into the manifest.
    type: list
    elements: str
    default: []
  exclude_tables:
    description:
      - Tables (and views, sequences) left out of the backup entirely, by name.
      - An entry C(<database>.<table>), as mysqldump's C(--ignore-table) takes it, names C(<table>) of O(database)
        (unless a table is named so in full). A name that does not exist is a warning.
    type: list
    elements: str
    default: []
  exclude_table_data:
    description:
      - Tables whose structure is backed up but not their rows (e.g. C(sessions), C(cache)).
      - Named as in O(exclude_tables).
    type: list
    elements: str
    default: []
  extra_dump_args:
    description:
      - Extra arguments for the dump program, passed as separate argv entries (no shell). Each entry is one
        long option, C(--name) or C(--name=value); short options (C(-K)) and separate values are refused.
      - Options that would break the file format, its consistency or the credential handling
        (C(--skip-comments), C(--compact), C(--compatible), C(--tab), C(--skip-opt), C(--replace), C(--password),
        C(--skip-single-transaction), C(--delete-master-logs), ...) are refused in every spelling the dump program
        accepts - an unambiguous prefix (C(--skip-single)), C(--loose-), C(--skip-), C(--disable-), C(=0), C(=off).
      - A C(--master-data), C(--source-data) or C(--dump-slave) here replaces the position options the
        module adds on MariaDB (see RV(binlog)); C(--master-data=0) records no exact position.
    type: list
    elements: str
    default: []
  chunk_size:
    description:
      - Big tables are cut into frames of about this many uncompressed bytes (at INSERT boundaries),
        so restore workers can share one table. Accepts C(32M), C(64MB), or a number of bytes.
    type: str
    default: 32M
  min_size:
    description:
      - Fail when the uncompressed dump is smaller than this (C(10M), C(1G) or bytes). This catches an
        empty or wrong database. The file is not kept.
    type: str
  keep_last:
    description: Retention. Keep the N newest backups.
    type: int
  keep_days:
    description: Retention. Keep every backup newer than N days.
    type: int
  keep_daily:
    description: Retention. Keep the newest backup of each of the last N days that have one.
    type: int
  keep_weekly:
    description: Retention. Keep the newest backup of each of the last N ISO weeks that have one.
    type: int
  keep_monthly:
    description: Retention. Keep the newest backup of each of the last N months that have one.
    type: int
  lock_timeout:
    description:
      - Seconds to wait when another backup of the same database into the same O(dest) is running.
    type: int
    default: 300
  mode:
    description:
      - File mode of the backup and its manifest, as for Ansible's file options - a quoted octal string
        (V('0640')) or the number YAML makes of an unquoted leading-zero octal (V(0640)).
      - A backup holds all the database's data, so at most the group may read it - V('0600'), V('0640'),
        V('0400') or V('0440'). Group write or execute, any permission for others, and the setuid, setgid
        and sticky bits are refused. An unquoted V(640) is the decimal number 640 (mode 1200) and is refused.
    type: raw
    default: '0600'
  owner:
    description: Owner of the backup files.
    type: str
  group:
    description: Group of the backup files.
    type: str
notes:
  - Retention only considers files whose names this module writes for O(database), and only those with a
    manifest (complete backups). It prunes only the run's own series (O(database) and O(label)), never deletes
    the newest backup, and never runs after a failure. A series no run writes any more (a label given up) is
    left alone; delete it by hand.
  - A name that could belong to another database in a shared O(dest) (C(app-archive-<ts>) is C(app) labelled
    C(archive), or C(app-archive)) is only considered when its manifest names O(database).
  - With no retention option set, nothing is deleted.
  - Two runs for the same database and O(dest) never overlap; the second waits up to O(lock_timeout).
  - A table or view whose name contains a line break is refused before anything is written - its name would
    split the comment that frames it in the dump.
seealso:
  - module: mutuapix.ops.mysql_restore_verify
  - module: mutuapix.ops.b2_sync
requirements:
  - PyMySQL, zstandard (for zstd), cryptography (for encryption) on the managed host.
  - mariadb-dump or mysqldump on the managed host.
"""

EXAMPLES = r"""
- name: Nightly backup, kept 7 days + 4 weeks + 6 months
  mutuapix.ops.mysql_backup:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: backup
    login_password: "{{ vault_mysql_backup_password }}"
    database: mutuapix
    dest: /var/backups/mysql
    exclude_table_data: [sessions, cache]
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6
    min_size: 1M

- name: Encrypted pre-deploy backup, connection options set once for the play
  module_defaults:
    group/mutuapix.ops.mysql:
      login_user: backup
      login_password: "{{ vault_mysql_backup_password }}"
  block:
    - name: Back up before migrating
      mutuapix.ops.mysql_backup:
        database: mutuapix
        # apart from the nightly backups that b2_sync pushes: each pre-deploy label would be a series of its own
        # there (its newest kept for ever) and a database of its own for b2_sync's status
        dest: /var/backups/mysql/predeploy
        label: "pre-deploy-{{ release_id }}"
        encrypt_recipients:
          - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
      register: backup

    - name: Show where it went
      ansible.builtin.debug:
        msg: "{{ backup.path }} ({{ backup.size }} bytes, {{ backup.tables | length }} tables)"
"""

RETURN = r"""
path:
  description: Path of the backup file (the planned path in check mode).
  returned: always
  type: str
  sample: /var/backups/mysql/mutuapix-20261128T031500Z.sql.zst
manifest_path:
  description: Path of the manifest written beside the file.
  returned: always
  type: str
  sample: /var/backups/mysql/mutuapix-20261128T031500Z.sql.zst.manifest.json
size:
  description: Size of the backup file in bytes.
  returned: success and not check mode
  type: int
  sample: 26214400
uncompressed_size:
  description: Size of the SQL stream before compression.
  returned: success and not check mode
  type: int
  sample: 104857600
sha256:
  description: SHA-256 of the whole file as written (after compression and encryption).
  returned: success and not check mode
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
tables:
  description: Exact row count of each table in the backup (a MariaDB sequence is listed with 0).
  returned: success and not check mode
  type: dict
  sample: {"users": 1200, "transactions": 250000}
duration_s:
  description: Seconds the backup took.
  returned: success and not check mode
  type: float
  sample: 12.4
compression:
  description: Compression used.
  returned: always
  type: str
  sample: zstd
encrypted:
  description: Whether the file is age-encrypted.
  returned: always
  type: bool
  sample: false
server_version:
  description: Server version string.
  returned: always
  type: str
  sample: 10.11.19-MariaDB-0+deb12u1
binlog:
  description:
    - Binlog file/position and GTID of the backup, the starting point of a point-in-time recovery
      (replay the binlog from C(position) onwards on top of the restored backup).
    - C(exact=true) - the dump program recorded the position of its own snapshot. This is automatic
      with C(mariadb-dump) on a MariaDB server with binary logging on (C(--master-data=2 --gtid) -
      MariaDB reads it from the snapshot, without a global lock or a privilege).
    - C(exact=false) - read just before the dump. A transaction committed between that read and the
      dump's snapshot is in both the backup and the binlog after this position, so a replay from
      it can fail on a duplicate key. On MySQL add C(--source-data=2) to O(extra_dump_args) for an
      exact position (it needs C(RELOAD) and takes a global read lock for a moment).
    - Empty when binary logging is off.
  returned: success and not check mode
  type: dict
  sample: {"file": "mariadb-bin.000003", "position": 1234, "gtid": "0-1-42", "exact": false}
retention_deleted:
  description: Backups deleted by retention; in check mode, those that would be deleted.
  returned: always
  type: list
  elements: str
  sample: [mutuapix-20261101T031500Z.sql.zst]
retention_errors:
  description:
    - Older backups retention could not delete (file and reason), kept whole with their manifests. The new
      backup was written; the task succeeds with a warning.
  returned: when retention could not delete a backup
  type: list
  elements: str
  sample: ["/var/backups/mysql/mutuapix-20261101T031500Z.sql.zst: Operation not permitted"]
free_bytes:
  description: Free bytes in O(dest) before the backup.
  returned: always
  type: int
  sample: 53687091200
estimated_bytes:
  description: Generous estimate of the file size used for the free space check.
  returned: always
  type: int
  sample: 52428800
"""

import datetime as dt
import os
import time
import traceback

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.mutuapix.ops.plugins.module_utils import _backup, _dumpfile, _retention
from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import (
    MySQLError,
    MySQLModule,
    quote_identifier,
    server_info,
    validate_identifier,
)


def argument_spec():
    spec = {
        "database": {"type": "str", "required": True},
        "dest": {"type": "path", "required": True},
        "label": {"type": "str"},
        "compression": {"type": "str", "choices": ["zstd", "gzip", "none"], "default": "zstd"},
        "compression_level": {"type": "int"},
        "compression_threads": {"type": "int", "default": 0},
        "cpu_priority": {"type": "str", "choices": list(_backup.CPU_PRIORITIES), "default": "idle"},
        "encrypt_recipients": {"type": "list", "elements": "str", "default": []},
        "exclude_tables": {"type": "list", "elements": "str", "default": []},
        "exclude_table_data": {"type": "list", "elements": "str", "default": []},
        "extra_dump_args": {"type": "list", "elements": "str", "default": []},
        "chunk_size": {"type": "str", "default": "32M"},
        "min_size": {"type": "str"},
        "lock_timeout": {"type": "int", "default": 300},
        "mode": {"type": "raw", "default": "0600"},
        "owner": {"type": "str"},
        "group": {"type": "str"},
    }
    spec.update(_retention.retention_argument_spec())
    return spec


def _size(module, name):
    value = module.params[name]
    if value is None:
        return None
    try:
        return module.human_to_bytes(value) if not str(value).isdigit() else int(value)
    except ValueError:
        module.fail_json(msg=f"{name}={value!r} is not a size (use bytes or e.g. 32M, 1G)")


def _validate(module):
    params = module.params
    if not os.path.isabs(params["dest"]):
        module.fail_json(msg=f"dest must be an absolute path, got {params['dest']!r}")
    try:
        validate_identifier(params["database"], "database")
        if "/" in params["database"]:
            raise ValueError(
                f"database {params['database']!r} contains a '/': the backup's file name starts with the "
                "database name, which would put it in another directory than dest"
            )
        for table in params["exclude_tables"] + params["exclude_table_data"]:
            validate_identifier(table, "excluded table")
        if params["label"]:
            _retention.validate_label(params["label"])
        _backup.check_extra_args(params["extra_dump_args"])
    except (MySQLError, ValueError, _backup.BackupError) as exc:
        module.fail_json(msg=to_native(exc))
    if params["encrypt_recipients"]:
        try:
            from ansible_collections.mutuapix.ops.plugins.module_utils._age import (  # noqa: PLC0415
                HAS_CRYPTOGRAPHY,
                AgeError,
                parse_recipient,
            )
        except ImportError:
            HAS_CRYPTOGRAPHY = False
        if not HAS_CRYPTOGRAPHY:
            module.fail_json(msg="encrypt_recipients needs the cryptography Python library on the managed host")
        for recipient in params["encrypt_recipients"]:
            try:
                parse_recipient(recipient)
            except AgeError as exc:
                module.fail_json(msg=to_native(exc))
    level = params["compression_level"]
    if params["compression"] == "gzip" and level is not None and not 0 <= level <= 9:
        module.fail_json(
            msg=f"compression_level={level} is no gzip level: gzip's levels are 0 to 9 (9 is the smallest)"
        )
    if params["compression"] == "zstd" and not _dumpfile.HAS_ZSTANDARD:
        module.fail_json(msg="compression=zstd needs the zstandard Python library: pip install zstandard")
    retention_error = _retention.retention_params_error(params)
    if retention_error:
        module.fail_json(msg=retention_error)


def _ids(module):
    owner = group = None
    if module.params["owner"]:
        import pwd  # noqa: PLC0415

        try:
            owner = pwd.getpwnam(module.params["owner"]).pw_uid
        except KeyError:
            module.fail_json(msg=f"owner {module.params['owner']!r} does not exist on this host")
    if module.params["group"]:
        import grp  # noqa: PLC0415

        try:
            group = grp.getgrnam(module.params["group"]).gr_gid
        except KeyError:
            module.fail_json(msg=f"group {module.params['group']!r} does not exist on this host")
    return owner, group


def main():
    module = MySQLModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    _validate(module)
    chunk_bytes = _size(module, "chunk_size")
    min_size = _size(module, "min_size")
    try:
        mode = _backup.backup_file_mode(params["mode"])
    except _backup.BackupError as exc:
        module.fail_json(msg=to_native(exc))
    owner, group = _ids(module)
    database, dest = params["database"], params["dest"]
    recipients = params["encrypt_recipients"]
    program = module.program("dump")
    started = time.monotonic()

    connection = module.connect()
    try:
        server = server_info(connection)
        tables, views, data_bytes, missing = _backup.preflight(connection, database, server)
        # The user's own options first: the position options come last on the command line.
        extra = params["extra_dump_args"]
        position_args = _backup.snapshot_position_args(connection, server, program, extra)
        extra = [*extra, *position_args]
        binlog = {} if position_args else _backup.binlog_position(connection, server)
        binary_session = _backup.binary_session_safe(connection, database, server)
    except _backup.BackupError as exc:
        module.fail_json(msg=to_native(exc))
    finally:
        connection.close()
    if missing:
        level = f"{quote_identifier(database)}.*"
        routine_grant = [p for p in missing if p not in _backup.REQUIRED_PRIVILEGES]  # missing_routine_grant's
        if routine_grant:
            module.fail_json(
                msg=f"the account {module.conn_params.describe()} lacks {routine_grant[0]}, which the dump program "
                f"needs to read the stored procedures and functions of {level}: without it they would be left out "
                f"of the backup without an error; GRANT {routine_grant[0]} TO the account (the app_db_user module's "
                "backup preset does; see the module documentation)",
                missing_privileges=missing,
            )
        module.fail_json(
            msg=f"the account {module.conn_params.describe()} lacks {', '.join(missing)} on {level}; "
            f"grant SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON {level} (see the module documentation)",
            missing_privileges=missing,
        )
    # The dump program leaves out a view named in exclude_tables too (--ignore-table).
    for key in ("exclude_tables", "exclude_table_data"):
        params[key] = _backup.own_table_names(params[key], database, tables + views)
    unknown = [t for t in params["exclude_tables"] + params["exclude_table_data"] if t not in tables + views]
    for name in unknown:
        module.warn(f"excluded table {name!r} does not exist in {database}")

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    file_name = _retention.backup_file_name(database, now, params["label"], params["compression"], bool(recipients))
    estimated = _backup.estimate_backup_bytes(data_bytes, params["compression"])
    plan = _backup.Plan(
        database, dest, file_name, now, server, estimated, _backup.free_bytes(dest), tables, binary_session
    )
    result = {
        "changed": True,
        "path": plan.path,
        "manifest_path": plan.path + _retention.MANIFEST_SUFFIX,
        "compression": params["compression"],
        "encrypted": bool(recipients),
        "server_version": server.version_string,
        "free_bytes": plan.free_bytes,
        "estimated_bytes": estimated,
        "retention_deleted": [],
    }
    if plan.free_bytes is not None and plan.free_bytes < estimated:
        module.fail_json(
            msg=f"not enough free space in {dest}: {plan.free_bytes} bytes free, the backup may need about "
            f"{estimated} bytes; free space or choose another dest",
            **result,
        )
    if module.check_mode:
        write_problem = _backup.dest_write_problem(dest)
        if write_problem:
            module.fail_json(msg=write_problem, **result)
        if os.path.isdir(dest):
            result["retention_deleted"] = _backup.apply_retention(
                dest,
                database,
                params["label"] or None,
                _retention.retention_params(params),
                dry_run=True,
                planned=file_name,
            )
        module.exit_json(**result)

    try:
        _backup.create_dest(dest, mode, owner, group)
    except OSError as exc:
        module.fail_json(msg=_backup.describe_os_error(exc, f"directory {dest}"))

    try:
        with _backup.backup_lock(dest, database, params["lock_timeout"]):
            plan = _backup.name_when_locked(plan, params["label"], params["compression"], bool(recipients))
            result.update(path=plan.path, manifest_path=plan.path + _retention.MANIFEST_SUFFIX)
            tmp_path = os.path.join(dest, f".{plan.file_name}.partial-{os.getpid()}")
            _backup.remove_stale_partials(dest, database)
            try:
                dumped = _backup.run_dump(
                    module.conn_params,
                    program,
                    plan,
                    tmp_path,
                    params["compression"],
                    params["compression_level"],
                    recipients,
                    params["exclude_tables"],
                    params["exclude_table_data"],
                    extra,
                    chunk_bytes,
                    max(0, params["compression_threads"]) if params["compression"] == "zstd" else 0,
                    params["cpu_priority"],
                )
                if not dumped.priority_lowered:
                    module.warn(
                        f"the system refused cpu_priority={params['cpu_priority']} for the compressing thread "
                        "(seccomp or a container policy?); the backup ran at normal priority"
                    )
                if min_size is not None and dumped.uncompressed < min_size:
                    raise _backup.BackupError(
                        f"the dump of {database!r} is {dumped.uncompressed} bytes, below "
                        f"min_size={params['min_size']}: empty or wrong database? The file was not kept."
                    )
                duration = time.monotonic() - started
                manifest = _backup.build_manifest(
                    plan,
                    dumped,
                    program,
                    params["compression"],
                    params["compression_level"],
                    recipients,
                    extra,
                    params["exclude_tables"],
                    params["exclude_table_data"],
                    binlog,
                    chunk_bytes,
                    duration,
                )
                _backup.publish(tmp_path, plan.path, manifest, mode, owner, group)
            except BaseException:
                if os.path.exists(tmp_path):
                    os.unlink(tmp_path)
                raise
            # The backup is written: a file retention cannot delete is a warning, not a failed backup
            # (the playbook's next steps, its proof of restore and off-site copy, still run).
            retention_errors: list[str] = []
            result["retention_deleted"] = _backup.apply_retention(
                dest, database, params["label"] or None, _retention.retention_params(params), errors=retention_errors
            )
            if retention_errors:
                result["retention_errors"] = retention_errors
                module.warn(
                    f"the backup {plan.path} was written, but retention could not delete "
                    f"{len(retention_errors)} older backup(s), kept whole: {'; '.join(retention_errors)}"
                )
    except _backup.BackupError as exc:
        module.fail_json(msg=to_native(exc), **exc.details)
    except _dumpfile.DumpFileError as exc:
        module.fail_json(msg=f"the dump of {database!r} could not be framed: {to_native(exc)}")
    except OSError as exc:
        module.fail_json(msg=_backup.describe_os_error(exc, dest), exception=traceback.format_exc())

    result.update(
        size=dumped.size,
        uncompressed_size=dumped.uncompressed,
        sha256=dumped.sha256,
        tables={name: obj.rows for name, obj in dumped.parser.tables().items()},
        duration_s=round(time.monotonic() - started, 3),
        binlog=manifest["binlog"],
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
