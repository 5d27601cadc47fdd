# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Least-privilege database accounts for mutuapix.ops (private API).

Everything ``app_db_user`` and ``mysql_secure_installation`` decide lives here: name and
host validation, privilege presets, SHOW GRANTS parsing for MariaDB and MySQL 8.0/8.4,
the plan (a list of statements, computed before anything runs so check mode can return
it), and redaction. Statements carry their secrets as bound parameters or as hashes that
are redacted in everything we report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import MySQLError, ServerInfo
from ansible_collections.mutuapix.ops.plugins.module_utils._password_policy import (
    password_hash,
    password_matches,
)

try:
    from pymysql.err import MySQLError as DriverError
except ImportError:  # pragma: no cover - MySQLModule fails with missing_required_lib first
    DriverError = OSError

REDACTED = "<redacted>"
MAX_USER_LENGTH_MARIADB = 80
MAX_USER_LENGTH_MYSQL = 32
MAX_HOST_LENGTH = 255
# Conservative on purpose: application account names never need more.
USER_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Host names, IPv4/IPv6 addresses, netmasks and the % and _ wildcards.
HOST_RE = re.compile(r"^[A-Za-z0-9.%_:\-/]+$")
BARE_NAME_RE = re.compile(r"^[A-Za-z0-9_$%\\-]+$")
PRIVILEGE_RE = re.compile(r"^[A-Z][A-Z_ ]*[A-Z]$")
COLUMN_PRIVILEGE_RE = re.compile(r"^([A-Z][A-Z_ ]*[A-Z])\s*\((.*)\)$", re.S)

PLUGINS = ("mysql_native_password", "caching_sha2_password", "ed25519")

PRESET_APP = ("SELECT", "INSERT", "UPDATE", "DELETE")
PRESET_READONLY = ("SELECT", "SHOW VIEW")
PRESET_MIGRATE = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "ALTER",
    "DROP",
    "INDEX",
    "REFERENCES",
    "CREATE VIEW",
    "SHOW VIEW",
    "TRIGGER",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EXECUTE",
    "EVENT",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
)
PRESET_BACKUP_DB = ("SELECT", "SHOW VIEW", "TRIGGER", "EVENT", "LOCK TABLES")

# What SHOW GRANTS prints as ALL PRIVILEGES on a database and on a table (DB_ACLS and TABLE_ACLS
# without GRANT in the servers' sources): the database set is exactly the migrate preset.
DB_ALL_PRIVILEGES = frozenset(PRESET_MIGRATE)
TABLE_ALL_PRIVILEGES = DB_ALL_PRIVILEGES - {
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EXECUTE",
    "EVENT",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
}
PRESETS = ("app", "migrate", "readonly", "backup")

# Privileges meaningful only at the global level (*.*): granting them needs
# allow_global_privileges unless a preset asks for them.
GLOBAL_ONLY_PRIVILEGES = frozenset(
    {
        "BINLOG MONITOR",
        "REPLICATION CLIENT",
        "REPLICATION SLAVE",
        "REPLICA MONITOR",
        "SLAVE MONITOR",
        "BINLOG ADMIN",
        "BINLOG REPLAY",
        "CONNECTION ADMIN",
        "FEDERATED ADMIN",
        "READ_ONLY ADMIN",
        "REPLICATION MASTER ADMIN",
        "REPLICATION SLAVE ADMIN",
        "SET USER",
        "CREATE USER",
        "CREATE TABLESPACE",
        "FILE",
        "PROCESS",
        "RELOAD",
        "SHUTDOWN",
        "SUPER",
        "SHOW DATABASES",
    }
)
# MariaDB 10.5 renamed these; SHOW GRANTS reports the new names.
MARIADB_SYNONYMS = {"REPLICATION CLIENT": "BINLOG MONITOR"}
SYNONYMS = {"ALL": "ALL PRIVILEGES"}
# Whoever can write to mysql.* can grant itself anything; the others hold server state.
SYSTEM_SCHEMAS = ("mysql", "sys", "performance_schema", "information_schema")


class AccountError(MySQLError):
    """Invalid input for an account; the message says which option and why."""


# --- names, hosts, levels ----------------------------------------------------------------


def validate_user_name(name: str, server: ServerInfo | None = None) -> str:
    limit = MAX_USER_LENGTH_MYSQL if server is not None and not server.is_mariadb else MAX_USER_LENGTH_MARIADB
    if not isinstance(name, str) or not name:
        raise AccountError("name must be a non-empty account name")
    if len(name) > limit:
        raise AccountError(f"name {name!r} is longer than {limit} characters, the server's limit")
    if not USER_NAME_RE.match(name):
        raise AccountError(
            f"name {name!r} contains characters other than letters, digits, '_', '.' and '-'; "
            "refused to keep account names unambiguous in grants and logs"
        )
    return name


def validate_host(host: str) -> str:
    if not isinstance(host, str) or not host:
        raise AccountError("host must be a non-empty host name, address or pattern")
    if len(host) > MAX_HOST_LENGTH:
        raise AccountError(f"host {host!r} is longer than {MAX_HOST_LENGTH} characters")
    if not HOST_RE.match(host):
        raise AccountError(
            f"host {host!r} is not a host name, IP address, netmask or %/_ pattern "
            "(allowed: letters, digits, '.', '-', ':', '/', '%', '_')"
        )
    return host


def normalise_host(host: str) -> str:
    """A validated host part in lower case, as the server stores and compares it.

    MariaDB and MySQL 8 (the "Grant Table Scope Column Properties" of its manual) lowercase
    host names before storing them in the grant tables and match them case-insensitively, so
    ``App1.Example.COM`` and ``app1.example.com`` are one account. Lookups in mysql.user
    compare the (binary) column exactly, hence lower case everywhere: lookups, plans, results.
    """
    return validate_host(host).lower()


def quote_name(text: str) -> str:
    """Backtick quoting: only the backtick needs doubling, whatever the sql_mode."""
    if "\x00" in text:
        raise AccountError("names cannot contain NUL bytes")
    return "`" + text.replace("`", "``") + "`"


def account_sql(user: str, host: str) -> str:
    return f"{quote_name(user)}@{quote_name(host)}"


def escape_db_pattern(database: str) -> str:
    """A database name as a GRANT pattern matching only itself (``_`` and ``%`` escaped)."""
    return database.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


