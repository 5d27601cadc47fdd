#!/usr/bin/python
# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mysql_restore_verify
short_description: Prove a mysql_backup file restores, or restore it without ever leaving the database half-done
version_added: 0.1.0
description:
  - Reads a backup written by M(mutuapix.ops.mysql_backup) (the framed file and its C(.manifest.json)).
  - "Before any database is touched, the file is proven intact: its size and SHA-256 equal the manifest's,
    the manifest names this file, every frame decompresses to the size the manifest records (checking the
    frame's own checksum, which must be the one the manifest recorded), the dump trailer is present and,
    for an C(.age) file, the identity decrypts it. The decompressed dump is parsed again: every table's
    row count and data digest must be the manifest's. Otherwise the task fails and nothing is created or
    dropped."
  - "C(mode=verify) restores into a scratch database, in parallel: tables are created without their
    secondary indexes, their data frames are loaded over O(workers) sessions of the C(mariadb)/C(mysql)
    client (tables without a primary key in one ordered stream) and the indexes are added afterwards.
    Each table is then compared with the backup: exact row count and, with O(verify=content), the SHA-256
    of its data re-dumped with the backup's own dump options against the SHA-256 of the same data region
    in the file. Views, triggers, routines and events are restored and checked by name; events are
    created disabled, so a scratch copy never runs them. The scratch database is dropped afterwards,
    also on failure, unless O(keep_scratch)."
  - "C(mode=restore) does the same into a shadow database, and only when it matches the backup swaps it
    into O(target_database) with one C(RENAME TABLE) statement over all tables (atomic), then recreates
    triggers, views, routines and events there. The previous tables are moved into
    C(<target>_old_<timestamp>) and kept per O(keep_old). Killing the module or the server before the
    swap leaves the target exactly as it was; the next run drops the leftovers."
  - Every session runs C(SET SESSION sql_log_bin=0) unless O(write_binlog), so a verification restore never
    replicates to replicas.
  - The password is handed to the client programs in a 0600 temporary option file, never in argv.
author:
  - MutuaPix ops team (@mutuapix)
extends_documentation_fragment:
  - mutuapix.ops.mysql
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Checks the file completely (SHA-256, every frame, trailer, identity), connects, checks that the scratch
        database does not exist, that the target may be replaced and that the account may disable the binary
        log. Creates, drops and loads nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  src:
    description:
      - Path of the backup file (C(.sql.zst), C(.sql.gz), C(.sql), optionally C(.age)); its manifest must be
        beside it as C(<src>.manifest.json).
      - Mutually exclusive with O(backup_dir).
    type: path
  backup_dir:
    description:
      - Directory of backups; the newest backup of O(database) that has a valid manifest is used. Newer backups
        passed over (an unreadable manifest, or one describing another file) are named in a warning.
      - Requires O(database).
    type: path
  database:
    description:
      - Database whose newest backup is taken from O(backup_dir).
      - With O(src) it is optional; when given it must equal the manifest's database.
    type: str
  mode:
    description:
      - C(verify) restores into a scratch database, compares, and drops it.
      - C(restore) replaces the tables of O(target_database) with the backup's (a rollback).
    type: str
    choices: [verify, restore]
    default: verify
  target_database:
    description:
      - Database to restore into with O(mode=restore). Created when missing. Default is the manifest's database.
    type: str
  force:
    description:
      - Required to replace a target that has tables or views (for a selective restore, when any of O(tables)
        exists in the target). Without it the task fails before touching anything.
      - Without it, tables or views that appear in the target while the backup is being restored (the
        application writing into it) also make the task fail, just before the swap, with the target as it was.
        With it they are replaced too, and kept in C(<target>_old_<timestamp>).
    type: bool
    default: false
  scratch_database:
    description:
      - Name of the scratch database of O(mode=verify). It must not exist.
      - Default C(_verify_<database>_<UTC timestamp>), or C(_kept_<database>_<UTC timestamp>) with O(keep_scratch).
    type: str
  keep_scratch:
    description:
      - Keep the scratch database after verification (for inspection); RV(database) names it. It is never kept in
        restore mode.
      - A kept copy is never dropped by a later run (which drops the C(_verify_*), C(_restore_*) and C(*_old_*)
        leftovers of killed runs by name), so its default name is C(_kept_<database>_<UTC timestamp>) and a
        O(scratch_database) of the form C(_verify_<db>_<timestamp>), C(_restore_<db>_<timestamp>) or
        C(<db>_old_<timestamp>) is refused. Drop it by hand when done.
    type: bool
    default: false
  keep_old:
    description:
      - With O(mode=restore), how many C(<target>_old_<timestamp>) databases holding previous tables to keep
        (newest first). C(0) drops the one this run created once the restore has succeeded.
      - A copy that cannot be dropped (e.g. a foreign key of another table references it) is kept, with a
        warning naming it and why; the restore still succeeds.
    type: int
    default: 1
  verify:
    description:
      - C(rows) compares exact row counts; C(content) also compares each table's data, re-dumped exactly as
        the backup was dumped, with the data in the file (SHA-256 of both).
      - Backups written by MySQL's C(mysqldump) (MySQL dialect) cannot be digested by C(mariadb-dump) the same
        way; they are verified by row counts, with a warning.
      - Releases of the dump program lay rows out differently (MariaDB 10.5 writes an C(INSERT) on one line,
        10.11 a row per line). When the backup's recorded C(dump.version) is not this host's, the file's data
        and the re-dump are both compared without their line breaks, so a backup from another host or an older
        client is still verified by content.
    type: str
    choices: [rows, content]
    default: content
  tables:
    description:
      - Restore (or verify) only these tables or views of the backup, with their triggers. Routines and events
        are left alone. Other tables of the target are untouched.
      - With O(mode=restore), both ends of a foreign key must be in the selection or both out of it. A table
        other tables reference (C(users) referenced by C(transactions)) cannot be swapped alone, as the
        C(RENAME TABLE) would take their foreign keys along to the previous copy; and a table referencing one left
        out would reference the shadow database. Either is refused before anything is loaded, naming the keys.
      - A view is created from the tables restored with it, so a selected view needs the tables it reads in the
        selection too (a view alone is refused, naming them, with nothing changed). To bring back only a view,
        verify with those tables and O(keep_scratch=true), then recreate it from the scratch copy by hand.
    type: list
    elements: str
  lock_wait_timeout:
    description:
      - With O(mode=restore), seconds the swap waits for a table of the target that another session holds
        (an open transaction on it, a long query) before it gives up. The target's triggers are dropped just
        before the C(RENAME TABLE) (see the notes), so a swap that cannot get its locks puts them back at once
        and the task fails with the target as it was; run it again when the other session is done.
      - The server's own default (C(lock_wait_timeout), often a day) would keep the target's tables without
        their triggers, and the application's queries queued behind the swap, for that long.
    type: int
    default: 30
  workers:
    description:
      - Parallel client sessions. Default is the number of CPUs of the managed host.
    type: int
  identity:
    description:
      - age identity for an encrypted backup, either the path of an identity file (as written by
        C(age-keygen)), or the content of such a file (comments and several keys allowed, e.g. from a vault
        or an AWX credential), or the C(AGE-SECRET-KEY-1...) key itself.
      - The decrypted (still compressed) stream is written to a private 0600 temporary file beside the backup
        while the module runs, so the directory needs free space of about the file's size.
      - A run that is killed cannot remove that file; the next run of the module on a backup in the same
        directory does (it is in a C(.mutuapix-restore-*) directory whose lock the killed run no longer holds).
    type: str
  strip_definers:
    description:
      - Remove C(DEFINER=user@host) from triggers, views, routines and events, so an account without SUPER /
        SET USER can restore them; they are then owned by the restoring account.
      - With O(mode=restore) this also applies to the target's triggers and views that a swap failing before its
        C(RENAME TABLE) puts back (see O(lock_wait_timeout)).
    type: bool
    default: false
  write_binlog:
    description:
      - Write the restore to the binary log (replicas receive it). Off by default, which needs the privilege to
        C(SET sql_log_bin) (BINLOG ADMIN on MariaDB, SUPER or SYSTEM_VARIABLES_ADMIN on MySQL); without it the
        task fails with a message saying so.
    type: bool
    default: false
notes:
  - "The restoring account needs on the scratch/shadow databases, the target and C(<target>_old_*):
    CREATE, DROP, SELECT, INSERT, ALTER, INDEX, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE,
    ALTER ROUTINE, EVENT, LOCK TABLES; plus BINLOG ADMIN (see O(write_binlog))."
  - A scratch/shadow database carries a C(__mutuapix_restore) marker table and a server lock while in use;
    the next run for the same database drops leftovers whose lock is free.
  - "The cutover drops the triggers of the swapped tables just before the C(RENAME TABLE) (MySQL cannot rename a
    table with triggers into another database) and recreates them right after; C(cutover_ms) measures that
    window. What it drops is journaled first: a swap that fails before its C(RENAME) (see O(lock_wait_timeout))
    puts them back at once, and a run killed in between is undone by the next run."
