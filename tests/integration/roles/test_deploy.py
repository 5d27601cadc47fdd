"""deploy.yml and rollback.yml with the stand-in Laravel app against the private MariaDB."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from tests.integration.roles.conftest import GOOD, PLAYBOOKS, App, table_digests, write_inventory
from tests.support import fake_laravel
from tests.support.runner import ANSIBLE_PLAYBOOK, ROOT, ensure_collection_path, module_env, run_playbook

BROKEN = {**GOOD, "2026_11_28_000002_add_fees": fake_laravel.FAILING_MIGRATION}
A5 = {"2026_11_28_000005_a": "CREATE TABLE a5 (id int PRIMARY KEY);\n"}


def recovery_seconds(output: str) -> float:
    match = re.search(r"recovery took ([\d.]+) s", output)
    assert match, output[-3000:]
    return float(match.group(1))


def test_deploy_goes_live_restarts_workers_and_rerun_is_safe(app: App) -> None:
    app.release("r1", GOOD)
    proc = app.deploy("r1")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert app.current == "r1"
    assert not app.in_maintenance
    assert "phone" in app.schema()["users"]
    assert "payment_methods" in app.schema()
    calls = app.artisan_log()
    commands = [command for _release, command in calls]
    # the order the runbook promises: build, check, down, migrate, restart workers on the new release, up
    assert commands == [
        "config:cache",
        "route:cache",
        "migrate:status --pending",
        "down --retry=60",
        "migrate --force",
        "queue:restart",
        "up",
    ], calls
    assert ("r1", "queue:restart") in calls
    assert len(list(app.predeploy.glob("*pre-deploy-r1-*.sql.zst"))) == 1
    record = (app.root / "releases" / "r1" / ".release.json").read_text()
    assert '"migrated": true' in record

    # the same release again: nothing pending, no maintenance window, no new backup
    before = len(calls)
    again = app.deploy("r1")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "it already was" in again.stdout
    assert app.current == "r1"
    assert [command for _release, command in app.artisan_log()[before:]] == ["migrate:status --pending"]
    assert len(list(app.predeploy.glob("*pre-deploy-r1-*.sql.zst"))) == 1

    # old releases go, and their pre-deploy backups with them; current and previous always stay
    app.release("r2", {**GOOD, "2026_11_28_000005_a": "CREATE TABLE a5 (id int PRIMARY KEY);\n"})
    assert app.deploy("r2").returncode == 0
    app.release("r3", {**GOOD, "2026_11_28_000006_b": "CREATE TABLE b6 (id int PRIMARY KEY);\n"})
    assert app.deploy("r3", rollback_keep_releases=1).returncode == 0
    assert sorted(p.name for p in (app.root / "releases").iterdir()) == ["r2", "r3"]
    assert sorted(p.name.split("-2026")[0] for p in app.predeploy.glob("*.sql.zst")) == [
        f"{app.database}-pre-deploy-r2",
        f"{app.database}-pre-deploy-r3",
    ]


@pytest.mark.deployed_r1
def test_failed_migration_restores_database_and_previous_release(app: App, tmp_path: Path) -> None:
    schema_before = app.schema()
    app.release("r2", BROKEN)

    # as CI runs it: the JUnit callback writes a report a CI server shows as a failed test
    junit_dir = tmp_path / "junit"
    proc = app.deploy(
        "r2", env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.junit", "JUNIT_OUTPUT_DIR": str(junit_dir)}
    )

    assert proc.returncode == 2
    assert "failed at step 'Run the migrations'" in proc.stdout
    [report] = junit_dir.glob("*.xml")
    cases = ElementTree.parse(report).getroot().iter("testcase")  # noqa: S314 (our own file)
    errors = [child.get("message", "") for case in cases for child in case if child.tag in ("failure", "error")]
    assert any("Fail the deploy" in e or "failed at step 'Run the migrations'" in e for e in errors), errors
    assert "transactions_typo" in proc.stdout  # the migration's own error is in the message
    assert recovery_seconds(proc.stdout) < 30
    assert app.current == "r1"
    assert not app.in_maintenance
    bad = app.root / "releases" / "r2" / ".release-bad.json"
    assert bad.exists() and "Run the migrations" in bad.read_text()
    # the half-applied migration is gone: same tables, same definitions, same rows and digests
    assert app.schema() == schema_before
    expected = table_digests(app.predeploy_manifest("r2"))
    assert table_digests(app.snapshot_manifest(tmp_path / "after")) == expected
    # the failure came before the switch: the workers were never pointed at r2
    assert ("r2", "queue:restart") not in app.artisan_log()

    # a release marked bad is refused, with a clear message
    again = app.deploy("r2")
    assert again.returncode != 0
    assert "marked bad" in again.stdout
    assert app.current == "r1"


@pytest.mark.deployed_r1
def test_a_pre_deploy_backup_refused_for_free_space_turns_maintenance_off_and_restores_nothing(
    app: App, tmpfs: Callable[..., Path]
) -> None:
    """docs/deploy.md step 4: maintenance off, database untouched, play fails.

    mysql_backup's refusal names the file it would have written (`path`); the rescue took that for
    a backup, tried to restore from it, and left the site in maintenance mode with 'RESTORE FAILED'.
    """
    before = app.schema()
    app.release("r2", {**GOOD, **A5})
    small = tmpfs("small-disk", size="512k")

    proc = app.deploy("r2", rollback_backup_dir=str(small))

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "failed at step 'Take the pre-deploy backup': not enough free space" in proc.stdout, proc.stdout[-3000:]
    assert "RESTORE FAILED" not in proc.stdout
    assert "Database: untouched (the failure came before the migrations)" in proc.stdout
    assert "Maintenance mode: off" in proc.stdout
    assert not app.in_maintenance and app.current == "r1"
    assert app.artisan_log()[-2:] == [("r1", "down --retry=60"), ("r1", "up")]
    assert app.schema() == before
    assert list(small.iterdir()) == []
    bad = json.loads((app.root / "releases" / "r2" / ".release-bad.json").read_text())
    assert bad["step"] == "Take the pre-deploy backup" and bad["database_restored_from"] == ""


@pytest.mark.deployed_r1
def test_failure_after_switch_puts_previous_release_back(app: App) -> None:
    app.release("r3", {**GOOD, "2026_11_28_000003_add_index": "CREATE INDEX users_phone_index ON users (phone);\n"})
    schema_before = app.schema()

    # check mode says what would happen and changes nothing
    check = app.deploy("r3", args=["--check"])
    assert check.returncode == 0, check.stdout[-3000:]
    assert "Check mode: would deploy release r3" in check.stdout
    assert not (app.root / "releases" / "r3").exists()
    assert app.current == "r1"

    # workers only restart on release r1 here, so the restart after the switch to r3 fails
    proc = app.deploy("r3", rollback_queue_restart_command="grep -q r1 VERSION")

    assert proc.returncode != 0
    assert "failed at step 'Restart the queue workers gracefully'" in proc.stdout
    assert app.current == "r1"
    assert not app.in_maintenance
    assert app.schema() == schema_before  # the index the migration created is gone again


@pytest.mark.deployed_r1
def test_a_release_that_cannot_be_recorded_is_rolled_back_before_the_site_goes_live(app: App) -> None:
    """The record is written behind maintenance mode: its failure never restores a database the site wrote to.

    Before, .release.json was written after 'Turn maintenance mode off': when that copy failed, the
    rescue restored the pre-deploy backup with r2 live, and what requests wrote since 'up' was gone.
    """
    before = app.schema()
    # a directory where .release.json goes: 'Record the release as deployed' fails
    fake_laravel.build_release(app.archives, "r2", {**GOOD, **A5}, files={".release.json/keep": "x\n"})
    mark = len(app.artisan_log())

    proc = app.deploy("r2")

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "failed at step 'Record the release as deployed'" in proc.stdout, proc.stdout[-3000:]
    calls = app.artisan_log()[mark:]
    assert ("r2", "up") not in calls, calls  # r2 never served a request
    assert calls[-2:] == [("r1", "queue:restart"), ("r1", "up")], calls
    assert "Database: restored from" in proc.stdout
    assert app.current == "r1" and not app.in_maintenance
    assert app.schema() == before


@pytest.mark.deployed_r1
def test_an_up_command_that_fails_after_lifting_maintenance_is_taken_back_down_before_the_restore(app: App) -> None:
    """'Turn maintenance mode off' fails, but the site did come up: maintenance goes on again, then the restore."""
    before = app.schema()
    app.release("r2", {**GOOD, **A5})
    lifted = app.base / "up-failed-once"
    up = f"sh -c 'php artisan up && if [ ! -e {lifted} ]; then touch {lifted}; exit 1; fi'"
    mark = len(app.artisan_log())

    proc = app.deploy("r2", rollback_up_command=up)

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "failed at step 'Turn maintenance mode off'" in proc.stdout, proc.stdout[-3000:]
    calls = app.artisan_log()[mark:]
    after_up = calls[calls.index(("r2", "up")) + 1 :]
    assert after_up == [("r2", "down --retry=60"), ("r1", "queue:restart"), ("r1", "up")], calls
    again_down = proc.stdout.index("Turn maintenance mode on again before the restore")
    assert again_down < proc.stdout.index("Restore the database from the pre-deploy backup (all or nothing)")
    assert app.current == "r1" and not app.in_maintenance
    assert app.schema() == before


@pytest.mark.deployed_r1
def test_maintenance_that_cannot_go_on_again_leaves_the_database_unrestored(app: App) -> None:
    """The site is up and the down command now fails: no restore behind live requests, and the play says why."""
    app.release("r2", {**GOOD, **A5})
    downed = app.base / "down-ran-once"
    down = f"sh -c 'if [ -e {downed} ]; then echo down refused >&2; exit 1; fi; touch {downed}; php artisan down --retry=60'"
    up = "sh -c 'php artisan up && exit 1'"

    proc = app.deploy("r2", rollback_down_command=down, rollback_up_command=up)

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "turning maintenance mode on again failed, so the database was not restored: down refused." in proc.stdout, (
        proc.stdout[-3000:]
    )
    assert "a5" in app.schema()  # r2's migration stays: nothing was restored behind the live site


@pytest.mark.deployed_r1
def test_rollback_on_demand_with_and_without_restore(app: App, tmp_path: Path) -> None:
    app.release("r4", {**GOOD, "2026_11_28_000004_wallets": "CREATE TABLE wallets (id int PRIMARY KEY);\n"})
    assert app.deploy("r4").returncode == 0
    assert "wallets" in app.schema()
    expected = table_digests(app.predeploy_manifest("r4"))

    check = app.rollback(rollback_restore_database=True, args=["--check"])
    assert check.returncode == 0, check.stdout[-3000:]
    assert "Check mode: would switch current from r4 to r1 after restoring" in check.stdout
    assert app.current == "r4"
    assert "wallets" in app.schema()

    # back with the database, explicitly asked for: r4's migration is undone
    proc = app.rollback(rollback_restore_database=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert app.current == "r1"
    assert not app.in_maintenance
    assert "wallets" not in app.schema()
    assert table_digests(app.snapshot_manifest(tmp_path / "after")) == expected
    assert "rolled back on request" in (app.root / "releases" / "r4" / ".release-bad.json").read_text()

    # forward again (explicitly allowed, r4 is marked bad now), then back without the database
    assert app.deploy("r4", rollback_allow_bad_release=True).returncode == 0
    proc = app.rollback(rollback_restore_database=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert app.current == "r1"
    assert "wallets" in app.schema()  # only the code went back

    # nothing before r1: a clear refusal, nothing changed
    proc = app.rollback(rollback_restore_database=False)
    assert proc.returncode != 0
    assert "names no previous release" in proc.stdout
    assert app.current == "r1"


@pytest.mark.deployed_r1
def test_deploying_the_live_release_again_keeps_the_release_to_roll_back_to(app: App) -> None:
    """r2 is live and one of its migrations is pending again; deploying r2 again migrates it.

    Its record used to name r2 itself as previous: rollback.yml then 'rolled back' to r2, exited 0
    and marked the live release bad, and the way back to r1 was lost.
    """
    app.release("r2", {**GOOD, **A5})
    assert app.deploy("r2").returncode == 0
    record_path = app.root / "releases" / "r2" / ".release.json"
    first = json.loads(record_path.read_text())
    assert first["previous"] == "r1"
    # the migration is pending again, as after a restore from an older backup
    app.server.execute("DROP TABLE a5", database=app.database)
    app.server.execute("DELETE FROM migrations WHERE migration = '2026_11_28_000005_a'", database=app.database)

    again = app.deploy("r2")

    assert again.returncode == 0, again.stdout[-3000:]
    assert "it already was" in again.stdout and "a5" in app.schema()
    record = json.loads(record_path.read_text())
    [newest] = set(str(p) for p in app.predeploy.glob("*pre-deploy-r2-*.sql.zst")) - {first["backup"]}
    assert record == {**first, "backup": newest, "migrated": True}

    back = app.rollback(rollback_restore_database=False)
    assert back.returncode == 0, back.stdout[-3000:]
    assert "current is release r1 (was r2)" in back.stdout
    assert app.current == "r1"


@pytest.mark.deployed_r1
def test_a_failed_redeploy_of_the_live_release_leaves_it_live_and_not_marked_bad(app: App) -> None:
    """Its migration row is gone but the table stays: the redeploy's migration fails ('already exists')."""
    app.release("r2", {**GOOD, **A5})
    assert app.deploy("r2").returncode == 0
    app.server.execute("DELETE FROM migrations WHERE migration = '2026_11_28_000005_a'", database=app.database)
    schema_before = app.schema()

    failed = app.deploy("r2")

    assert failed.returncode == 2, failed.stdout[-3000:]
    assert "failed at step 'Run the migrations'" in failed.stdout
    assert "Release r2 was live before this redeploy and stays live; it is not marked bad." in failed.stdout
    assert "is marked bad" not in failed.stdout
    assert app.current == "r2" and not app.in_maintenance
    assert not (app.root / "releases" / "r2" / ".release-bad.json").exists()
    assert app.schema() == schema_before  # restored from the redeploy's own pre-deploy backup
    back = app.rollback(rollback_restore_database=False)  # the way back to r1 is kept
    assert back.returncode == 0, back.stdout[-3000:]
    assert app.current == "r1"