def like_matches(pattern: str, text: str) -> bool:
    """Whether the GRANT database pattern ``pattern`` matches ``text`` (SQL LIKE).

    ``%`` is any run of characters, ``_`` one character, a backslash makes the next
    character literal (``\\_``, ``\\%``, ``\\\\``). Case-insensitive on purpose: with
    lower_case_table_names=1 the server folds database names, and refusing too much is safe.
    """
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.fullmatch("".join(parts), text, re.S | re.I) is not None


def system_schemas_matched(db_pattern: str) -> list[str]:
    """The system schemas (mysql, sys, ...) a grant's database pattern reaches."""
    return [schema for schema in SYSTEM_SCHEMAS if like_matches(db_pattern, schema)]


@dataclass(frozen=True, order=True)
class Level:
    """A grant level: database pattern (as written in GRANT, escapes kept) and table."""

    db: str
    table: str

    def sql(self) -> str:
        db = "*" if self.db == "*" else quote_name(self.db)
        table = "*" if self.table == "*" else quote_name(self.table)
        return f"{db}.{table}"

    def key(self) -> str:
        return f"{self.db}.{self.table}"

    @property
    def is_global(self) -> bool:
        return self.db == "*"


def _split_quoted(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside backticks and parentheses."""
    parts: list[str] = []
    buf: list[str] = []
    in_tick = False
    depth = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "`":
            if in_tick and i + 1 < len(text) and text[i + 1] == "`":
                buf.append("``")
                i += 2
                continue
            in_tick = not in_tick
        elif not in_tick and ch == "(":
            depth += 1
        elif not in_tick and ch == ")":
            depth -= 1
        if ch == sep and not in_tick and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _unquote(part: str) -> str:
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] == "`":
        return part[1:-1].replace("``", "`")
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"":
        return part[1:-1]
    return part


def _unquote_account(text: str) -> str:
    """```role`@`%``` -> ``role@%`` (MariaDB roles have no host part)."""
    return "@".join(_unquote(part) for part in _split_quoted(text.strip(), "@"))


def _requote_account(text: str) -> str:
    """```role`@`%``` or ``'role'@'%'`` as a statement names it: ```role`@`%```, MariaDB's ```role```."""
    return "@".join(quote_name(_unquote(part)) for part in _split_quoted(text.strip(), "@"))


def parse_level(text: str) -> Level:
    """``db.*``, ``db.table``, ```db`.`t```, ``*.*`` into a Level, or AccountError."""
    parts = _split_quoted(text.strip(), ".")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise AccountError(f"privilege level {text!r} is not of the form db.* or db.table (or *.*)")
    for part in parts:
        bare = part.strip()
        if not (bare.startswith("`") or bare == "*" or BARE_NAME_RE.match(bare)):
            raise AccountError(
                f"privilege level {text!r} is not of the form db.* or db.table: quote names with "
                "characters other than letters, digits, '_', '$', '%' and '\\' in backticks"
            )
    db, table = _unquote(parts[0]), _unquote(parts[1])
    if db == "*" and table != "*":
        raise AccountError(f"privilege level {text!r}: *.table is not a valid level")
    for piece in (db, table):
        if "\x00" in piece or "\n" in piece or len(piece) > 64:
            raise AccountError(f"privilege level {text!r} has an invalid database or table name")
    return Level(db, table)


def normalise_privilege(priv: str, server: ServerInfo | None = None) -> str:
    text = " ".join(priv.strip().split())
    column = COLUMN_PRIVILEGE_RE.match(text)
    if column:
        name = " ".join(column.group(1).upper().split())
        cols = sorted(_unquote(c) for c in _split_quoted(column.group(2), ","))
        return f"{name} ({', '.join(quote_name(c) for c in cols)})"
    upper = text.upper()
    upper = SYNONYMS.get(upper, upper)
    if server is not None and server.is_mariadb and server.version >= (10, 5, 0):
        upper = MARIADB_SYNONYMS.get(upper, upper)
    return upper


def validate_privilege(priv: str) -> str:
    if not PRIVILEGE_RE.match(priv):
        raise AccountError(
            f"privilege {priv!r} is not a privilege name (letters, spaces and '_' only; "
            "column privileges cannot be requested; any the account holds are revoked)"
        )
    return priv


# --- SHOW GRANTS ---------------------------------------------------------------------------

GRANT_RE = re.compile(r"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?P<rest>.+)$", re.S | re.I)
_LEVEL_PART = r"(?:`(?:[^`]|``)*`|'[^']*'|\*|[^\s.`']+)"
TARGET_RE = re.compile(
    r"^(?P<object>(?:FUNCTION|PROCEDURE|PACKAGE BODY|PACKAGE)\s+)?"
    r"(?P<level>" + _LEVEL_PART + r"\." + _LEVEL_PART + r")\s+TO\s+(?P<tail>.*)$",
    re.I | re.S,
)
PROXY_RE = re.compile(r"^GRANT\s+PROXY\s+ON\s+(?P<proxied>.+?)\s+TO\s", re.I | re.S)
ROLE_RE = re.compile(r"^GRANT\s+(?!.*\sON\s)(?P<roles>.+?)\s+TO\s", re.I | re.S)
# MariaDB prints an account's default role as the last line of SHOW GRANTS.
DEFAULT_ROLE_RE = re.compile(r"^SET\s+DEFAULT\s+ROLE\s+(?P<role>.+?)\s+FOR\s", re.I | re.S)


@dataclass
class Grants:
    """An account's privileges per level, as SHOW GRANTS reports them.

    Besides the levels: the roles granted (``roles`` as labels, ``role_sql`` as statements
    name them), the default role(s), routine-level grants (``routines``, with their
    privileges in ``routine_privileges``) and PROXY grants (``proxied`` accounts).
    """

    privileges: dict[Level, set[str]] = field(default_factory=dict)
    grant_option: set[Level] = field(default_factory=set)
    roles: list[str] = field(default_factory=list)
    role_sql: list[str] = field(default_factory=list)
    default_roles: list[str] = field(default_factory=list)
    routines: list[str] = field(default_factory=list)
    routine_privileges: dict[str, set[str]] = field(default_factory=dict)
    proxies: int = 0
    proxied: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for level in sorted(set(self.privileges) | self.grant_option):
            privs = sorted(self.privileges.get(level, set()))
            if level in self.grant_option:
                privs.append("GRANT OPTION")
            if privs:
                out[level.key()] = privs
        return out


def parse_show_grants(lines: list[str], server: ServerInfo | None = None) -> Grants:
    """Parse SHOW GRANTS output of MariaDB 10.x/11.x and MySQL 5.7/8.0/8.4.

    ``USAGE`` is dropped (it means "no privileges"); the authentication clause MariaDB
    prints on that line (``IDENTIFIED BY PASSWORD '*...'``) is never kept.
    """
    grants = Grants()
    for raw in lines:
        line = raw.strip()
        proxy = PROXY_RE.match(line)
        if proxy:
            grants.proxies += 1
            grants.proxied.append(_unquote_account(proxy.group("proxied")))
            continue
        default_role = DEFAULT_ROLE_RE.match(line)
        if default_role:
            grants.default_roles.extend(_unquote_account(r) for r in _split_quoted(default_role.group("role"), ","))
            continue
        match = GRANT_RE.match(line)
        if not match:
            role = ROLE_RE.match(line)
            if role:
                for text in _split_quoted(role.group("roles"), ","):
                    grants.roles.append(_unquote_account(text))
                    grants.role_sql.append(_requote_account(text))
            continue
        target = TARGET_RE.match(match.group("rest").strip())
        if not target:
            continue
        tail = target.group("tail")
        privs = {normalise_privilege(p, server) for p in _split_quoted(match.group("privs"), ",") if p.strip()}
        if target.group("object"):
            routine = f"{' '.join(target.group('object').split()).upper()} {parse_level(target.group('level')).sql()}"
            grants.routines.append(routine)
            grants.routine_privileges.setdefault(routine, set()).update(privs - {"USAGE"})
            if re.search(r"\bWITH\b.*\bGRANT\s+OPTION\b", tail, re.I | re.S):
                grants.routine_privileges[routine].add("GRANT OPTION")
            continue
        level = parse_level(target.group("level"))
        privs.discard("USAGE")
        if privs:
            grants.privileges.setdefault(level, set()).update(privs)
        if re.search(r"\bWITH\b.*\bGRANT\s+OPTION\b", tail, re.I | re.S):
            grants.grant_option.add(level)
    return grants


# --- desired privileges --------------------------------------------------------------------


def preset_privileges(
    preset: str,
    database: str,
    server: ServerInfo,
    binlog_privilege: bool = False,
) -> tuple[dict[Level, set[str]], list[str]]:
    """The exact grants of a preset on ``database`` for this server, plus warnings."""
    db = Level(escape_db_pattern(database), "*")
    warnings: list[str] = []
    if preset == "app":
        return {db: set(PRESET_APP)}, warnings
    if preset == "readonly":
        return {db: set(PRESET_READONLY)}, warnings
    if preset == "migrate":
        return {db: set(PRESET_MIGRATE)}, warnings
    if preset != "backup":
        raise AccountError(f"unknown privileges preset {preset!r}; use one of {', '.join(PRESETS)}")
    wanted: dict[Level, set[str]] = {db: set(PRESET_BACKUP_DB)}
    if server.is_mariadb:
        # mariadb-dump --routines reads mysql.proc directly.
        wanted[Level("mysql", "proc")] = {"SELECT"}
        if binlog_privilege:
            wanted[Level("*", "*")] = {"BINLOG MONITOR" if server.version >= (10, 5, 0) else "REPLICATION CLIENT"}
        return wanted, warnings
    global_privs: set[str] = set()
    if server.version >= (8, 0, 20):
        global_privs.add("SHOW_ROUTINE")
    else:
        global_privs.add("SELECT")
        warnings.append(
            "MySQL before 8.0.20 has no SHOW_ROUTINE privilege: the backup preset grants global SELECT "
            "so mysqldump can read routine definitions"
        )
    if binlog_privilege:
        global_privs.add("REPLICATION CLIENT")
    wanted[Level("*", "*")] = global_privs
    return wanted, warnings


def explicit_privileges(mapping: dict[str, Any], server: ServerInfo, allow_global: bool) -> dict[Level, set[str]]:
    """Validate a ``{"db.*": [privs]}`` mapping (lists or comma-separated strings)."""
    wanted: dict[Level, set[str]] = {}
    for key, value in mapping.items():
        level = parse_level(str(key))
        items = value.split(",") if isinstance(value, str) else list(value or [])
        privs = {normalise_privilege(str(p), server) for p in items if str(p).strip()}
        for priv in privs:
            validate_privilege(priv)
        if not privs:
            raise AccountError(f"privileges for {key!r} are empty; remove the level instead")
        if privs & {"USAGE"}:
            privs.discard("USAGE")
        if not allow_global:
            if "GRANT OPTION" in privs:
                raise AccountError(
                    f"GRANT OPTION on {key!r} refused: an application account must not hand out "
                    "privileges; set allow_global_privileges=true if this is really intended"
                )
            if level.is_global:
                raise AccountError(
                    f"global privileges on {key!r} refused; set allow_global_privileges=true if this is really intended"
                )
            check_not_system_schema(level.db, f"privileges on {key!r}")
            bad = sorted(privs & GLOBAL_ONLY_PRIVILEGES)
            if bad:
                raise AccountError(f"{', '.join(bad)} on {key!r} are global privileges; refused")
        if privs:
            wanted.setdefault(level, set()).update(privs)
    return wanted


def check_not_system_schema(db_pattern: str, what: str) -> None:
    """Refuse a level whose database (pattern) reaches mysql, sys, ... : that is global in effect.

    UPDATE on mysql.global_priv (through ``%.*``, ``m%.*``, ``_ysql.*`` or ``mysql.*``) lets an
    account rewrite its own privileges. Table-level grants take the database name literally,
    but it is matched as a pattern here too: refusing ``m%.t`` as well costs nothing.
    """
    schemas = system_schemas_matched(db_pattern)
    if schemas:
        raise AccountError(
            f"{what} refused: the database {db_pattern!r} matches the system schema {', '.join(schemas)}, "
            "which amounts to global privileges (an account that can write to mysql.* can grant itself "
            "anything); escape _ and % in the name (\\_ \\%) or set allow_global_privileges=true if this is "
            "really intended"
        )


def server_privileges(cursor: Any, server: ServerInfo) -> set[str]:
    """Privilege names this server knows (SHOW PRIVILEGES), normalised like SHOW GRANTS."""
    cursor.execute("SHOW PRIVILEGES")
    known = {normalise_privilege(str(row[0]), server) for row in cursor.fetchall()}
    return known | {"ALL PRIVILEGES", "USAGE", "GRANT OPTION"}


def check_privileges_known(wanted: dict[Level, set[str]], known: set[str]) -> None:
    """Refuse, before any change, a privilege the server would reject half-way through the plan."""
    for level, privs in sorted(wanted.items()):
        unknown = sorted(privs - known)
        if unknown:
            raise AccountError(
                f"{', '.join(unknown)} on {level.key()!r}: not a privilege of this server (see SHOW PRIVILEGES)"
            )


# --- current account state -----------------------------------------------------------------


@dataclass
class Account:
    user: str
    host: str
    exists: bool = False
    plugin: str = ""
    auth_string: bytes = b""
    ssl_type: str = ""
    max_user_connections: int = 0
    has_secondary_password: bool = False
    grants: Grants = field(default_factory=Grants)


def read_account(cursor: Any, server: ServerInfo, user: str, host: str) -> Account:
    """The account's current authentication, limits and grants (read-only)."""
    host = normalise_host(host)  # the Host column is compared byte for byte; the server stores lower case
    account = Account(user, host)
    cursor.execute(
        "SELECT plugin, HEX(authentication_string), ssl_type, max_user_connections "
        "FROM mysql.user WHERE User = %s AND Host = %s",
        (user, host),
    )
    row = cursor.fetchone()
    if row is None:
        return account
    account.exists = True
    account.plugin = str(row[0] or "")
    account.auth_string = bytes.fromhex(row[1] or "")
    account.ssl_type = str(row[2] or "").upper()
    account.max_user_connections = int(row[3] or 0)
    if not server.is_mariadb and server.version >= (8, 0, 14):
        cursor.execute(
            "SELECT JSON_EXTRACT(User_attributes, '$.additional_password') IS NOT NULL "
            "FROM mysql.user WHERE User = %s AND Host = %s",
            (user, host),
        )
        extra = cursor.fetchone()
        account.has_secondary_password = bool(extra and extra[0])
    cursor.execute(f"SHOW GRANTS FOR {account_sql(user, host)}")
    account.grants = parse_show_grants([r[0] for r in cursor.fetchall()], server)
    if not server.is_mariadb and server.version >= (8, 0, 0):
        # MySQL's SHOW GRANTS does not print default roles (MariaDB's does, parsed above).
        cursor.execute(
            "SELECT DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST FROM mysql.default_roles WHERE USER = %s AND HOST = %s",
            (user, host),
        )
        account.grants.default_roles = [account_label(str(u), str(h)) for u, h in cursor.fetchall()]
    return account


def server_default_plugin(cursor: Any, server: ServerInfo) -> str:
    """The plugin a new account gets on this server when none is named."""
    if server.is_mariadb:
        return "mysql_native_password"
    for query in ("SELECT @@default_authentication_plugin", "SELECT @@authentication_policy"):
        try:
            cursor.execute(query)
            row = cursor.fetchone()
        except DriverError:  # the variable does not exist on every version
            continue
        value = str(row[0] or "") if row else ""
        first = value.split(",", maxsplit=1)[0].strip()
        if first and first != "*" and first in PLUGINS:
            return first
    return "caching_sha2_password" if server.version >= (8, 0, 0) else "mysql_native_password"


def plugin_available(cursor: Any, plugin: str) -> bool:
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = %s AND PLUGIN_STATUS = 'ACTIVE'",
        (plugin,),
    )
    row = cursor.fetchone()
    return bool(row and row[0])