seealso:
  - module: mutuapix.ops.mysql_backup
  - module: mutuapix.ops.b2_sync
requirements:
  - PyMySQL and zstandard (for zstd backups) on the managed host; cryptography for C(.age) backups.
  - The C(mariadb) or C(mysql) client and C(mariadb-dump) or C(mysqldump) on the managed host.
"""

EXAMPLES = r"""
- name: Prove last night's backup restores (scratch database, dropped afterwards)
  mutuapix.ops.mysql_restore_verify:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: restore
    login_password: "{{ vault_mysql_restore_password }}"
    backup_dir: /var/backups/mysql
    database: mutuapix
  register: proof

- name: Verify an encrypted backup pulled from B2, rows only
  mutuapix.ops.mysql_restore_verify:
    src: /var/backups/mysql/mutuapix-20261128T031500Z.sql.zst.age
    identity: /root/.config/age/mutuapix.txt
    verify: rows

- name: Roll the database back to a backup (previous tables kept in mutuapix_old_<timestamp>)
  mutuapix.ops.mysql_restore_verify:
    src: /var/backups/mysql/mutuapix-pre-deploy-2026.11.28-20261128T140000Z.sql.zst
    mode: restore
    force: true
    keep_old: 2
    write_binlog: true

- name: Restore only the tables a failed migration touched
  mutuapix.ops.mysql_restore_verify:
    backup_dir: /var/backups/mysql
    database: mutuapix
    mode: restore
    tables: [transactions, audit_logs]
    force: true
