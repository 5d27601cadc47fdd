"""harden.yml / roles/hardening with values as a command line or a survey gives them (strings)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from tests.integration.roles.conftest import PLAYBOOKS, write_inventory
from tests.support.mariadb import MariaDB
from tests.support.runner import run_playbook

USERS = ("rvh_app", "rvh_migrate", "rvh_backup", "rvh_readonly")


@pytest.fixture
def harden_vars(mariadb: MariaDB, tmp_path: Path) -> Iterator[Path]:
    mariadb.execute("CREATE DATABASE IF NOT EXISTS rvh_db")
    variables = {
        "hardening_login_unix_socket": mariadb.socket,
        "hardening_login_user": "root",
        "hardening_login_password": mariadb.ROOT_PASSWORD,
        "hardening_config_file": str(mariadb.login["config_file"]),
        "hardening_database": "rvh_db",
        "hardening_app_user": "rvh_app",
        "hardening_migrate_user": "rvh_migrate",
        "hardening_backup_user": "rvh_backup",
        "hardening_readonly_user": "rvh_readonly",
        "hardening_app_password": "App-Vaulted-Secret-7Qz!",
        "hardening_migrate_password": "Migrate-Vaulted-Secret-8Rx!",
        "hardening_backup_password": "Backup-Vaulted-Secret-9Sy!",
        "hardening_secure_installation": False,
    }
    path = tmp_path / "vars.json"
    path.write_text(json.dumps(variables))
    try:
        yield path
    finally:
        for user in USERS:
            with contextlib.suppress(pymysql.err.MySQLError):
                mariadb.execute(f"DROP USER IF EXISTS `{user}`@`localhost`")
        mariadb.execute("DROP DATABASE IF EXISTS rvh_db")


def test_readonly_disabled_from_the_command_line_is_not_created(
    mariadb: MariaDB, harden_vars: Path, tmp_path: Path
) -> None:
    """`-e hardening_readonly_enabled=false` is the string 'false': the read-only account stays disabled."""
    inventory = write_inventory(tmp_path / "inventory.yml", {"db": {"testdb": {}}})
    disabled = ["-e", f"@{harden_vars}", "-e", "hardening_readonly_enabled=false"]

    without_password = run_playbook(PLAYBOOKS / "harden.yml", inventory, args=disabled)
    assert without_password.returncode == 0, without_password.stdout[-3000:]

    # a password kept in the vault for later does not enable the account either
    with_password = run_playbook(
        PLAYBOOKS / "harden.yml", inventory, args=[*disabled, "-e", "hardening_readonly_password=Readonly-Vault-3Tw!"]
    )
    assert with_password.returncode == 0, with_password.stdout[-3000:]
    users = {str(row[0]) for row in mariadb.execute("SELECT User FROM mysql.user WHERE User LIKE 'rvh\\_%'")}
    assert users == {"rvh_app", "rvh_migrate", "rvh_backup"}