def check_plugin_supported(plugin: str, server: ServerInfo, available: bool) -> None:
    if plugin == "ed25519" and not server.is_mariadb:
        raise AccountError("plugin ed25519 exists only on MariaDB; use caching_sha2_password on MySQL")
    if plugin == "caching_sha2_password" and server.is_mariadb:
        raise AccountError("plugin caching_sha2_password is MySQL's; on MariaDB use ed25519 or mysql_native_password")
    if not available:
        if plugin == "mysql_native_password" and not server.is_mariadb and server.version >= (8, 4, 0):
            raise AccountError(
                "mysql_native_password is disabled by default on MySQL 8.4 and removed in 9.0; "
                "use plugin caching_sha2_password (or auto)"
            )
        hint = " (INSTALL SONAME 'auth_ed25519' as an administrator)" if plugin == "ed25519" else ""
        raise AccountError(f"authentication plugin {plugin} is not active on this server{hint}")


# --- the plan ------------------------------------------------------------------------------


@dataclass
class Statement:
    """One statement to run: SQL (with %s for bound secrets), its parameters, redacted text.

    ``effects`` are the result flags (``created``, ``removed``, ``password_changed``) that
    become true once this statement has run, so a run that fails part way reports what it did.
    """

    sql: str
    params: tuple[str, ...] = ()
    redacted: str = ""
    effects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.redacted:
            self.redacted = self.sql


