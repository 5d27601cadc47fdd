"""backup.yml / roles/backup on several hosts, with the off-site copy and the on-host schedule."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.release import __version__ as ANSIBLE_CORE_VERSION

from ansible_collections.mutuapix.ops.plugins.module_utils._age import generate_identity
from tests.integration.roles.conftest import PLAYBOOKS, S3, S3_APP_KEY, S3_KEY_ID, write_client_cnf, write_inventory
from tests.support.mariadb import MariaDB
from tests.support.runner import ANSIBLE_PLAYBOOK, COLLECTIONS, MODULE_PYTHON, run_playbook

S3_ENV = {"B2_APPLICATION_KEY_ID": S3_KEY_ID, "B2_APPLICATION_KEY": S3_APP_KEY}


class Webhook:
    """A local HTTP endpoint recording the JSON bodies posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


def host_vars(mariadb: MariaDB, database: str, base: Path, **extra: Any) -> dict[str, Any]:
    return {
        "backup_database": database,
        "backup_dir": str(base / "backups"),
        "backup_install_packages": False,
        "backup_login_user": "",  # the account comes from the option file
        "backup_config_file": str(write_client_cnf(mariadb, base / "client.cnf")),
        **extra,
    }


ANSIBLE_CORE = tuple(int(part) for part in ANSIBLE_CORE_VERSION.split(".")[:2])


class _ScheduledVarsLoader(yaml.SafeLoader):
    """vars.yml as the scheduled run reads it: Ansible's !unsafe marks values it never templates."""


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)


_ScheduledVarsLoader.add_constructor("!unsafe", _construct_unsafe)


def scheduled_vars(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_ScheduledVarsLoader)  # noqa: S506 - a SafeLoader subclass


def schedule_vars(etc: Path) -> dict[str, Any]:
    """An on-host schedule written under ``etc``; not activated (no systemd in the test machine)."""
    return {
        "backup_schedule": True,
        "backup_schedule_activate": False,
        "backup_schedule_config_dir": str(etc / "mutuapix-backup"),
        "backup_schedule_unit_dir": str(etc / "systemd"),
        "backup_schedule_wrapper": str(etc / "mutuapix-backup.sh"),
    }


def test_fleet_backup_one_host_failing(
    mariadb: MariaDB, backup_db: str, s3_endpoint: S3, tmp_path: Path, webhook: Webhook
) -> None:
    bucket = s3_endpoint.new_bucket()
    common = {
        "backup_b2_bucket": bucket,
        "backup_b2_endpoint_url": s3_endpoint.url,
        "backup_b2_region": "us-west-004",
        "backup_b2_keep_last": 3,
        "backup_notify_url": webhook.url,
    }
    (tmp_path / "h1").mkdir()
    (tmp_path / "h2").mkdir()
    good = host_vars(mariadb, backup_db, tmp_path / "h1", **common)
    # h2's server is down: its socket does not exist
    broken = host_vars(mariadb, backup_db, tmp_path / "h2", **common)
    broken["backup_config_file"] = str(tmp_path / "h2" / "down.cnf")
    (tmp_path / "h2" / "down.cnf").write_text(f"[client]\nuser=root\nsocket={tmp_path}/h2/no-server.sock\n")
    inventory = write_inventory(tmp_path / "inventory.yml", {"databases": {"h1": good, "h2": broken}})

    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory, env=S3_ENV)

    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "Backup of " + backup_db + " on h2 failed at 'Take the backup'" in proc.stdout
    assert "Backups failed on h2; succeeded on h1" in proc.stdout
    # h1 went all the way: backup, proof of restore, off-site copy under its own prefix
    [backup] = (tmp_path / "h1" / "backups" / backup_db).glob("*.sql.zst")
    assert stat.S_IMODE((tmp_path / "h1" / "backups" / backup_db).stat().st_mode) == 0o700
    assert "verified, 8 tables match the manifest" in proc.stdout
    # the job log keeps the file's SHA-256, to compare a manifest with later (docs/restore.md)
    assert f"sha256 {hashlib.sha256(backup.read_bytes()).hexdigest()}," in proc.stdout
    assert s3_endpoint.keys(bucket) == [f"h1/{backup_db}/{backup.name}", f"h1/{backup_db}/{backup.name}.manifest.json"]
    # h2 left nothing behind, and the webhook heard about h2 only
    assert not list((tmp_path / "h2" / "backups" / backup_db).glob("*.sql*"))
    assert [body["text"].split(" failed")[0] for body in webhook.bodies] == [f"Backup of {backup_db} on h2"]
    assert S3_APP_KEY not in proc.stdout + proc.stderr


