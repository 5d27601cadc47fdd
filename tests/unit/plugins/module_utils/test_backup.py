"""Pure helpers of mysql_backup: grants parsing, refused dump arguments, retention on disk."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import shutil
import subprocess
import threading

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _backup, _retention
from ansible_collections.mutuapix.ops.plugins.module_utils import _mysql as _mysql_module
from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import (
    OPTION_FILE_GROUPS,
    OPTION_FILE_INCLUDE_DEPTH,
    ConnectionParams,
    MySQLError,
    ServerInfo,
    client_environment,
    parse_option_file,
    quote_identifier,
    read_option_file,
)


@pytest.mark.parametrize("database", ["my db", "my.db", "we`ird db", "a `.` b"])
def test_granted_privileges_for_names_with_spaces_dots_and_backticks(database):
    quoted = quote_identifier(database)
    grants = [
        "GRANT USAGE ON *.* TO `backup`@`localhost`",
        f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON {quoted}.* TO `backup`@`localhost`",
        f"GRANT INSERT ON {quoted}.`t 1` TO `backup`@`localhost`",
        f"GRANT EXECUTE ON PROCEDURE {quoted}.`p` TO `backup`@`localhost`",
    ]
    assert _backup.granted_privileges(grants, database) == {"USAGE", *_backup.REQUIRED_PRIVILEGES, "LOCK TABLES"}
    assert _backup.granted_privileges(grants, database + "x") == {"USAGE"}


def test_granted_privileges_db_and_global_levels():
    grants = [
        "GRANT USAGE ON *.* TO `backup`@`localhost` IDENTIFIED BY PASSWORD '*AB'",
        "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `app`.* TO `backup`@`localhost`",
        "GRANT SELECT ON `mysql`.`proc` TO `backup`@`localhost`",
    ]
    assert _backup.granted_privileges(grants, "app") >= {"SELECT", "SHOW VIEW", "TRIGGER", "EVENT"}
    assert _backup.granted_privileges(grants, "other") == {"USAGE"}
    assert "SELECT" in _backup.granted_privileges(["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`"], "x")
    assert "SELECT" in _backup.granted_privileges(["GRANT SELECT ON `ap\\_%`.* TO `u`@`%`"], "ap_x")
    assert "SELECT" not in _backup.granted_privileges(["GRANT SELECT ON `ap\\_%`.* TO `u`@`%`"], "apxx")
    # an unescaped _ in a database-level grant is a wildcard, as the server treats it
    assert "SELECT" in _backup.granted_privileges(["GRANT SELECT ON `app_db`.* TO `u`@`%`"], "appXdb")
    # table-level grants do not let the account dump the whole database
    assert "SELECT" not in _backup.granted_privileges(["GRANT SELECT ON `app`.`users` TO `u`@`%`"], "app")
    # MySQL 8 layout: several lines, a dynamic privilege, a role line, a backtick in the name
    mysql8 = [
        "GRANT USAGE ON *.* TO `backup`@`%`",
        "GRANT BACKUP_ADMIN ON *.* TO `backup`@`%`",
        "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `we``ird`.* TO `backup`@`%`",
        "GRANT `dumpers`@`%` TO `backup`@`%`",
    ]
    assert _backup.granted_privileges(mysql8, "we`ird") == {
        "USAGE",
        "BACKUP_ADMIN",
        *_backup.REQUIRED_PRIVILEGES,
        "LOCK TABLES",
    }


@pytest.mark.parametrize(
    "arg",
    [
        "--skip-comments",
        "--compact",
        "-pSECRET",
        "--password=x",
        "--tab=/tmp",
        "--result-file=/x",
        "-uroot",
        "--replace",
        "--insert-ignore",
        # the spellings the client option parser accepts for the same options (review F8)
        "--skip-single",
        "--skip-single-transaction",
        "--disable-single-transaction",
        "--single-transaction=0",
        "--single-transaction=OFF",
        "--single_transaction=false",
        "--loose-skip-single-transaction",
        "--pass=x",
        "--password1=x",
        "--loose-password=x",
        "--res=/x",
        "--result_file=/x",
        "--comments=0",
        "--disable-comments",
        "--skip-disable-keys",
        "--disable-keys=0",
        "--opt=off",
        "--skip-add-locks",
        "--compact=1",
        "--enable-compact",
        "--compatible=ansi",
        # INSERT DELAYED INTO: rows the parser does not count (MyISAM and Aria tables)
        "--delayed-insert",
        "--delayed",
        "--default-character-set=latin1",
        "--lock-all",
        "--all-databases",
        "--delete-master-logs",
        "--dump-date=ON",
        "--us=root",
        "--sock=/tmp/other.sock",
        "--defaults-extra-file=/root/.my.cnf",
        "--print-defaults",
        # short options, separate values and positional arguments (a database or table name)
        "-x",
        "-K",
        "otherdb",
        "--",
        "--=x",
    ],
)
def test_extra_dump_args_refused(arg):
    with pytest.raises(_backup.BackupError, match="may not contain"):
        _backup.check_extra_args([arg])


def test_extra_dump_args_refusal_never_shows_a_value():
    with pytest.raises(_backup.BackupError) as refused:
        _backup.check_extra_args(["--pass=Secret-Value-1"])
    assert "Secret-Value-1" not in str(refused.value)
    assert "--password" in str(refused.value)


def test_extra_dump_args_allowed():
    _backup.check_extra_args(
        [
            "--max-allowed-packet=64M",
            "--net-buffer-length=1048576",
            "--master-data=2",
            "--no-data",
            "--skip-triggers",
            "--disable-keys",
            "--single-transaction",
            "--single-transaction=ON",
            "--skip-dump-date",
            "--compact=0",
            "--skip-extended-insert",
            "--order-by-primary",
            "--ssl-ca=/etc/ssl/ca.pem",
            "--where=id > 5",
        ]
    )


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("0600", 0o600),
        ("0640", 0o640),
        ("640", 0o640),
        ("0o440", 0o440),
        # YAML reads an unquoted 0640 as the integer 416: that is the mode, not octal digits to read again
        (416, 0o640),
        (0o600, 0o600),
        (0o400, 0o400),
    ],
)
def test_backup_file_mode_reads_strings_as_octal_and_ints_as_they_are(value, mode):
    assert _backup.backup_file_mode(value) == mode


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0644", "would let others read"),
        (0o666, "would let others read"),
        ("0660", "would let others read"),
        ("0604", "would let others read"),
        ("4600", "would let others read"),
        ("0610", "would let others read"),
        # an unquoted 640 is the decimal 640, mode 1200
        (640, "YAML read an unquoted 640 as a decimal number; write '0640'"),
        ("rw", "not an octal file mode"),
        ("u=rw", "not an octal file mode"),
        ("", "not an octal file mode"),
        (True, "not an octal file mode"),
        ("0800", "not an octal file mode"),
    ],
)
def test_backup_file_mode_refuses_loose_or_unreadable_modes(value, message):
    with pytest.raises(_backup.BackupError, match=re.escape(message)):
        _backup.backup_file_mode(value)


def test_option_file_escapes_and_never_argv():
    conn = ConnectionParams(
        {"login_user": 'u"x', "login_password": 'p\\"$%ção', "login_unix_socket": "/s", "config_file": None}
    )
    text = conn.option_file_text()
    assert 'password="p\\\\\\"$%ção"' in text
    assert 'user="u\\"x"' in text
    cmd = _backup.dump_command("/usr/bin/mariadb-dump", "/tmp/opt.cnf", "app", ["a"], ["b"], [])
    program = cmd.index("/usr/bin/mariadb-dump")
    assert cmd[:program] == _backup.output_buffering_prefix()
    # --defaults-file, first: the dump program reads no ~/.my.cnf or global file that could change the account
    assert cmd[program + 1] == "--defaults-file=/tmp/opt.cnf"
    assert all("p\\" not in part for part in cmd)
    assert cmd[-2:] == ["--", "app"]


def _client_mariadb_group(text: str) -> list[str]:
    if "[client-mariadb]" not in text:
        return []
    return [line for line in text.split("[client-mariadb]", 1)[1].splitlines() if line]


@pytest.mark.parametrize(
    ("options", "server_tls", "expected"),
    [
        ({"login_unix_socket": "/s"}, True, ["skip-ssl"]),  # a socket: no TLS, as PyMySQL there
        ({"login_unix_socket": "/s"}, None, ["skip-ssl"]),
        ({"login_unix_socket": "/s", "ssl_ca": "/ca.pem"}, True, ["ssl", "ssl-verify-server-cert"]),
        ({"login_host": "db"}, None, []),  # not connected yet: the clients' default
        ({"login_host": "db"}, False, ["skip-ssl"]),  # 11.4+ would demand TLS the server lacks
        ({"login_host": "db"}, True, ["ssl", "skip-ssl-verify-server-cert"]),
        (
            {"login_host": "db", "ssl_cert": "/c.pem", "ssl_key": "/k.pem"},
            False,
            ["ssl", "skip-ssl-verify-server-cert"],
        ),
        ({"login_host": "db", "ssl_ca": "/ca.pem"}, True, ["ssl", "ssl-verify-server-cert"]),
    ],
)
def test_mariadb_clients_take_the_tls_of_the_modules_connection(options, server_tls, expected):
    conn = ConnectionParams({"config_file": None, **options})
    conn.server_tls = server_tls
    text = conn.option_file_text()
    assert _client_mariadb_group(text) == expected
    # MySQL's clients read [client] only: nothing MariaDB-specific there.
    assert "verify" not in text.split("[client-mariadb]", maxsplit=1)[0]
    if not options.get("login_unix_socket") and not options.get("ssl_cert") and not options.get("ssl_ca"):
        # PyMySQL 1.2 takes TLS when offered by itself; older releases get a dict that means the same.
        ssl = conn.pymysql_kwargs().get("ssl")
        assert ssl is None if _mysql_module._PYMYSQL_PREFERS_TLS else ssl == {"check_hostname": False}


MYSQL_VERSION = "mysqldump  Ver 8.0.40 for Linux on x86_64 (MySQL Community Server - GPL)"
PERCONA_VERSION = "mysqldump  Ver 8.0.39-30 for Linux on x86_64 (Percona Server (GPL), Release '30')"
MARIADB_VERSION = "mysqldump  Ver 10.19 Distrib 10.11.11-MariaDB, for debian-linux-gnu (x86_64)"


def _fake_client(tmp_path, version: str, name: str = "mysqldump") -> str:
    """A client program that only answers --version, as MySQL's (or MariaDB's) would."""
    program = tmp_path / name
    program.write_text(f"#!/bin/sh\necho '{version}'\n")
    program.chmod(0o755)
    return str(program)


@pytest.mark.parametrize(
    ("options", "server_tls", "expected"),
    [
        ({"login_host": "db", "ssl_ca": "/ca.pem"}, True, ["--ssl-mode=VERIFY_IDENTITY"]),  # was VERIFY_CA
        ({"login_unix_socket": "/s", "ssl_ca": "/ca.pem"}, True, ["--ssl-mode=VERIFY_IDENTITY"]),
        ({"login_host": "db", "ssl_cert": "/c.pem", "ssl_key": "/k.pem"}, True, ["--ssl-mode=REQUIRED"]),
        ({"login_host": "db"}, True, ["--ssl-mode=REQUIRED"]),  # the module took TLS: no fallback
        ({"login_host": "db"}, False, ["--ssl-mode=DISABLED"]),
        ({"login_host": "db"}, None, []),  # not connected yet: the clients' default
        ({"login_unix_socket": "/s"}, True, []),  # a socket: the clients' default
    ],
)
def test_mysql_clients_get_the_ssl_mode_of_the_modules_connection(tmp_path, options, server_tls, expected):
    """MySQL's programs never read [client-mariadb]: with a CA they verified the certificate but not
    the host name, and without one they would fall back to plain text (PREFERRED)."""
    conn = ConnectionParams({"config_file": None, **options})
    conn.server_tls = server_tls
    for version in (MYSQL_VERSION, PERCONA_VERSION):
        directory = tmp_path / ("percona" if "Percona" in version else "mysql")
        directory.mkdir()
        program = _fake_client(directory, version)
        cmd = _mysql_module.client_command(program, "/run/x.cnf", conn)
        assert cmd == [program, "--defaults-file=/run/x.cnf", *expected]


def test_mariadb_clients_never_get_ssl_mode(tmp_path):
    """MariaDB's programs refuse ssl-mode (a warning on every run even as loose-ssl-mode); they take
    TLS from [client-mariadb]. So do programs that cannot tell what they are."""
    conn = ConnectionParams({"config_file": None, "login_host": "db", "ssl_ca": "/ca.pem"})
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    for program in (_fake_client(tmp_path, MARIADB_VERSION), str(broken), str(tmp_path / "missing")):
        assert _mysql_module.client_command(program, "/run/x.cnf", conn) == [program, "--defaults-file=/run/x.cnf"]
    real = shutil.which("mariadb-dump")
    assert real, "Debian's mariadb-client is installed by the bootstrap"
    assert not _mysql_module.is_mysql_client(real)
    # Without the connection (callers that pass none), nothing is added whatever the program.
    mysql = tmp_path / "m"
    mysql.mkdir()
    assert _mysql_module.client_command(_fake_client(mysql, MYSQL_VERSION), "/f") == [
        str(mysql / "mysqldump"),
        "--defaults-file=/f",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ssl", {"ssl": "1"}),
        ("skip-ssl", {"ssl": "0"}),
        ("disable_ssl", {"ssl": "0"}),
        ("loose-skip-ssl", {"ssl": "0"}),
        ("ssl\nskip-ssl", {"ssl": "0"}),  # later lines win, as for any option
        ("skip-ssl\nenable-ssl", {"ssl": "1"}),
        ("ssl = 0", {"ssl": "0"}),
        ("ssl-verify-server-cert", {"ssl-verify-server-cert": "1"}),
        ("skip-ssl-verify-server-cert", {"ssl-verify-server-cert": "0"}),
        ("compress\nskip-column-names\nssl-ca", {}),  # other value-less options stay out
    ],
)
def test_option_file_keeps_the_tls_switches(text, expected):
    assert parse_option_file(f"[client]\n{text}\n") == expected


_CA = "/etc/mutuapix-test/ca.pem"


def _with_option_file(tmp_path, lines: str, **options) -> ConnectionParams:
    """ConnectionParams with ``options`` and a config_file whose [client] group holds ``lines``."""
    cnf = tmp_path / "my.cnf"
    cnf.write_text(f"[client]\n{lines}\n")
    return ConnectionParams({**options, "config_file": str(cnf)})


@pytest.mark.parametrize(
    ("options", "file_text", "tls", "ssl_kwargs", "mariadb_clients"),
    [
        # nothing said: as before (TLS when offered over TCP, none over a socket)
        ({"login_host": "db"}, "", "preferred", None, ["ssl", "skip-ssl-verify-server-cert"]),
        ({"login_unix_socket": "/s"}, "", "preferred", {"ssl_disabled": True}, ["skip-ssl"]),
        # MySQL's ssl-mode, any case
        ({"login_host": "db"}, "ssl-mode=REQUIRED", "required", {"ssl": {"check_hostname": False}}, None),
        ({"login_host": "db"}, "ssl_mode = required", "required", {"ssl": {"check_hostname": False}}, None),
        (
            {"login_host": "db"},
            f"ssl-mode=VERIFY_IDENTITY\nssl-ca={_CA}",
            "verify",
            {"ssl": {"ca": _CA}},
            ["ssl", "ssl-verify-server-cert"],
        ),
        ({"login_host": "db"}, f"ssl-mode=verify_ca\nssl-ca={_CA}", "verify", {"ssl": {"ca": _CA}}, None),
        ({"login_host": "db"}, "ssl-mode=PREFERRED", "preferred", None, None),
        ({"login_host": "db"}, "ssl", "preferred", None, None),  # MariaDB's "ssl" alone falls back to plain
        # turned off: the file's own CA goes too, the module's options win
        ({"login_host": "db"}, f"ssl-mode=DISABLED\nssl-ca={_CA}", "off", {"ssl_disabled": True}, ["skip-ssl"]),
        ({"login_host": "db"}, "skip-ssl", "off", {"ssl_disabled": True}, ["skip-ssl"]),
        ({"login_host": "db"}, "ssl=OFF\nssl-verify-server-cert", "off", {"ssl_disabled": True}, ["skip-ssl"]),
        ({"login_host": "db", "ssl_ca": _CA}, "skip-ssl", "verify", {"ssl": {"ca": _CA}}, None),
        # a client certificate alone requires TLS, unverified
        (
            {"login_host": "db", "ssl_cert": "/c.pem", "ssl_key": "/k.pem"},
            "",
            "required",
            {"ssl": {"cert": "/c.pem", "key": "/k.pem"}},
            ["ssl", "skip-ssl-verify-server-cert"],
        ),
        # over a socket a demand for TLS is met by the socket, unless a CA is named
        ({"login_unix_socket": "/s"}, "ssl-mode=REQUIRED", "preferred", {"ssl_disabled": True}, ["skip-ssl"]),
        ({"login_unix_socket": "/s"}, "ssl-verify-server-cert", "preferred", {"ssl_disabled": True}, ["skip-ssl"]),
        ({"login_unix_socket": "/s"}, f"ssl-ca={_CA}", "verify", {"ssl": {"ca": _CA}}, None),
    ],
)
def test_tls_mode_from_the_options_and_the_option_file(tmp_path, options, file_text, tls, ssl_kwargs, mariadb_clients):
    conn = _with_option_file(tmp_path, file_text, **options)
    assert conn.tls == tls
    kwargs = conn.pymysql_kwargs()
    got = {key: kwargs[key] for key in ("ssl", "ssl_disabled") if key in kwargs}
    if ssl_kwargs is None:  # "preferred" over TCP: PyMySQL 1.2's default, the same dict for older ones
        ssl_kwargs = {} if _mysql_module._PYMYSQL_PREFERS_TLS else {"ssl": {"check_hostname": False}}
    assert got == ssl_kwargs
    conn.server_tls = True  # what the module's own connection found
    text = conn.option_file_text()
    if mariadb_clients is not None:
        assert _client_mariadb_group(text) == mariadb_clients
    assert ("ssl-ca=" in text) == bool(conn.ssl_ca)
    # MySQL's clients would refuse what MariaDB's do not know, and MariaDB's warn about ssl-mode
    assert "ssl-mode" not in text


def test_verifying_without_a_ca_takes_the_hosts_ca_bundle(tmp_path, monkeypatch):
    import ssl

    bundle = ssl.get_default_verify_paths().cafile
    assert bundle and os.path.isfile(bundle), "Debian's ca-certificates is a test requirement"
    conn = _with_option_file(tmp_path, "ssl-verify-server-cert", login_host="db")
    assert conn.tls == "verify" and conn.ssl_ca == bundle
    assert conn.pymysql_kwargs()["ssl"] == {"ca": bundle}
    assert f'ssl-ca="{bundle}"' in conn.option_file_text()
    assert conn.tls_reason == "config_file asks for verify TLS"

    missing = ssl.DefaultVerifyPaths(*(str(tmp_path / "none"),) * 2, "", str(tmp_path / "none"), "", "")
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: missing)
    with pytest.raises(MySQLError, match="names no CA, and this host has no system CA bundle: set ssl_ca"):
        _with_option_file(tmp_path, "ssl-verify-server-cert", login_host="db")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "ssl-mode=STRICT",
            "ssl-mode='STRICT' is not one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY",
        ),
        ("ssl=maybe", "ssl='maybe' is not a boolean"),
        ("ssl-verify-server-cert=yes", "ssl-verify-server-cert='yes' is not a boolean"),
    ],
)
def test_unknown_tls_settings_in_the_option_file_are_refused(tmp_path, line, message):
    # the file named: the line may come from a file it includes, but the mistake starts there
    with pytest.raises(MySQLError, match=re.escape(f"config_file {tmp_path / 'my.cnf'}: {message}")):
        _with_option_file(tmp_path, line, login_host="db")


def test_why_tls_is_required_is_named(tmp_path):
    from_file = _with_option_file(tmp_path, f"ssl-ca={_CA}", login_host="db")
    assert from_file.tls_reason == "config_file names ssl-ca, ssl-cert or ssl-key"
    given = ConnectionParams({"login_host": "db", "ssl_ca": _CA, "ssl_key": "/k", "config_file": None})
    assert given.tls_reason == "ssl_ca/ssl_key set"
    required = _with_option_file(tmp_path, "ssl-mode=REQUIRED", login_host="db")
    assert required.tls_reason == "config_file asks for required TLS"


def test_option_files_of_killed_runs_are_removed_and_live_ones_kept(tmp_path):
    """The credentials file is locked while its run lives; a killed run's is removed by the next run."""
    import fcntl
    import time

    from ansible_collections.mutuapix.ops.plugins.module_utils import _mysql

    conn = ConnectionParams({"login_user": "u", "login_password": "killed-runs-password", "config_file": None})

    def ours() -> list[str]:
        return sorted(p for p in os.listdir(tmp_path) if p.startswith((".mutuapix-client-", ".mutuapix-my-")))

    def old(path, age_s):
        os.utime(path, (time.time() - age_s, time.time() - age_s))

    killed = tmp_path / ".mutuapix-client-killed01.cnf"  # its run was SIGKILLed: nobody holds its lock
    killed.write_text("[client]\npassword=killed-runs-password\n")
    starting = tmp_path / ".mutuapix-client-start001.cnf.new"  # a run between mkstemp and its rename
    starting.write_text("")
    abandoned = tmp_path / ".mutuapix-client-abandon1.cnf.new"
    abandoned.write_text("")
    old(abandoned, 3600)
    # an older copy of the collection never locked its file: in use for all we know, unless a week old
    legacy_running = tmp_path / ".mutuapix-my-running1.cnf"
    legacy_running.write_text("")
    old(legacy_running, 6 * 3600)
    legacy_killed = tmp_path / ".mutuapix-my-lastyear.cnf"
    legacy_killed.write_text("")
    old(legacy_killed, 8 * 24 * 3600)
    other = tmp_path / ".mutuapix-client-notours.txt"
    other.write_text("")
    with _mysql.client_option_file(conn, str(tmp_path)) as live_path:
        assert not killed.exists() and not abandoned.exists() and not legacy_killed.exists()
        assert starting.exists() and other.exists() and legacy_running.exists()
        assert os.stat(live_path).st_mode & 0o777 == 0o600
        assert 'password="killed-runs-password"' in open(live_path).read()
        probe = os.open(live_path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # held by this run
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
        with _mysql.client_option_file(conn, str(tmp_path)) as second:  # a concurrent run keeps the first
            assert os.path.exists(live_path) and second != live_path
        assert _mysql.remove_stale_option_files(str(tmp_path)) == []
    assert ours() == sorted([starting.name, other.name, legacy_running.name])


def test_client_environment_hides_the_login_path_file(tmp_path):
    """MySQL's clients read ~/.mylogin.cnf even with --defaults-file, unless told another file."""
    option_file = tmp_path / "opt.cnf"
    option_file.write_text("[client]\n")
    env = client_environment(str(option_file))
    login_file = env["MYSQL_TEST_LOGIN_FILE"]
    assert not os.path.exists(login_file)
    assert os.path.dirname(login_file) == str(option_file)  # below a file: nobody can create it
    assert {k: v for k, v in env.items() if k != "MYSQL_TEST_LOGIN_FILE"} == {
        k: v for k, v in os.environ.items() if k != "MYSQL_TEST_LOGIN_FILE"
    }


def test_quote_identifier():
    assert quote_identifier("we`ird") == "`we``ird`"
    with pytest.raises(Exception, match="NUL or line break"):
        quote_identifier("a\nb")


def _touch(dest, name, manifest=True):
    (dest / name).write_bytes(b"x")
    if manifest:
        (dest / (name + _retention.MANIFEST_SUFFIX)).write_text("{}")


def test_local_retention_never_deletes_the_backup_just_taken_for_a_future_dated_one(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    future = _retention.backup_file_name("app", now + dt.timedelta(days=365), None, "zstd")
    just_taken = _retention.backup_file_name("app", now, None, "zstd")
    older = _retention.backup_file_name("app", now - dt.timedelta(days=1), None, "zstd")
    for name in (future, just_taken, older):
        _touch(tmp_path, name)
    assert _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 1}) == [older]
    assert {future, just_taken} <= set(os.listdir(tmp_path))