"""

RETURN = r"""
verified:
  description: Whether every restored table and object matched the manifest (false in check mode).
  returned: always
  type: bool
  sample: true
mode:
  description: The mode that ran.
  returned: always
  type: str
  sample: verify
src:
  description: The backup file used (the newest one when O(backup_dir) was given).
  returned: always
  type: str
  sample: /var/backups/mysql/mutuapix-20261128T031500Z.sql.zst
backup_database:
  description: The database the backup was taken from (from the manifest).
  returned: always
  type: str
  sample: mutuapix
database:
  description:
    - The scratch database (verify) or the target database (restore).
    - With O(keep_scratch), the kept copy (C(_kept_<database>_<timestamp>) unless O(scratch_database) was given).
  returned: always
  type: str
  sample: _verify_mutuapix_20261128T040000Z
tables:
  description:
    - Per table, C(rows_expected) from the manifest, C(rows_restored) counted in the restored copy and
      C(digest_ok) (null when not compared, i.e. O(verify=rows) or a MySQL-dialect backup).
    - A MariaDB sequence is listed with 0 rows; its next value is compared with the backup's instead.
    - In check mode only C(rows_expected).
  returned: always
  type: dict
  sample: {"users": {"rows_expected": 1200, "rows_restored": 1200, "digest_ok": true}}
mismatches:
  description: Every difference found, naming the table or object. The task fails when it is not empty.
  returned: always
  type: list
  elements: str
  sample: ["table transactions: content digest differs from the backup's"]
duration_s:
  description: Seconds the whole task took (file check included).
  returned: success
  type: float
  sample: 31.2
restore_s:
  description: Seconds from the start of the load until the last load session (data, indexes, triggers, views) ended.
  returned: always
  type: float
  sample: 24.8