def test_weekly_verification_runs_when_due(mariadb: MariaDB, backup_db: str, tmp_path: Path) -> None:
    inventory = write_inventory(
        tmp_path / "inventory.yml",
        {"databases": {"h1": host_vars(mariadb, backup_db, tmp_path, backup_verify="weekly", backup_keep_last=5)}},
    )
    first = run_playbook(PLAYBOOKS / "backup.yml", inventory)
    assert first.returncode == 0, first.stdout[-3000:]
    assert "verified, 8 tables match the manifest" in first.stdout
    stamp = tmp_path / "backups" / backup_db / ".last-verified"
    assert stamp.exists()

    second = run_playbook(PLAYBOOKS / "backup.yml", inventory)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "not verified in this run" in second.stdout
    assert len(list((tmp_path / "backups" / backup_db).glob("*.sql.zst"))) == 2

    # a proof older than the interval is due again
    old = stamp.stat().st_mtime - 8 * 86400
    os.utime(stamp, (old, old))
    third = run_playbook(PLAYBOOKS / "backup.yml", inventory)
    assert "verified, 8 tables match the manifest" in third.stdout


def test_a_backup_that_fails_its_proof_of_restore_is_set_aside_and_never_copied_off_site(
    mariadb: MariaDB, backup_db: str, s3_endpoint: S3, tmp_path: Path
) -> None:
    """Encrypted to a key whose identity the verification lacks: it cannot be proven, so it must not go off-site."""
    _identity, recipient = generate_identity()
    bucket = s3_endpoint.new_bucket()
    offsite = {"backup_b2_bucket": bucket, "backup_b2_endpoint_url": s3_endpoint.url, "backup_b2_region": "us-west-004"}
    vars_ = host_vars(mariadb, backup_db, tmp_path, backup_encrypt_recipients=[recipient], **offsite)
    inventory = write_inventory(tmp_path / "inventory.yml", {"databases": {"h1": vars_}})
    failed = run_playbook(PLAYBOOKS / "backup.yml", inventory, env=S3_ENV)
    assert failed.returncode != 0, failed.stdout[-3000:]
    assert "failed at 'Restore the backup into a scratch database" in failed.stdout, failed.stdout[-3000:]
    assert f"/{backup_db}/unverified/ so that it is not copied off-site" in failed.stdout
    folder = tmp_path / "backups" / backup_db
    [unverified] = (folder / "unverified").glob("*.sql.zst.age")
    assert (folder / "unverified" / f"{unverified.name}.manifest.json").exists()
    assert not list(folder.glob("*.sql*")) and s3_endpoint.keys(bucket) == []

    # the next run (verification off) copies its own backup off-site, never the unverified one
    vars_["backup_verify"] = "never"
    inventory = write_inventory(tmp_path / "inventory.yml", {"databases": {"h1": vars_}})
    second = run_playbook(PLAYBOOKS / "backup.yml", inventory, env=S3_ENV)
    assert second.returncode == 0, second.stdout[-3000:]
    [pushed] = folder.glob("*.sql.zst.age")
    assert s3_endpoint.keys(bucket) == [f"h1/{backup_db}/{pushed.name}", f"h1/{backup_db}/{pushed.name}.manifest.json"]


