"""Fixtures for the app_db_user / mysql_secure_installation / hardening tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.support.mariadb import MariaDB
from tests.support.runner import ModuleResult, run_module


class Accounts:
    """Runs app_db_user against the private server and drops every account it touched."""

    def __init__(self, server: MariaDB) -> None:
        self.server = server
        self.touched: set[tuple[str, str]] = set()

    def run(self, check: bool = False, diff: bool = False, **args: Any) -> ModuleResult:
        hosts = args.get("hosts") or [args.get("host", "localhost")]
        for host in hosts:
            self.touched.add((str(args.get("name")), str(host)))
        return run_module("app_db_user", {**self.server.login, **args}, check=check, diff=diff)

    def exists(self, name: str, host: str = "localhost") -> bool:
        rows = self.server.execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (name, host))
        return bool(rows)

    def grants(self, name: str, host: str = "localhost") -> list[str]:
        return [r[0] for r in self.server.execute(f"SHOW GRANTS FOR `{name}`@`{host}`")]

    def cleanup(self) -> None:
        for name, host in self.touched:
            with contextlib.suppress(pymysql.err.MySQLError):
                self.server.execute(f"DROP USER IF EXISTS `{name}`@`{host}`")


@pytest.fixture
def accounts(mariadb: MariaDB) -> Iterator[Accounts]:
    helper = Accounts(mariadb)
    yield helper
    helper.cleanup()


def login(
    server: MariaDB, user: str, password: str | bytes, database: str | None = None
) -> pymysql.connections.Connection:
    """Log in as ``user`` over the socket (matches ``user@localhost``).

    PyMySQL encodes a str password as latin-1; pass bytes (UTF-8) for other characters.
    """
    return pymysql.connect(
        unix_socket=server.socket,
        user=user,
        password=password,
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=5,
    )


def cli_login(
    server: MariaDB, user: str, password: str, sql: str = "SELECT CURRENT_USER()"
) -> subprocess.CompletedProcess[str]:
    """Log in with the mariadb client (supports client_ed25519, which PyMySQL needs PyNaCl for)."""
    with tempfile.NamedTemporaryFile("w", suffix=".cnf", delete=False, encoding="utf-8") as handle:
        esc = password.replace("\\", "\\\\").replace('"', '\\"')
        handle.write(f'[client]\nuser="{user}"\npassword="{esc}"\nsocket="{server.socket}"\n')
        path = handle.name
    try:
        os.chmod(path, 0o600)
        return subprocess.run(
            ["mariadb", f"--defaults-file={path}", "--batch", "--skip-column-names", "-e", sql],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    finally:
        os.unlink(path)


@pytest.fixture
def general_log(mariadb: MariaDB, tmp_path: Path) -> Iterator[Path]:
    """The server's general query log switched on for the test, into a file of its own."""
    path = tmp_path / "general.log"
    old = mariadb.execute("SELECT @@general_log_file, @@general_log")[0]
    mariadb.execute("SET GLOBAL general_log_file = %s", (str(path),))
    mariadb.execute("SET GLOBAL general_log = 1")
    try:
        yield path
    finally:
        mariadb.execute("SET GLOBAL general_log = %s", (int(old[1]),))
        mariadb.execute("SET GLOBAL general_log_file = %s", (str(old[0]),))


@pytest.fixture
def ed25519_plugin(mariadb: MariaDB) -> None:
    active = mariadb.execute("SELECT 1 FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519'")
    if not active:
        mariadb.execute("INSTALL SONAME 'auth_ed25519'")


@pytest.fixture
def app_database(mariadb: MariaDB, request: pytest.FixtureRequest) -> Iterator[str]:
    """A small Laravel-like database with an underscore in its name (the wildcard trap)."""
    from tests.support import datagen

    name = "u_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    datagen.create_database(mariadb, name, 50_000)
    yield name
    mariadb.execute(f"DROP DATABASE IF EXISTS `{name}`")


def hardening_vars(mariadb: MariaDB, prefix: str) -> dict[str, Any]:
    """The hardening role's connection to the private server and its ``<prefix>_db`` database (created),
    with the accounts ``<prefix>_app``, ``_migrate`` and ``_backup`` (passwords are the caller's)."""
    mariadb.execute(f"CREATE DATABASE IF NOT EXISTS {prefix}_db")
    return {
        "hardening_login_unix_socket": mariadb.socket,
        "hardening_login_user": "root",
        "hardening_login_password": mariadb.ROOT_PASSWORD,
        "hardening_config_file": str(mariadb.login["config_file"]),
        "hardening_database": f"{prefix}_db",
        "hardening_app_user": f"{prefix}_app",
        "hardening_migrate_user": f"{prefix}_migrate",
        "hardening_backup_user": f"{prefix}_backup",
    }


def drop_accounts(mariadb: MariaDB, users: tuple[str, ...]) -> None:
    """Drop ``<user>@localhost`` of each user, those that exist."""
    for user in users:
        with contextlib.suppress(pymysql.err.MySQLError):
            mariadb.execute(f"DROP USER IF EXISTS `{user}`@`localhost`")
