# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One consistent backup of one database: dump, frame, compress, encrypt, fsync, rename.

The steps a backup takes, each a function so a reader finds them by name:
``preflight`` (database, privileges, disk), ``backup_lock``, ``run_dump`` (the dump
program streaming into the framed file), ``write_manifest``, ``apply_retention``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.mutuapix.ops.plugins.module_utils import _dumpfile, _retention
from ansible_collections.mutuapix.ops.plugins.module_utils._flock import wait_for_flock
from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import (
    ConnectionParams,
    ServerInfo,
    binlog_enabled,
    client_command,
    client_environment,
    client_option_file,
    find_program,
    program_errors,
    program_version,
    start_program_version,
)

# The grants mysql_backup needs (documented in the module; app_db_user's `backup` preset).
REQUIRED_PRIVILEGES = ("SELECT", "SHOW VIEW", "TRIGGER", "EVENT")
COMPRESSION_SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}


class BackupError(Exception):
    """A backup step failed; the message says which and what to do."""

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.details = details


@dataclass
class Plan:
    database: str
    dest: str
    file_name: str
    created_at: dt.datetime
    server: ServerInfo
    estimated_bytes: int
    free_bytes: int | None
    tables: list[str] = field(default_factory=list)
    binary_session: bool = False  # dumped in the binary character set (_dumpfile.BINARY_DUMP_OPTIONS)

    @property
    def path(self) -> str:
        return os.path.join(self.dest, self.file_name)


# --- file mode -------------------------------------------------------------------------------

# A backup holds every customer's data: its owner may read it, at most its group too, nobody else.
FORBIDDEN_MODE_BITS = 0o7037


def set_owner(path: str, owner: int | None, group: int | None) -> None:
    """``chown`` to the uid/gid given; nothing when neither is."""
    if owner is not None or group is not None:
        os.chown(path, -1 if owner is None else owner, -1 if group is None else group)


def dest_directory_mode(file_mode: int, group: int | None) -> int:
    """Mode of a ``dest`` the module creates: 0700, or 0750 when ``group`` may read the backups (``file_mode``)."""
    return 0o750 if group is not None and file_mode & 0o040 else 0o700


def create_dest(dest: str, file_mode: int, owner: int | None, group: int | None) -> None:
    """Create ``dest`` when missing, for the backups' owner and group (an existing directory is left alone).

    The group may enter it only when it may read the backups, or the files' group mode would be for nothing.
    """
    if os.path.isdir(dest):
        return
    dir_mode = dest_directory_mode(file_mode, group)
    os.makedirs(dest, mode=dir_mode)
    os.chmod(dest, dir_mode)
    set_owner(dest, owner, group)


def backup_file_mode(value: Any) -> int:
    """The ``mode`` option as a file mode, the way Ansible's file options read it; refuses loose modes.

    YAML reads an unquoted ``0640`` as the integer 416, which is that mode already: an int is
    taken as it is, a string as octal digits (``'0640'``, ``'640'``). Reading the int's decimal
    digits as octal again made ``0640`` mode 0416 (world-writable). Group write or execute,
    any permission for others and the setuid/setgid/sticky bits are refused.
    """
    if isinstance(value, bool):
        mode = None
    elif isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        digits = text[2:] if text[:2].lower() == "0o" else text
        mode = int(digits, 8) if digits and all(c in "01234567" for c in digits) else None
    if mode is None:
        raise BackupError(f"mode {value!r} is not an octal file mode such as '0600' or '0640' (quote it in YAML)")
    if mode < 0 or mode & FORBIDDEN_MODE_BITS or mode > 0o7777:
        hint = ""
        if isinstance(value, int) and 100 <= value <= 777 and set(str(value)) <= set("01234567"):
            hint = f" (YAML read an unquoted {value} as a decimal number; write '0{value}')"
        raise BackupError(
            f"mode {mode:04o} would let others read or change the backup, which holds all the database's data"
            f"{hint}; use '0600' (the default), '0640', '0400' or '0440': at most the group may read it"
        )
    return mode


# --- preflight -------------------------------------------------------------------------------


# The grant target of a SHOW GRANTS line: `db`.* or *.* (names quoted, `` for a backtick, and
# free to hold spaces and dots) or a table; routine grants (ON PROCEDURE ...) do not match.
_GRANT_NAME = r"(?:`(?:[^`]|``)+`|\*|[^\s.`]+)"
_GRANT_RE = re.compile(rf"^GRANT (.+?) ON ({_GRANT_NAME})\.({_GRANT_NAME}) TO ", re.I)
_GLOBAL_GRANT_RE = re.compile(r"^GRANT .+? ON \*\.\* TO ", re.I)
# Server errors of a statement the account may not run (table, column, database access denied).
_ACCESS_DENIED = (1142, 1143, 1044)