def test_a_backup_retention_cannot_delete_is_kept_whole_and_reported_and_the_others_go(tmp_path):
    """An old backup that cannot be unlinked (here a directory by its name: EISDIR, a real OS error even as
    root) used to fail the whole run after the new backup was written; now it is noted and kept whole."""
    now = dt.datetime.now(dt.timezone.utc)
    names = [_retention.backup_file_name("app", now - dt.timedelta(days=d), None, "zstd") for d in range(3)]
    for name in names[:2]:
        _touch(tmp_path, name)
    (tmp_path / names[2]).mkdir()
    (tmp_path / (names[2] + _retention.MANIFEST_SUFFIX)).write_text("{}")
    errors: list[str] = []
    assert _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 1}, errors=errors) == [names[1]]
    assert len(errors) == 1 and names[2] in errors[0] and "Is a directory" in errors[0], errors
    assert (tmp_path / (names[2] + _retention.MANIFEST_SUFFIX)).exists()  # its manifest stays with it
    assert not (tmp_path / names[1]).exists() and not (tmp_path / (names[1] + _retention.MANIFEST_SUFFIX)).exists()
    with pytest.raises(IsADirectoryError):  # without an error list, as before: raised
        _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 1})


def test_local_retention_keeps_newest_and_ignores_foreign_files(tmp_path):
    base = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.timezone.utc)
    names = [_retention.backup_file_name("app", base + dt.timedelta(days=i), None, "zstd") for i in range(6)]
    for name in names:
        _touch(tmp_path, name)
    _touch(tmp_path, "app-old-manual-dump.sql.zst")
    _touch(tmp_path, _retention.backup_file_name("app2", base, None, "zstd"))
    _touch(tmp_path, _retention.backup_file_name("app", base - dt.timedelta(days=30), None, "zstd"), manifest=False)
    deleted = _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 2})
    assert sorted(deleted) == sorted(names[:4])
    left = set(os.listdir(tmp_path))
    assert names[5] in left and names[4] in left
    assert "app-old-manual-dump.sql.zst" in left
    assert any(n.startswith("app2-") for n in left)
    # incomplete backup (no manifest) is not ours to delete
    assert _retention.backup_file_name("app", base - dt.timedelta(days=30), None, "zstd") in left
    # keep_last=0 still keeps the newest
    assert _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 0}) == [names[4]]
    assert names[5] in set(os.listdir(tmp_path))


