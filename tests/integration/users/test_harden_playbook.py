"""playbooks/harden.yml with ansible-playbook against the private MariaDB."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.mutuapix.ops.plugins.module_utils._password_policy import native_password_hash
from tests.integration.users.conftest import drop_accounts, hardening_vars, login
from tests.support.mariadb import MariaDB
from tests.support.runner import MODULE_PYTHON, ROOT, run_playbook

PLAYBOOK = ROOT / "playbooks" / "harden.yml"
SECRETS = {
    "hardening_app_password": "App-Vaulted-Secret-7Qz!",
    "hardening_migrate_password": "Migrate-Vaulted-Secret-8Rx!",
    "hardening_backup_password": "Backup-Vaulted-Secret-9Sy!",
}
USERS = ("p5h_app", "p5h_migrate", "p5h_backup")


def recap(output: str) -> dict[str, int]:
    match = re.search(r"testdb\s*:\s*(.*)", output.split("PLAY RECAP", 1)[-1])
    assert match, output[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture
def harden(mariadb: MariaDB, tmp_path: Path) -> Iterator[Any]:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    db:\n      hosts:\n        testdb:\n"
        f"          ansible_connection: local\n          ansible_python_interpreter: {MODULE_PYTHON}\n"
    )
    env_file = tmp_path / "app" / ".env"
    env_file.parent.mkdir()
    env_file.write_text("DB_PASSWORD=whatever\n")
    env_file.chmod(0o666)
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o777)
    backups.chmod(0o777)
    base = {
        **hardening_vars(mariadb, "p5h"),
        "hardening_backup_dir": str(backups),
        "hardening_app_env_file": str(env_file),
    }

    def run(extra: dict[str, Any] | None = None, args: list[str] | None = None, secrets: dict[str, str] | None = None):
        variables = {**base, **(SECRETS if secrets is None else secrets), **(extra or {})}
        return run_playbook(PLAYBOOK, inventory, variables, args)

    run.env_file = env_file  # type: ignore[attr-defined]
    run.backups = backups  # type: ignore[attr-defined]
    run.base = base  # type: ignore[attr-defined]
    run.inventory = inventory  # type: ignore[attr-defined]
    yield run
    drop_accounts(mariadb, USERS)
    mariadb.execute("DROP DATABASE IF EXISTS p5h_db")


def existing(mariadb: MariaDB) -> set[str]:
    rows = mariadb.execute("SELECT User FROM mysql.user WHERE User LIKE 'p5h\\_%'")
    return {str(r[0]) for r in rows}


def test_check_apply_idempotent_and_no_secret_in_output(harden: Any, mariadb: MariaDB) -> None:
    mariadb.execute("CREATE USER IF NOT EXISTS ''@'localhost'")
    try:
        planned = harden(args=["--check", "--diff"])
        assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-2000:]
        assert recap(planned.stdout)["changed"] >= 3
        # The plan is printed: the statements, credentials redacted.
        assert (
            "CREATE USER `p5h_app`@`localhost` IDENTIFIED VIA mysql_native_password USING '<redacted>'"
            in planned.stdout
        )
        assert existing(mariadb) == set(), "check mode created accounts"
        assert mariadb.execute("SELECT 1 FROM mysql.user WHERE User = ''"), "check mode removed the anonymous account"
        assert stat.S_IMODE(harden.env_file.stat().st_mode) == 0o666

        first = harden(args=["-vvv"])
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
        assert recap(first.stdout)["changed"] == 4  # accounts, secure installation, two file modes
        hashes = [native_password_hash(v) for v in SECRETS.values()]
        for secret in [*SECRETS.values(), mariadb.ROOT_PASSWORD, *hashes, *(h[1:] for h in hashes)]:
            assert secret not in first.stdout and secret not in first.stderr
        assert "<redacted>" in first.stdout  # the statements are there, credentials masked
        assert existing(mariadb) == set(USERS)
        assert not mariadb.execute("SELECT 1 FROM mysql.user WHERE User = ''")
        assert stat.S_IMODE(harden.env_file.stat().st_mode) == 0o640
        assert stat.S_IMODE(harden.backups.stat().st_mode) == 0o700
        login(mariadb, "p5h_app", SECRETS["hardening_app_password"], "p5h_db").close()
        login(mariadb, "p5h_backup", SECRETS["hardening_backup_password"], "p5h_db").close()

        second = harden()
        assert second.returncode == 0, second.stdout[-3000:]
        assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
    finally:
        mariadb.execute("DROP USER IF EXISTS ''@'localhost'")


@pytest.mark.parametrize(
    ("secrets", "variable", "needle"),
    [
        (
            {**SECRETS, "hardening_migrate_password": "CHANGE_THIS_SECURE_PASSWORD"},
            "hardening_migrate_password",
            "placeholder",
        ),
        ({**SECRETS, "hardening_backup_password": "short-1A"}, "hardening_backup_password", "at least 16"),
        (
            {k: v for k, v in SECRETS.items() if k != "hardening_app_password"},
            "hardening_app_password",
            "missing required",
        ),
    ],
)
def test_weak_or_missing_secret_fails_before_any_change(
    harden: Any, mariadb: MariaDB, secrets: dict[str, str], variable: str, needle: str
) -> None:
    result = harden(secrets=secrets)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert variable in output and needle in output, output[-3000:]
    assert existing(mariadb) == set(), "an account was created before the secret check failed"
    assert stat.S_IMODE(harden.env_file.stat().st_mode) == 0o666
    if "CHANGE_THIS" in str(secrets.values()):
        assert "CHANGE_THIS_SECURE_PASSWORD" not in output


def test_readonly_needs_its_password(harden: Any, mariadb: MariaDB) -> None:
    result = harden(extra={"hardening_readonly_enabled": True})
    assert result.returncode != 0
    assert "hardening_readonly_password is required" in result.stdout, result.stdout[-3000:]
    assert existing(mariadb) == set()


def test_play_level_module_defaults_reach_the_role(harden: Any, mariadb: MariaDB, tmp_path: Path) -> None:
    """No hardening_login_* variable: the play's group/mutuapix.ops.mysql defaults are the connection."""
    playbook = tmp_path / "defaults.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Harden with the login from module_defaults",
                    "hosts": "db",
                    "gather_facts": False,
                    "module_defaults": {"group/mutuapix.ops.mysql": mariadb.login},
                    "roles": [{"role": "mutuapix.ops.hardening"}],
                }
            ],
            sort_keys=False,
        )
    )
    login_vars = ("hardening_login_unix_socket", "hardening_login_user", "hardening_login_password")
    variables = {k: v for k, v in harden.base.items() if k not in (*login_vars, "hardening_config_file")}
    result = run_playbook(playbook, harden.inventory, {**variables, **SECRETS})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert existing(mariadb) == set(USERS)


