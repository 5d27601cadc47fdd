"""mysql_secure_installation parity against the private MariaDB."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pymysql
import pytest

from tests.support.mariadb import MariaDB
from tests.support.runner import run_module


@pytest.fixture
def insecure(mariadb: MariaDB) -> Iterator[None]:
    """What a fresh mysql_install_db of old left behind, recreated; undone afterwards."""
    statements = [
        "CREATE USER ''@'localhost'",
        "CREATE USER ''@'%'",
        "CREATE USER 'root'@'10.9.%' IDENTIFIED BY 'Remote-Root-Pw-9'",
        "CREATE DATABASE test",
        "CREATE USER 'p5_dev'@'localhost' IDENTIFIED BY 'Dev-Account-Pw-9x'",
        "GRANT ALL ON `test\\_%`.* TO 'p5_dev'@'localhost'",
        "GRANT ALL ON `test`.* TO ''@'%'",
    ]
    for sql in statements:
        mariadb.execute(sql)
    yield
    for sql in (
        "DROP USER IF EXISTS ''@'localhost'",
        "DROP USER IF EXISTS ''@'%'",
        "DROP USER IF EXISTS 'root'@'10.9.%'",
        "DROP USER IF EXISTS 'p5_dev'@'localhost'",
        "DROP DATABASE IF EXISTS test",
    ):
        with contextlib.suppress(pymysql.err.MySQLError):
            mariadb.execute(sql)


def accounts(mariadb: MariaDB) -> set[tuple[str, str]]:
    return {(str(u), str(h)) for u, h in mariadb.execute("SELECT User, Host FROM mysql.user")}


@pytest.mark.usefixtures("insecure")
def test_removes_what_mysql_secure_installation_removes(mariadb: MariaDB) -> None:
    before = accounts(mariadb)
    planned = run_module("mysql_secure_installation", mariadb.login, check=True, diff=True)
    assert planned["changed"] and not planned.failed, planned
    assert accounts(mariadb) == before and mariadb.execute("SHOW DATABASES LIKE 'test'"), "check mode changed things"
    assert {"@localhost", "@%", "root@10.9.%"} <= set(planned["removed_users"])
    assert planned["dropped_databases"] == ["test"]
    assert planned["revoked"] == {"p5_dev@localhost": ["test\\_%.*"]}
    assert "DROP USER ``@`localhost`" in planned["statements"]
    assert planned["diff"]["after"] == {"accounts": [], "databases": [], "test_grants": {}}

    applied = run_module("mysql_secure_installation", mariadb.login)
    assert applied["statements"] == planned["statements"], applied
    after = accounts(mariadb)
    assert not {user for user, _host in after if user == ""}
    assert {h for u, h in after if u == "root"} <= {"localhost", "127.0.0.1", "::1"}
    assert ("root", "localhost") in after and ("p5_dev", "localhost") in after
    assert not mariadb.execute("SHOW DATABASES LIKE 'test'")
    assert not mariadb.execute("SELECT 1 FROM mysql.db WHERE Db IN ('test', 'test\\\\_%')")
    # root still works over the socket, and the second run has nothing left to do.
    again = run_module("mysql_secure_installation", mariadb.login)
    assert not again["changed"] and again["statements"] == [], again


@pytest.mark.usefixtures("insecure")
def test_options_limit_what_is_removed(mariadb: MariaDB) -> None:
    result = run_module(
        "mysql_secure_installation",
        {
            **mariadb.login,
            "remove_test_database": False,
            "remove_anonymous_users": False,
            "root_hosts": ["localhost", "127.0.0.1", "::1", "10.9.%"],
        },
        check=True,
    )
    assert not result.failed and result["statements"] == [
        s for s in result["statements"] if s.startswith("DROP USER `root`@")
    ], result
    assert "root@10.9.%" not in result["removed_users"]
    bad = run_module("mysql_secure_installation", {**mariadb.login, "root_hosts": ["localhost'; --"]}, check=True)
    assert bad.failed and "is not a host name" in bad["msg"], bad