@dataclass
class Desired:
    user: str
    host: str
    password: str | None
    plugin: str
    update_password: str = "on_create"  # noqa: S105 - an option value, not a password
    privileges: dict[Level, set[str]] | None = None
    require_ssl: bool | None = None
    max_user_connections: int | None = None
    rotate: str = "none"


@dataclass
class Plan:
    statements: list[Statement] = field(default_factory=list)
    created: bool = False
    removed: bool = False
    password_changed: bool = False
    granted: dict[str, list[str]] = field(default_factory=dict)
    revoked: dict[str, list[str]] = field(default_factory=dict)
    final_privileges: dict[str, list[str]] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.statements)


def _auth_clause(server: ServerInfo, plugin: str, auth_hash: str) -> tuple[str, str]:
    """The IDENTIFIED clause with the hash, and its redacted form."""
    verb, using = ("VIA", "USING") if server.is_mariadb else ("WITH", "AS")
    # auth_hash is produced by _password_policy: [*0-9A-Za-z./$+] only, safe inside quotes.
    if not re.match(r"^[*0-9A-Za-z./$+]+$", auth_hash):
        raise AccountError("internal error: unexpected characters in a computed password hash")
    return (
        f"IDENTIFIED {verb} {plugin} {using} '{auth_hash}'",
        f"IDENTIFIED {verb} {plugin} {using} '{REDACTED}'",
    )