def test_the_play_module_defaults_reach_the_roles_modules(mariadb: MariaDB, backup_db: str, tmp_path: Path) -> None:
    """The connection only in the play's module_defaults: the role's unset backup_login_* must not erase it."""
    client_cnf = write_client_cnf(mariadb, tmp_path / "client.cnf")
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Back up with the connection from module_defaults",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "module_defaults": {"group/mutuapix.ops.mysql": {"config_file": str(client_cnf)}},
                    "roles": [
                        {
                            "role": "mutuapix.ops.backup",
                            "vars": {
                                "backup_database": backup_db,
                                "backup_dir": str(tmp_path / "backups"),
                                "backup_install_packages": False,
                                "backup_login_user": "",
                            },
                        }
                    ],
                }
            ]
        )
    )
    proc = run_playbook(
        playbook, "localhost,", args=["-c", "local", "-e", f"ansible_python_interpreter={MODULE_PYTHON}"]
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "verified, 8 tables match the manifest" in proc.stdout


def scheduled_host(mariadb: MariaDB, backup_db: str, tmp_path: Path, **extra: Any) -> tuple[Path, Path]:
    """One host with an on-host schedule written under tmp_path/etc (not activated), run with the
    ansible-core under test; returns the etc directory and the inventory."""
    etc = tmp_path / "etc"
    hv = host_vars(
        mariadb,
        backup_db,
        tmp_path,
        backup_schedule_method="systemd",
        **schedule_vars(etc),
        backup_schedule_ansible_playbook=str(ANSIBLE_PLAYBOOK),
        backup_schedule_python=sys.executable,
        backup_schedule_environment={"ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS)},
        backup_verify="never",
        **extra,
    )
    (etc / "systemd").mkdir(parents=True)
    return etc, write_inventory(tmp_path / "inventory.yml", {"databases": {"h1": hv}})


def test_schedule_on_host_runs_the_playbook_and_reports_failure(
    mariadb: MariaDB, backup_db: str, tmp_path: Path, webhook: Webhook
) -> None:
    etc, inventory = scheduled_host(
        mariadb,
        backup_db,
        tmp_path,
        backup_notify_url=webhook.url,
        backup_b2_application_key="not-really-used-but-secret-42",
    )
    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "not-really-used-but-secret-42" not in proc.stdout

    conf = etc / "mutuapix-backup"
    for name in ("vars.yml", "environment", "inventory.yml"):
        assert stat.S_IMODE((conf / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(conf.stat().st_mode) == 0o700
    timer = (etc / "systemd" / "mutuapix-backup.timer").read_text()
    assert "OnCalendar=*-*-* 03:15:00" in timer and "Persistent=true" in timer
    assert f"ExecStart={etc}/mutuapix-backup.sh" in (etc / "systemd" / "mutuapix-backup.service").read_text()
    # systemd itself loads both units (offline: no running systemd needed), ExecStart included
    units = [str(etc / "systemd" / name) for name in ("mutuapix-backup.service", "mutuapix-backup.timer")]
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], check=False, capture_output=True, text=True, timeout=120
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    scheduled = scheduled_vars(conf / "vars.yml")
    assert scheduled["backup_schedule"] is False and scheduled["backup_database"] == backup_db
    assert scheduled["backup_b2_application_key"] == "not-really-used-but-secret-42"  # only in the 0600 file

    # the timer's job, run by hand: the same playbook, locally, exit 0 and a new backup
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    before = set((tmp_path / "backups" / backup_db).glob("*.sql.zst"))
    run = subprocess.run(
        [str(etc / "mutuapix-backup.sh")], check=False, capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert len(set((tmp_path / "backups" / backup_db).glob("*.sql.zst")) - before) == 1
    assert not webhook.bodies

    # break it (the server "moves"): non-zero exit, the failure on stderr/journal, and the webhook
    scheduled["backup_config_file"] = str(tmp_path / "missing.cnf")
    scheduled["backup_login_unix_socket"] = str(tmp_path / "nowhere.sock")
    (conf / "vars.yml").write_text(yaml.safe_dump(scheduled))
    run = subprocess.run(
        [str(etc / "mutuapix-backup.sh")], check=False, capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode != 0
    assert "mutuapix-backup: FAILED" in run.stderr
    assert len(webhook.bodies) == 1
    assert "failed at 'Take the backup'" in webhook.bodies[0]["text"]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            {"backup_schedule_method": "systemd", "backup_schedule_on_calendar": "daily at 3"},
            "backup_schedule_on_calendar 'daily at 3' is not a systemd calendar expression "
            "(Failed to parse calendar specification",
        ),
        (
            {"backup_schedule_method": "cron", "backup_schedule_cron_hour": "3am"},
            "backup_schedule_cron_hour '3am' must be cron fields",
        ),
    ],
    ids=["systemd-calendar", "cron-hour"],
)
def test_a_schedule_that_would_never_fire_is_refused_before_the_backup(
    mariadb: MariaDB, backup_db: str, tmp_path: Path, schedule: dict[str, str], message: str
) -> None:
    etc = tmp_path / "etc"
    hv = host_vars(mariadb, backup_db, tmp_path, **schedule_vars(etc), **schedule)
    inventory = write_inventory(tmp_path / "inventory.yml", {"databases": {"h1": hv}})
    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory)
    assert proc.returncode != 0
    assert message in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    # refused up front: no backup taken, no schedule file written
    assert not (tmp_path / "backups").exists() or not list((tmp_path / "backups").rglob("*.sql*"))
    assert not etc.exists()


def test_a_cron_schedule_on_a_host_without_cron_is_refused_before_the_backup(
    mariadb: MariaDB, backup_db: str, tmp_path: Path
) -> None:
    """No systemd and no cron: the backup used to run, then the play failed at the cron task with
    'Failed to find required executable "crontab"'. The host here: every program of PATH but crontab."""
    etc = tmp_path / "etc"
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for program in Path(directory).glob("*") if Path(directory).is_dir() else ():
            if program.name != "crontab" and not (bare / program.name).exists():
                (bare / program.name).symlink_to(program)
    hv = host_vars(
        mariadb,
        backup_db,
        tmp_path,
        **{**schedule_vars(etc), "backup_schedule_activate": True},
        backup_schedule_method="cron",
    )
    inventory = write_inventory(tmp_path / "inventory.yml", {"databases": {"h1": hv}})

    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory, env={"PATH": str(bare)})

    assert proc.returncode != 0
    assert "but cron is not installed (no crontab program)" in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert not (tmp_path / "backups").exists()
    assert not etc.exists()

    # with cron's crontab on PATH the schedule is accepted (check mode: /etc/cron.d is only read)
    full = tmp_path / "bin"
    full.mkdir()
    (full / "crontab").write_text("#!/bin/sh\nexit 0\n")
    (full / "crontab").chmod(0o755)
    planned = run_playbook(
        PLAYBOOKS / "backup.yml", inventory, args=["--check"], env={"PATH": f"{full}{os.pathsep}{os.environ['PATH']}"}
    )
    assert planned.returncode == 0, planned.stdout[-3000:]
    assert not etc.exists()