def granted_privileges(grant_lines: list[str], database: str) -> set[str]:
    """Privileges that apply to ``database``.* from SHOW GRANTS lines (global or db level)."""
    privileges: set[str] = set()
    for line in grant_lines:
        match = _GRANT_RE.match(line)
        if not match:
            continue
        db_part, table_part = match.group(2), match.group(3)
        db_name = db_part[1:-1].replace("``", "`") if db_part.startswith("`") else db_part
        if db_part != "*" and db_name != database and not _wildcard_match(db_name, database):
            continue
        if table_part != "*":
            continue
        for priv in match.group(1).split(","):
            name = priv.strip().upper()
            if name in ("ALL", "ALL PRIVILEGES"):
                privileges.update(("SELECT", "SHOW VIEW", "TRIGGER", "EVENT", "LOCK TABLES", "ALL"))
            else:
                privileges.add(name)
    return privileges


def _wildcard_match(pattern: str, name: str) -> bool:
    regex = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += ".*" if char == "%" else "." if char == "_" else re.escape(char)
        i += 1
    return re.fullmatch(regex, name) is not None


def account_grants(cur: Any, server: ServerInfo) -> list[str]:
    """SHOW GRANTS lines of this session's account, with the privileges of its active roles.

    ``SHOW GRANTS FOR CURRENT_USER()`` lists only what the account was granted itself, so a
    backup account that gets its privileges from a (default) role looked empty. MariaDB's plain
    ``SHOW GRANTS`` adds the grants of the session's current role and of the roles granted to
    it; MySQL 8 needs its active roles named in ``USING``. The dump program logs in the same
    way, so it gets the same default roles - a role granted but not active is not counted.
    """
    if server.is_mariadb:
        cur.execute("SHOW GRANTS")
        return [r[0] for r in cur.fetchall()]
    cur.execute("SELECT CURRENT_ROLE()")
    row = cur.fetchone()
    roles = row[0] if row and row[0] else "NONE"
    # MySQL returns the active roles quoted and comma-separated (`r1`@`%`,`r2`@`%`), or NONE.
    cur.execute("SHOW GRANTS FOR CURRENT_USER()" + ("" if roles == "NONE" else f" USING {roles}"))
    return [r[0] for r in cur.fetchall()]