verify_s:
  description: Seconds spent re-dumping and comparing tables, summed over the tables (this overlaps the load).
  returned: always
  type: float
  sample: 9.1
cutover_ms:
  description: Milliseconds the target was being changed (trigger drop, RENAME TABLE, objects recreated).
  returned: mode=restore, success, not check mode
  type: float
  sample: 84.5
bytes:
  description: Uncompressed bytes of table data loaded.
  returned: always
  type: int
  sample: 1030000000
replaced:
  description:
    - Tables and views of the target that were replaced, as found at the swap (with O(force), tables created
      while the backup was being restored are among them).
    - In check mode, the ones that would be replaced now.
  returned: mode=restore
  type: list
  elements: str
  sample: [transactions, users]
old_database:
  description: Database holding the previous tables (null when the target had nothing to replace).
  returned: mode=restore
  type: str
  sample: mutuapix_old_20261128T150000Z
old_dropped:
  description: Older C(<target>_old_*) databases dropped under O(keep_old).
  returned: mode=restore, success, not check mode
  type: list
  elements: str
  sample: [mutuapix_old_20261101T150000Z]
cleaned_up:
  description:
    - Leftovers of killed runs that this run dropped or undid, and the private directories of their decrypted
      streams that it removed.
  returned: always
  type: list
  elements: str
  sample: [_verify_mutuapix_20261127T040000Z]
"""

import os

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.mutuapix.ops.plugins.module_utils import _dumpfile, _restore
from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import MySQLModule


def argument_spec():
    return {
        "src": {"type": "path"},
        "backup_dir": {"type": "path"},
        "database": {"type": "str"},
        "mode": {"type": "str", "choices": ["verify", "restore"], "default": "verify"},
        "target_database": {"type": "str"},
        "force": {"type": "bool", "default": False},
        "scratch_database": {"type": "str"},
        "keep_scratch": {"type": "bool", "default": False},
        "keep_old": {"type": "int", "default": 1},
        "verify": {"type": "str", "choices": ["rows", "content"], "default": "content"},
        "tables": {"type": "list", "elements": "str"},
        "workers": {"type": "int"},
        "identity": {"type": "str", "no_log": True},
        "strip_definers": {"type": "bool", "default": False},
        "write_binlog": {"type": "bool", "default": False},
        "lock_wait_timeout": {"type": "int", "default": 30},
    }


def main():
    module = MySQLModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("src", "backup_dir")],
        required_one_of=[("src", "backup_dir")],
        required_by={"backup_dir": "database"},
        supports_check_mode=True,
    )
    params = module.params
    if params["keep_old"] < 0 or (params["workers"] is not None and params["workers"] < 1):
        module.fail_json(msg="keep_old must be 0 or more and workers 1 or more")
    if params["lock_wait_timeout"] < 1:
        module.fail_json(msg="lock_wait_timeout must be 1 second or more")
    if not _dumpfile.HAS_ZSTANDARD:
        module.warn("the zstandard Python library is missing: only gzip or uncompressed backups can be read")
    request = _restore.Request(
        src=params["src"],
        backup_dir=params["backup_dir"],
        database=params["database"],
        mode=params["mode"],
        target_database=params["target_database"],
        force=params["force"],
        scratch_database=params["scratch_database"],
        keep_scratch=params["keep_scratch"],
        keep_old=params["keep_old"],
        verify=params["verify"],
        tables=params["tables"] or None,
        workers=params["workers"] or os.cpu_count() or 2,
        identity=params["identity"],
        strip_definers=params["strip_definers"],
        write_binlog=params["write_binlog"],
        lock_wait_timeout=params["lock_wait_timeout"],
    )
    client, dump = module.program("client"), module.program("dump")
    try:
        result = _restore.run(request, module.conn_params, client, dump, module.check_mode, module.warn)
    except _restore.RestoreError as exc:
        module.fail_json(msg=to_native(exc), **exc.details)
    for warning in result.pop("warnings_", []):
        module.warn(warning)
    if result["mismatches"]:
        module.fail_json(
            msg=f"the backup {result['src']} does not restore to what it contains: " + "; ".join(result["mismatches"]),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