@pytest.mark.deployed_r1
def test_rollback_refuses_a_record_naming_the_live_release_as_previous(app: App) -> None:
    """Such records exist (a redeploy of the live release wrote them): a rollback to itself is no rollback."""
    app.release("r2", GOOD)
    assert app.deploy("r2").returncode == 0
    record_path = app.root / "releases" / "r2" / ".release.json"
    record_path.write_text(json.dumps({**json.loads(record_path.read_text()), "previous": "r2"}))

    refused = app.rollback(rollback_restore_database=False)

    assert refused.returncode == 2, refused.stdout[-3000:]
    assert "the release to go back to is r2 itself, the live one; set rollback_to=" in refused.stdout
    assert app.current == "r2"
    assert not (app.root / "releases" / "r2" / ".release-bad.json").exists()


@pytest.mark.deployed_r1
def test_rollback_to_a_release_marked_bad_is_refused_unless_allowed(app: App) -> None:
    """rollback_to switched to a release marked bad (rolled back from, or whose migration failed) without a word,
    putting that code live again; a deploy of it is refused, and so is this now."""
    app.release("r2", GOOD)
    assert app.deploy("r2").returncode == 0
    assert app.rollback(rollback_restore_database=False).returncode == 0
    assert app.current == "r1" and (app.root / "releases" / "r2" / ".release-bad.json").exists()

    refused = app.rollback(rollback_to="r2", rollback_restore_database=False)

    assert refused.returncode == 2, refused.stdout[-3000:]
    assert "Release r2 was marked bad by an earlier deploy or rollback" in refused.stdout
    assert "rollback_allow_bad_release=true" in refused.stdout
    assert app.current == "r1" and not (app.root / "releases" / "r1" / ".release-bad.json").exists()

    allowed = app.rollback(rollback_to="r2", rollback_restore_database=False, rollback_allow_bad_release="true")
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    assert app.current == "r2"


