"""inventories/production.example end to end: secrets from an ansible-vault file, not from -e."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from tests.integration.users.conftest import login
from tests.support.mariadb import MariaDB
from tests.support.runner import MODULE_PYTHON, ROOT, module_env, run_playbook

EXAMPLE = ROOT / "inventories" / "production.example"
VAULTED = {
    "vault_db_app_password": "Vaulted-App-Secret-4Kp!",
    "vault_db_migrate_password": "Vaulted-Migrate-Secret-5Lq!",
    "vault_db_backup_password": "Vaulted-Backup-Secret-6Mr!",
}


@pytest.fixture
def vaulted_inventory(tmp_path: Path, mariadb: MariaDB) -> Iterator[tuple[Path, Path]]:
    inventory = tmp_path / "production"
    shutil.copytree(EXAMPLE, inventory)
    example = (inventory / "group_vars" / "db" / "vault.yml.example").read_text()
    filled = example
    for key, value in VAULTED.items():
        filled = filled.replace(f'{key}: ""', f'{key}: "{value}"')
    assert filled != example, "vault.yml.example no longer lists the vault_ variables"
    vault = inventory / "group_vars" / "db" / "vault.yml"
    vault.write_text(filled)
    secret_file = tmp_path / "vault-pass"
    secret_file.write_text("test-vault-passphrase\n")
    secret_file.chmod(0o600)
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(secret_file),
            str(vault),
        ],
        check=True,
        capture_output=True,
        env=module_env(),
    )
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")
    mariadb.execute("CREATE DATABASE IF NOT EXISTS mutuapix")
    yield inventory, secret_file
    for user in ("mutuapix_app", "mutuapix_migrate", "mutuapix_backup"):
        for host in ("localhost", "10.0.1.%"):
            with contextlib.suppress(pymysql.err.MySQLError):
                mariadb.execute(f"DROP USER IF EXISTS `{user}`@`{host}`")
    mariadb.execute("DROP DATABASE IF EXISTS mutuapix")


def test_example_inventory_with_encrypted_vault(vaulted_inventory: tuple[Path, Path], mariadb: MariaDB) -> None:
    inventory, secret_file = vaulted_inventory
    # Only the connection is redirected to the test server; the passwords come from the vault.
    local = {
        "harden_hosts": "db1.example.com",
        "ansible_connection": "local",
        "ansible_python_interpreter": MODULE_PYTHON,
        "ansible_become": False,
        "hardening_login_unix_socket": mariadb.socket,
        "hardening_login_user": "root",
        "hardening_login_password": mariadb.ROOT_PASSWORD,
        "hardening_config_file": str(mariadb.login["config_file"]),
        "hardening_backup_dir": "",
        "hardening_app_env_file": "",
    }
    args = ["--vault-password-file", str(secret_file)]
    result = run_playbook(ROOT / "playbooks" / "harden.yml", inventory, local, args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for value in VAULTED.values():
        assert value not in result.stdout and value not in result.stderr
    login(mariadb, "mutuapix_app", VAULTED["vault_db_app_password"], "mutuapix").close()
    rows = mariadb.execute("SELECT Host, max_user_connections FROM mysql.user WHERE User = 'mutuapix_app'")
    assert sorted(rows) == [("10.0.1.%", 150), ("localhost", 150)]
    grants = mariadb.execute("SHOW GRANTS FOR `mutuapix_backup`@`localhost`")
    assert any("BINLOG MONITOR" in g[0] for g in grants)
    # Without the vault password the play cannot even read its secrets.
    locked = run_playbook(ROOT / "playbooks" / "harden.yml", inventory, local)
    assert locked.returncode != 0 and "vault" in (locked.stdout + locked.stderr).lower()


@pytest.mark.parametrize(
    ("playbook", "hosts"),
    [
        ("backup.yml", ["db1.example.com"]),
        ("harden.yml", ["db1.example.com"]),
        ("deploy.yml", ["web1.example.com", "web2.example.com"]),
        ("monitor.yml", ["web1.example.com", "web2.example.com"]),
        ("verify.yml", ["db1.example.com"]),
        ("restore.yml", ["db1.example.com"]),
    ],
)
def test_each_playbook_finds_its_hosts_in_the_example_inventory(playbook: str, hosts: list[str]) -> None:
    """Copied as the production inventory, the example must give every playbook its hosts: backup.yml on
    the `databases` group used to match nothing there, and the run succeeded without a backup."""
    proc = run_playbook(ROOT / "playbooks" / playbook, EXAMPLE, args=["--list-hosts"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = sorted({line.strip() for line in proc.stdout.splitlines() if line.strip().endswith(".example.com")})
    assert listed == hosts, proc.stdout
    assert "Could not match supplied host pattern" not in proc.stdout + proc.stderr