def _limits_clause(desired: Desired) -> str:
    parts = []
    if desired.require_ssl is not None:
        parts.append("REQUIRE SSL" if desired.require_ssl else "REQUIRE NONE")
    if desired.max_user_connections is not None:
        parts.append(f"WITH MAX_USER_CONNECTIONS {int(desired.max_user_connections)}")
    return " ".join(parts)


def _privs_sql(privs: set[str]) -> str:
    return ", ".join(sorted(privs))


def plan_roles_and_object_grants(server: ServerInfo, account: str, current: Grants, plan: Plan) -> None:
    """Revoke what SHOW GRANTS lists outside the levels: roles, default role, routine and PROXY grants.

    "Exact grants" includes what comes through a role (``GRANT dba TO app``, ``SET DEFAULT ROLE``
    makes it active at login), a SQL SECURITY DEFINER routine the account may EXECUTE, and
    PROXY (another account's privileges). None of them can be requested through this module.
    """
    for role in current.role_sql:
        # One role per statement: MariaDB refuses a list.
        plan.statements.append(Statement(f"REVOKE {role} FROM {account}"))
    if current.roles:
        plan.revoked["roles"] = sorted(current.roles)
    if current.default_roles:
        clear = (
            f"SET DEFAULT ROLE NONE FOR {account}" if server.is_mariadb else f"ALTER USER {account} DEFAULT ROLE NONE"
        )
        plan.statements.append(Statement(clear))
        plan.revoked["default role"] = sorted(current.default_roles)
    for proxied in current.proxied:
        plan.statements.append(Statement(f"REVOKE PROXY ON {_requote_account(proxied)} FROM {account}"))
    if current.proxied:
        plan.revoked["PROXY"] = sorted(current.proxied)
    for routine in sorted(current.routine_privileges):
        privs = current.routine_privileges[routine]
        granted = privs - {"GRANT OPTION"}
        if granted:
            plan.statements.append(Statement(f"REVOKE {_privs_sql(granted)} ON {routine} FROM {account}"))
        if "GRANT OPTION" in privs:
            plan.statements.append(Statement(f"REVOKE GRANT OPTION ON {routine} FROM {account}"))
        if privs:
            plan.revoked[routine.replace("`", "")] = sorted(privs)


def level_all_privileges(level: Level, server: ServerInfo | None) -> frozenset[str] | None:
    """The privileges SHOW GRANTS folds into ``ALL PRIVILEGES`` on a database or table level.

    None for the global level (MySQL adds every dynamic privilege to it) and unknown servers.
    """
    if server is None or level.is_global:
        return None
    full = TABLE_ALL_PRIVILEGES if level.table != "*" else DB_ALL_PRIVILEGES
    if server.is_mariadb and server.version >= (10, 3, 4):
        full = full | {"DELETE HISTORY"}
        if level.table == "*" and server.version >= (11, 3, 0):
            full = full | {"SHOW CREATE ROUTINE"}
    return frozenset(full)


def _holds_all(privs: set[str], full: frozenset[str] | None) -> bool:
    return "ALL PRIVILEGES" in privs or (full is not None and full <= privs)


def plan_privileges(
    account: str, current: Grants, wanted: dict[Level, set[str]], plan: Plan, server: ServerInfo | None = None
) -> None:
    """GRANT what is missing, REVOKE what is beyond the wanted set, level by level."""
    for level in sorted(set(current.privileges) | set(wanted) | current.grant_option):
        have = current.privileges.get(level, set())
        want = wanted.get(level, set())
        want_option = "GRANT OPTION" in want
        want = want - {"GRANT OPTION"}
        revoke: set[str] = set()
        grant: set[str] = set()
        full = level_all_privileges(level, server)
        if full is not None and _holds_all(have, full) and _holds_all(want, full):
            # Every privilege of the level, by name on one side and as ALL PRIVILEGES on the
            # other (the server prints a complete list as ALL): only extras such as column
            # privileges differ.
            revoke = have - want - full - {"ALL PRIVILEGES"}
            grant = want - have - full - {"ALL PRIVILEGES"}
        elif "ALL PRIVILEGES" in have and "ALL PRIVILEGES" not in want:
            revoke = {"ALL PRIVILEGES"}
            grant = set(want)
        else:
            revoke = have - want
            grant = want - have if "ALL PRIVILEGES" not in have else set()
        if revoke:
            plan.statements.append(Statement(f"REVOKE {_privs_sql(revoke)} ON {level.sql()} FROM {account}"))
        # GRANT OPTION cannot share a REVOKE with ALL PRIVILEGES: always on its own.
        if level in current.grant_option and not want_option:
            plan.statements.append(Statement(f"REVOKE GRANT OPTION ON {level.sql()} FROM {account}"))
            revoke.add("GRANT OPTION")
        if revoke:
            plan.revoked[level.key()] = sorted(revoke)
        if grant or (want_option and level not in current.grant_option):
            option = " WITH GRANT OPTION" if want_option and level not in current.grant_option else ""
            privs = grant or {"USAGE"}
            plan.statements.append(Statement(f"GRANT {_privs_sql(privs)} ON {level.sql()} TO {account}{option}"))
            granted = sorted(grant) + (["GRANT OPTION"] if option else [])
            plan.granted[level.key()] = granted