def _second_server(app: App, **web2_vars: Any) -> Path:
    """A second deploy root, web2, on the same database as web1; returns web2's root."""
    web2 = app.base / "web2"
    (web2 / "shared" / "storage").mkdir(parents=True)
    fake_laravel.write_env(web2 / "shared" / ".env", app.database, app.server.socket, "root", app.server.ROOT_PASSWORD)
    common = {
        "rollback_database": app.database,
        "rollback_backup_dir": str(app.predeploy),
        "rollback_config_file": str(app.cnf),
        "rollback_build_commands": [],
    }
    write_inventory(
        app.inventory,
        {
            "app": {
                "web1": {**common, "rollback_deploy_root": str(app.root)},
                "web2": {**common, "rollback_deploy_root": str(web2), **web2_vars},
            }
        },
    )
    return web2


def test_a_later_server_failing_rolls_back_the_whole_fleet(app: App) -> None:
    """serial: 1 deploys web1 (which migrates) then web2; web2's health check fails.

    Before, web2 went back to the previous release alone: web1 stayed on the new release
    and the database stayed migrated under web2's old code. Now the run undoes what it did
    on web1 too: maintenance, database restored from web1's pre-deploy backup, web1 back
    on the previous release, workers restarted, maintenance off.
    """
    # the health check of web2 fails when the test says so
    web2 = _second_server(app, rollback_healthcheck_command="{{ web2_health | default('') }}")

    def current(root: Path) -> str:
        return Path(os.readlink(root / "current")).name

    app.release("r1", GOOD)
    first = app.deploy("r1")
    assert first.returncode == 0, first.stdout[-3000:]
    assert current(app.root) == current(web2) == "r1"
    before = app.schema()

    app.release("r2", {**GOOD, "2026_11_28_000005_a": "CREATE TABLE a5 (id int PRIMARY KEY);\n"})
    # web1 is live on r2 while web2 checks its health: a request writes a row, then web2's check fails
    live_write = "INSERT INTO audit_logs (user_id, action) VALUES (4242, 0x6c697665)"
    health = f"sh -c 'mariadb --defaults-extra-file={app.cnf} {app.database} -e \"{live_write}\"; exit 1'"
    failed = app.deploy("r2", web2_health=health)
    assert failed.returncode != 0, failed.stdout[-3000:]
    assert "Other servers of this run rolled back with it: web1" in failed.stdout, failed.stdout[-4000:]
    assert "database restored from" in failed.stdout
    assert current(app.root) == current(web2) == "r1"
    assert app.schema() == before  # the migration web1 ran is undone
    # docs/deploy.md: what was written while web1 was live is rolled away, kept only in <db>_old_*
    count = "SELECT COUNT(*) FROM audit_logs WHERE user_id = 4242"
    assert app.server.execute(count, database=app.database) == [(0,)]
    [(old,)] = app.server.execute("SHOW DATABASES LIKE %s", (f"{app.database}_old_%",))
    assert app.server.execute(count, database=old) == [(1,)]
    assert not app.in_maintenance and not (web2 / "shared" / "storage" / "framework" / "down").exists()
    assert (app.root / "releases" / "r2" / ".release-bad.json").exists()
    assert (web2 / "releases" / "r2" / ".release-bad.json").exists()
    web1_calls = [command for release, command in app.artisan_log() if release == "r2" or command != "config:cache"]
    # web1: the r2 deploy (down, migrate, restart, up), then the fleet rollback (down, restart on r1, up)
    assert web1_calls[-3:] == ["down --retry=60", "queue:restart", "up"], web1_calls
    assert ("r1", "queue:restart") in app.artisan_log()[-2:]
    recovery = recovery_seconds(failed.stdout)
    assert recovery < 120, recovery