def test_the_webhook_url_never_shows_in_the_output(
    mariadb: MariaDB, backup_db: str, tmp_path: Path, webhook: Webhook
) -> None:
    """A Slack/Mattermost webhook URL is a credential (its path is the token): not in -v output nor AWX job events."""
    hv = host_vars(mariadb, backup_db, tmp_path, backup_notify_url=webhook.url + "/T0001/B0002/webhook-token-3141")
    hv["backup_config_file"] = str(tmp_path / "down.cnf")
    (tmp_path / "down.cnf").write_text(f"[client]\nuser=root\nsocket={tmp_path}/no-server.sock\n")
    inventory = write_inventory(tmp_path / "inventory.yml", {"databases": {"h1": hv}})

    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory, args=["-v"])

    assert proc.returncode != 0
    assert "failed at 'Take the backup'" in proc.stdout, proc.stdout[-3000:]
    assert len(webhook.bodies) == 1  # still notified
    assert "webhook-token-3141" not in proc.stdout + proc.stderr

    # a webhook that cannot be reached is reported, still without its URL
    hv["backup_notify_url"] = "http://127.0.0.1:1/T0001/B0002/webhook-token-3141"
    inventory = write_inventory(tmp_path / "inventory.yml", {"databases": {"h1": hv}})
    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory, args=["-v"])
    assert "The failure webhook (backup_notify_url) was not reached" in proc.stdout, proc.stdout[-3000:]
    assert "webhook-token-3141" not in proc.stdout + proc.stderr


