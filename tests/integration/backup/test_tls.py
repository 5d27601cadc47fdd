"""The dump and restore programs take the channel the module's own connection takes, TLS included.

MariaDB's client programs know no "TLS if the server offers it": before 11.4 they never use TLS
without an ``ssl-*`` option, from 11.4 (Debian 13: 11.8) they demand verified TLS by default.
Either way, over TCP they used to differ from the module's own connection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import datagen
from tests.support.certs import CertFactory
from tests.support.mariadb import MariaDB, temporary_server
from tests.support.runner import run_module

USER, PASSWORD = "tls_backup", "Tls-backup-pw-2026"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFactory:
    return CertFactory(tmp_path_factory.mktemp("db-certs"))


@pytest.fixture(scope="module")
def tls_server(certs: CertFactory) -> Iterator[MariaDB]:
    cert, key = certs.server_files(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30), "mariadb")
    with temporary_server("mutuapix-tls-", tls=(certs.ca_path, cert, key)) as server:
        assert server.execute("SELECT @@have_ssl") == [("YES",)]
        datagen.create_database(server, "tls_app", 200_000)
        # An account that only TLS connections may use, reachable over TCP only.
        server.execute(f"CREATE USER {USER}@'127.0.0.1' IDENTIFIED BY '{PASSWORD}' REQUIRE SSL")
        server.execute(f"GRANT ALL ON *.* TO {USER}@'127.0.0.1'")
        yield server


def login(server: MariaDB, **extra: object) -> dict[str, object]:
    return dict(
        server.login_tcp,
        login_user=USER,
        login_password=PASSWORD,
        config_file=server.login["config_file"],
        **extra,
    )


def test_without_ssl_options_the_dump_and_restore_take_tls_when_the_server_offers_it(tls_server, tmp_path: Path):
    """Before: PyMySQL took TLS (1.2 does when offered), mariadb-dump plain TCP: access denied."""
    backup = run_module("mysql_backup", {**login(tls_server), "database": "tls_app", "dest": str(tmp_path)})
    assert not backup.failed, backup.get("msg")
    assert backup["tables"]["users"] > 0
    verify = run_module("mysql_restore_verify", {**login(tls_server), "src": backup["path"]})
    assert not verify.failed, verify.get("msg")
    assert verify["verified"] and not verify["mismatches"], verify


def test_with_ssl_ca_the_server_is_verified_by_both(tls_server, certs: CertFactory, tmp_path: Path):
    args = login(tls_server, ssl_ca=str(certs.ca_path))
    backup = run_module("mysql_backup", {**args, "database": "tls_app", "dest": str(tmp_path)})
    assert not backup.failed, backup.get("msg")
    verify = run_module("mysql_restore_verify", {**args, "src": backup["path"]})
    assert not verify.failed and verify["verified"], verify.get("msg")


def test_a_server_certificate_from_another_ca_is_refused(tls_server, tmp_path: Path):
    (tmp_path / "other-ca").mkdir()
    other = CertFactory(tmp_path / "other-ca")
    result = run_module(
        "mysql_backup", {**login(tls_server, ssl_ca=str(other.ca_path)), "database": "tls_app", "dest": str(tmp_path)}
    )
    assert result.failed
    assert "certificate" in result["msg"].lower() or "ssl" in result["msg"].lower(), result["msg"]
    assert not list(tmp_path.glob("tls_app-*"))


# What an option file says about TLS, and TLS required whatever the PyMySQL release.


def option_file(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "client.cnf"
    path.write_text("[client]\n" + "".join(f"{line}\n" for line in lines))
    return str(path)


def tcp_login(server: MariaDB, cnf: str, **extra: object) -> dict[str, object]:
    return {**server.login_tcp, "config_file": cnf, **extra}


def test_ssl_ca_against_a_server_without_tls_is_refused_before_any_credential(
    mariadb: MariaDB, certs: CertFactory, tmp_path: Path
):
    """PyMySQL before 1.2 (Debian 12's 1.0.2, 13's 1.1.1) carried on in plain text with a CA given:
    app_db_user logged in and created the account (its password hash included) unencrypted."""
    # an administrator that may log in over TCP: without the fix, the account would be created
    mariadb.execute(f"CREATE USER tls_admin@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
    mariadb.execute("GRANT ALL ON *.* TO tls_admin@'127.0.0.1' WITH GRANT OPTION")
    args = tcp_login(mariadb, option_file(tmp_path), ssl_ca=str(certs.ca_path))
    args |= {"login_user": "tls_admin", "login_password": PASSWORD}
    try:
        result = run_module(
            "app_db_user",
            {
                **args,
                "name": "tls_refused",
                "password": "k7Qp-Vz3m-Rt8w-Lx2n",
                "privileges": "readonly",
                "database": "tls_refused_db",
            },
        )
        assert result.failed
        assert "(2026) SSL is required but the server doesn't support it" in result["msg"], result["msg"]
        assert "TLS is required (ssl_ca set): does the server offer TLS? No credentials were sent" in result["msg"]
        assert not mariadb.execute("SELECT 1 FROM mysql.user WHERE User = 'tls_refused'")
    finally:
        mariadb.execute("DROP USER IF EXISTS tls_refused@localhost, tls_admin@'127.0.0.1'")


def test_ssl_mode_required_in_the_option_file_refuses_a_server_without_tls(
    mariadb: MariaDB, backup_db: str, tmp_path: Path
):
    dest = tmp_path / "out"
    cnf = option_file(tmp_path, "ssl-mode=REQUIRED")
    result = run_module("mysql_backup", {**tcp_login(mariadb, cnf), "database": backup_db, "dest": str(dest)})
    assert result.failed
    assert "SSL is required" in result["msg"] and "config_file asks for required TLS" in result["msg"], result["msg"]
    assert not dest.exists() or not list(dest.iterdir())
    # over the server's socket the demand is met by the socket, as the client programs take it
    local = run_module("mysql_backup", {**mariadb.login, "config_file": cnf, "database": backup_db, "dest": str(dest)})
    assert not local.failed, local.get("msg")


def test_ssl_mode_required_and_verify_identity_in_the_option_file(
    tls_server: MariaDB, certs: CertFactory, tmp_path: Path
):
    """The account may only log in over TLS: both the module and the client programs take it."""
    for lines in (["ssl-mode=REQUIRED"], ["ssl-mode=VERIFY_IDENTITY", f"ssl-ca={certs.ca_path}"]):
        dest = tmp_path / lines[0].split("=")[1]
        args = login(tls_server) | {"config_file": option_file(tmp_path, *lines)}
        backup = run_module("mysql_backup", {**args, "database": "tls_app", "dest": str(dest)})
        assert not backup.failed, (lines, backup.get("msg"))
        verify = run_module("mysql_restore_verify", {**args, "src": backup["path"]})
        assert not verify.failed and verify["verified"], (lines, verify.get("msg"))


def test_verifying_without_a_ca_uses_the_hosts_bundle_which_lacks_a_private_ca(tls_server: MariaDB, tmp_path: Path):
    """Before, ssl-verify-server-cert in the file was ignored and the server not verified at all."""
    dest = tmp_path / "out"
    for line in ("ssl-verify-server-cert", "ssl-mode=VERIFY_CA"):
        args = login(tls_server) | {"config_file": option_file(tmp_path, line)}
        result = run_module("mysql_backup", {**args, "database": "tls_app", "dest": str(dest)})
        assert result.failed, line
        assert "CERTIFICATE_VERIFY_FAILED" in result["msg"], (line, result["msg"])
        assert not dest.exists() or not list(dest.iterdir())


def test_skip_ssl_in_the_option_file_turns_tls_off(tls_server: MariaDB, certs: CertFactory, tmp_path: Path):
    """The account requires TLS, so a plain connection is what the server refuses."""
    for lines in (["skip-ssl"], ["ssl-mode=DISABLED", f"ssl-ca={certs.ca_path}"]):
        args = login(tls_server) | {"config_file": option_file(tmp_path, *lines)}
        result = run_module("mysql_backup", {**args, "database": "tls_app", "dest": str(tmp_path / "out")})
        assert result.failed, lines
        assert "(1045) Access denied" in result["msg"], (lines, result["msg"])
    # the module's own ssl_ca wins over the file's skip-ssl
    args = login(tls_server, ssl_ca=str(certs.ca_path)) | {"config_file": option_file(tmp_path, "skip-ssl")}
    result = run_module("mysql_backup", {**args, "database": "tls_app", "dest": str(tmp_path / "out")})
    assert not result.failed, result.get("msg")


def test_old_pymysql_is_stopped_before_it_authenticates(
    mariadb: MariaDB, certs: CertFactory, monkeypatch: pytest.MonkeyPatch
):
    """The check for PyMySQL before 1.2, run here against the real server whatever PyMySQL this is."""
    import pymysql

    from ansible_collections.mutuapix.ops.plugins.module_utils import _mysql

    authenticated: list[object] = []
    monkeypatch.setattr(pymysql.connections.Connection, "_request_authentication", authenticated.append)
    monkeypatch.setattr(_mysql, "_PYMYSQL_PREFERS_TLS", False)
    conn = _mysql.ConnectionParams({**mariadb.login_tcp, "config_file": None, "ssl_ca": str(certs.ca_path)})
    with pytest.raises(_mysql.MySQLError, match=r"\(2026\) SSL is required but the server doesn't support it"):
        _mysql.connect(conn)
    assert not authenticated, "the credentials would have been sent"


def test_a_plain_session_is_caught_after_connecting_too(mariadb: MariaDB, monkeypatch: pytest.MonkeyPatch):
    """The second check: should a PyMySQL release ever carry on in plain text, the session's
    Ssl_cipher (empty) says so and the connection is closed."""
    from ansible_collections.mutuapix.ops.plugins.module_utils import _mysql

    mariadb.execute(f"CREATE USER plain_check@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
    try:
        conn = _mysql.ConnectionParams(
            {**mariadb.login_tcp, "login_user": "plain_check", "login_password": PASSWORD, "config_file": None}
            | {"ssl_cert": "/nonexistent.pem"}
        )
        assert conn.tls == "required"
        plain = conn.pymysql_kwargs()
        del plain["ssl"]
        monkeypatch.setattr(conn, "pymysql_kwargs", lambda database=None: plain)
        monkeypatch.setattr(_mysql, "_TLSRequiredConnection", _mysql.pymysql.connect)
        with pytest.raises(_mysql.MySQLError, match="without TLS although TLS is required \\(ssl_cert set\\)"):
            _mysql.connect(conn)
    finally:
        mariadb.execute("DROP USER plain_check@'127.0.0.1'")