def test_manual_rollback_with_restore_on_a_fleet_restores_once_where_the_backup_is(app: App) -> None:
    """rollback.yml -e rollback_restore_database=true on two servers sharing a database.

    Only web1 migrated, so only its record names a pre-deploy backup. web2 used to fail
    ("recorded no pre-deploy backup") and stop the play; now it rolls its code back and
    leaves the database to web1, which restores it.
    """
    web2 = _second_server(app)

    def current(root: Path) -> str:
        return Path(os.readlink(root / "current")).name

    app.release("r1", GOOD)
    assert app.deploy("r1").returncode == 0
    before = app.schema()
    app.release("r2", {**GOOD, "2026_11_28_000005_a": "CREATE TABLE a5 (id int PRIMARY KEY);\n"})
    deployed = app.deploy("r2")
    assert deployed.returncode == 0, deployed.stdout[-3000:]
    assert current(app.root) == current(web2) == "r2" and "a5" in app.schema()

    back = app.rollback(rollback_restore_database=True)
    assert back.returncode == 0, back.stdout[-4000:]
    assert current(app.root) == current(web2) == "r1"
    assert app.schema() == before
    assert "database restored on web1, which took the pre-deploy backup" in back.stdout, back.stdout[-3000:]
    assert not app.in_maintenance and not (web2 / "shared" / "storage" / "framework" / "down").exists()

    # a release that migrated nothing: no server has a backup of it, so a restore is refused
    app.release("r3", GOOD)
    assert app.deploy("r3").returncode == 0
    refused = app.rollback(rollback_restore_database=True)
    assert refused.returncode != 0
    assert "recorded no pre-deploy backup here or on the other servers of this play" in refused.stdout
    assert current(app.root) == current(web2) == "r3" and app.schema() == before


def test_a_fleet_rollback_whose_restore_fails_stays_in_maintenance_and_says_where_the_backup_is(app: App) -> None:
    """The peer's restore fails (its pre-deploy backup is gone): no server is taken out of maintenance."""
    gone = f"rm -f {app.predeploy}/{app.database}-pre-deploy-r2-*"
    web2 = _second_server(app, rollback_healthcheck_command="{{ web2_health | default('') }}")
    app.release("r1", GOOD)
    assert app.deploy("r1").returncode == 0
    app.release("r2", {**GOOD, "2026_11_28_000005_a": "CREATE TABLE a5 (id int PRIMARY KEY);\n"})
    failed = app.deploy("r2", web2_health=f"sh -c '{gone}; exit 1'")
    assert failed.returncode != 0
    assert "RESTORE FAILED: restoring the database migrated by web1" in failed.stdout, failed.stdout[-4000:]
    assert f"Restore by hand from {app.predeploy}/{app.database}-pre-deploy-r2-" in failed.stdout
    assert " on web1 (docs/deploy.md)" in failed.stdout
    assert "a5" in app.schema()  # not restored
    assert app.in_maintenance and (web2 / "shared" / "storage" / "framework" / "down").exists()


# --- review findings: interrupted deploys, views, encrypted backups, failing rescue steps -----------