def test_a_run_that_matches_no_database_host_fails(mariadb: MariaDB, backup_db: str, tmp_path: Path) -> None:
    """An inventory without the 'databases' group (or a mistyped backup_hosts) used to end with exit 0."""
    inventory = write_inventory(
        tmp_path / "inventory.yml", {"db": {"h1": host_vars(mariadb, backup_db, tmp_path, backup_verify="never")}}
    )
    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "No host matched 'databases': nothing was backed up" in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    # named with backup_hosts, the same inventory backs up
    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory, extra_vars={"backup_hosts": "db"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert len(list((tmp_path / "backups" / backup_db).glob("*.sql.zst"))) == 1


def test_check_mode_on_a_new_host_changes_nothing_and_succeeds(
    mariadb: MariaDB, backup_db: str, s3_endpoint: S3, tmp_path: Path
) -> None:
    bucket = s3_endpoint.new_bucket()
    offsite = {"backup_b2_bucket": bucket, "backup_b2_endpoint_url": s3_endpoint.url, "backup_b2_region": "us-west-004"}
    inventory = write_inventory(
        tmp_path / "inventory.yml", {"databases": {"h1": host_vars(mariadb, backup_db, tmp_path, **offsite)}}
    )

    planned = run_playbook(PLAYBOOKS / "backup.yml", inventory, args=["--check"], env=S3_ENV)

    assert planned.returncode == 0, planned.stdout[-3000:]
    assert not (tmp_path / "backups").exists()
    assert s3_endpoint.keys(bucket) == []

    # once the host has backups, check mode plans the off-site copy too, and still changes nothing
    done = run_playbook(PLAYBOOKS / "backup.yml", inventory, env=S3_ENV)
    assert done.returncode == 0, done.stdout[-3000:]
    files = sorted((tmp_path / "backups" / backup_db).iterdir())
    keys = s3_endpoint.keys(bucket)
    planned = run_playbook(PLAYBOOKS / "backup.yml", inventory, args=["--check"], env=S3_ENV)
    assert planned.returncode == 0, planned.stdout[-3000:]
    assert sorted((tmp_path / "backups" / backup_db).iterdir()) == files
    assert s3_endpoint.keys(bucket) == keys


def test_role_looped_over_databases_reports_each_databases_own_verification(
    mariadb: MariaDB, backup_db: str, tmp_path: Path
) -> None:
    """defaults/main.yml: one database per invocation, loop the role for several; one database's proof is not another's."""
    unproven = backup_db + "_nv"
    mariadb.execute(f"CREATE DATABASE `{unproven}`")
    mariadb.execute(f"CREATE TABLE `{unproven}`.t (id INT PRIMARY KEY)")
    try:
        client_cnf = write_client_cnf(mariadb, tmp_path / "client.cnf")
        task = {
            "name": "Back up each database",
            "ansible.builtin.include_role": {"name": "mutuapix.ops.backup"},
            "vars": {
                "backup_database": "{{ item.name }}",
                "backup_verify": "{{ item.verify }}",
                "backup_dir": str(tmp_path / "backups"),
                "backup_install_packages": False,
                "backup_login_user": "",
                "backup_config_file": str(client_cnf),
            },
            "loop": [{"name": backup_db, "verify": "always"}, {"name": unproven, "verify": "never"}],
        }
        playbook = tmp_path / "play.yml"
        playbook.write_text(
            yaml.safe_dump([{"name": "Back up", "hosts": "localhost", "gather_facts": False, "tasks": [task]}])
        )
        proc = run_playbook(
            playbook, "localhost,", args=["-c", "local", "-e", f"ansible_python_interpreter={MODULE_PYTHON}"]
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
        reports = [" ".join(line.split()) for line in proc.stdout.splitlines() if '"msg": "localhost: ' in line]
        assert len(reports) == 2, proc.stdout[-3000:]
        assert f"/{backup_db}/" in reports[0] and "verified, 8 tables match the manifest" in reports[0]
        assert f"/{unproven}/" in reports[1] and "not verified in this run" in reports[1], reports[1]
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS `{unproven}`")


def scheduled_push_host(
    mariadb: MariaDB, backup_db: str, s3_endpoint: S3, tmp_path: Path, **extra: Any
) -> tuple[str, Path, Path]:
    """``scheduled_host`` pushing to a new bucket; returns the bucket, the etc directory and the inventory."""
    bucket = s3_endpoint.new_bucket()
    etc, inventory = scheduled_host(
        mariadb,
        backup_db,
        tmp_path,
        backup_b2_bucket=bucket,
        backup_b2_endpoint_url=s3_endpoint.url,
        backup_b2_region="us-west-004",
        **extra,
    )
    return bucket, etc, inventory


def run_scheduled_and_check_push(
    etc: Path, tmp_path: Path, backup_db: str, s3_endpoint: S3, bucket: str, before: Any = ()
) -> None:
    """The timer's job, run by hand without B2_*, AWS_* or ANSIBLE_* variables (a systemd service or cron job
    has none): it must exit 0 and push a backup that was not in the bucket ``before``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "B2_", "AWS_"))}
    run = subprocess.run(
        [str(etc / "mutuapix-backup.sh")], check=False, capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    [newest] = sorted((tmp_path / "backups" / backup_db).glob("*.sql.zst"))[-1:]
    key = f"h1/{backup_db}/{newest.name}"
    assert key in s3_endpoint.keys(bucket) and key not in before


def test_scheduled_run_pushes_with_the_b2_keys_the_installing_run_had_from_its_environment(
    mariadb: MariaDB, backup_db: str, s3_endpoint: S3, tmp_path: Path
) -> None:
    """Installed from AWX or CI (keys injected as B2_APPLICATION_KEY_ID/KEY): the timer's run has no such environment."""
    bucket, etc, inventory = scheduled_push_host(mariadb, backup_db, s3_endpoint, tmp_path)
    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory, args=["-v"], env=S3_ENV)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert S3_APP_KEY not in proc.stdout + proc.stderr
    conf = etc / "mutuapix-backup"
    assert stat.S_IMODE((conf / "vars.yml").stat().st_mode) == 0o600
    first = s3_endpoint.keys(bucket)

    run_scheduled_and_check_push(etc, tmp_path, backup_db, s3_endpoint, bucket, before=first)


def test_scheduled_run_never_templates_a_secret_that_looks_like_jinja(
    mariadb: MariaDB, backup_db: str, s3_endpoint: S3, tmp_path: Path
) -> None:
    """A generated password may hold "{{" or "{%": its owner marks it !unsafe, and vars.yml dropped that mark,
    so every scheduled run failed templating it (undefined variable) or used something else."""
    bucket, etc, inventory = scheduled_push_host(
        mariadb, backup_db, s3_endpoint, tmp_path, backup_b2_key_id=S3_KEY_ID, backup_keep_daily=7
    )
    secret = "k{{ not_a_var }}q{% x %}"
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "h1.yml").write_text(f"---\nbackup_b2_application_key: !unsafe '{secret}'\n")

    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory)
    assert proc.returncode == 0, proc.stdout[-3000:]
    written = scheduled_vars(etc / "mutuapix-backup" / "vars.yml")
    assert written["backup_b2_application_key"] == secret and written["backup_keep_daily"] == 7

    run_scheduled_and_check_push(etc, tmp_path, backup_db, s3_endpoint, bucket, before=())