def test_port_from_the_option_file_is_honoured(harden: Any, mariadb: MariaDB, tmp_path: Path) -> None:
    """hardening_config_file alone, over TCP: the option file's port is the one, not a fixed 3306."""
    password = "Tcp-Admin-Pw-7xQ!"  # a test account on the private server
    mariadb.execute("CREATE USER p5tcp_admin@'127.0.0.1' IDENTIFIED BY %s", (password,))
    try:
        mariadb.execute("GRANT ALL PRIVILEGES ON *.* TO p5tcp_admin@'127.0.0.1' WITH GRANT OPTION")
        cnf = tmp_path / "admin.cnf"
        cnf.write_text(f'[client]\nhost=127.0.0.1\nport={mariadb.port}\nuser=p5tcp_admin\npassword="{password}"\n')
        cnf.chmod(0o600)
        login_vars = ("hardening_login_unix_socket", "hardening_login_user", "hardening_login_password")
        variables = {k: v for k, v in harden.base.items() if k not in login_vars}
        result = run_playbook(PLAYBOOK, harden.inventory, {**variables, **SECRETS, "hardening_config_file": str(cnf)})
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        assert existing(mariadb) == set(USERS)
        assert password not in output
    finally:
        mariadb.execute("DROP USER IF EXISTS p5tcp_admin@'127.0.0.1'")


def test_a_later_account_failing_its_plan_stops_before_any_change(harden: Any, mariadb: MariaDB) -> None:
    """The backup account's plan fails after connecting (statements: [] in the result): nothing is created."""
    mariadb.execute("CREATE USER p5h_backup@localhost IDENTIFIED BY 'Old-Backup-Pw-9xQ!'")
    # An authentication plugin this server does not have (as if the account came from a MySQL dump).
    mariadb.execute(
        "UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.plugin', 'caching_sha2_password') "
        "WHERE User = 'p5h_backup' AND Host = 'localhost'"
    )
    mariadb.execute("FLUSH PRIVILEGES")
    result = harden()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "p5h_backup (password from hardening_backup_password): plugin caching_sha2_password is MySQL's" in output, (
        output[-4000:]
    )
    assert existing(mariadb) == {"p5h_backup"}, (
        "an earlier account was changed before the plan failure stopped the play"
    )
    assert stat.S_IMODE(harden.env_file.stat().st_mode) == 0o666


@pytest.mark.parametrize(("database", "needle"), [("*", "database '*' refused"), ("mysql", "system schema mysql")])
def test_database_variable_cannot_make_grants_global(harden: Any, mariadb: MariaDB, database: str, needle: str) -> None:
    result = harden(extra={"hardening_database": database})
    output = result.stdout + result.stderr
    assert result.returncode != 0 and needle in output, output[-4000:]
    assert "(password from hardening_app_password)" in output
    assert existing(mariadb) == set()