def kill_deploy_when(app: App, release_id: str, reached: Callable[[], bool], **extra: Any) -> None:
    """Runs deploy.yml of ``release_id`` and kills it (the whole process group, as a lost SSH session or a
    cancelled AWX job would end it: no rescue runs) once ``reached()`` says so."""
    extra_vars = {
        "rollback_release_id": release_id,
        "rollback_release_archive": str(app.archives / f"{release_id}.tar.gz"),
        **extra,
    }
    ensure_collection_path()
    command = [
        str(ANSIBLE_PLAYBOOK),
        str(PLAYBOOKS / "deploy.yml"),
        "-i",
        str(app.inventory),
        "-e",
        json.dumps(extra_vars),
    ]
    # What the killed processes cannot clean up (the module payloads Ansible unpacks, its remote
    # temporary directories, the fake artisan's client option file) goes into a directory of the
    # test's own, removed afterwards, instead of being left in /tmp and ~/.ansible/tmp.
    scratch = Path(tempfile.mkdtemp(prefix="mutuapix-killed-deploy-"))
    proc = subprocess.Popen(
        command,
        env=module_env(
            {
                "TMPDIR": str(scratch),
                "ANSIBLE_LOCAL_TEMP": str(scratch / "local"),
                "ANSIBLE_REMOTE_TMP": str(scratch / "remote"),
            }
        ),
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not reached():
            assert time.monotonic() < deadline and proc.poll() is None, "the deploy never got there"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(scratch)


@pytest.mark.deployed_r1
def test_a_deploy_killed_mid_migration_is_refused_again_and_rollback_restores_the_clean_backup(app: App) -> None:
    """Killed in the middle of a migration, no rescue runs. Re-running the deploy took a new pre-deploy
    backup of the half-migrated database and 'rolled back' to it; now it refuses, and rollback.yml
    restores the backup the interrupted deploy took."""
    before = app.schema()
    slow = "ALTER TABLE transactions ADD COLUMN fee_cents int NOT NULL DEFAULT 0;\nSELECT SLEEP(30);\nCREATE TABLE never (id int);\n"
    app.release("r2", {**GOOD, "2026_11_28_000002_add_fees": slow})
    kill_deploy_when(app, "r2", lambda: "fee_cents" in app.schema()["transactions"])
    assert app.in_maintenance and app.current == "r1"
    [clean] = app.predeploy.glob("*pre-deploy-r2-*.sql.zst")
    marker = json.loads((app.root / ".deploy-in-progress.json").read_text())
    assert marker["release"] == "r2" and marker["previous"] == "r1" and marker["backup"] == str(clean)

    again = app.deploy("r2")

    assert again.returncode == 2, again.stdout[-3000:]
    assert "A deploy of release r2 to web1 was interrupted" in again.stdout, again.stdout[-3000:]
    assert f"the pre-deploy backup {clean} is the database as it was before" in again.stdout
    assert "playbooks/rollback.yml -e deploy_hosts=web1" in again.stdout
    assert list(app.predeploy.glob("*pre-deploy-r2-*.sql.zst")) == [clean]  # no backup of the half-migrated one
    assert "fee_cents" in app.schema()["transactions"] and app.in_maintenance

    check = app.rollback(args=["--check"])
    assert check.returncode == 0 and "Check mode: the deploy of r2 was interrupted" in check.stdout, check.stdout[
        -3000:
    ]
    assert "fee_cents" in app.schema()["transactions"]

    recovered = app.rollback()

    assert recovered.returncode == 0, recovered.stdout[-3000:]
    assert f"Recovered from the interrupted deploy of r2: database restored from {clean}" in recovered.stdout
    assert app.schema() == before
    assert app.current == "r1" and not app.in_maintenance
    assert not (app.root / ".deploy-in-progress.json").exists()
    assert "deploy interrupted" in (app.root / "releases" / "r2" / ".release-bad.json").read_text()
    app.release("r3", {**GOOD, **A5})
    assert app.deploy("r3").returncode == 0  # and deploys work again


@pytest.mark.deployed_r1
def test_a_deploy_killed_after_maintenance_went_off_is_finished_never_restored(app: App) -> None:
    """Killed between 'Turn maintenance mode off' and the removal of the mark: the deploy had succeeded and the
    site took writes. The mark sent the operator to rollback.yml, which restored the pre-deploy backup and rolled
    those writes away; now a flag beside the mark says finished, the deploy refuses without advising a restore,
    and rollback.yml turns maintenance mode off and removes the mark and the flag, leaving the database alone."""
    app.release("r2", {**GOOD, **A5})
    lifted = app.base / "up-ran"
    up = f"sh -c 'php artisan up && touch {lifted} && sleep 60'"
    kill_deploy_when(app, "r2", lifted.exists, rollback_up_command=up)
    assert app.current == "r2" and not app.in_maintenance and "a5" in app.schema()
    app.server.execute("INSERT INTO a5 VALUES (1)", database=app.database)  # a live write

    again = app.deploy("r2")

    assert again.returncode == 2, again.stdout[-3000:]
    assert "it had succeeded" in again.stdout and "must NOT be" in again.stdout, again.stdout[-3000:]
    assert "restores the database" not in again.stdout
    marker = json.loads((app.root / ".deploy-in-progress.json").read_text())
    assert marker["release"] == "r2" and marker["backup"], marker
    assert json.loads((app.root / ".deploy-in-progress.finishing").read_text())["release"] == "r2"
    check = app.rollback(args=["--check"])
    assert check.returncode == 0 and "it had succeeded, so it would turn maintenance mode off" in check.stdout

    finished = app.rollback()

    assert finished.returncode == 0, finished.stdout[-3000:]
    assert "the database was left as it is (live writes kept" in finished.stdout, finished.stdout[-3000:]
    assert app.server.execute("SELECT id FROM a5", database=app.database) == [(1,)]  # the write survived
    assert app.current == "r2" and not app.in_maintenance
    assert not (app.root / ".deploy-in-progress.json").exists()
    assert not (app.root / ".deploy-in-progress.finishing").exists()
    assert not (app.root / "releases" / "r2" / ".release-bad.json").exists()
    app.release("r3", {**GOOD, **A5, "2026_11_28_000006_b": "CREATE TABLE b6 (id int PRIMARY KEY);\n"})
    assert app.deploy("r3").returncode == 0  # and deploys work again


def test_a_deploy_limited_to_another_server_refuses_while_one_is_interrupted(app: App) -> None:
    """The mark is only on the server that migrated: a deploy run with --limit web2 after web1's was killed
    mid-migration found no mark, backed up the half-migrated database and migrated over it. Now the first server
    of a deploy looks at the whole group, and a server it cannot reach is a refusal too, with the way out."""
    web2 = _second_server(app)
    app.release("r1", GOOD)
    first = app.deploy("r1")
    assert first.returncode == 0, first.stdout[-3000:]
    before = app.schema()
    slow = "ALTER TABLE transactions ADD COLUMN fee_cents int NOT NULL DEFAULT 0;\nSELECT SLEEP(30);\nCREATE TABLE never (id int);\n"
    app.release("r2", {**GOOD, "2026_11_28_000002_add_fees": slow})
    kill_deploy_when(app, "r2", lambda: "fee_cents" in app.schema()["transactions"])
    backups = sorted(app.predeploy.iterdir())

    limited = app.deploy("r2", args=["--limit", "web2"])

    assert limited.returncode == 2, limited.stdout[-3000:]
    assert "A deploy to web1 was interrupted" in limited.stdout, limited.stdout[-3000:]
    assert "playbooks/rollback.yml -e deploy_hosts=web1" in limited.stdout
    assert sorted(app.predeploy.iterdir()) == backups  # no backup of the half-migrated database
    assert Path(os.readlink(web2 / "current")).name == "r1" and not (web2 / "releases" / "r2").exists()

    # a third server that cannot be reached: nobody can tell whether a deploy was killed there
    _add_unreachable_web3(app)
    assert app.rollback(deploy_hosts="web1").returncode == 0  # web1's interrupted deploy recovered
    assert app.schema() == before
    unknown = app.deploy("r2", args=["--limit", "web1,web2"])
    assert unknown.returncode == 2, unknown.stdout[-3000:]
    assert "Could not look for the mark of an interrupted deploy on web3 (unreachable)" in unknown.stdout
    # ansible-core 2.17 and 2.18 print the message only inside the task's JSON result (quotes escaped)
    assert """-e '{"rollback_fleet_hosts": ["web1", "web2"]}'""" in unknown.stdout.replace('\\"', '"'), unknown.stdout[
        -3000:
    ]
    assert sorted(app.predeploy.iterdir()) == backups and app.schema() == before

    app.release("r3", {**GOOD, **A5})
    done = app.deploy("r3", args=["--limit", "web1,web2"], rollback_fleet_hosts=["web1", "web2"])
    assert done.returncode == 0, done.stdout[-3000:]
    assert app.current == "r3" and Path(os.readlink(web2 / "current")).name == "r3"


@pytest.mark.deployed_r1
def test_an_up_that_fails_leaves_a_mark_that_restores_when_the_rescue_is_cut_short(app: App) -> None:
    """The rescue of a failed 'Turn maintenance mode off' rolls back: it takes the finishing flag back first, so
    the mark is a deploy in progress again and a rescue killed before its restore still gets the backup restored."""
    before = app.schema()
    app.release("r2", {**GOOD, **A5})
    rescued = app.base / "rescue-started"
    # `up` lifts maintenance and fails; the rescue's `down` (maintenance on again) then hangs: killed there
    down = f"sh -c 'if [ -e {app.root}/current/.up-failed ]; then touch {rescued}; sleep 60; fi; php artisan down --retry=60'"
    mark_up = f"sh -c 'touch {app.root}/current/.up-failed; php artisan up; exit 1'"
    kill_deploy_when(app, "r2", rescued.exists, rollback_up_command=mark_up, rollback_down_command=down)
    marker = json.loads((app.root / ".deploy-in-progress.json").read_text())
    assert marker["release"] == "r2" and marker["phase"] == "migrations", marker
    assert not (app.root / ".deploy-in-progress.finishing").exists()

    recovered = app.rollback()

    assert recovered.returncode == 0, recovered.stdout[-3000:]
    assert "Recovered from the interrupted deploy of r2: database restored from" in recovered.stdout
    assert app.schema() == before and app.current == "r1" and not app.in_maintenance


@pytest.mark.deployed_r1
def test_a_finishing_flag_the_rescue_cannot_remove_is_named_when_its_restore_fails_too(app: App) -> None:
    """`up` fails, the flag cannot be taken back (immutable here; in life a read-only or broken file system),
    and the restore fails too (its backup is gone): the report must not send the operator to rollback.yml as is,
    which would take the deploy for finished and lift maintenance mode over the half-migrated database."""
    before = app.schema()
    app.release("r2", {**GOOD, **A5})
    flag = app.root / ".deploy-in-progress.finishing"
    aside = app.base / "backup-aside"
    aside.mkdir()
    up = f"sh -c 'chattr +i {flag} && mv {app.predeploy}/{app.database}-pre-deploy-r2-* {aside}/ && php artisan up; exit 1'"
    try:
        failed = app.deploy("r2", rollback_up_command=up)
        assert failed.returncode == 2, failed.stdout[-3000:]
        assert "RESTORE FAILED" in failed.stdout, failed.stdout[-4000:]
        assert f"{flag} could not be removed" in failed.stdout and "remove it first" in failed.stdout, failed.stdout[
            -4000:
        ]
        assert app.in_maintenance and "a5" in app.schema()
    finally:
        subprocess.run(["chattr", "-i", str(flag)], check=False)
    # what the report says: remove the flag, then rollback.yml restores (the backup put back where it was)
    flag.unlink()
    for path in aside.iterdir():
        path.rename(app.predeploy / path.name)
    recovered = app.rollback()
    assert recovered.returncode == 0, recovered.stdout[-3000:]
    assert "Recovered from the interrupted deploy of r2: database restored from" in recovered.stdout
    assert app.schema() == before and app.current == "r1" and not app.in_maintenance


@pytest.mark.deployed_r1
def test_a_failed_migration_that_left_a_view_named_like_a_table_is_rolled_back(app: App) -> None:
    """The migration renamed `jobs` and left a view `jobs`: the restore failed on it (1050) every time."""
    before = app.schema()
    migration = "RENAME TABLE jobs TO jobs_v2;\nCREATE VIEW jobs AS SELECT * FROM jobs_v2;\nALTER TABLE transactions_typo ADD KEY k (id);\n"
    app.release("r2", {**GOOD, "2026_11_28_000003_jobs_v2": migration})

    proc = app.deploy("r2")

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "Rolled back automatically" in proc.stdout, proc.stdout[-3000:]
    assert "RESTORE FAILED" not in proc.stdout
    assert app.schema() == before
    assert app.current == "r1" and not app.in_maintenance
    assert not (app.root / ".deploy-in-progress.json").exists()


def test_an_encrypted_pre_deploy_backup_is_proven_restorable_before_migrating(app: App) -> None:
    """Recipients without an identity, or with one that opens nothing: found out before the migration ran,
    not by the restore after it failed (RESTORE FAILED, site left in maintenance mode)."""
    from ansible_collections.mutuapix.ops.plugins.module_utils._age import generate_identity

    identity, recipient = generate_identity()
    wrong, _wrong_recipient = generate_identity()
    app.release("r1", GOOD)
    assert app.deploy("r1").returncode == 0
    before = app.schema()
    app.release("r2", BROKEN)
    mark = len(app.artisan_log())

    missing = app.deploy("r2", rollback_backup_encrypt_recipients=[recipient])
    assert missing.returncode == 2, missing.stdout[-3000:]
    assert "rollback_backup_encrypt_recipients is set" in missing.stdout and "Nothing was changed" in missing.stdout
    assert app.artisan_log()[mark:] == [] and not (app.root / "releases" / "r2").exists()

    proc = app.deploy("r2", rollback_backup_encrypt_recipients=[recipient], rollback_restore_identity=wrong)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "failed at step 'Check that rollback_restore_identity opens the pre-deploy backup'" in proc.stdout, (
        proc.stdout[-3000:]
    )
    assert "cannot decrypt" in proc.stdout and "RESTORE FAILED" not in proc.stdout
    assert "Database: untouched (the failure came before the migrations)" in proc.stdout
    assert "migrate --force" not in [command for _release, command in app.artisan_log()[mark:]]
    assert app.schema() == before and app.current == "r1" and not app.in_maintenance
    assert not (app.root / ".deploy-in-progress.json").exists()

    good = app.deploy(
        "r2",
        rollback_backup_encrypt_recipients=[recipient],
        rollback_restore_identity=identity,
        rollback_allow_bad_release=True,
    )
    assert good.returncode == 2 and "Rolled back automatically" in good.stdout, good.stdout[-3000:]
    assert app.schema() == before


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.mark.deployed_r1
def test_a_rescue_step_that_fails_still_reports_marks_bad_and_notifies(app: App) -> None:
    """`up` always fails: the rescue stopped at its own 'Turn maintenance mode off' with no report, no
    webhook and no bad mark."""
    before = app.schema()
    app.release("r2", GOOD | A5)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Webhook.received = []
    try:
        proc = app.deploy(
            "r2",
            rollback_up_command="sh -c 'echo cannot remove storage/framework/down: Permission denied >&2; exit 1'",
            rollback_notify_url=f"http://127.0.0.1:{server.server_port}/hook",
        )
    finally:
        server.shutdown()
        server.server_close()

    assert proc.returncode == 2, proc.stdout[-3000:]
    expected = "ROLLBACK INCOMPLETE: its step 'Turn maintenance mode off on the previous release' failed: cannot remove"
    assert expected in proc.stdout, proc.stdout[-3000:]
    assert "Maintenance mode: ON, the site is down" in proc.stdout and "Current: release r1" in proc.stdout
    assert "Database: restored from" in proc.stdout
    assert [expected in hook["text"] for hook in _Webhook.received] == [True]
    assert (app.root / "releases" / "r2" / ".release-bad.json").exists()
    assert app.schema() == before and app.current == "r1" and app.in_maintenance
    assert not (app.root / ".deploy-in-progress.json").exists()  # the database is back: a deploy may run


@pytest.mark.deployed_r1
def test_rollback_says_the_site_is_live_when_maintenance_could_not_be_turned_on(app: App) -> None:
    app.release("r2", GOOD | A5)
    assert app.deploy("r2").returncode == 0

    proc = app.rollback(
        rollback_restore_database=True, rollback_down_command="sh -c 'echo storage not writable >&2; exit 1'"
    )

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "failed at 'Turn maintenance mode on for the restore': storage not writable." in proc.stdout, proc.stdout[
        -3000:
    ]
    assert (
        "Maintenance mode could not be turned on, so nothing was restored: the site is live on release r2"
        in proc.stdout
    )
    assert "still in maintenance mode" not in proc.stdout
    assert app.current == "r2" and not app.in_maintenance and "a5" in app.schema()


@pytest.mark.deployed_r1
def test_the_play_module_defaults_reach_the_roles_modules(app: App) -> None:
    """The role passed unset login options as `omit`, which drops them from the play's module_defaults too:
    with the connection only in `module_defaults: group/mutuapix.ops.mysql`, backup and restore failed."""
    before = app.schema()
    app.release("r2", BROKEN)
    write_inventory(
        app.inventory,
        {
            "app": {
                "web1": {
                    "rollback_deploy_root": str(app.root),
                    "rollback_database": app.database,
                    "rollback_backup_dir": str(app.predeploy),
                    "rollback_build_commands": [],
                }
            }
        },
    )
    playbook = app.base / "deploy_with_module_defaults.yml"
    playbook.write_text(
        "- hosts: app\n  gather_facts: false\n  serial: 1\n"
        f"  module_defaults:\n    group/mutuapix.ops.mysql:\n      config_file: {app.cnf}\n"
        "  roles:\n    - role: mutuapix.ops.rollback\n"
    )
    extra = {"rollback_release_id": "r2", "rollback_release_archive": str(app.archives / "r2.tar.gz")}

    proc = run_playbook(playbook, app.inventory, extra)

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "failed at step 'Run the migrations'" in proc.stdout, proc.stdout[-3000:]
    assert "Rolled back automatically" in proc.stdout, proc.stdout[-3000:]
    assert app.schema() == before


@pytest.mark.deployed_r1
def test_extra_vars_given_as_strings_behave_as_their_values(app: App) -> None:
    """AWX multiple-choice survey answers and `-e name=value` arrive as strings: "false", "1".

    A bad release was deployed again with rollback_allow_bad_release="false" (the survey's default
    answer), and `-e rollback_keep_releases=1` failed every successful deploy at 'Remove old releases'.
    """
    app.release("r2", BROKEN)
    assert app.deploy("r2").returncode == 2
    log_before = len(app.artisan_log())

    again = app.deploy("r2", rollback_allow_bad_release="false")

    assert again.returncode == 2, again.stdout[-3000:]
    assert "was marked bad by an earlier deploy or rollback" in again.stdout
    assert app.artisan_log()[log_before:] == []  # refused before anything ran: no maintenance window
    assert app.current == "r1"

    app.release("r3", {**GOOD, **A5})
    proc = app.deploy("r3", rollback_keep_releases="1", rollback_release_archive_remote_src="false")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert app.current == "r3"
    assert sorted(p.name for p in (app.root / "releases").iterdir()) == ["r1", "r3"]


def _add_unreachable_web3(app: App) -> None:
    """A third server in the group that cannot be reached (SSH to a closed port)."""
    inventory = yaml.safe_load(app.inventory.read_text())
    inventory["all"]["children"]["app"]["hosts"]["web3"] = {
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": 1,
    }
    app.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))


