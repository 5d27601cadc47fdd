"""mysql_secure_installation parity against the private MariaDB."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

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


class StockMariaDB(MariaDB):
    """A server as a stock ``mariadb-install-db`` leaves it: test database, PUBLIC grants, anonymous accounts."""

    INSTALL_OPTIONS = ()


@pytest.fixture
def stock(tmp_path: Path) -> Iterator[MariaDB]:
    server = StockMariaDB(tmp_path / "stock")
    try:
        server.start()  # its loopback root accounts get the harness's password, as every test server's
        yield server
    finally:
        server.stop()


def test_stock_install_with_public_role_grants(stock: MariaDB) -> None:
    assert ("PUBLIC", "", "test") in set(stock.execute("SELECT User, Host, Db FROM mysql.db")), "not a stock install"
    planned = run_module("mysql_secure_installation", stock.login, check=True)
    assert planned["changed"] and not planned.failed, planned
    assert "REVOKE ALL PRIVILEGES ON `test`.* FROM PUBLIC" in planned["statements"]
    assert planned["revoked"]["PUBLIC"] == ["test.*", "test\\_%.*"]

    # Logged in over TCP as root@127.0.0.1, keeping only LOCALHOST (upper case): root@localhost
    # is that entry, and the session's own account is not dropped.
    login = {**stock.login_tcp, "config_file": stock.login["config_file"]}
    applied = run_module("mysql_secure_installation", {**login, "root_hosts": ["LOCALHOST"]})
    assert applied["changed"] and not applied.failed, applied
    assert any("root@127.0.0.1 was not dropped" in str(w) for w in applied.get("warnings", [])), applied
    users = accounts(stock)
    assert ("root", "localhost") in users and ("root", "127.0.0.1") in users
    assert not {u for u, _h in users if u == ""}
    assert {h for u, h in users if u == "root"} == {"localhost", "127.0.0.1"}
    assert not stock.execute("SHOW DATABASES LIKE 'test'")
    assert not stock.execute("SELECT 1 FROM mysql.db WHERE Db IN ('test', 'test\\\\_%')")
    assert stock.execute("SHOW GRANTS FOR PUBLIC") == []

    again = run_module("mysql_secure_installation", {**login, "root_hosts": ["LOCALHOST"]})
    assert not again["changed"] and again["statements"] == [], again


@pytest.mark.usefixtures("insecure")
def test_grant_option_on_test_is_revoked_too(mariadb: MariaDB) -> None:
    mariadb.execute("GRANT SELECT ON `test`.* TO 'p5_dev'@'localhost' WITH GRANT OPTION")
    args = {**mariadb.login, "remove_anonymous_users": False, "remove_remote_root": False}
    first = run_module("mysql_secure_installation", args)
    assert first["changed"] and not first.failed, first
    assert "REVOKE GRANT OPTION ON `test`.* FROM `p5_dev`@`localhost`" in first["statements"]
    assert first["revoked"]["p5_dev@localhost"] == ["test.*", "test\\_%.*"]
    assert not mariadb.execute("SELECT 1 FROM mysql.db WHERE User = 'p5_dev'")
    again = run_module("mysql_secure_installation", args)
    assert not again["changed"] and again["revoked"] == {}, again


@pytest.mark.usefixtures("insecure")
def test_failure_part_way_reports_what_was_applied(mariadb: MariaDB) -> None:
    # An administrator that may drop accounts but not databases: DROP DATABASE fails after the DROP USERs.
    mariadb.execute("CREATE USER 'p5_secadm'@'localhost' IDENTIFIED BY 'Sec-Adm-Pw-9xQ!'")
    try:
        mariadb.execute("GRANT CREATE USER ON *.* TO 'p5_secadm'@'localhost'")
        mariadb.execute("GRANT SELECT ON mysql.* TO 'p5_secadm'@'localhost'")
        mariadb.execute("GRANT SELECT ON `test`.* TO 'p5_secadm'@'localhost'")
        login = {**mariadb.login, "login_user": "p5_secadm", "login_password": "Sec-Adm-Pw-9xQ!"}
        result = run_module("mysql_secure_installation", login)
        assert result.failed and "statement failed: DROP DATABASE `test`" in result["msg"], result
        assert result["changed"], result
        assert set(result["removed_users"]) == {"@localhost", "@%", "root@10.9.%"}
        assert result["statements"] == [f"DROP USER {a}" for a in ("``@`%`", "``@`localhost`", "`root`@`10.9.%`")]
        assert result["dropped_databases"] == []
        assert not {u for u, _h in accounts(mariadb) if u == ""}
    finally:
        mariadb.execute("DROP USER IF EXISTS 'p5_secadm'@'localhost'")


@pytest.mark.usefixtures("insecure")
def test_a_remote_root_that_defines_objects_is_kept_with_a_warning(mariadb: MariaDB) -> None:
    """Dropping it would make every use of its trigger or view fail (error 1449) on MariaDB."""
    mariadb.execute("CREATE DATABASE p5_sidef")
    try:
        mariadb.execute("CREATE TABLE p5_sidef.t (id INT PRIMARY KEY, n INT)")
        mariadb.execute("GRANT ALL ON p5_sidef.* TO `root`@`10.9.%`")
        mariadb.execute(
            "CREATE DEFINER = `root`@`10.9.%` TRIGGER p5_sidef.t_bi BEFORE INSERT ON p5_sidef.t "
            "FOR EACH ROW SET NEW.n = 1"
        )
        for check in (True, False):
            result = run_module("mysql_secure_installation", mariadb.login, check=check)
            assert not result.failed and "root@10.9.%" not in result["removed_users"], result
            assert "@%" in result["removed_users"], result
            warnings = " ".join(str(w) for w in result.get("warnings", []))
            assert "root@10.9.%" in warnings and "DEFINER of TRIGGER p5_sidef.t_bi" in warnings, result
        assert ("root", "10.9.%") in accounts(mariadb)
        mariadb.execute("INSERT INTO p5_sidef.t (id) VALUES (1)")
        mariadb.execute("DROP TRIGGER p5_sidef.t_bi")
        cleared = run_module("mysql_secure_installation", mariadb.login)
        assert cleared["removed_users"] == ["root@10.9.%"], cleared
    finally:
        mariadb.execute("DROP DATABASE IF EXISTS p5_sidef")