def test_local_retention_never_takes_a_database_whose_name_extends_ours(tmp_path):
    base = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.timezone.utc)
    app = [_retention.backup_file_name("app", base + dt.timedelta(days=i)) for i in range(3)]
    archive = [_retention.backup_file_name("app-archive", base + dt.timedelta(days=i)) for i in range(3)]
    labelled = [_retention.backup_file_name("app", base + dt.timedelta(days=i), "predeploy") for i in range(3)]
    for database, names in (("app", app), ("app-archive", archive), ("app", labelled)):
        for name in names:
            (tmp_path / name).write_bytes(b"x")
            (tmp_path / (name + _retention.MANIFEST_SUFFIX)).write_text(json.dumps({"database": database}))
    unreadable = _retention.backup_file_name("app", base, "old")
    (tmp_path / unreadable).write_bytes(b"x")
    (tmp_path / (unreadable + _retention.MANIFEST_SUFFIX)).write_text("{not json")
    # app-archive-<ts> also parses as app's backup labelled "archive": its manifest says otherwise.
    assert _backup.apply_retention(str(tmp_path), "app", "archive", {"keep_last": 1}) == []
    deleted = _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 1})
    assert sorted(deleted) == sorted(app[:2])
    assert sorted(_backup.apply_retention(str(tmp_path), "app", "predeploy", {"keep_last": 1})) == sorted(labelled[:2])
    assert all((tmp_path / n).exists() for n in [*archive, unreadable])