def _r3_killed_mid_migration_on_web1(app: App) -> tuple[Path, dict[str, Any]]:
    """web1 and web2 run r2 (deployed over r1); web1's deploy of r3 is killed mid-migration (the mark
    stays), web2 is never reached (serial: 1). Returns web2 and the schema before r3."""
    web2 = _second_server(app)
    app.release("r1", GOOD)
    assert app.deploy("r1").returncode == 0
    app.release("r2", {**GOOD, **A5})
    assert app.deploy("r2").returncode == 0
    before = app.schema()
    slow = "ALTER TABLE transactions ADD COLUMN fee_cents int NOT NULL DEFAULT 0;\nSELECT SLEEP(30);\nCREATE TABLE never (id int);\n"
    app.release("r3", {**GOOD, **A5, "2026_11_28_000006_fees": slow})
    kill_deploy_when(app, "r3", lambda: "fee_cents" in app.schema()["transactions"])
    assert (app.root / ".deploy-in-progress.json").exists()
    return web2, before


def test_rollback_of_the_whole_group_recovers_the_interrupted_deploy_and_leaves_the_other_servers_alone(
    app: App,
) -> None:
    """web1's deploy of r3 is killed mid-migration; web2 was never touched (serial: 1) and runs r2.

    rollback.yml run on the whole group (AWX's Rollback template has no limit) recovered web1 back to r2,
    then rolled web2 back on demand, one release too far, to r1: the fleet was split, web2 running r1's
    code on r2's schema, and r2 marked bad on web2. Now the servers without the mark are left as they are.
    """
    web2, before = _r3_killed_mid_migration_on_web1(app)

    check = app.rollback(args=["--check"])
    assert check.returncode == 0, check.stdout[-3000:]
    assert "would switch current" not in check.stdout, check.stdout[-3000:]

    back = app.rollback()

    assert back.returncode == 0, back.stdout[-3000:]
    assert "Recovered from the interrupted deploy of r3" in back.stdout
    assert "web2 is left as it is: this run recovers from the interrupted deploy on web1" in back.stdout, back.stdout[
        -3000:
    ]
    assert app.current == "r2" and app.schema() == before and not app.in_maintenance
    assert Path(os.readlink(web2 / "current")).name == "r2"
    assert not (web2 / "releases" / "r2" / ".release-bad.json").exists()

    # with the mark gone, the next rollback of the group is an ordinary one again
    again = app.rollback()
    assert again.returncode == 0, again.stdout[-3000:]
    assert app.current == "r1" and Path(os.readlink(web2 / "current")).name == "r1"