# Character sets whose literals in a CREATE TABLE (DEFAULT, ENUM and SET values, CHECK) a binary
# session restores unchanged: UTF-8 bytes read as UTF-8; ascii columns hold no other byte.
BINARY_SAFE_CHARSETS = ("utf8mb4", "utf8mb3", "utf8", "ascii", "binary")
# Column types (information_schema DATA_TYPE) whose values a binary session dumps and loads back
# unchanged. Not INET6, UUID or INET4: their text form ('::1') loaded as a binary string is read as
# the packed form, so a non-strict restore stores NULL. An unknown type, newer plugins included,
# keeps the utf8mb4 session.
BINARY_SAFE_TYPES = (
    *("tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "float", "double", "bit"),
    *("date", "datetime", "timestamp", "time", "year"),
    *("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"),
    *("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"),
    *("geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon"),
    "geometrycollection",
)


def _placeholders(values: tuple[str, ...]) -> str:
    return ", ".join(["%s"] * len(values))


def binary_session_safe(connection: Any, database: str, server: ServerInfo) -> bool:
    """Whether ``database`` may be dumped in the binary character set (``_dumpfile.BINARY_DUMP_OPTIONS``).

    Only on MariaDB, and only when every column of its tables and views is of a type in
    ``BINARY_SAFE_TYPES`` and, when it has one, in a character set in ``BINARY_SAFE_CHARSETS``.
    Anything unexpected (the query refused) answers no: the utf8mb4 dump is always correct, only slower.
    """
    if not server.is_mariadb:
        return False
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND ((CHARACTER_SET_NAME"
                f" IS NOT NULL AND CHARACTER_SET_NAME NOT IN ({_placeholders(BINARY_SAFE_CHARSETS)}))"
                f" OR LOWER(DATA_TYPE) NOT IN ({_placeholders(BINARY_SAFE_TYPES)}))",
                (database, *BINARY_SAFE_CHARSETS, *BINARY_SAFE_TYPES),
            )
            return int(cur.fetchone()[0]) == 0
    except Exception:  # noqa: BLE001 - the slower dump is always correct
        return False


def preflight(connection: Any, database: str, server: ServerInfo) -> tuple[list[str], list[str], int, list[str]]:
    """Check the database exists and the account may dump it; returns (tables, views, bytes, missing).

    Tables and views whose name holds a line break are refused: the dump program writes names
    into the comment lines that frame each table, and such a name would split its marker (the
    table would silently fall out of the manifest).
    """
    with connection.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
        if not cur.fetchone():
            raise BackupError(
                f"database {database!r} does not exist on the server (or this account cannot see it); "
                "check the database name and the account's grants"
            )
        cur.execute(
            "SELECT TABLE_NAME, TABLE_TYPE, COALESCE(DATA_LENGTH, 0) FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (database,),
        )
        rows = cur.fetchall()
        grants = account_grants(cur, server)
    broken = [r[0] for r in rows if "\n" in r[0]]
    if broken:
        raise BackupError(
            f"{len(broken)} table/view name(s) in {database!r} contain a line break ({', '.join(map(repr, broken))}): "
            "the dump's comments that frame each table would be ambiguous, so the backup could not account for "
            "them. Rename them (RENAME TABLE); nothing was written"
        )
    # A MariaDB SEQUENCE is dumped (and excluded) like a table.
    tables = [r[0] for r in rows if r[1] in ("BASE TABLE", "SEQUENCE")]
    views = [r[0] for r in rows if r[1] == "VIEW"]
    data_bytes = sum(int(r[2]) for r in rows)
    have = granted_privileges(grants, database)
    missing = [p for p in REQUIRED_PRIVILEGES if p not in have and "ALL" not in have]
    if not missing:
        routine_grant = missing_routine_grant(connection, server, grants, have)
        if routine_grant:
            missing.append(routine_grant)
    return tables, views, data_bytes, missing


def missing_routine_grant(connection: Any, server: ServerInfo, grants: list[str], have: set[str]) -> str | None:
    """The grant the account lacks to read the definitions of stored routines, or None.

    Without it the dump program does not fail: routines the account cannot read are not even
    listed, so the backup silently holds none (and a restore of it has none). mariadb-dump reads
    ``mysql.proc`` (or, from MariaDB 11.3, needs ``SHOW CREATE ROUTINE``); MySQL 8.0.20+'s
    mysqldump needs the global ``SHOW_ROUTINE`` or global ``SELECT``.
    """
    if "SHOW CREATE ROUTINE" in have or "ALL" in have:
        return None
    if server.is_mariadb:
        try:
            with connection.cursor() as cur:
                cur.execute("SELECT 1 FROM mysql.proc LIMIT 0")
                cur.fetchall()
        except Exception as exc:  # PyMySQL's error classes: only "denied" is an answer
            if not exc.args or exc.args[0] not in _ACCESS_DENIED:
                raise
            return "SELECT ON `mysql`.`proc`"
        return None
    global_privileges = granted_privileges([g for g in grants if _GLOBAL_GRANT_RE.match(g)], "")
    if global_privileges & {"SHOW_ROUTINE", "SELECT", "ALL"}:
        return None
    return "SHOW_ROUTINE ON *.*" if server.version >= (8, 0, 20) else "SELECT ON *.*"


def own_table_names(names: list[str], database: str, existing: list[str]) -> list[str]:
    """Exclusion entries as table names: ``<database>.<table>`` (mysqldump's ``--ignore-table`` form)
    is read as ``<table>`` when no table has the whole entry as its name and ``<table>`` exists."""
    prefix = f"{database}."
    known = set(existing)
    return [
        n[len(prefix) :] if n not in known and n.startswith(prefix) and n[len(prefix) :] in known else n for n in names
    ]


def estimate_backup_bytes(data_bytes: int, compression: str) -> int:
    """A deliberately generous estimate of the file size, for the free-space check."""
    ratio = {"zstd": 0.5, "gzip": 0.5, "none": 1.2}[compression]
    return int(data_bytes * ratio) + 1024 * 1024


def dest_write_problem(dest: str) -> str | None:
    """Why a run could not create or write ``dest`` (None: it could), for check mode to say so too."""
    probe = dest
    while probe and not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    probe = probe or "/"
    if not os.path.isdir(probe):
        return f"cannot write {dest}: {probe} exists and is not a directory; choose another dest"
    try:
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"cannot write {dest}: {probe} is on a read-only file system; choose another dest"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot write {dest}: permission denied on {probe}; check the directory's owner and mode"
    return None


def free_bytes(path: str) -> int | None:
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        return shutil.disk_usage(probe or "/").free
    except OSError:
        return None


# The dump program records the binlog position (and, with --gtid, the GTID) of its own snapshot.
SNAPSHOT_POSITION_ARGS = ["--master-data=2", "--gtid"]
_POSITION_OPTIONS = ("master-data", "dump-slave", "source-data", "dump-replica")


def snapshot_position_args(connection: Any, server: ServerInfo, program: str, extra: list[str]) -> list[str]:
    """Dump options that record the exact binlog position of the dump's snapshot, when free.

    mariadb-dump on a MariaDB server reads the position of its ``--single-transaction``
    snapshot from the ``binlog_snapshot_*`` status (no global read lock, no privilege
    beyond the backup grants) and writes it as a comment. MySQL's mysqldump would take
    ``FLUSH TABLES WITH READ LOCK`` (RELOAD) for that, so it is only used when asked for in
    ``extra_dump_args``; options there that choose a position are left alone, as is a server
    without binary logging (where ``--master-data`` is an error).
    """
    if not server.is_mariadb or os.path.basename(program) != "mariadb-dump":
        return []
    if any(_names(reading, _POSITION_OPTIONS) for arg in extra for reading in dump_arg_readings(arg)):
        return []
    try:
        enabled = binlog_enabled(connection)
    except Exception:  # noqa: BLE001 - no position is better than no backup
        return []
    return list(SNAPSHOT_POSITION_ARGS) if enabled else []


def binlog_position(connection: Any, server: ServerInfo) -> dict[str, Any]:
    """Binlog file/position and GTID read just before the dump (approximate: no global lock).

    Only used when the dump program does not record its snapshot's position itself: a
    transaction committed between this read and the dump's snapshot is in both the dump
    and the binlog after this position.
    """
    info: dict[str, Any] = {}
    with contextlib.suppress(Exception), connection.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
        if row:
            info = {"file": row[0], "position": int(row[1])}
    with contextlib.suppress(Exception), connection.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.gtid_binlog_pos" if server.is_mariadb else "SELECT @@GLOBAL.gtid_executed")
        row = cur.fetchone()
        if row and row[0]:
            info["gtid"] = row[0]
    if info:
        info["exact"] = False
    return info


# --- lock ------------------------------------------------------------------------------------


@contextlib.contextmanager
def backup_lock(dest: str, database: str, timeout: float) -> Iterator[str]:
    """An exclusive flock per (dest, database); waits up to ``timeout`` seconds."""
    path = os.path.join(dest, f".{database}.backup.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not wait_for_flock(fd, timeout, interval=0.2):
            raise BackupError(
                f"another backup of {database!r} into {dest} is running (lock {path} held for "
                f"more than lock_timeout={timeout:g}s); wait for it or raise lock_timeout"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # closing releases the flock


def name_when_locked(plan: Plan, label: str | None, compression: str, encrypted: bool) -> Plan:
    """The plan named for now, the moment its run holds the lock, after every backup already written.

    A run that waited for the lock dumps when it gets it. Named for when it started, it took the
    name of a run started in the same second (and failed on it after its whole dump), or an
    older name than the backup the other run wrote meanwhile (so its own retention deleted the
    backup it had just taken). A name taken in this second already waits for the next one.
    """
    while True:
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        name = _retention.backup_file_name(plan.database, now, label, compression, encrypted)
        if not os.path.lexists(os.path.join(plan.dest, name)):
            return replace(plan, file_name=name, created_at=now)
        time.sleep(1.01 - time.time() % 1)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(dest: str, database: str) -> list[str]:
    """Partial files a killed run left behind. Only called while holding the lock.

    A partial file is named after the process writing it (``.<file>.partial-<pid>``). One whose
    process still runs is never removed: a backup file name alone cannot tell database ``shop``
    with label ``eu`` from database ``shop-eu``, whose run holds another lock.
    """
    removed = []
    for entry in os.listdir(dest):
        if not entry.startswith(".") or ".partial-" not in entry:
            continue
        final, _sep, pid = entry[1:].rpartition(".partial-")
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        if final.endswith(_retention.MANIFEST_SUFFIX):
            final = final[: -len(_retention.MANIFEST_SUFFIX)]
        if _retention.parse_backup_name(final, database):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(dest, entry))
                removed.append(entry)
    return removed


# --- the dump --------------------------------------------------------------------------------


def output_buffering_prefix() -> list[str]:
    """``stdbuf`` arguments giving the dump program a ``PIPE_SIZE`` stdout buffer, when installed.

    Dump programs write through stdio, whose buffer on a pipe is one 4 KiB page: about
    270,000 ``write``/``read`` pairs and wake-ups per GB, which cost more CPU than the
    parsing (measured in ``bench/bench_backup.py``). ``stdbuf`` (coreutils) only sets the
    buffer size and then ``exec``s the program, so the process tree and argv are unchanged.
    """
    stdbuf = find_program(("stdbuf",))
    return [stdbuf, f"--output={PIPE_SIZE}"] if stdbuf else []


def dump_command(
    program: str,
    option_file: str,
    database: str,
    exclude_tables: list[str],
    exclude_data: list[str],
    extra: list[str],
    conn: ConnectionParams | None = None,
    binary: bool = False,
) -> list[str]:
    cmd = [*output_buffering_prefix(), *client_command(program, option_file, conn), *_dumpfile.dump_options(binary)]
    cmd += extra
    cmd += [f"--ignore-table={database}.{t}" for t in exclude_tables]
    cmd += [f"--ignore-table-data={database}.{t}" for t in exclude_data]
    cmd += ["--", database]
    return cmd


# What the client programs' option parser (my_getopt) accepts around a long option's name: a
# leading "loose-", then, when the whole name is no option, one of these prefixes.
_LOOSE_PREFIX = "loose-"
_SPECIAL_PREFIXES = ("skip-", "disable-", "enable-", "maximum-", "loose-", "autoset-")
_NEGATING_PREFIXES = ("skip-", "disable-")
_TRUE_VALUES = ("1", "on", "true")
_FALSE_VALUES = ("0", "off", "false")


@dataclass(frozen=True)
class DumpArgReading:
    """One way the dump program may read an extra argument: an option name or its prefix, set how."""

    name: str  # as given, normalised: lower case, "-" for "_"; the program expands unambiguous prefixes
    negated: bool  # --skip-/--disable- prefix
    value: str | None  # after "=", None without one

    @property
    def turned_on(self) -> bool:
        """Conservative: only an option given plainly or with a true value is surely on."""
        return not self.negated and (self.value is None or self.value.lower() in _TRUE_VALUES)

    @property
    def turned_off(self) -> bool:
        """Conservative: only a negated option or one given a false value is surely off."""
        return self.negated or (self.value is not None and self.value.lower() in _FALSE_VALUES)


def dump_arg_readings(arg: str) -> list[DumpArgReading]:
    """Every reading the dump program could make of one long option ``--[loose-][prefix-]name[=value]``.

    The program takes the whole name as an option (or an unambiguous prefix of one) first and
    tries the special prefixes only when that fails; without its option list both readings are
    kept, so ``--skip-disable-keys`` is read as ``skip-disable-keys`` and as ``disable-keys`` off.
    """
    name, sep, value = arg[2:].partition("=")
    name = name.lower().replace("_", "-")
    while name.startswith(_LOOSE_PREFIX):
        name = name[len(_LOOSE_PREFIX) :]
    readings = [DumpArgReading(name, False, value if sep else None)]
    for prefix in _SPECIAL_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            readings.append(DumpArgReading(name[len(prefix) :], prefix in _NEGATING_PREFIXES, value if sep else None))
    return readings


def _names(reading: DumpArgReading, options: Any) -> list[str]:
    """The options of ``options`` the reading may name: the program expands unambiguous prefixes."""
    return [option for option in options if reading.name and option.startswith(reading.name)]


def check_extra_args(extra: list[str]) -> None:
    """Refuse extra dump arguments that would break the backup, however they are spelled.

    Only long options (``--name`` or ``--name=value``, one per entry) are accepted: a short
    option (``-p``, ``-uroot``, ``-xB``) or a separate value (``--where`` ``id>5``) could not be
    told from a positional argument, which the program would take as a database or table name.
    Each long option is matched against ``FORBIDDEN_DUMP_OPTIONS`` in every reading the
    program's option parser could make of it: any ``_``/``-`` spelling, a ``--loose-``,
    ``--skip-``, ``--disable-``, ``--enable-`` or ``--maximum-`` prefix, ``=0``/``=off``/``=false``,
    and any prefix of the option's name (``--skip-single``, ``--res=/x``).
    """
    for arg in extra:
        shown = arg.split("=", 1)[0]  # never a value: it may be a password
        if not arg.startswith("--") or len(arg) == 2 or arg[2] in "-=":
            raise BackupError(
                f"extra_dump_args may not contain {shown!r}: give each option in its long form, --name or "
                "--name=value, one per entry (short options and separate values are not accepted)"
            )
        for reading in dump_arg_readings(arg):
            for option in _names(reading, _dumpfile.FORBIDDEN_DUMP_OPTIONS):
                when = _dumpfile.FORBIDDEN_DUMP_OPTIONS[option]
                if (
                    when == "any"
                    or (when == "on" and not reading.turned_off)
                    or (when == "off" and not reading.turned_on)
                ):
                    raise BackupError(
                        f"extra_dump_args may not contain {shown}: the dump program reads it as --{option}"
                        f"{' turned off' if when == 'off' else ''}, which would break the backup format, its "
                        "consistency or the credential handling (connection details come from the login_* options)"
                    )


PIPE_SIZE = 1024 * 1024
READ_AHEAD_BLOCKS = 32
CPU_PRIORITIES = ("idle", "low", "normal")


def lower_thread_priority(priority: str) -> bool:
    """Lower the calling thread's CPU priority; True when it was lowered.

    On Linux the scheduling policy and the nice value belong to a thread, so only the
    thread that compresses is affected, not the dump program or the thread reading its
    output. ``idle`` is SCHED_IDLE (CPU time nobody else wants), ``low`` is nice 19.
    Best effort: where the system refuses, the backup runs at normal priority.
    """
    try:
        if priority == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return True
        if priority == "low":
            os.setpriority(os.PRIO_PROCESS, 0, 19)
            return True
    except (AttributeError, OSError):
        return False
    return False


def pump(
    pipe: Any, consume: Any, priority: str = "normal", block: int = PIPE_SIZE, depth: int = READ_AHEAD_BLOCKS
) -> bool:
    """Read the dump program's output here; ``consume`` each chunk in a worker thread.

    The database server and the dump program are the critical path of a backup: on a
    machine with as many busy threads as cores, compressing at the same priority takes
    CPU from them and the whole backup waits (measured in ``bench/bench_backup.py``).
    So the worker runs at ``priority`` while this thread, at the caller's priority, keeps
    draining the pipe into a bounded queue (``depth`` chunks: memory stays bounded).

    Chunks are read with one ``readv`` into a pool of reused buffers (the pipe is enlarged
    to ``PIPE_SIZE``): no fresh, page-faulting allocation per MB. Buffers are allocated as
    the queue needs them, so a small database never pays for the whole pool. ``consume`` gets a
    ``bytearray`` that is reused once it returns, so it must copy what it keeps. An
    exception in ``consume`` stops the reading and is raised here. Returns False when the
    system refused the lower ``priority`` (the worker then ran at normal priority).
    """
    fd = pipe.fileno()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    free: queue.Queue[bytearray] = queue.Queue()
    # At most depth buffers wait in the queue and one is being consumed: one more to read into.
    allocate = depth + 2
    blocks: queue.Queue[tuple[bytearray, int] | None] = queue.Queue(maxsize=depth)
    errors: list[BaseException] = []
    cancel = threading.Event()
    lowered: list[bool] = []

    def worker() -> None:
        lowered.append(priority == "normal" or lower_thread_priority(priority))
        try:
            while True:
                item = blocks.get()
                if item is None:
                    return
                buf, size = item
                if not cancel.is_set():
                    consume(buf if size == len(buf) else bytes(memoryview(buf)[:size]))
                free.put(buf)
        except BaseException as exc:  # noqa: BLE001 - raised by the reading thread
            errors.append(exc)
            while (item := blocks.get()) is not None:  # let the reader finish its last put
                free.put(item[0])

    thread = threading.Thread(target=worker, name="backup-compress", daemon=True)
    thread.start()
    try:
        while not errors:
            try:
                buf = free.get_nowait()
            except queue.Empty:
                if allocate:
                    allocate -= 1
                    buf = bytearray(block)
                else:
                    buf = free.get()
            size = os.readv(fd, [buf])
            if not size:
                break
            blocks.put((buf, size))
    except BaseException:
        cancel.set()
        raise
    finally:
        blocks.put(None)
        thread.join()
    if errors:
        raise errors[0]
    return all(lowered)


@dataclass
class DumpResult:
    parser: _dumpfile.DumpParser
    sha256: str
    size: int
    uncompressed: int
    program_version: str
    priority_lowered: bool = True


WRITEBACK_BYTES = 8 * 1024 * 1024


class WritebackFile:
    """A file written through ``write`` whose data a background thread keeps syncing to disk.

    Every ``every`` bytes the thread calls ``fdatasync``, so the final ``fsync`` of a backup
    has only the last few MB left to write instead of the whole file (about 80 ms per
    170 MB here, all of it after the dump had finished). A background sync consumes a
    write error on Linux (the next ``fsync`` on the same descriptor would not see it), so
    its errors are kept and raised by ``sync()``.
    """

    def __init__(self, raw: Any, every: int = WRITEBACK_BYTES) -> None:
        self.raw = raw
        self._every = every
        self._unsynced = 0
        self._wake = threading.Event()
        self._closing = False
        self._errors: list[OSError] = []
        self._thread = threading.Thread(target=self._run, name="backup-writeback", daemon=True)
        self._thread.start()

    def write(self, data: Any) -> int:
        written = self.raw.write(data)
        self._unsynced += len(data)
        if self._unsynced >= self._every:
            self._unsynced = 0
            self._wake.set()
        return written

    def _run(self) -> None:
        fd = self.raw.fileno()
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            try:
                os.fdatasync(fd)
            except OSError as exc:
                self._errors.append(exc)
                return

    def stop(self) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join()

    def sync(self) -> None:
        """Flush and ``fsync`` the file; raises a write error any background sync met."""
        self.stop()
        self.raw.flush()
        if self._errors:
            raise self._errors[0]
        os.fsync(self.raw.fileno())


def run_dump(
    conn: ConnectionParams,
    program: str,
    plan: Plan,
    tmp_path: str,
    compression: str,
    level: int | None,
    recipients: list[str],
    exclude_tables: list[str],
    exclude_data: list[str],
    extra: list[str],
    chunk_bytes: int,
    threads: int,
    cpu_priority: str = "normal",
) -> DumpResult:
    """Stream the dump program's output through the parser into ``tmp_path`` (0600), fsynced."""
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb", buffering=1024 * 1024) as raw, tempfile.TemporaryFile() as errfile:
        version = start_program_version(program)
        out = WritebackFile(raw)  # from here on its thread is stopped whatever happens
        try:
            writer = _dumpfile.FrameWriter(out, compression, level, threads=threads, encrypt_to=recipients)
            # The data digests are the frames' own checksums (free); only uncompressed output is hashed.
            parser = _dumpfile.DumpParser(writer, chunk_bytes, digest=False)
            with client_option_file(conn) as option_file:
                cmd = dump_command(
                    program, option_file, plan.database, exclude_tables, exclude_data, extra, conn, plan.binary_session
                )
                proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=errfile,
                    stdin=subprocess.DEVNULL,
                    env=client_environment(option_file),
                )
                try:
                    priority_lowered = pump(proc.stdout, parser.feed, cpu_priority)
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                finally:
                    proc.stdout.close()
                rc = proc.wait()
            stderr = program_errors(errfile)
            if rc != 0:
                detail = stderr or (
                    "it printed no error; was it killed, or did the server go away? Check the server's error log"
                )
                raise BackupError(
                    f"{os.path.basename(program)} failed with exit code {rc} while dumping {plan.database!r}: {detail}",
                    rc=rc,
                    stderr=stderr,
                )
            parser.finish()
            if not parser.completed:
                raise BackupError(
                    f"the dump of {plan.database!r} ended without the '-- Dump completed' trailer: it is "
                    "incomplete (server gone away or the dump program was killed?)",
                    stderr=stderr,
                )
            sha256, size = writer.close()
            out.sync()
        finally:
            out.stop()
            version_text = program_version(version)
    return DumpResult(parser, sha256, size, writer.uncompressed, version_text, priority_lowered)


def build_manifest(
    plan: Plan,
    result: DumpResult,
    program: str,
    compression: str,
    level: int | None,
    recipients: list[str],
    extra: list[str],
    exclude_tables: list[str],
    exclude_data: list[str],
    binlog: dict[str, Any],
    chunk_bytes: int,
    duration: float,
) -> dict[str, Any]:
    from ansible_collections.mutuapix.ops.plugins.module_utils._age import recipient_fingerprint  # noqa: PLC0415

    parser = result.parser
    tables = parser.tables()
    return {
        "format": _dumpfile.FORMAT_NAME,
        "format_version": _dumpfile.FORMAT_VERSION,
        "database": plan.database,
        "created_at": plan.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "server": plan.server.to_dict(),
        "dump": {
            "program": os.path.basename(program),
            "version": result.program_version,
            "dialect": parser.dialect,
            "options": [*_dumpfile.dump_options(plan.binary_session), *extra],
            "exclude_tables": exclude_tables,
            "exclude_table_data": exclude_data,
            "chunk_bytes": chunk_bytes,
            "duration_s": round(duration, 3),
        },
        "compression": compression,
        "compression_level": level,
        "encryption": (
            {"type": "age", "recipients": [recipient_fingerprint(r) for r in recipients]} if recipients else None
        ),
        "offsets": "compressed stream (decrypted stream for .age files)",
        "file": plan.file_name,
        "size": result.size,
        "sha256": result.sha256,
        "uncompressed_size": result.uncompressed,
        "binlog": parser.binlog or binlog or None,
        "digest": "sha256 of each table's data region as dumped, '-- Dumping data' comment through UNLOCK TABLES",
        "sections": parser.sections,
        "tables": parser.manifest_objects(),
        "routines": parser.routines,
        "events": parser.events,
        "rows_total": sum(t.rows for t in tables.values()),
    }


def finalize(tmp_path: str, final_path: str, mode: int, owner: int | None, group: int | None) -> None:
    """Set ownership/mode, rename into place and fsync the directory."""
    set_owner(tmp_path, owner, group)
    os.chmod(tmp_path, mode)
    if os.path.exists(final_path):
        raise BackupError(f"{final_path} already exists; refusing to overwrite an earlier backup")
    os.rename(tmp_path, final_path)
    fsync_dir(os.path.dirname(final_path))


def publish(
    tmp_path: str, final_path: str, manifest: dict[str, Any], mode: int, owner: int | None, group: int | None
) -> str:
    """Rename the data file into place, then write its manifest beside it; returns the manifest's path.

    A manifest means a complete backup, so it is written last. When it cannot be written (disk
    full, most likely) the data file is removed again: without a manifest it is no backup that
    verification, restore or retention knows, and it would keep its space forever.
    """
    finalize(tmp_path, final_path, mode, owner, group)
    manifest_path = final_path + _retention.MANIFEST_SUFFIX
    try:
        _dumpfile.write_json_atomic(manifest_path, manifest, mode)
        set_owner(manifest_path, owner, group)
    except BaseException:
        for path in (manifest_path, final_path):
            with contextlib.suppress(OSError):  # the manifest's error is the one to report
                os.unlink(path)
        with contextlib.suppress(OSError):
            fsync_dir(os.path.dirname(final_path))
        raise
    return manifest_path


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_os_error(exc: OSError, where: str) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"no space left writing {where} ({exc.strerror}); free space or choose another dest"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {where}: {exc.strerror}; check the directory's owner and mode"
    return f"error writing {where}: {exc}"


# --- retention -------------------------------------------------------------------------------


def local_backups(dest: str, database: str) -> list[_retention.BackupName]:
    """This database's backups in ``dest`` that are complete (their manifest exists).

    In a ``dest`` shared by ``app`` and ``app-archive``, ``app-archive-<ts>`` parses as app's
    backup labelled ``archive`` too: where the name is ambiguous, its manifest must name
    ``database``, so retention never deletes another database's backups.
    """
    names = set(os.listdir(dest))
    found = []
    for name in names:
        parsed = _retention.parse_backup_name(name, database)
        if not parsed or parsed.manifest_name not in names:
            continue
        if parsed.ambiguous and not _retention.manifest_confirms(parsed, _read_json(dest, parsed.manifest_name)):
            continue
        found.append(parsed)
    return found


def _read_json(dest: str, name: str) -> Any:
    """A manifest's JSON, or None when it cannot be read (then it confirms nothing)."""
    try:
        with open(os.path.join(dest, name), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def apply_retention(
    dest: str,
    database: str,
    label: str | None,
    rules: dict[str, int | None],
    dry_run: bool = False,
    planned: str | None = None,
    errors: list[str] | None = None,
) -> list[str]:
    """Delete (``dry_run``: only name) the backups the rules do not keep.

    Only the series the run writes is pruned: ``database``'s backups with this ``label`` (None:
    the unlabelled ones). Another label's backups are another series with rules of its own (a
    nightly run's ``keep_daily: 7`` must not thin out the monthly archive, nor a deploy's
    ``keep_last`` the nightly weeklies).

    ``planned``: the file name of the backup a check-mode run would write. It counts as one of
    the complete backups, as it will when the real run applies retention after writing it, so
    check mode names exactly what the run would delete.

    ``errors``: a backup that cannot be deleted (a read-only or foreign-owned file) is noted
    there and kept whole (its manifest too), and the others are still deleted; without it the
    error is raised.
    """
    if all(v is None for v in rules.values()):
        return []
    backups = [b for b in local_backups(dest, database) if b.label == label]
    planned_backup = _retention.parse_backup_name(planned, database) if planned else None
    if planned_backup is not None:
        backups.append(planned_backup)  # the newest of its group, so kept
    _keep, delete = _retention.select_for_deletion(backups, **rules)
    deleted = []
    for backup in delete:
        try:
            for name in (backup.name, backup.manifest_name):  # the data file first: no orphan data
                if not dry_run:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dest, name))
        except OSError as exc:
            if errors is None:
                raise
            errors.append(f"{exc.filename or os.path.join(dest, backup.name)}: {exc.strerror or exc}")
            continue
        deleted.append(backup.name)
    return deleted