def test_local_retention_prunes_only_the_runs_own_label(tmp_path):
    """Each label is a series: a nightly run's rules never thin out the monthly archive, nor the reverse."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    nightly = [_retention.backup_file_name("app", now - dt.timedelta(days=i)) for i in range(40)]
    monthly = [_retention.backup_file_name("app", now - dt.timedelta(days=30 * i + 1), "monthly") for i in range(12)]
    for name in nightly + monthly:
        _touch(tmp_path, name)
    nightly_rules = {"keep_daily": 7, "keep_weekly": 4}
    deleted = _backup.apply_retention(str(tmp_path), "app", None, nightly_rules)
    assert set(deleted) <= set(nightly) and len(deleted) >= 40 - 7 - 4
    assert all((tmp_path / n).exists() for n in monthly)
    assert _backup.apply_retention(str(tmp_path), "app", "monthly", {"keep_days": 400}) == []
    assert all((tmp_path / n).exists() for n in set(nightly) - set(deleted))
    # check mode names the same: another label's rules leave this series alone
    assert _backup.apply_retention(str(tmp_path), "app", "monthly", {"keep_last": 1}, dry_run=True) == sorted(
        monthly[1:], key=lambda n: _retention.parse_backup_name(n, "app").timestamp
    )


def test_stale_partials_of_running_processes_are_kept(tmp_path):
    """Only partial files of dead processes go, whichever database the name seems to belong to."""
    running = subprocess.Popen(["sleep", "60"])  # a live process owns a partial file
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        when = dt.datetime(2026, 11, 1, 3, tzinfo=dt.timezone.utc)
        names = {
            "ours_dead": f".{_retention.backup_file_name('shop', when)}.partial-{dead.pid}",
            "ours_manifest_dead": f".{_retention.backup_file_name('shop', when)}.manifest.json.partial-{dead.pid}",
            # database shop-eu's backup in progress: by its name alone, shop with label eu
            "theirs_running": f".{_retention.backup_file_name('shop-eu', when)}.partial-{running.pid}",
            "not_a_pid": f".{_retention.backup_file_name('shop', when)}.partial-x",
            "other_database": f".{_retention.backup_file_name('other', when)}.partial-{dead.pid}",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        removed = _backup.remove_stale_partials(str(tmp_path), "shop")
    finally:
        running.kill()
        running.wait()
    assert sorted(removed) == sorted([names["ours_dead"], names["ours_manifest_dead"]])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([names["theirs_running"], names["not_a_pid"], names["other_database"]])


def test_retention_dry_run_counts_the_planned_backup(tmp_path):
    """Check mode: the backup the run would write is one of the kept ones, as it is after a real run."""
    base = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.timezone.utc)
    names = [_retention.backup_file_name("app", base + dt.timedelta(days=i), None, "zstd") for i in range(2)]
    for name in names:
        _touch(tmp_path, name)
    planned = _retention.backup_file_name("app", base + dt.timedelta(days=2), None, "zstd")
    assert _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 2}, dry_run=True) == []
    assert _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 2}, dry_run=True, planned=planned) == [
        names[0]
    ]
    assert sorted(os.listdir(tmp_path)) == sorted([*names, *(n + _retention.MANIFEST_SUFFIX for n in names)])
    # what the real run deletes once the planned backup is written
    _touch(tmp_path, planned)
    assert _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 2}) == [names[0]]
    # a labelled run plans and prunes its own series only
    labelled = _retention.backup_file_name("app", base + dt.timedelta(days=3), "pre-deploy", "zstd")
    assert (
        _backup.apply_retention(str(tmp_path), "app", "pre-deploy", {"keep_last": 1}, dry_run=True, planned=labelled)
        == []
    )
    assert _backup.apply_retention(str(tmp_path), "app", None, {"keep_last": 1}, dry_run=True) == [names[1]]


def test_publish_removes_the_data_file_when_its_manifest_cannot_be_written(tmp_path, monkeypatch):
    """A data file without a manifest is no backup anything knows, and would keep its space forever."""
    tmp = tmp_path / ".app-x.sql.zst.partial-1"
    tmp.write_bytes(b"frames")
    final = tmp_path / "app-x.sql.zst"

    def disk_full(path, data, mode):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(_backup._dumpfile, "write_json_atomic", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _backup.publish(str(tmp), str(final), {"format": "x"}, 0o600, None, None)
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    tmp.write_bytes(b"frames")
    assert _backup.publish(str(tmp), str(final), {"format": "x"}, 0o640, None, None) == str(final) + ".manifest.json"
    assert sorted(os.listdir(tmp_path)) == ["app-x.sql.zst", "app-x.sql.zst.manifest.json"]
    assert {oct(os.stat(tmp_path / n).st_mode & 0o777) for n in os.listdir(tmp_path)} == {"0o640"}


def test_no_retention_rule_deletes_nothing(tmp_path):
    _touch(tmp_path, _retention.backup_file_name("app", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)))
    assert _backup.apply_retention(str(tmp_path), "app", None, dict.fromkeys(_retention.RETENTION_OPTIONS)) == []


def test_backup_lock_times_out(tmp_path):
    with (
        _backup.backup_lock(str(tmp_path), "app", 0),
        pytest.raises(_backup.BackupError, match="another backup"),
        _backup.backup_lock(str(tmp_path), "app", 0.3),
    ):
        pass
    with _backup.backup_lock(str(tmp_path), "app", 0):  # released
        pass


def test_a_run_is_named_when_it_holds_the_lock_and_after_every_backup_there(tmp_path):
    """A run that waited for the lock was named for its start: the other run's name, or an older one."""
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5)
    server = ServerInfo("10.11.19-MariaDB")
    plan = _backup.Plan("app", str(tmp_path), _retention.backup_file_name("app", started), started, server, 0, None)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    written = _retention.backup_file_name("app", now, "nightly", "gzip")  # by the run that held the lock
    _touch(tmp_path, written)
    named = _backup.name_when_locked(plan, "nightly", "gzip", False)
    parsed = _retention.parse_backup_name(named.file_name, "app")
    assert parsed is not None and parsed.label == "nightly" and parsed.compression == "gzip"
    assert named.created_at == parsed.timestamp > now
    assert named.path == str(tmp_path / named.file_name)
    assert (named.database, named.server) == ("app", server)