@pytest.mark.deployed_r1
def test_a_mark_that_cannot_record_the_backup_rolls_back_without_restoring(app: App) -> None:
    """'Record the pre-deploy backup in the mark of the deploy in progress' fails (the mark cannot be replaced:
    immutable here; in life a full or read-only file system): no migration has run. The rescue restored the
    pre-deploy backup all the same, a needless restore inside the maintenance window that rolls away whatever
    was written since the backup, and on a full disk fails (RESTORE FAILED, site left down). Now the database
    is left alone, and the mark (still saying no migration ran) tells rollback.yml the same."""
    before = app.schema()
    app.release("r2", {**GOOD, **A5})
    marker = app.root / ".deploy-in-progress.json"
    down = f"sh -c 'chattr +i {marker} && php artisan down --retry=60'"
    try:
        proc = app.deploy("r2", rollback_down_command=down)
    finally:
        subprocess.run(["chattr", "-i", str(marker)], check=False)

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "failed at step 'Record the pre-deploy backup in the mark of the deploy in progress'" in proc.stdout, (
        proc.stdout[-3000:]
    )
    assert "RESTORE FAILED" not in proc.stdout and "Database: restored" not in proc.stdout, proc.stdout[-3000:]
    [backup] = app.predeploy.glob("*pre-deploy-r2-*.sql.zst")
    assert f"Database: untouched (the failure came before the migrations; pre-deploy backup {backup} not needed)" in (
        proc.stdout
    ), proc.stdout[-3000:]
    assert app.server.execute("SHOW DATABASES LIKE %s", (f"{app.database}_old_%",)) == []  # no restore ran
    assert app.schema() == before and app.current == "r1" and not app.in_maintenance
    bad = json.loads((app.root / "releases" / "r2" / ".release-bad.json").read_text())
    assert bad["database_restored_from"] == ""
    # the mark could not be removed either: it still says that no migration ran, and rollback.yml restores nothing
    left = json.loads(marker.read_text())
    assert left["backup"] == "" and "no migration ran yet" in left["phase"], left
    recovered = app.rollback()
    assert recovered.returncode == 0, recovered.stdout[-3000:]
    assert "database untouched (no migration had run)" in recovered.stdout, recovered.stdout[-3000:]
    assert app.server.execute("SHOW DATABASES LIKE %s", (f"{app.database}_old_%",)) == []
    assert app.schema() == before and app.current == "r1" and not app.in_maintenance