def test_scheduled_run_has_the_inline_vaulted_secrets_in_clear_in_its_0600_file(
    mariadb: MariaDB, backup_db: str, s3_endpoint: S3, tmp_path: Path
) -> None:
    """A `!vault |` backup_* variable: the timer's run has no vault password, so vars.yml must hold the value."""
    bucket, etc, inventory = scheduled_push_host(mariadb, backup_db, s3_endpoint, tmp_path, backup_b2_key_id=S3_KEY_ID)
    vault_password = tmp_path / "vault-password"
    vault_password.write_text("vault-password-for-the-test\n")
    vaulted = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK.parent / "ansible-vault"),
            "encrypt_string",
            "--vault-password-file",
            str(vault_password),
            "--name",
            "backup_b2_application_key",
            S3_APP_KEY,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "h1.yml").write_text("---\n" + vaulted.stdout)

    proc = run_playbook(PLAYBOOKS / "backup.yml", inventory, args=["--vault-password-file", str(vault_password)])
    if ANSIBLE_CORE < (2, 19):
        # Before 2.19 ansible-core refuses an inline-vaulted value for a no_log role option in the role's
        # argument validation, before any task runs (ansible/ansible#79624; docs/security.md says so and
        # recommends vault-encrypted files, which work on every release).
        assert proc.returncode != 0 and "Unknown parameter type" in proc.stdout, proc.stdout[-3000:]
        assert "AnsibleVaultEncryptedUnicode" in proc.stdout and not (etc / "mutuapix-backup").exists()
        return
    assert proc.returncode == 0, proc.stdout[-3000:]
    conf = etc / "mutuapix-backup"
    assert stat.S_IMODE((conf / "vars.yml").stat().st_mode) == 0o600
    assert scheduled_vars(conf / "vars.yml")["backup_b2_application_key"] == S3_APP_KEY
    first = s3_endpoint.keys(bucket)

    run_scheduled_and_check_push(etc, tmp_path, backup_db, s3_endpoint, bucket, before=first)