def plan_account(
    server: ServerInfo,
    current: Account,
    desired: Desired,
) -> Plan:
    """Statements that take ``current`` to ``desired`` (state present)."""
    plan = Plan()
    account = account_sql(desired.user, desired.host)
    limits = _limits_clause(desired)
    if not current.exists:
        if desired.password is None:
            raise AccountError(f"password is required to create {desired.user}@{desired.host}")
        auth_hash = password_hash(desired.plugin, desired.password)
        plan.secrets.append(auth_hash)
        clause, redacted = _auth_clause(server, desired.plugin, auth_hash)
        tail = f" {limits}" if limits else ""
        plan.statements.append(
            Statement(
                f"CREATE USER {account} {clause}{tail}",
                redacted=f"CREATE USER {account} {redacted}{tail}",
                effects=("created", "password_changed"),
            )
        )
        plan.created = True
        plan.password_changed = True
    else:
        _plan_password(server, current, desired, account, plan)
        changes = []
        if desired.require_ssl is not None:
            is_ssl = current.ssl_type not in ("", "NONE")
            if desired.require_ssl != is_ssl:
                changes.append("REQUIRE SSL" if desired.require_ssl else "REQUIRE NONE")
        if desired.max_user_connections is not None and desired.max_user_connections != current.max_user_connections:
            changes.append(f"WITH MAX_USER_CONNECTIONS {int(desired.max_user_connections)}")
        if changes:
            plan.statements.append(Statement(f"ALTER USER {account} {' '.join(changes)}"))
    if desired.privileges is not None:
        current_grants = current.grants if current.exists else Grants()
        plan_roles_and_object_grants(server, account, current_grants, plan)
        plan_privileges(account, current_grants, desired.privileges, plan, server)
        plan.final_privileges = Grants(
            privileges={lvl: {p for p in privs if p != "GRANT OPTION"} for lvl, privs in desired.privileges.items()},
            grant_option={lvl for lvl, privs in desired.privileges.items() if "GRANT OPTION" in privs},
        ).to_dict()
    else:
        plan.final_privileges = current.grants.to_dict()
    return plan


def _plan_password(server: ServerInfo, current: Account, desired: Desired, account: str, plan: Plan) -> None:
    if desired.rotate != "none" and (server.is_mariadb or server.version < (8, 0, 14)):
        raise AccountError(
            f"rotate={desired.rotate} needs dual password support (MySQL 8.0.14 or later); "
            f"this server is {server.flavour} {'.'.join(map(str, server.version))}"
        )
    if desired.password is not None and desired.update_password == "always":  # noqa: S105
        same_plugin = current.plugin == desired.plugin
        matches = password_matches(current.plugin, desired.password, current.auth_string) if same_plugin else False
        if not matches:
            if desired.rotate == "retain_current" and same_plugin:
                # MySQL only accepts RETAIN CURRENT PASSWORD with IDENTIFIED BY (plaintext);
                # MySQL rewrites the statement in its general, slow and binary logs.
                bound = account.replace("%", "%%")  # the statement has a bound parameter
                plan.statements.append(
                    Statement(
                        f"ALTER USER {bound} IDENTIFIED BY %s RETAIN CURRENT PASSWORD",
                        (desired.password,),
                        f"ALTER USER {account} IDENTIFIED BY '{REDACTED}' RETAIN CURRENT PASSWORD",
                        effects=("password_changed",),
                    )
                )
            else:
                if desired.rotate == "retain_current":
                    plan.warnings.append(
                        f"{desired.user}@{desired.host}: the authentication plugin changes from {current.plugin} to "
                        f"{desired.plugin}, which MySQL cannot combine with RETAIN CURRENT PASSWORD; the old password "
                        "stops working now"
                    )
                auth_hash = password_hash(desired.plugin, desired.password)
                plan.secrets.append(auth_hash)
                clause, redacted = _auth_clause(server, desired.plugin, auth_hash)
                plan.statements.append(
                    Statement(
                        f"ALTER USER {account} {clause}",
                        redacted=f"ALTER USER {account} {redacted}",
                        effects=("password_changed",),
                    )
                )
            plan.password_changed = True
    if desired.rotate == "discard_old" and current.has_secondary_password:
        plan.statements.append(Statement(f"ALTER USER {account} DISCARD OLD PASSWORD"))


# Stored objects that run as their DEFINER; each query yields (definer, kind, schema, name). They are
# read once per run, whatever the number of accounts checked: information_schema has no index on DEFINER,
# so a query per account would scan every trigger, view, routine and event of the server again.
DEFINER_QUERIES = (
    "SELECT DEFINER, 'TRIGGER', TRIGGER_SCHEMA, TRIGGER_NAME FROM information_schema.TRIGGERS",
    "SELECT DEFINER, 'VIEW', TABLE_SCHEMA, TABLE_NAME FROM information_schema.VIEWS",
    "SELECT DEFINER, ROUTINE_TYPE, ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES",
    "SELECT DEFINER, 'EVENT', EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS",
)


def definer_objects(cursor: Any) -> dict[str, list[str]]:
    """The triggers, views, routines and events (``TRIGGER db.name``) by DEFINER (``user@host``)."""
    found: dict[str, list[str]] = {}
    for query in DEFINER_QUERIES:
        cursor.execute(query)
        for definer, kind, schema, name in cursor.fetchall():
            found.setdefault(str(definer), []).append(f"{kind} {schema}.{name}")
    return {definer: sorted(objects) for definer, objects in found.items()}


def definer_problem(user: str, host: str, definers: dict[str, list[str]]) -> str | None:
    """Why the account must not be dropped (None: nothing runs as it).

    MariaDB drops it silently and every later use of the object fails (error 1449, "The user specified
    as a definer does not exist"): a trigger's table refuses every INSERT, a view every SELECT.
    """
    objects = definers.get(f"{user}@{host}")
    if not objects:
        return None
    shown = ", ".join(objects[:10]) + (f" and {len(objects) - 10} more" if len(objects) > 10 else "")
    return (
        f"{account_label(user, host)} was not dropped: it is the DEFINER of {shown}, which would fail once it is "
        "gone (error 1449); re-create them with another DEFINER (or drop them)"
    )


def plan_removal(current: Account) -> Plan:
    plan = Plan()
    if current.exists:
        plan.statements.append(Statement(f"DROP USER {account_sql(current.user, current.host)}", effects=("removed",)))
        plan.removed = True
        plan.revoked = current.grants.to_dict()
    return plan


def execute_statement(cursor: Any, stmt: Statement) -> None:
    """Run one statement; a failure names the statement (redacted) and the server's error."""
    try:
        cursor.execute(stmt.sql, stmt.params or None)
    except DriverError as exc:
        raise MySQLError(
            f"statement failed: {stmt.redacted}: {driver_message(exc)}; the statements before it were applied, "
            "fix the cause and run again"
        ) from exc


def driver_message(exc: BaseException) -> str:
    """``(code) message`` of a PyMySQL error."""
    args = getattr(exc, "args", ())
    if len(args) >= 2:
        return f"({args[0]}) {args[1]}"
    return str(exc) or type(exc).__name__


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