def test_default_option_file_is_optional(tmp_path, monkeypatch):
    """type=path expands ~/.my.cnf: a missing default must not count as an explicit, missing file."""
    monkeypatch.setenv("HOME", str(tmp_path))
    conn = ConnectionParams({"config_file": str(tmp_path / ".my.cnf"), "login_user": "u"})
    assert conn.user == "u"
    with pytest.raises(Exception, match="does not exist"):
        ConnectionParams({"config_file": str(tmp_path / "other.cnf")})
    (tmp_path / ".my.cnf").write_text("[client]\nuser=fromfile\npassword='p w'\n")
    conn = ConnectionParams({"config_file": str(tmp_path / ".my.cnf")})
    assert (conn.user, conn.password) == ("fromfile", "p w")


def test_host_and_port_fall_back_to_the_option_file(tmp_path):
    path = tmp_path / "client.cnf"
    path.write_text("[client]\nhost=db.internal\nport=3307\n")
    conn = ConnectionParams({"config_file": str(path)})
    assert (conn.host, conn.port, conn.socket) == ("db.internal", 3307, None)
    given = ConnectionParams({"config_file": str(path), "login_host": "10.0.0.5", "login_port": 3308})
    assert (given.host, given.port) == ("10.0.0.5", 3308)


def test_localhost_takes_the_same_channel_for_the_module_and_the_clients(tmp_path, monkeypatch):
    """As the client programs do, localhost:3306 means the server's socket; otherwise both take TCP."""
    import socket as socketlib

    from ansible_collections.mutuapix.ops.plugins.module_utils import _mysql

    not_a_socket = tmp_path / "file.sock"
    not_a_socket.write_text("")
    server_socket = tmp_path / "mysqld.sock"
    listener = socketlib.socket(socketlib.AF_UNIX)
    listener.bind(str(server_socket))
    try:
        monkeypatch.setattr(
            _mysql, "DEFAULT_SOCKETS", (str(tmp_path / "none.sock"), str(not_a_socket), str(server_socket))
        )
        local = ConnectionParams({"config_file": None})
        assert local.socket == str(server_socket) and local.pymysql_kwargs()["unix_socket"] == str(server_socket)
        assert f'socket="{server_socket}"' in local.option_file_text() and "protocol" not in local.option_file_text()
        for other in ({"login_port": 3307}, {"login_host": "127.0.0.1"}, {"login_host": "db.internal"}):
            tcp = ConnectionParams({"config_file": None, **other})
            assert tcp.socket is None and "unix_socket" not in tcp.pymysql_kwargs()
            assert "protocol=TCP\n" in tcp.option_file_text() and "socket=" not in tcp.option_file_text()
        monkeypatch.setattr(_mysql, "DEFAULT_SOCKETS", (str(not_a_socket),))
        assert "protocol=TCP\n" in ConnectionParams({"config_file": None}).option_file_text()
        explicit = ConnectionParams({"config_file": None, "login_unix_socket": "/run/other.sock"})
        assert explicit.socket == "/run/other.sock" and "protocol" not in explicit.option_file_text()
    finally:
        listener.close()


# Option-file lines whose values MySQL's own option reader unescapes, unquotes or cuts at a comment.
TRICKY_OPTION_FILE = r"""# a comment
; another comment
[client]
user = rvesc   # the backup account
password="Ab1\\x#y"
host=a\sb\tc
socket='/run/my sql.sock'
port = "3307"
ssl_ca = /etc/ssl/"odd".pem
ssl-key="unterminated\"
loose-ssl-cert='c\'d#e'
[mysqldump]
user=not-for-us
[client-mariadb]
default-character-set=utf8mb4 ; not a comment
"""