# systemctl as systemd_service calls it, for a host whose systemd only knows the units on disk under
# FAKE_SYSTEMD_UNIT_DIR: `show` answers LoadState=not-found for a unit that is not there (what systemd
# answers for the timer before the role installed it), enable/start are recorded in FAKE_SYSTEMD_STATE.
# The test machine runs no systemd, so this stands in for it; every call is logged.
FAKE_SYSTEMCTL = """\
import json, os, sys
units, state_file = os.environ["FAKE_SYSTEMD_UNIT_DIR"], os.environ["FAKE_SYSTEMD_STATE"]
state = json.load(open(state_file)) if os.path.exists(state_file) else {"calls": [], "enabled": [], "active": []}
args = [a for a in sys.argv[1:] if not a.startswith("--") and a != "-l"]
state["calls"].append(args)
rc = 0
if args and args[0] == "show":
    name = args[1]
    if os.path.exists(os.path.join(units, name)):
        active = "active" if name in state["active"] else "inactive"
        print(f"Id={name}\\nLoadState=loaded\\nActiveState={active}\\nSubState=dead\\nUnitFileState=disabled")
    else:
        print(f"Id={name}\\nLoadState=not-found\\nActiveState=inactive\\nSubState=dead")
elif args and args[0] == "is-enabled":
    name = args[1]
    if not os.path.exists(os.path.join(units, name)):
        print("Failed to get unit file state for " + name, file=sys.stderr)
        rc = 1
    elif name in state["enabled"]:
        print("enabled")
    else:
        print("disabled")
        rc = 1
elif args and args[0] == "list-unit-files":
    rc = 0 if os.path.exists(os.path.join(units, args[1])) else 1
elif args and args[0] in ("enable", "start"):
    state["enabled" if args[0] == "enable" else "active"].append(args[1])
json.dump(state, open(state_file, "w"))
sys.exit(rc)
"""


def test_check_mode_with_an_activated_timer_on_a_new_host_plans_it_and_changes_nothing(
    mariadb: MariaDB, backup_db: str, tmp_path: Path
) -> None:
    """--check before the first real run, the schedule activated (the default): nothing is installed yet
    (no configuration directory, no timer unit systemd knows), which check mode must not fail on."""
    etc = tmp_path / "etc"
    (etc / "systemd").mkdir(parents=True)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "systemctl").write_text(f"#!{sys.executable}\n{FAKE_SYSTEMCTL}")
    (fake_bin / "systemctl").chmod(0o755)
    state = tmp_path / "systemd-state.json"
    env = {
        "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SYSTEMD_UNIT_DIR": str(etc / "systemd"),
        "FAKE_SYSTEMD_STATE": str(state),
    }
    hv = host_vars(
        mariadb,
        backup_db,
        tmp_path,
        **{**schedule_vars(etc), "backup_schedule_activate": True},
        backup_schedule_method="systemd",
        backup_verify="never",
    )
    inventory = write_inventory(tmp_path / "inventory.yml", {"databases": {"h1": hv}})

    planned = run_playbook(PLAYBOOKS / "backup.yml", inventory, args=["--check"], env=env)

    assert planned.returncode == 0, planned.stdout[-3000:]
    assert not (etc / "mutuapix-backup").exists()
    assert not list((etc / "systemd").iterdir())
    assert not (tmp_path / "backups").exists()
    assert "mutuapix-backup.timer would be enabled and started" in " ".join(planned.stdout.split())
    calls = json.loads(state.read_text())["calls"] if state.exists() else []
    assert not [c for c in calls if c and c[0] in ("enable", "start", "daemon-reload")], calls

    # installed for real: the timer is enabled and started; check mode then asks systemd, and plans nothing
    done = run_playbook(PLAYBOOKS / "backup.yml", inventory, env=env)
    assert done.returncode == 0, done.stdout[-3000:]
    recorded = json.loads(state.read_text())
    assert recorded["enabled"] == ["mutuapix-backup.timer"] and recorded["active"] == ["mutuapix-backup.timer"]
    again = run_playbook(PLAYBOOKS / "backup.yml", inventory, args=["--check"], env=env)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "would be enabled and started" not in " ".join(again.stdout.split())
    after = json.loads(state.read_text())
    assert ["show", "mutuapix-backup.timer"] in after["calls"][len(recorded["calls"]) :]  # systemd was asked
    assert after["enabled"] == ["mutuapix-backup.timer"] and after["active"] == ["mutuapix-backup.timer"]
