"""harden.yml / roles/hardening with values as a command line or a survey gives them (strings)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.roles.conftest import PLAYBOOKS, write_inventory
from tests.integration.users.conftest import drop_accounts, hardening_vars
from tests.support.mariadb import MariaDB
from tests.support.runner import run_playbook

USERS = ("rvh_app", "rvh_migrate", "rvh_backup", "rvh_readonly")


@pytest.fixture
def harden_vars(mariadb: MariaDB, tmp_path: Path) -> Iterator[Path]:
    variables = {
        **hardening_vars(mariadb, "rvh"),
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
        drop_accounts(mariadb, USERS)
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