def _client_library_reads(path) -> dict[str, str]:
    """What MariaDB's option reader (my_print_defaults) takes from ``path`` for the modules' groups."""
    program = shutil.which("my_print_defaults")
    if program is None:
        pytest.skip("my_print_defaults is not installed")
    printed = subprocess.run(
        [program, f"--defaults-file={path}", *OPTION_FILE_GROUPS], capture_output=True, text=True, check=True
    ).stdout
    pairs = (line[2:].split("=", 1) for line in printed.splitlines())
    return {name.replace("_", "-").removeprefix("loose-"): value for name, value in pairs}


def test_option_file_values_read_as_the_client_programs_read_them(tmp_path):
    """The same file through my_print_defaults (MySQL's option reader) and through the modules' reader."""
    path = tmp_path / "client.cnf"
    path.write_text(TRICKY_OPTION_FILE)
    ours = read_option_file(str(path))
    assert ours["password"] == "Ab1\\x#y"
    assert ours["host"] == "a b\tc" and ours["port"] == "3307" and ours["user"] == "rvesc"
    assert ours["socket"] == "/run/my sql.sock" and ours["ssl-cert"] == "c'd#e"
    assert ours == _client_library_reads(path)


def _debian_like_option_files(root):
    """A layout like Debian's /etc/mysql: [client-server], !includedir, nested and missing includes."""
    conf = root / "conf.d"
    mariadb_conf = root / "mariadb.conf.d"
    for folder in (conf, mariadb_conf):
        folder.mkdir()
    main = root / "my.cnf"
    main.write_text(
        "[client-server]\nsocket = /run/first.sock\nport = 3310\n"
        f"!includedir {conf}/\n!includedir {mariadb_conf}\n"
        # the group of the including file goes on after an include
        f"!include {root / 'missing.cnf'}\n! include {root / 'nested.cnf'}\n!includex {root / 'nested.cnf'}\n"
        "user = from-main\n"
    )
    (conf / "mysql.cnf").write_text("[mysql]\nuser = from-conf-d\n")
    (conf / "mysqldump.cnf").write_text("[mysqldump]\nquick\nuser = not-ours\n")
    (mariadb_conf / "50-client.cnf").write_text(
        f"[client]\nsocket = /run/mysqld/mysqld.sock\n  !include\t{root / 'nested.cnf'}  \npassword = 'after # nested'\n"
    )
    (mariadb_conf / "40-early.cnf").write_text("[client]\npassword = early\nhost = early-host\n")
    (mariadb_conf / "60-server.cnf").write_text("[mysqld]\nuser = mysql\n")
    (mariadb_conf / "README").write_text("[client]\nuser = not-a-cnf-file\n")
    (mariadb_conf / "70-client.ini").write_text("[client]\nuser = not-a-cnf-file\n")
    (mariadb_conf / "80-dir.cnf").mkdir()  # skipped: it cannot be opened as a file
    (root / "nested.cnf").write_text(
        f"[client-mariadb]\nssl_ca = /etc/ssl/ca.pem\n!include {root / 'leaf.cnf'}\nhost = nested-host\n"
    )
    (root / "leaf.cnf").write_text("[mariadb-client]\nport = 3320\n")
    return main


def test_option_file_includes_followed_as_the_client_library_follows_them(tmp_path):
    main = _debian_like_option_files(tmp_path)
    ours = read_option_file(str(main))
    assert ours == {
        "socket": "/run/mysqld/mysqld.sock",
        "port": "3320",
        "user": "from-main",
        "password": "after # nested",
        "host": "nested-host",
        "ssl-ca": "/etc/ssl/ca.pem",
    }
    assert ours == _client_library_reads(main)


def test_option_file_include_nesting_as_deep_as_the_client_library_allows(tmp_path):
    chain = [tmp_path / f"level{depth}.cnf" for depth in range(OPTION_FILE_INCLUDE_DEPTH + 1)]
    for depth, path in enumerate(chain):
        include = f"!include {chain[depth + 1]}\n" if depth + 1 < len(chain) else ""
        path.write_text(f"[client]\nport = {depth}\n{include}")
    assert read_option_file(str(chain[0]))["port"] == str(OPTION_FILE_INCLUDE_DEPTH)
    assert _client_library_reads(chain[0])["port"] == str(OPTION_FILE_INCLUDE_DEPTH)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[client]\n!include other.cnf\n", "line 2: '!include other.cnf' is a relative path"),
        ("[client]\n!include\n", "line 2: '!include' without a path"),
        ("[client]\n!includedir {tmp}/none\n", "line 2: '!includedir {tmp}/none': No such file or directory"),
        ("[client]\n!includedir {tmp}/self.cnf\n", "line 2: '!includedir {tmp}/self.cnf': Not a directory"),
        ("[client]\n!include {tmp}/bad.cnf\n", "line 2: in {tmp}/bad.cnf: line 2: an option before any [group]"),
        ("[client]\n!include {tmp}/latin1.cnf\n", "line 2: in {tmp}/latin1.cnf: not UTF-8 text (invalid"),
        (
            "[client]\n!include {tmp}/self.cnf\n",
            "line 2: in {tmp}/self.cnf: " * OPTION_FILE_INCLUDE_DEPTH
            + "line 2: '!include {tmp}/self.cnf' nests option files more than 10 deep (does a file include itself?)",
        ),
    ],
)
def test_option_file_include_errors_name_the_line_and_file(tmp_path, text, message):
    """Malformed or cyclic includes fail (the client library only warns of those two) instead of half-reading."""
    path = tmp_path / "self.cnf"
    path.write_text(text.format(tmp=tmp_path))
    (tmp_path / "bad.cnf").write_text("# comment\nuser = x\n")
    (tmp_path / "latin1.cnf").write_bytes("[client]\npassword = señha\n".encode("latin-1"))
    with pytest.raises(MySQLError, match=re.escape(f"cannot read option file {path}: {message.format(tmp=tmp_path)}")):
        read_option_file(str(path))


@pytest.mark.parametrize("value", ['p"w', "p'w", "p\\w", "a#b", " spaced ", "tab\there", "line\nbreak", "\\n", "ção"])
def test_option_file_text_reads_back_exactly(tmp_path, value):
    conn = ConnectionParams({"login_user": value, "login_password": value, "config_file": None})
    path = tmp_path / "opt.cnf"
    path.write_text(conn.option_file_text())
    read = read_option_file(str(path))
    assert (read["user"], read["password"]) == (value, value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("user=x\n[client]\n", "an option before any [group]"), ("[client\nuser=x\n", "a group header without")],
)
def test_option_file_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "bad.cnf"
    path.write_text(text)
    with pytest.raises(MySQLError, match=f"cannot read option file {path}: line 1: {re.escape(message)}"):
        read_option_file(str(path))


def _pipe_with(data: bytes):
    read_fd, write_fd = os.pipe()

    def writer() -> None:  # the dump program: gets EPIPE when the reader stops early
        with contextlib.suppress(BrokenPipeError), os.fdopen(write_fd, "wb") as out:
            for i in range(0, len(data), 4096):
                out.write(data[i : i + 4096])

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    return os.fdopen(read_fd, "rb"), thread


