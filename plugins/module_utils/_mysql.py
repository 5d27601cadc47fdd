# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared MySQL/MariaDB plumbing for mutuapix.ops modules (private API).

One argument spec, one connection path (PyMySQL), one way to hand credentials to the
server's client programs (a 0600 option file passed as ``--defaults-file``, see
:func:`client_command`), and identifier quoting. Modules build on :class:`MySQLModule`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import subprocess
import tempfile
import traceback
from collections.abc import Iterator
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mutuapix.ops.plugins.module_utils._flock import remove_stale_files

try:
    import pymysql
    import pymysql.cursors

    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = traceback.format_exc()

# The server's TLS capability flag in its handshake (pymysql.constants.CLIENT.SSL).
CLIENT_SSL = 2048
# PyMySQL 1.2 takes TLS by itself when the server offers it (and fails with an ssl dict when it
# does not); older releases use TLS only when given ssl settings. Told apart by the attribute
# the newer constructor sets for that mode.
_PYMYSQL_PREFERS_TLS = HAS_PYMYSQL and "_ssl_required" in pymysql.connections.Connection.__init__.__code__.co_names

DEFAULT_CONFIG_FILE = "~/.my.cnf"
# The temporary option files holding the credentials for the client programs.
OPTION_FILE_PREFIX = ".mutuapix-client-"
OPTION_FILE_SUFFIX = ".cnf"
# Before 0.1.0's lock, the files were ".mutuapix-my-*.cnf" and unlocked: a run of an older copy of
# the collection may still use one, so those are removed only once no run can last that long.
LEGACY_OPTION_FILE_PREFIX = ".mutuapix-my-"
LEGACY_OPTION_FILE_AGE_S = 7 * 24 * 3600
DEFAULT_PORT = 3306
# Where the server's socket usually is (Debian/Ubuntu, older Debian, RHEL). Never /tmp/mysql.sock:
# any local user could create it and read the password the module would send there.
DEFAULT_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock")
# Longest identifier MySQL and MariaDB accept for databases and tables.
MAX_IDENTIFIER_LENGTH = 64


def mysql_common_argument_spec() -> dict[str, Any]:
    """The connection options every MySQL module of the collection accepts."""
    return {
        "login_host": {"type": "str"},
        "login_port": {"type": "int"},
        "login_unix_socket": {"type": "path"},
        "login_user": {"type": "str"},
        "login_password": {"type": "str", "no_log": True},
        "config_file": {"type": "path", "default": DEFAULT_CONFIG_FILE},
        "ssl_ca": {"type": "path"},
        "ssl_cert": {"type": "path"},
        "ssl_key": {"type": "path", "no_log": False},
        "connect_timeout": {"type": "int", "default": 30},
    }


class MySQLError(Exception):
    """An error with a message a person can act on."""


def quote_identifier(name: str) -> str:
    """Quote a database, table or column name with backticks (doubling inner backticks)."""
    validate_identifier(name)
    return "`" + name.replace("`", "``") + "`"


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Refuse names MySQL would reject or that cannot be handled safely."""
    if not isinstance(name, str) or not name:
        raise MySQLError(f"{what} must be a non-empty string")
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise MySQLError(f"{what} {name!r} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    if "\x00" in name or "\n" in name or "\r" in name:
        raise MySQLError(f"{what} {name!r} contains a NUL or line break")
    if name != name.rstrip(" "):
        raise MySQLError(f"{what} {name!r} ends with a space, which MySQL does not allow")
    return name


def quote_string(value: str) -> str:
    """A SQL string literal that is safe whatever the sql_mode (NO_BACKSLASH_ESCAPES or not)."""
    return "X'" + value.encode("utf-8").hex() + "'" if value else "''"


# The groups of an option file whose connection details the modules use ([client-server]: MariaDB's
# clients read it too; Debian's /etc/mysql/my.cnf opens with it).
OPTION_FILE_GROUPS = ("client", "client-server", "mysql", "mariadb-client", "client-mariadb")
# How many levels of !include/!includedir the client library follows (it skips deeper ones with a warning).
OPTION_FILE_INCLUDE_DEPTH = 10
_INCLUDE_DIRECTIVE = re.compile(r"!(includedir|include)(?:\s+(.*))?\Z")
# The TLS switches of an option file, kept (as "1" or "0") even without a value, under the
# prefixes the client library takes for any boolean option: "skip-ssl", "disable-ssl", "enable-ssl".
_TLS_SWITCHES = ("ssl", "ssl-verify-server-cert")
_SWITCH_PREFIXES = (("skip-", "0"), ("disable-", "0"), ("enable-", "1"))
_BOOLEAN_VALUES = {"1": True, "on": True, "true": True, "0": False, "off": False, "false": False}
# MySQL's ssl-mode values, weakest first.
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
# Escape sequences in option values, as the client library reads them; any other "\x" stays as it is.
_OPTION_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "s": " ", '"': '"', "'": "'", "\\": "\\"}


def _remove_end_comment(line: str) -> str:
    """Cut a ``#`` comment outside quotes (a backslash escapes a quote inside quotes)."""
    quote = ""
    escape = False
    for i, char in enumerate(line):
        if char in "'\"" and not escape:
            if not quote:
                quote = char
            elif quote == char:
                quote = ""
        if not quote and char == "#":
            return line[:i]
        escape = bool(quote) and char == "\\" and not escape
    return line