def test_a_rollback_limited_to_another_server_refuses_while_one_is_interrupted(app: App) -> None:
    """web1's deploy of r3 is killed mid-migration; rollback.yml --limit web2 rolled web2 back on demand to r1,
    one release behind what web1's recovery puts back (r2), on a database the recovery then restores under it.
    Now it refuses, naming web1 and the ways out; without --limit web1 is recovered and web2 left alone."""
    web2, before = _r3_killed_mid_migration_on_web1(app)
    log = len(app.artisan_log())

    for args in (["--limit", "web2"], ["--limit", "web2", "--check"]):
        limited = app.rollback(args=args)
        assert limited.returncode == 2, limited.stdout[-3000:]
        assert "A deploy to web1 was interrupted" in limited.stdout, limited.stdout[-3000:]
        assert "Run playbooks/rollback.yml without --limit" in limited.stdout
        assert "-e deploy_hosts=web1 first" in limited.stdout
        assert Path(os.readlink(web2 / "current")).name == "r2"
        assert not (web2 / "releases" / "r2" / ".release-bad.json").exists()
    assert app.artisan_log()[log:] == [] and (app.root / ".deploy-in-progress.json").exists()

    back = app.rollback()
    assert back.returncode == 0, back.stdout[-3000:]
    assert "Recovered from the interrupted deploy of r3" in back.stdout
    assert app.current == "r2" and app.schema() == before and not app.in_maintenance
    assert Path(os.readlink(web2 / "current")).name == "r2"

    # with the mark gone, a limited rollback is an ordinary one again; a server of the group that cannot be
    # reached (web3, outside the run) does not stop it: rollback.yml is the way out of an emergency
    _add_unreachable_web3(app)
    again = app.rollback(args=["--limit", "web2"])
    assert again.returncode == 0, again.stdout[-3000:]
    assert Path(os.readlink(web2 / "current")).name == "r1" and app.current == "r2"


@pytest.mark.deployed_r1
def test_a_restore_after_a_deploy_that_rolled_back_by_itself_needs_the_live_release_named(app: App) -> None:
    """r3's migration fails and the deploy rolls back by itself to r2. The operator then runs rollback.yml with
    rollback_restore_database=true (in AWX a survey answer, "true") to "undo r3": it went one release further,
    to r1, restoring r2's pre-deploy backup and rolling away every write made since r2 went live. Now it is
    refused, nothing changed, until the live release is named in rollback_restore_confirm."""
    app.release("r2", {**GOOD, **A5})
    assert app.deploy("r2").returncode == 0
    app.release("r3", {**GOOD, **A5, "2026_11_28_000007_fees": fake_laravel.FAILING_MIGRATION})
    failed = app.deploy("r3")
    assert failed.returncode == 2 and "Rolled back automatically" in failed.stdout, failed.stdout[-3000:]
    assert app.current == "r2"
    app.server.execute("INSERT INTO a5 VALUES (7)", database=app.database)  # a write made after the rollback
    log = len(app.artisan_log())

    for args in ([], ["--check"]):
        refused = app.rollback(args=args, rollback_restore_database="true")
        assert refused.returncode == 2, refused.stdout[-3000:]
        assert (
            "Release r3 was marked bad at" in refused.stdout
            and "(deploy failed; database restored from" in refused.stdout
        ), refused.stdout[-3000:]
        assert "This rollback would go one release further, to r1" in refused.stdout
        assert "-e rollback_restore_confirm=r2" in refused.stdout
    assert app.artisan_log()[log:] == []
    assert app.current == "r2" and app.server.execute("SELECT id FROM a5", database=app.database) == [(7,)]
    assert not (app.root / "releases" / "r2" / ".release-bad.json").exists()

    wrong = app.rollback(rollback_restore_database=True, rollback_restore_confirm="r3")
    assert wrong.returncode == 2 and "-e rollback_restore_confirm=r2" in wrong.stdout, wrong.stdout[-3000:]

    confirmed = app.rollback(rollback_restore_database=True, rollback_restore_confirm="r2")
    assert confirmed.returncode == 0, confirmed.stdout[-3000:]
    assert app.current == "r1" and "a5" not in app.schema()


def test_fleet_hosts_given_as_a_string_are_the_servers_it_names(app: App) -> None:
    """`-e rollback_fleet_hosts=web1,web2` (or an AWX text answer) is a string: it was taken character by
    character, 'w', 'e', 'b', '1', ',', none of them web2, so a deploy limited to web1 did not look at web2's
    mark of an interrupted deploy and migrated over the database it may have half-migrated. It now names
    web1 and web2."""
    web2 = _second_server(app)
    app.release("r1", GOOD)
    assert app.deploy("r1").returncode == 0
    mark = {"release": "r2", "previous": "r1", "database": app.database, "backup": "", "phase": "migrations"}
    (web2 / ".deploy-in-progress.json").write_text(json.dumps(mark))  # as a deploy killed on web2 leaves it
    app.release("r2", {**GOOD, **A5})
    backups = sorted(app.predeploy.iterdir())

    proc = app.deploy("r2", args=["--limit", "web1"], rollback_fleet_hosts="web1, web2")

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "A deploy to web2 was interrupted" in proc.stdout, proc.stdout[-3000:]
    assert app.current == "r1" and "a5" not in app.schema() and sorted(app.predeploy.iterdir()) == backups

    limited = app.rollback(args=["--limit", "web1"], rollback_fleet_hosts="web1,web2")
    assert limited.returncode == 2 and "A deploy to web2 was interrupted" in limited.stdout, limited.stdout[-3000:]
    assert app.current == "r1"