# --- orchestration for app_db_user -------------------------------------------------------


def account_label(user: str, host: str) -> str:
    return f"{user}@{host}"


def desired_privileges(params: dict[str, Any], server: ServerInfo) -> tuple[dict[Level, set[str]] | None, list[str]]:
    """The exact privileges the options ask for (None: leave grants alone), plus warnings."""
    privileges = params.get("privileges")
    if privileges is None:
        return None, []
    if isinstance(privileges, str):
        database = params.get("database")
        if not database:
            raise AccountError(f"database is required with privileges={privileges}")
        if database.strip() != database or "\x00" in database or len(database) > 64:
            raise AccountError(f"database {database!r} is not a valid database name")
        if database == "*":
            # escape_db_pattern leaves it alone and the level would read *.*: global privileges.
            raise AccountError(
                f"database '*' refused: privileges={privileges} on it would be global (*.*); name the "
                "application's database, or use a privileges mapping with allow_global_privileges=true"
            )
        if not params.get("allow_global_privileges"):
            check_not_system_schema(escape_db_pattern(database), f"privileges={privileges} on database {database!r}")
        return preset_privileges(privileges, database, server, bool(params.get("backup_binlog_privilege")))
    if isinstance(privileges, dict):
        return explicit_privileges(privileges, server, bool(params.get("allow_global_privileges"))), []
    raise AccountError(
        "privileges must be a preset name (app, migrate, readonly, backup) or a mapping like {'db.*': ['SELECT']}"
    )


def resolve_plugin(requested: str, current: Account, default: str) -> str:
    if requested != "auto":
        return requested
    if current.exists and current.plugin in PLUGINS:
        return current.plugin
    return default


OTHER_GRANT_KEYS = ("roles", "default_role", "routine_grants", "proxy_grants")


def snapshot(account: Account) -> dict[str, Any]:
    """What diff mode shows of an account (never its credential)."""
    if not account.exists:
        return {"exists": False}
    shown: dict[str, Any] = {
        "exists": True,
        "plugin": account.plugin,
        "require_ssl": account.ssl_type not in ("", "NONE"),
        "max_user_connections": account.max_user_connections,
        "privileges": account.grants.to_dict(),
    }
    grants = account.grants
    # Only when there are any, so the common case reads as before.
    others = {
        "roles": sorted(grants.roles),
        "default_role": sorted(grants.default_roles),
        "routine_grants": {k: sorted(v) for k, v in sorted(grants.routine_privileges.items())},
        "proxy_grants": sorted(grants.proxied),
    }
    shown.update({key: value for key, value in others.items() if value})
    return shown


def after_snapshot(before: dict[str, Any], desired: Desired | None, plan: Plan) -> dict[str, Any]:
    if desired is None:
        return {"exists": False}
    after = dict(before) if before.get("exists") else {"exists": True, "require_ssl": False, "max_user_connections": 0}
    # The plugin changes only with the password (IDENTIFIED WITH): an existing account whose password
    # is left alone (update_password=on_create, no password, the same one) keeps its plugin.
    if not before.get("exists") or plan.password_changed:
        after["plugin"] = desired.plugin
    if desired.require_ssl is not None:
        after["require_ssl"] = desired.require_ssl
    if desired.max_user_connections is not None:
        after["max_user_connections"] = desired.max_user_connections
    after["privileges"] = plan.final_privileges
    if desired.privileges is not None:
        for key in OTHER_GRANT_KEYS:
            after.pop(key, None)
    return after


# --- mysql_secure_installation parity ----------------------------------------------------

LOCAL_ROOT_HOSTS = ("localhost", "127.0.0.1", "::1")
TEST_DATABASE_PATTERNS = ("test", "test\\_%")


@dataclass
class SecureAction:
    """One statement of mysql_secure_installation parity and what it removes."""

    statement: Statement
    removed_user: str = ""
    dropped_database: str = ""
    revoked: tuple[str, str] | None = None  # (grantee label, level key)