@pytest.mark.parametrize("priority", ["idle", "low", "normal"])
def test_pump_hands_every_byte_in_order_to_a_lower_priority_worker(priority):
    data = bytes(range(256)) * 20000
    pipe, writer = _pipe_with(data)
    seen = []
    policies = set()

    def consume(block: bytes) -> None:
        seen.append(bytes(block))  # a full block is a reused buffer: copy what is kept
        policies.add((os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)))

    with pipe:
        assert _backup.pump(pipe, consume, priority, block=4096, depth=2) is True
    writer.join()
    assert b"".join(seen) == data
    expected = {"idle": (os.SCHED_IDLE, 0), "low": (os.SCHED_OTHER, 19), "normal": (os.SCHED_OTHER, 0)}[priority]
    assert policies == {expected}
    # the calling thread keeps its priority
    assert os.sched_getscheduler(0) == os.SCHED_OTHER and os.getpriority(os.PRIO_PROCESS, 0) == 0


def test_pump_stops_reading_and_raises_when_the_worker_fails():
    pipe, writer = _pipe_with(b"x" * (4 << 20))
    calls = []

    def consume(block: bytes) -> None:
        calls.append(len(block))
        if len(calls) == 3:
            raise OSError(28, "No space left on device")

    with pipe, pytest.raises(OSError, match="No space left"):
        _backup.pump(pipe, consume, "idle", block=65536, depth=2)
    assert len(calls) == 3  # nothing consumed after the failure
    pipe.close()
    writer.join(timeout=10)


def test_pump_raises_a_failed_read_and_stops_the_worker():
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    os.close(read_fd)  # reading a closed descriptor fails with EBADF

    class ClosedPipe:
        def fileno(self) -> int:
            return read_fd

    before = threading.active_count()
    with pytest.raises(OSError, match="Bad file descriptor"):
        _backup.pump(ClosedPipe(), lambda block: None, "idle", block=4096, depth=2)
    assert threading.active_count() == before  # the worker thread was joined