def option_file_value(raw: str) -> str:
    """An option's value as MySQL's and MariaDB's clients read it from an option file.

    Surrounding spaces are removed, then one pair of matching quotes, then the escapes
    ``\\n \\t \\r \\b \\s \\" \\' \\\\`` are replaced (in quoted and unquoted values alike).
    """
    value = raw.strip()
    if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]:
        value = value[1:-1]
    out = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append(_OPTION_ESCAPES.get(nxt, char + nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _include_targets(line: str, number: int) -> list[str]:
    """The files an ``!include``/``!includedir`` line names, as the client library reads them; [] for other lines.

    ``!include FILE`` is skipped when the file cannot be opened (a missing file, a directory);
    ``!includedir DIR`` reads the directory's ``*.cnf`` files in name order and is an error when
    the directory cannot be read. A relative path would be resolved against whatever the
    working directory is (the client programs do that); here it is refused.
    """
    directive = _INCLUDE_DIRECTIVE.match(line)
    if not directive:
        return []  # the client library ignores any other "!" line
    keyword, target = directive.group(1), (directive.group(2) or "").strip()
    if not target:
        raise MySQLError(f"line {number}: '!{keyword}' without a path")
    if not os.path.isabs(target):
        raise MySQLError(
            f"line {number}: '!{keyword} {target}' is a relative path, which the client programs resolve "
            "against their working directory: give an absolute path"
        )
    if keyword == "include":
        return [target]
    try:
        names = sorted(name for name in os.listdir(target) if name.endswith(".cnf"))
    except OSError as exc:
        raise MySQLError(f"line {number}: '!includedir {target}': {exc.strerror or exc}") from exc
    return [os.path.join(target, name) for name in names]


def _included_file_text(path: str) -> str | None:
    """An included file's text, or None where the client library skips it (it cannot be opened)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise MySQLError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError:
        return None


def parse_option_file(text: str, groups: tuple[str, ...] = OPTION_FILE_GROUPS, depth: int = 0) -> dict[str, str]:
    """The options of ``groups`` in an option file's text, later ones winning, as the clients read them.

    Lines starting with ``#`` or ``;`` are comments, a ``#`` outside quotes ends a line,
    option names take ``-`` for ``_`` and lose a ``loose-`` prefix, and options without a
    value are left out, except the TLS switches (``ssl``, ``skip-ssl``,
    ``ssl-verify-server-cert``...: kept as ``"1"`` or ``"0"``). ``!include`` and
    ``!includedir`` are followed where they stand (an included file starts without a group;
    after it the including file's group goes on).
    Where the client library only warns (a malformed included file, nesting deeper than
    ``OPTION_FILE_INCLUDE_DEPTH``), this raises: the module would otherwise connect with other
    options than the file's author meant.
    """
    values: dict[str, str] = {}
    group = None
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "!":
            for path in _include_targets(line, number):
                if depth >= OPTION_FILE_INCLUDE_DEPTH:
                    raise MySQLError(
                        f"line {number}: '{line}' nests option files more than {OPTION_FILE_INCLUDE_DEPTH} deep "
                        "(does a file include itself?)"
                    )
                try:
                    included = _included_file_text(path)
                    if included is not None:
                        values.update(parse_option_file(included, groups, depth + 1))
                except MySQLError as exc:
                    raise MySQLError(f"line {number}: in {path}: {exc}") from exc
            continue
        if line[0] == "[":
            if "]" not in line:
                raise MySQLError(f"line {number}: a group header without ']': {line[:40]!r}")
            group = line[1 : line.index("]")].strip().lower()
            continue
        if group is None:
            # The client programs refuse such a file too ("Found option without preceding group").
            raise MySQLError(f"line {number}: an option before any [group]")
        name, sep, value = _remove_end_comment(line).partition("=")
        name = name.strip().lower().replace("_", "-")
        if name.startswith("loose-"):
            name = name[len("loose-") :]
        if group in groups and sep and name:
            values[name] = option_file_value(value)
        elif group in groups and name:
            switch = _tls_switch(name)
            if switch:
                values[switch[0]] = switch[1]
    return values


def _tls_switch(name: str) -> tuple[str, str] | None:
    """``(switch, "1"/"0")`` for a value-less TLS switch such as ``ssl`` or ``skip-ssl``, else None."""
    if name in _TLS_SWITCHES:
        return name, "1"
    for prefix, value in _SWITCH_PREFIXES:
        if name.startswith(prefix) and name[len(prefix) :] in _TLS_SWITCHES:
            return name[len(prefix) :], value
    return None


def _option_bool(opts: dict[str, str], name: str) -> bool | None:
    """A boolean option's value (``1 0 on off true false``, as the client library takes them), or None."""
    raw = opts.get(name)
    if raw is None:
        return None
    value = _BOOLEAN_VALUES.get(raw.strip().lower())
    if value is None:
        raise MySQLError(f"{name}={raw!r} is not a boolean (1, 0, ON, OFF, TRUE or FALSE)")
    return value


def option_file_tls(opts: dict[str, str]) -> str | None:
    """What an option file asks of TLS: ``off``, ``required``, ``verify``, or None for nothing.

    ``ssl-mode`` is MySQL's switch, ``ssl`` and ``ssl-verify-server-cert`` MariaDB's. Turning TLS
    off (``ssl-mode=DISABLED``, ``skip-ssl``, ``ssl=0``) wins; ``VERIFY_CA`` is taken as
    ``VERIFY_IDENTITY`` (the modules check the host name whenever they verify); ``ssl`` alone asks
    for nothing more than the default (MariaDB's clients before 11.4 fall back to plain text then).
    """
    raw = opts.get("ssl-mode")
    mode = raw.strip().upper() if raw is not None else None
    if mode is not None and mode not in SSL_MODES:
        raise MySQLError(f"ssl-mode={raw!r} is not one of {', '.join(SSL_MODES)}")
    if mode == "DISABLED" or _option_bool(opts, "ssl") is False:
        return "off"
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY") or _option_bool(opts, "ssl-verify-server-cert"):
        return "verify"
    if mode == "REQUIRED":
        return "required"
    return None


def system_ca_bundle() -> str:
    """The host's bundle of trusted CA certificates, to verify a server with when no CA is named."""
    import ssl  # noqa: PLC0415 - only needed for this rare case; PyMySQL imports it when it uses TLS

    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    raise MySQLError(
        "config_file asks to verify the server's certificate (ssl-mode=VERIFY_CA/VERIFY_IDENTITY or "
        "ssl-verify-server-cert) but names no CA, and this host has no system CA bundle: set ssl_ca"
    )


def read_option_file(path: str | None) -> dict[str, str]:
    """Read the client groups (``OPTION_FILE_GROUPS``) of a MySQL option file and the files it includes."""
    if not path:
        return {}
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_option_file(handle.read())
    except (OSError, UnicodeDecodeError, MySQLError) as exc:
        raise MySQLError(f"cannot read option file {path}: {exc}") from exc


def default_socket() -> str | None:
    """The first of the usual server sockets that exists (Debian's first), or None."""
    for path in DEFAULT_SOCKETS:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return path
    return None


class ConnectionParams:
    """Resolved connection details: module options first, then the option file."""

    def __init__(self, params: dict[str, Any]) -> None:
        config_path = params.get("config_file")
        # type=path expands "~", so compare expanded paths: only an explicit file must exist.
        explicit_config = config_path is not None and os.path.expanduser(config_path) != os.path.expanduser(
            DEFAULT_CONFIG_FILE
        )
        if explicit_config and not os.path.exists(os.path.expanduser(config_path)):
            raise MySQLError(f"config_file {config_path} does not exist")
        opts = read_option_file(config_path)
        self.user: str | None = params.get("login_user") or opts.get("user")
        self.password: str | None = params.get("login_password")
        if self.password is None:
            self.password = opts.get("password")
        self.host: str = params.get("login_host") or opts.get("host") or "localhost"
        self.port: int = int(params.get("login_port") or opts.get("port") or DEFAULT_PORT)
        self.socket: str | None = params.get("login_unix_socket") or opts.get("socket")
        if not self.socket and self.host == "localhost" and self.port == DEFAULT_PORT:
            # What the client programs do with "localhost": the server's socket. PyMySQL would take
            # TCP instead, so the preflight and the dump could reach different accounts or servers.
            self.socket = default_socket()
        self.ssl_ca: str | None = params.get("ssl_ca") or opts.get("ssl-ca")
        self.ssl_cert: str | None = params.get("ssl_cert") or opts.get("ssl-cert")
        self.ssl_key: str | None = params.get("ssl_key") or opts.get("ssl-key")
        # How the connection uses TLS: "off", "preferred" (when the server offers it, unverified;
        # never over a socket), "required" (unverified) or "verify" (certificate and host name).
        try:
            file_tls = option_file_tls(opts)
        except MySQLError as exc:
            raise MySQLError(f"config_file {config_path}: {exc}") from exc
        # Why TLS is required, for error messages (set with the mode).
        self.tls_reason = ""
        self.tls: str = self._tls_mode(params, file_tls)
        self.connect_timeout: int = int(params.get("connect_timeout") or 30)
        # Whether the server offers TLS, from the module's own connection (connect() sets it):
        # the client programs then take the channel that connection took (option_file_text).
        self.server_tls: bool | None = None

    def _tls_mode(self, params: dict[str, Any], file_tls: str | None) -> str:
        """The TLS mode from the ``ssl_*`` options and what the option file asks (option_file_tls).

        A file that turns TLS off drops its own ``ssl-*`` paths too, as MySQL's clients do with
        ``ssl-mode=DISABLED``; the module's ``ssl_*`` options win over it. A CA or a client
        certificate makes TLS required: PyMySQL before 1.2 would otherwise fall back to plain text
        when the server offers none. Over a Unix socket the file's demand for TLS is met by the
        socket, as the client programs take it, unless a CA is named.
        """
        given = [key for key in ("ssl_ca", "ssl_cert", "ssl_key") if params.get(key)]
        if file_tls == "off" and not given:
            self.ssl_ca = self.ssl_cert = self.ssl_key = None
            return "off"
        if given:
            self.tls_reason = f"{'/'.join(given)} set"
        elif self.ssl_ca or self.ssl_cert or self.ssl_key:
            self.tls_reason = "config_file names ssl-ca, ssl-cert or ssl-key"
        else:
            self.tls_reason = f"config_file asks for {file_tls} TLS"
        if self.ssl_ca:
            return "verify"
        if file_tls in ("verify", "required") and self.socket:
            return "preferred"
        if file_tls == "verify":
            self.ssl_ca = system_ca_bundle()
            return "verify"
        if self.ssl_cert or self.ssl_key or file_tls == "required":
            return "required"
        return "preferred"

    def server_identity(self) -> str:
        """Which server the connection reaches (its socket, or host and port), to tell targets apart."""
        return f"socket:{self.socket}" if self.socket else f"tcp:{self.host.lower()}:{self.port}"

    def describe(self) -> str:
        """Where we connect, for error messages (never the password)."""
        where = f"socket {self.socket}" if self.socket else f"{self.host}:{self.port}"
        return f"{self.user or '(default user)'}@{where}"

    def pymysql_kwargs(self, database: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            # PyMySQL encodes a str password as latin-1: hand it the UTF-8 bytes the server expects.
            "password": (self.password or "").encode("utf-8"),
            "charset": "utf8mb4",
            "connect_timeout": self.connect_timeout,
            "autocommit": True,
        }
        if self.socket:
            kwargs["unix_socket"] = self.socket
        if database:
            kwargs["database"] = database
        ssl = {k: v for k, v in (("ca", self.ssl_ca), ("cert", self.ssl_cert), ("key", self.ssl_key)) if v}
        if self.tls == "off":
            kwargs["ssl_disabled"] = True
        elif ssl:
            kwargs["ssl"] = ssl
        elif self.tls == "required" or (not self.socket and not _PYMYSQL_PREFERS_TLS):
            # TLS, unverified (no CA given). For "preferred" over TCP, what PyMySQL 1.2 does by
            # itself: older releases (Debian 12's 1.0.2, Debian 13's 1.1.1) take a non-empty dict
            # as exactly that and fall back to plain TCP when the server has no TLS ("required"
            # stops that fallback in connect).
            kwargs["ssl"] = {"check_hostname": False}
        elif self.socket:
            # PyMySQL otherwise prepares an opportunistic TLS context (loading the system CA
            # bundle, about 25 ms per connection) even for a Unix socket, a local channel that
            # the client programs never encrypt either.
            kwargs["ssl_disabled"] = True
        return kwargs

    def option_file_text(self) -> str:
        """The [client] group the client programs read from our temporary option file."""

        def esc(value: str) -> str:
            # The escapes option_file_value reads back; a line break must not end the value.
            for char, escaped in (
                ("\\", "\\\\"),
                ('"', '\\"'),
                ("\n", "\\n"),
                ("\r", "\\r"),
                ("\t", "\\t"),
                ("\b", "\\b"),
            ):
                value = value.replace(char, escaped)
            return '"' + value + '"'

        lines = ["[client]"]
        if self.user:
            lines.append(f"user={esc(self.user)}")
        if self.password is not None:
            lines.append(f"password={esc(self.password)}")
        if self.socket:
            lines.append(f"socket={esc(self.socket)}")
        else:
            # PyMySQL takes TCP without a socket; the clients must too (for "localhost" they would
            # otherwise take their compiled-in socket: another channel, maybe another account).
            lines.append("protocol=TCP")
        lines.append(f"host={esc(self.host)}")
        lines.append(f"port={self.port}")
        lines.append("default-character-set=utf8mb4")
        for key, val in (("ssl-ca", self.ssl_ca), ("ssl-cert", self.ssl_cert), ("ssl-key", self.ssl_key)):
            if val:
                lines.append(f"{key}={esc(val)}")
        lines.extend(self._mariadb_tls_lines())
        return "\n".join(lines) + "\n"

    def _mariadb_tls_lines(self) -> list[str]:
        """TLS for MariaDB's client programs, as the module's own connection has it.

        From 11.4 (Debian 13 has 11.8) MariaDB's clients demand TLS with a verified certificate
        by default, even over a socket, so against a server without TLS every dump failed ("SSL
        is required, but the server does not support it") where the module's own connection had
        worked. By ``self.tls``: "off", no TLS; "verify" (a CA), both verify the server
        (certificate and host name); "required", TLS unverified; "preferred", none over a socket,
        otherwise TLS exactly when the server offers it, unverified. In ``[client-mariadb]``,
        which MySQL's clients do not read (they get the ``ssl-*`` paths in ``[client]`` and
        otherwise their default, PREFERRED).
        """
        if self.tls == "off":
            tls = ["skip-ssl"]
        elif self.tls == "verify":
            tls = ["ssl", "ssl-verify-server-cert"]
        elif self.tls == "required":
            # Before 11.4 MariaDB's clients cannot require TLS without verifying; the module's own
            # connection, just before, has found the server offering it (connect).
            tls = ["ssl", "skip-ssl-verify-server-cert"]
        elif self.socket or self.server_tls is False:
            tls = ["skip-ssl"]  # PyMySQL takes no TLS over a socket either (pymysql_kwargs)
        elif self.server_tls:
            tls = ["ssl", "skip-ssl-verify-server-cert"]
        else:
            return []  # not connected yet: the clients' own default
        return ["", "[client-mariadb]", *tls]

    def mysql_client_ssl_mode(self) -> str | None:
        """``--ssl-mode`` for MySQL's client programs, as the module's own connection has TLS.

        MySQL's programs do not read ``[client-mariadb]`` (option_file_text) and MariaDB's
        refuse ``ssl-mode`` (even as ``loose-ssl-mode`` they print a warning), so it is given on
        their command line (client_command). Without it a MySQL ``mysqldump`` given a CA verified
        the certificate but not the host name (VERIFY_CA), and one without a CA took PREFERRED: a
        plain-text connection where the module had required TLS. None over a socket (no TLS there,
        the clients' default) and before the module has connected.
        """
        if self.tls == "off":
            return "DISABLED"
        if self.tls == "verify":
            return "VERIFY_IDENTITY"
        if self.tls == "required":
            return "REQUIRED"
        if self.socket or self.server_tls is None:
            return None
        return "REQUIRED" if self.server_tls else "DISABLED"


def connect(
    conn: ConnectionParams,
    database: str | None = None,
    *,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
) -> Any:
    """Open a PyMySQL connection or raise MySQLError saying what went wrong.

    ``read_timeout`` / ``write_timeout`` (seconds, opt-in; default: wait as long as the server
    takes) bound each socket read and write, for short probes that must not hang on a server
    that stops answering. Modules that run long queries leave them unset.
    """
    if not HAS_PYMYSQL:
        raise MySQLError("PyMySQL is required on the managed host: pip install pymysql")
    require_tls = conn.tls in ("required", "verify")
    kwargs = conn.pymysql_kwargs(database)
    if read_timeout is not None:
        kwargs["read_timeout"] = read_timeout
    if write_timeout is not None:
        kwargs["write_timeout"] = write_timeout
    try:
        factory = _TLSRequiredConnection if require_tls and not _PYMYSQL_PREFERS_TLS else pymysql.connect
        connection = factory(**kwargs)
        conn.server_tls = bool(getattr(connection, "server_capabilities", 0) & CLIENT_SSL)
        if require_tls:
            _check_encrypted(connection, conn)
        return connection
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else None
        text = exc.args[1] if len(exc.args) > 1 else str(exc)
        if code == 1045:
            hint = "check login_user/login_password or config_file"
        elif code == 1049:
            hint = "the database does not exist"
        elif code in (2002, 2003, 2013):
            hint = "is the server running and reachable there?"
        elif code == 2026:
            hint = f"TLS is required ({conn.tls_reason}): does the server offer TLS? No credentials were sent"
        else:
            hint = "see the server's message"
        raise MySQLError(f"cannot connect to MySQL as {conn.describe()}: ({code}) {text}; {hint}") from exc
    except pymysql.err.MySQLError as exc:
        raise MySQLError(f"cannot connect to MySQL as {conn.describe()}: {exc}") from exc


def _check_encrypted(connection: Any, conn: ConnectionParams) -> None:
    """Close and fail unless the server says the session is encrypted (the second check, see connect)."""
    encrypted = False
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS WHERE Variable_name = 'Ssl_cipher'")
            row = cursor.fetchone()
            encrypted = bool(row and row[1])
    finally:
        if not encrypted:
            with contextlib.suppress(pymysql.err.Error):
                connection.close()
    if not encrypted:
        raise MySQLError(
            f"connected to MySQL as {conn.describe()} without TLS although TLS is required ({conn.tls_reason}); "
            "the connection was closed. The PyMySQL on the managed host did not enforce TLS: please report its version"
        )


if HAS_PYMYSQL:

    class _TLSRequiredConnection(pymysql.connections.Connection):
        """A PyMySQL (before 1.2) connection that refuses a server without TLS before it authenticates.

        Those releases take an ``ssl`` dict, a CA included, as "TLS if the server offers it" and
        otherwise carry on in plain text (PyMySQL 1.2 refuses by itself). The check sits where the
        client decides, after the server's greeting and before any credential is sent.
        """

        def _request_authentication(self) -> None:
            if not self.server_capabilities & CLIENT_SSL:
                raise pymysql.err.OperationalError(2026, "SSL is required but the server doesn't support it")
            super()._request_authentication()


class ServerInfo:
    """Flavour and version of the server, from SELECT VERSION()."""

    def __init__(self, version_string: str) -> None:
        self.version_string = version_string
        self.flavour = "mariadb" if "mariadb" in version_string.lower() else "mysql"
        match = re.match(r"(\d+)\.(\d+)\.(\d+)", version_string)
        self.version: tuple[int, int, int] = (
            (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else (0, 0, 0)
        )

    @property
    def is_mariadb(self) -> bool:
        return self.flavour == "mariadb"

    def to_dict(self) -> dict[str, Any]:
        return {"flavour": self.flavour, "version": ".".join(map(str, self.version)), "full": self.version_string}


def server_info(connection: Any) -> ServerInfo:
    with connection.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return ServerInfo(cur.fetchone()[0])


def binlog_enabled(connection: Any) -> bool:
    """Whether the server writes a binary log (``@@GLOBAL.log_bin``; readable without privileges)."""
    with connection.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.log_bin")
        row = cur.fetchone()
    return bool(row) and str(row[0]) in ("1", "ON")


def remove_stale_option_files(directory: str) -> list[str]:
    """Remove the option files (credentials) of module runs that were killed.

    A run removes its file on the way out, but not when it is killed (SIGKILL, OOM killer, a
    job timeout); while it runs it holds an flock on the file. Only this account's files with
    our name are considered; one still being created (``.new``) is left for a minute, and one
    of an older copy of the collection (unlocked even while used) for a week.
    """

    def min_age_s(name: str) -> float | None:
        if name.startswith(OPTION_FILE_PREFIX) and name.endswith(OPTION_FILE_SUFFIX):
            return 0
        if name.startswith(OPTION_FILE_PREFIX) and name.endswith(OPTION_FILE_SUFFIX + ".new"):
            return 60
        if name.startswith(LEGACY_OPTION_FILE_PREFIX) and name.endswith(OPTION_FILE_SUFFIX):
            return LEGACY_OPTION_FILE_AGE_S
        return None

    return remove_stale_files(directory, min_age_s)


@contextlib.contextmanager
def client_option_file(conn: ConnectionParams, directory: str | None = None) -> Iterator[str]:
    """A 0600 option file holding the credentials, removed when the block ends.

    Client programs are started with :func:`client_command` and :func:`client_environment`,
    so the password is never in argv or the environment. The file is locked while the block
    runs and appears under its name already locked (written aside, then renamed), so the
    files of killed runs can be told apart and are removed here first.
    """
    directory = directory or tempfile.gettempdir()
    remove_stale_option_files(directory)
    fd, path = _locked_option_file(directory, conn.option_file_text().encode("utf-8"))
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _locked_option_file(directory: str, text: bytes) -> tuple[int, str]:
    """Write ``text`` aside, lock it, then give it its name (never over another run's file)."""
    while True:
        fd, pending = tempfile.mkstemp(prefix=OPTION_FILE_PREFIX, suffix=OPTION_FILE_SUFFIX + ".new", dir=directory)
        path = pending[: -len(".new")]
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.fchmod(fd, 0o600)
            os.write(fd, text)
            os.link(pending, path)
        except FileExistsError:  # another run's file has that name: draw another
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pending)
        return fd, path


def client_command(program: str, option_file: str, conn: ConnectionParams | None = None) -> list[str]:
    """The start of a client program's argv: the program, reading our option file and no other.

    With ``conn``, a MySQL client program also gets the ``--ssl-mode`` of that connection
    (:meth:`ConnectionParams.mysql_client_ssl_mode`); MariaDB's take TLS from the file.

    ``--defaults-file`` (it must come first), not ``--defaults-extra-file``: the clients read
    an extra file *before* the user's ``~/.my.cnf``, whose ``[client]`` group then wins, so a
    root's ``~/.my.cnf`` silently replaced the module's account, password, host or socket for
    the client program while PyMySQL used the module's. With ``--defaults-file`` the client
    connects exactly as the module's own connection does (everything it needs from
    ``config_file`` is resolved into the file by :meth:`ConnectionParams.option_file_text`);
    the global files (``/etc/mysql/my.cnf``) are not read either.
    """
    cmd = [program, f"--defaults-file={option_file}"]
    mode = conn.mysql_client_ssl_mode() if conn is not None else None
    if mode and is_mysql_client(program):
        cmd.append(f"--ssl-mode={mode}")
    return cmd


_CLIENT_FLAVOURS: dict[str, bool] = {}


def is_mysql_client(program: str) -> bool:
    """Whether ``program`` is one of MySQL's client programs (or Percona's), not MariaDB's.

    By what its ``--version`` prints (the name does not tell: Debian's ``mysqldump`` is MariaDB's
    ``mariadb-dump``, and MariaDB before 10.5 had only the ``mysql*`` names); remembered per path.
    A program that cannot say is taken as MariaDB's: it gets no option it might refuse.
    """
    if program not in _CLIENT_FLAVOURS:
        version = program_version(start_program_version(program)).lower()
        _CLIENT_FLAVOURS[program] = "mysql" in version and "mariadb" not in version
    return _CLIENT_FLAVOURS[program]


def client_environment(option_file: str) -> dict[str, str]:
    """The environment for a client program started with :func:`client_command`.

    MySQL's client programs read the login path file ``~/.mylogin.cnf`` even with
    ``--defaults-file``, after it (so its user, password, host win). ``MYSQL_TEST_LOGIN_FILE``
    names that file; it is pointed at a path below our option file, which cannot exist and
    nobody can create while the option file does. MariaDB's programs ignore the variable.
    """
    env = dict(os.environ)
    env["MYSQL_TEST_LOGIN_FILE"] = os.path.join(option_file, "no-login-path-file")
    return env


# A client program's error output goes into the module's message, its result and the job log (AWX
# keeps it): an error that quotes the statement (a row of several MB, hex-encoded) must not put the
# rows there. Lines and the whole are cut to these many characters.
ERROR_OUTPUT_LINE = 2000
ERROR_OUTPUT_TOTAL = 16000


def _lines_within(lines: list[str], budget: int) -> int:
    """How many of ``lines``, from the first, fit in ``budget`` characters (line breaks counted)."""
    used = count = 0
    for line in lines:
        if used + len(line) > budget:
            break
        used += len(line) + 1
        count += 1
    return count


def program_errors(handle: Any) -> str:
    """The error output a client program wrote to ``handle`` (a temporary file), stripped and bounded:
    a line longer than ``ERROR_OUTPUT_LINE`` characters is cut, and when the lines add up to more than
    ``ERROR_OUTPUT_TOTAL`` the first and the last ones are kept (the first error and the last line
    both tell)."""
    handle.seek(0)
    lines = [
        f"{line[:ERROR_OUTPUT_LINE]}[... {len(line) - ERROR_OUTPUT_LINE} more characters left out]"
        if len(line) > ERROR_OUTPUT_LINE
        else line
        for line in handle.read(64 * 1024 * 1024).decode("utf-8", "replace").strip().splitlines()
    ]
    if sum(len(line) + 1 for line in lines) <= ERROR_OUTPUT_TOTAL:
        return "\n".join(lines)
    # A cut line is far shorter than either share, so the head keeps at least one line; the tail is
    # taken from the lines after the first one the head left, so at least that one is left out.
    head = lines[: _lines_within(lines, ERROR_OUTPUT_TOTAL // 2)]
    rest = lines[len(head) :]
    tail = rest[len(rest) - _lines_within(rest[:0:-1], ERROR_OUTPUT_TOTAL // 4) :]
    left_out = len(rest) - len(tail)
    return "\n".join([*head, f"[... {left_out} lines of error output left out ...]", *tail])


DUMP_PROGRAMS = ("mariadb-dump", "mysqldump")
CLIENT_PROGRAMS = ("mariadb", "mysql")


def start_program_version(program: str) -> subprocess.Popen | None:
    """``program --version``, started now so it can run beside other work (``program_version``)."""
    try:
        return subprocess.Popen(
            [program, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
    except OSError:
        return None


def program_version(proc: subprocess.Popen | None) -> str:
    """What ``start_program_version``'s program printed, stripped ("" when it could not run);
    mysql_backup records it in the manifest as ``dump.version``."""
    if proc is None:
        return ""
    try:
        out, _err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return ""
    return out.decode("utf-8", "replace").strip()


def find_program(candidates: tuple[str, ...], extra_dirs: list[str] | None = None) -> str | None:
    """The first installed program of the candidates (e.g. mariadb-dump before mysqldump)."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(extra_dirs or ["/usr/bin", "/usr/local/bin"])
    for name in candidates:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


class MySQLModule(AnsibleModule):
    """AnsibleModule with the shared connection options, connection and error path."""

    def __init__(self, argument_spec: dict[str, Any], **kwargs: Any) -> None:
        spec = mysql_common_argument_spec()
        spec.update(argument_spec)
        super().__init__(argument_spec=spec, **kwargs)
        if not HAS_PYMYSQL:
            self.fail_json(msg=missing_required_lib("pymysql"), exception=PYMYSQL_IMPORT_ERROR)
        try:
            self.conn_params = ConnectionParams(self.params)
        except MySQLError as exc:
            self.fail_json(msg=str(exc))
        if self.conn_params.password:
            self.no_log_values.add(self.conn_params.password)

    def connect(self, database: str | None = None) -> Any:
        try:
            return connect(self.conn_params, database)
        except MySQLError as exc:
            self.fail_json(msg=str(exc))
            raise  # unreachable: fail_json exits

    def program(self, kind: str) -> str:
        """Path of the dump (``dump``) or client (``client``) program, or fail clearly."""
        candidates = DUMP_PROGRAMS if kind == "dump" else CLIENT_PROGRAMS
        found = find_program(candidates)
        if not found:
            self.fail_json(
                msg=f"none of {', '.join(candidates)} is installed on this host; "
                "install the MariaDB or MySQL client package (e.g. apt install mariadb-client)"
            )
        return str(found)