@dataclass
class SecurePlan:
    actions: list[SecureAction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def statements(self) -> list[Statement]:
        return [action.statement for action in self.actions]

    @property
    def removed_users(self) -> list[str]:
        return [a.removed_user for a in self.actions if a.removed_user]

    @property
    def dropped_databases(self) -> list[str]:
        return [a.dropped_database for a in self.actions if a.dropped_database]

    @property
    def revoked(self) -> dict[str, list[str]]:
        revoked: dict[str, list[str]] = {}
        for action in self.actions:
            if action.revoked:
                grantee, level = action.revoked
                levels = revoked.setdefault(grantee, [])
                if level not in levels:  # REVOKE ALL PRIVILEGES and REVOKE GRANT OPTION: one level
                    levels.append(level)
        return revoked

    def applied(self, count: int) -> SecurePlan:
        """The part of the plan that ran before a statement failed."""
        return SecurePlan(self.actions[:count], self.warnings)


def current_account(cursor: Any) -> tuple[str, str]:
    """The account this session authenticated as (CURRENT_USER(), host in lower case)."""
    cursor.execute("SELECT CURRENT_USER()")
    row = cursor.fetchone()
    user, _sep, host = str(row[0] if row else "").rpartition("@")
    return user, host.lower()


def grantee_sql(user: str, host: str, server: ServerInfo | None) -> tuple[str, str]:
    """How a mysql.db row's grantee is named in REVOKE, and its label.

    MariaDB keeps the grants of roles (10.11's PUBLIC among them) with an empty Host, and reads
    ```x`@``` in a statement as ```x`@`%```: a role is named without a host part, PUBLIC
    by its keyword. (On MySQL an empty Host is an account like any other.)
    """
    if host == "" and (server is None or server.is_mariadb):
        if user.upper() == "PUBLIC":
            return "PUBLIC", "PUBLIC"
        return quote_name(user), user
    return account_sql(user, host), account_label(user, host)


def plan_secure_installation(
    cursor: Any,
    remove_anonymous_users: bool,
    remove_test_database: bool,
    remove_remote_root: bool,
    root_hosts: list[str],
    server: ServerInfo | None = None,
) -> SecurePlan:
    """What mysql_secure_installation would remove on this server, as statements.

    The account of the current session is never dropped (the next run could not log in): it is
    left with a warning.
    """
    plan = SecurePlan()
    doomed: set[tuple[str, str]] = set()
    # MariaDB roles have an empty Host: they are not accounts anybody logs in as.
    not_role = " AND Host <> ''" if server is None or server.is_mariadb else ""
    if remove_anonymous_users:
        cursor.execute(f"SELECT User, Host FROM mysql.user WHERE User = ''{not_role} ORDER BY Host")
        doomed.update((str(u), str(h)) for u, h in cursor.fetchall())
    if remove_remote_root:
        keep = {normalise_host(host) for host in root_hosts}
        cursor.execute(f"SELECT User, Host FROM mysql.user WHERE User = 'root'{not_role} ORDER BY Host")
        doomed.update((str(u), str(h)) for u, h in cursor.fetchall() if str(h).lower() not in keep)
    if doomed:
        user, host = current_account(cursor)
        for account in sorted(doomed):
            if (account[0], account[1].lower()) == (user, host):
                doomed.discard(account)
                plan.warnings.append(
                    f"{account_label(*account)} was not dropped: it is the account this task is logged in as, and "
                    "dropping it would lock the next run out; log in as another administrator (root over the "
                    "socket) to remove it, or add its host to root_hosts to keep it"
                )
        definers = definer_objects(cursor) if doomed else {}
        for account in sorted(doomed):
            problem = definer_problem(*account, definers)
            if problem:
                doomed.discard(account)
                plan.warnings.append(f"{problem}, and the next run removes it")
    for user, host in sorted(doomed):
        plan.actions.append(
            SecureAction(Statement(f"DROP USER {account_sql(user, host)}"), removed_user=account_label(user, host))
        )
    if remove_test_database:
        cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test'")
        if cursor.fetchone():
            plan.actions.append(SecureAction(Statement("DROP DATABASE `test`"), dropped_database="test"))
        cursor.execute(
            "SELECT User, Host, Db, Grant_priv FROM mysql.db WHERE Db IN (%s, %s) ORDER BY User, Host, Db",
            TEST_DATABASE_PATTERNS,
        )
        for user, host, db, grant_priv in cursor.fetchall():
            if (str(user), str(host)) in doomed:
                continue
            level = Level(str(db), "*")
            grantee, label = grantee_sql(str(user), str(host), server)
            revoked = (label, level.key())
            plan.actions.append(
                SecureAction(Statement(f"REVOKE ALL PRIVILEGES ON {level.sql()} FROM {grantee}"), revoked=revoked)
            )
            if str(grant_priv).upper() == "Y":
                # ALL PRIVILEGES leaves GRANT OPTION (and the mysql.db row); neither server takes both in one
                # REVOKE with an ON clause. After the first REVOKE the row holds only GRANT OPTION.
                plan.actions.append(
                    SecureAction(Statement(f"REVOKE GRANT OPTION ON {level.sql()} FROM {grantee}"), revoked=revoked)
                )
    return plan


@dataclass
class AccountChange:
    """One account's plan with what diff mode shows before and after it."""

    label: str
    plan: Plan
    before: dict[str, Any]
    after: dict[str, Any]


def plan_accounts(
    cursor: Any, server: ServerInfo, params: dict[str, Any], hosts: list[str]
) -> tuple[list[AccountChange], list[str]]:
    """Plan every account of an app_db_user call (read-only); returns the plans and warnings.

    Everything is validated and planned before the caller runs the first statement.
    """
    name = validate_user_name(params["name"], server)
    hosts = list(dict.fromkeys(normalise_host(host) for host in hosts))
    wanted, warnings = desired_privileges(params, server)
    if wanted is not None:
        check_privileges_known(wanted, server_privileges(cursor, server))
    default_plugin = server_default_plugin(cursor, server)
    changes: list[AccountChange] = []
    definers: dict[str, list[str]] | None = None  # read once, for the first account to drop
    for host in hosts:
        current = read_account(cursor, server, name, host)
        before = snapshot(current)
        desired: Desired | None = None
        if params["state"] == "absent":
            if current.exists:
                definers = definer_objects(cursor) if definers is None else definers
                problem = definer_problem(current.user, current.host, definers)
                if problem:
                    raise AccountError(f"{problem} first")
            plan = plan_removal(current)
        else:
            plugin = resolve_plugin(params["plugin"], current, default_plugin)
            check_plugin_supported(plugin, server, plugin_available(cursor, plugin))
            desired = Desired(
                user=name,
                host=host,
                password=params["password"],
                plugin=plugin,
                update_password=params["update_password"],
                privileges=wanted,
                require_ssl=params["require_ssl"],
                max_user_connections=params["max_user_connections"],
                rotate=params["rotate"],
            )
            plan = plan_account(server, current, desired)
            if params["plugin"] != "auto" and current.exists and current.plugin != plugin and not plan.password_changed:
                # The plugin changes only with the password; with update_password=on_create (or without a
                # password) that is never set on an existing account, so the plugin asked for is not applied.
                plan.warnings.append(
                    f"{account_label(name, host)}: plugin {plugin} is not applied, the account keeps {current.plugin}: "
                    "the plugin changes only with the password (update_password: always, with the password)"
                )
        changes.append(AccountChange(account_label(name, host), plan, before, after_snapshot(before, desired, plan)))
        warnings.extend(plan.warnings)
    return changes, warnings


def record_statement(result: dict[str, Any], stmt: Statement) -> None:
    """One statement has run (or would run in check mode): it and its effects go in the result now,
    so a later failure still reports everything that was applied."""
    result["statements"].append(stmt.redacted)
    result["changed"] = True
    for effect in stmt.effects:
        result[effect] = True


def merge_result(result: dict[str, Any], change: AccountChange, present: bool) -> None:
    """Fold one account's completed plan into the module result (statements are added as they run)."""
    plan = change.plan
    result["changed"] = result["changed"] or plan.changed
    result["created"] = result["created"] or plan.created
    result["removed"] = result["removed"] or plan.removed
    result["password_changed"] = result["password_changed"] or plan.password_changed
    if plan.granted:
        result["granted"][change.label] = plan.granted
    if plan.revoked:
        result["revoked"][change.label] = plan.revoked
    if present:
        result["privileges"][change.label] = plan.final_privileges