def test_lower_thread_priority_refused_is_not_fatal(monkeypatch):
    def refuse(*_args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(os, "setpriority", refuse)
    assert _backup.lower_thread_priority("idle") is False
    assert _backup.lower_thread_priority("low") is False
    assert _backup.lower_thread_priority("normal") is False
    # the backup goes on at normal priority, and pump says so (the module warns)
    for priority in ("idle", "low"):
        pipe, writer = _pipe_with(b"y" * 10000)
        with pipe:
            assert _backup.pump(pipe, lambda block: None, priority, block=4096, depth=2) is False
        writer.join()


def test_writeback_file_syncs_in_the_background_and_keeps_everything(tmp_path, monkeypatch):
    synced = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    path = tmp_path / "out"
    with open(path, "wb", buffering=1 << 16) as raw:
        out = _backup.WritebackFile(raw, every=1 << 16)
        for i in range(64):
            out.write(bytes([i]) * 8192)
            if i == 7:  # 64 KiB written: the background thread syncs while the writing goes on
                for _attempt in range(1000):
                    if synced:
                        break
                    threading.Event().wait(0.01)
                assert synced, "no background fdatasync ran"
        out.sync()
        out.stop()  # idempotent
    assert path.read_bytes() == b"".join(bytes([i]) * 8192 for i in range(64))


def test_writeback_file_raises_a_background_sync_error(tmp_path, monkeypatch):
    def failing(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with open(tmp_path / "out", "wb") as raw:
        out = _backup.WritebackFile(raw, every=10)
        out.write(b"x" * 100)
        out._thread.join(timeout=10)  # the background sync has failed and stopped
        # its error must not be lost: the final fsync on the same descriptor would not see it
        with pytest.raises(OSError, match="Input/output error"):
            out.sync()


def test_unix_socket_connections_skip_the_tls_context():
    socket_only = ConnectionParams({"login_unix_socket": "/run/mysqld/mysqld.sock", "config_file": None})
    assert socket_only.pymysql_kwargs()["ssl_disabled"] is True
    tcp = ConnectionParams({"login_host": "db.example.org", "config_file": None})
    assert "ssl_disabled" not in tcp.pymysql_kwargs()
    with_ca = ConnectionParams({"login_unix_socket": "/s", "ssl_ca": "/ca.pem", "config_file": None})
    kwargs = with_ca.pymysql_kwargs()
    assert kwargs["ssl"] == {"ca": "/ca.pem"} and "ssl_disabled" not in kwargs


class _Cursor:
    def __init__(self, answers, fail):
        self.answers, self.fail, self.sql = answers, fail, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, args=None):
        self.sql.append(sql)
        if any(word in sql for word in self.fail):
            raise RuntimeError(f"refused: {sql}")
        self.row = self.answers.get(sql)

    def fetchone(self):
        return self.row

    def fetchall(self):
        return self.row or []


class _Connection:
    def __init__(self, answers=None, fail=()):
        self.cur = _Cursor(answers or {}, fail)

    def cursor(self):
        return self.cur


MARIADB_SERVER = ServerInfo("10.11.19-MariaDB-0+deb12u1-log")
MYSQL_SERVER = ServerInfo("8.0.36")
LOG_BIN_ON = {"SELECT @@GLOBAL.log_bin": (1,)}


@pytest.mark.parametrize(
    ("server", "program", "answers", "extra", "expected"),
    [
        (MARIADB_SERVER, "/usr/bin/mariadb-dump", LOG_BIN_ON, [], ["--master-data=2", "--gtid"]),
        (MARIADB_SERVER, "/usr/bin/mariadb-dump", {"SELECT @@GLOBAL.log_bin": (0,)}, [], []),
        (
            MARIADB_SERVER,
            "/usr/bin/mariadb-dump",
            {"SELECT @@GLOBAL.log_bin": ("ON",)},
            [],
            ["--master-data=2", "--gtid"],
        ),
        # MySQL's mysqldump would take a global read lock for it
        (MYSQL_SERVER, "/usr/bin/mysqldump", {"SELECT @@GLOBAL.log_bin": (1,)}, [], []),
        (MARIADB_SERVER, "/usr/bin/mysqldump", LOG_BIN_ON, [], []),
        # the user's own choice of position options wins
        (MARIADB_SERVER, "/usr/bin/mariadb-dump", LOG_BIN_ON, ["--master-data=0"], []),
        (MARIADB_SERVER, "/usr/bin/mariadb-dump", LOG_BIN_ON, ["--dump-slave=2"], []),
        # in any spelling the dump program accepts
        (MARIADB_SERVER, "/usr/bin/mariadb-dump", LOG_BIN_ON, ["--loose-master-data=1"], []),
        (MARIADB_SERVER, "/usr/bin/mariadb-dump", LOG_BIN_ON, ["--skip-master-data"], []),
        (MARIADB_SERVER, "/usr/bin/mariadb-dump", LOG_BIN_ON, ["--source_data=2"], []),
        (MARIADB_SERVER, "/usr/bin/mariadb-dump", LOG_BIN_ON, ["--net-buffer-length=1"], ["--master-data=2", "--gtid"]),
    ],
)
def test_snapshot_position_args(server, program, answers, extra, expected):
    assert _backup.snapshot_position_args(_Connection(answers), server, program, extra) == expected


ROLE_GRANTS = [
    ("GRANT `dumpers`@`%` TO `backup`@`%`",),
    ("GRANT USAGE ON *.* TO `backup`@`%`",),
    ("GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `app`.* TO `dumpers`@`%`",),
]


def test_account_grants_include_the_active_roles_on_mysql8():
    """SHOW GRANTS FOR CURRENT_USER() alone lists a role, not its privileges: name the active ones in USING."""
    using = "SHOW GRANTS FOR CURRENT_USER() USING `dumpers`@`%`,`audit`@`%`"
    conn = _Connection({"SELECT CURRENT_ROLE()": ("`dumpers`@`%`,`audit`@`%`",), using: ROLE_GRANTS})
    with conn.cursor() as cur:
        grants = _backup.account_grants(cur, MYSQL_SERVER)
    assert conn.cur.sql == ["SELECT CURRENT_ROLE()", using]
    assert set(_backup.REQUIRED_PRIVILEGES) <= _backup.granted_privileges(grants, "app")


def test_account_grants_without_an_active_role_on_mysql8():
    conn = _Connection({"SELECT CURRENT_ROLE()": ("NONE",), "SHOW GRANTS FOR CURRENT_USER()": ROLE_GRANTS[:2]})
    with conn.cursor() as cur:
        assert _backup.account_grants(cur, MYSQL_SERVER) == [r[0] for r in ROLE_GRANTS[:2]]
    assert conn.cur.sql[-1] == "SHOW GRANTS FOR CURRENT_USER()"


def test_account_grants_on_mariadb_is_plain_show_grants():
    """MariaDB's SHOW GRANTS (no FOR) adds the grants of the current role and the roles granted to it."""
    conn = _Connection({"SHOW GRANTS": ROLE_GRANTS})
    with conn.cursor() as cur:
        assert _backup.account_grants(cur, MARIADB_SERVER) == [r[0] for r in ROLE_GRANTS]
    assert conn.cur.sql == ["SHOW GRANTS"]


def test_snapshot_position_args_never_fail_the_backup():
    refused = _Connection(fail=("log_bin",))
    assert _backup.snapshot_position_args(refused, MARIADB_SERVER, "/usr/bin/mariadb-dump", []) == []


def test_binlog_position_before_the_dump_is_marked_approximate():
    answers = {"SHOW MASTER STATUS": ("mariadb-bin.000002", 42), "SELECT @@GLOBAL.gtid_binlog_pos": ("0-1-7",)}
    assert _backup.binlog_position(_Connection(answers), MARIADB_SERVER) == {
        "file": "mariadb-bin.000002",
        "position": 42,
        "gtid": "0-1-7",
        "exact": False,
    }
    # without BINLOG MONITOR only the GTID is readable; still approximate
    no_privilege = _Connection(answers, fail=("SHOW MASTER STATUS",))
    assert _backup.binlog_position(no_privilege, MARIADB_SERVER) == {"gtid": "0-1-7", "exact": False}
    assert _backup.binlog_position(_Connection(), MYSQL_SERVER) == {}


def test_server_identity_is_the_route_the_connection_takes(tmp_path):
    tcp = ConnectionParams({"config_file": None, "login_host": "DB1.example", "login_port": 3307})
    assert tcp.server_identity() == "tcp:db1.example:3307"
    sock = ConnectionParams({"config_file": None, "login_host": "db1", "login_unix_socket": "/run/m.sock"})
    assert sock.server_identity() == "socket:/run/m.sock"  # PyMySQL takes the socket when one is given
    cnf = tmp_path / "my.cnf"
    cnf.write_text("[client]\nhost=db9\nport=3310\n")
    assert ConnectionParams({"config_file": str(cnf)}).server_identity() == "tcp:db9:3310"


@pytest.mark.parametrize(
    ("version", "grants", "expected"),
    [
        ("8.0.36", ["GRANT USAGE ON *.* TO `bk`@`%`", "GRANT SELECT ON `app`.* TO `bk`@`%`"], "SHOW_ROUTINE ON *.*"),
        ("8.0.36", ["GRANT SHOW_ROUTINE ON *.* TO `bk`@`%`"], None),
        ("8.0.36", ["GRANT SELECT, RELOAD ON *.* TO `bk`@`%`"], None),
        ("5.7.44", ["GRANT USAGE ON *.* TO 'bk'@'%'", "GRANT SELECT ON `app`.* TO 'bk'@'%'"], "SELECT ON *.*"),
    ],
)
def test_missing_routine_grant_on_mysql(version, grants, expected):
    """mysqldump leaves out the routines an account cannot read, without an error: the grant is asked for."""
    have = _backup.granted_privileges(grants, "app")
    assert _backup.missing_routine_grant(None, ServerInfo(version), grants, have) == expected


class _ProcProbe:
    """A connection whose ``SELECT 1 FROM mysql.proc`` raises ``error`` (None: it is allowed)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    @contextlib.contextmanager
    def cursor(self):
        probe = self

        class Cursor:
            def execute(self, query):
                assert query == "SELECT 1 FROM mysql.proc LIMIT 0"
                if probe.error is not None:
                    raise probe.error

            def fetchall(self):
                return []

        yield Cursor()


def test_missing_routine_grant_on_mariadb_reads_only_a_denial_as_the_answer():
    """Access denied is the missing grant; any other error (the server gone) is not mistaken for one."""
    mariadb = ServerInfo("10.11.6-MariaDB-0+deb12u1")
    assert _backup.missing_routine_grant(_ProcProbe(None), mariadb, [], set()) is None
    denied = RuntimeError(1142, "SELECT command denied to user 'bk'@'localhost' for table `mysql`.`proc`")
    assert _backup.missing_routine_grant(_ProcProbe(denied), mariadb, [], set()) == "SELECT ON `mysql`.`proc`"
    gone = RuntimeError(2013, "Lost connection to server during query")
    with pytest.raises(RuntimeError, match="Lost connection"):
        _backup.missing_routine_grant(_ProcProbe(gone), mariadb, [], set())
    assert _backup.missing_routine_grant(_ProcProbe(gone), mariadb, [], {"SHOW CREATE ROUTINE"}) is None


_CHARSET_QUERY = (
    "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND ((CHARACTER_SET_NAME"
    " IS NOT NULL AND CHARACTER_SET_NAME NOT IN (%s, %s, %s, %s, %s))"
    f" OR LOWER(DATA_TYPE) NOT IN ({', '.join(['%s'] * len(_backup.BINARY_SAFE_TYPES))}))"
)


@pytest.mark.parametrize(
    ("server", "answers", "fail", "expected"),
    [
        (MARIADB_SERVER, {_CHARSET_QUERY: (0,)}, (), True),
        # a latin1 (or any other non-utf8) column: its non-ASCII DEFAULT/ENUM values need a utf8mb4 session;
        # an INET6 or UUID column: its text form would be loaded as the packed form
        (MARIADB_SERVER, {_CHARSET_QUERY: (2,)}, (), False),
        # the query refused: the utf8mb4 dump is always correct
        (MARIADB_SERVER, {}, ("information_schema.COLUMNS",), False),
        # MySQL's native JSON type refuses a binary string: never asked
        (MYSQL_SERVER, {}, ("SELECT",), False),
    ],
)
def test_binary_session_only_on_mariadb_with_utf8_columns(server, answers, fail, expected):
    assert _backup.binary_session_safe(_Connection(answers, fail), "app", server) is expected


def test_binary_session_types_leave_out_the_packed_types():
    assert {"inet6", "uuid", "inet4", "json", "vector"}.isdisjoint(_backup.BINARY_SAFE_TYPES)
    assert {"longtext", "varbinary", "decimal", "point", "enum"} <= set(_backup.BINARY_SAFE_TYPES)


def test_dump_options_binary_session_drops_hex_blob():
    utf8 = _backup.dump_command("/usr/bin/mariadb-dump", "/tmp/opt.cnf", "app", [], [], [])
    binary = _backup.dump_command("/usr/bin/mariadb-dump", "/tmp/opt.cnf", "app", [], [], [], binary=True)
    assert "--hex-blob" in utf8 and "--default-character-set=utf8mb4" in utf8
    assert "--hex-blob" not in binary and "--default-character-set=binary" in binary
    assert "--default-character-set=utf8mb4" not in binary
    # otherwise the same options, in the same order
    assert [o for o in utf8 if o not in ("--hex-blob", "--default-character-set=utf8mb4")] == [
        o for o in binary if o != "--default-character-set=binary"
    ]
