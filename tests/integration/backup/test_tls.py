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
    """Before: PyMySQL took TLS (2.x does when offered), mariadb-dump plain TCP: access denied."""
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
