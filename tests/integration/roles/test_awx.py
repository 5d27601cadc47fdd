"""The playbooks run the way AWX runs them: ansible-runner, credentials in env vars and files, extra vars, no TTY."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tests.integration.roles.conftest import S3, S3_APP_KEY, S3_KEY_ID, App, write_client_cnf
from tests.support import fake_laravel
from tests.support.mariadb import MariaDB
from tests.support.runner import COLLECTIONS, ROOT


def run_like_awx(pdd: Path, playbook: str, inventory: dict, extravars: dict, envvars: dict) -> tuple[int, dict, str]:
    """ansible-runner with a private data dir as AWX lays it out; stdin closed, no terminal."""
    (pdd / "env").mkdir(parents=True, exist_ok=True)
    (pdd / "inventory").mkdir(exist_ok=True)
    if not (pdd / "project").exists():
        (pdd / "project").symlink_to(ROOT / "playbooks")
    (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (pdd / "env" / "extravars").write_text(yaml.safe_dump(extravars))
    (pdd / "env" / "envvars").write_text(
        yaml.safe_dump({"ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS), "ANSIBLE_NOCOLOR": "1", **envvars})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "B2_", "AWS_"))}
    # in the execution environment ansible-playbook is on PATH
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    runner = Path(sys.executable).parent / "ansible-runner"
    proc = subprocess.run(
        [str(runner), "run", str(pdd), "-p", playbook, "--ident", "job", "-j"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
        start_new_session=True,  # no controlling terminal, as in an AWX job
    )
    artifacts = pdd / "artifacts" / "job"
    status = {"status": (artifacts / "status").read_text(), "rc": int((artifacts / "rc").read_text())}
    stdout = (artifacts / "stdout").read_text()
    return proc.returncode, status, stdout


def test_backup_playbook_through_ansible_runner(
    mariadb: MariaDB, backup_db: str, s3_endpoint: S3, tmp_path: Path
) -> None:
    bucket = s3_endpoint.new_bucket()
    # An AWX "MySQL" credential injects an option file (0600) and points the role at it; the "B2"
    # credential injects environment variables. Neither ever appears in extra vars or output.
    cnf = write_client_cnf(mariadb, tmp_path / "mysql-credential.cnf")
    inventory = {
        "databases": {
            "hosts": {"db-awx": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
        }
    }
    extravars = {
        "backup_database": backup_db,
        "backup_dir": str(tmp_path / "backups"),
        "backup_install_packages": False,
        "backup_login_user": "",  # the account comes from the option file
        "backup_config_file": str(cnf),
        "backup_b2_bucket": bucket,
        "backup_b2_endpoint_url": s3_endpoint.url,
        "backup_b2_region": "us-west-004",
    }
    envvars = {"B2_APPLICATION_KEY_ID": S3_KEY_ID, "B2_APPLICATION_KEY": S3_APP_KEY}

    rc, status, stdout = run_like_awx(tmp_path / "pdd", "backup.yml", inventory, extravars, envvars)

    assert (rc, status) == (0, {"status": "successful", "rc": 0}), stdout[-3000:]
    assert "verified, 8 tables match the manifest" in stdout
    assert len(s3_endpoint.keys(bucket)) == 2
    # what AWX shows and stores: stdout and job events (artifacts/job/command records the job's
    # environment, as AWX's private data dir does, and is not part of the job's output)
    artifacts = tmp_path / "pdd" / "artifacts" / "job"
    everything = stdout + "".join(p.read_text() for p in (artifacts / "job_events").glob("*.json"))
    assert S3_APP_KEY not in everything
    assert MariaDB.ROOT_PASSWORD not in everything
    # the job events AWX stores are there and machine-readable
    events = [json.loads(p.read_text()) for p in (tmp_path / "pdd" / "artifacts" / "job" / "job_events").glob("*.json")]
    assert any(e.get("event") == "playbook_on_stats" for e in events)


def test_deploy_playbook_through_ansible_runner(app: App, tmp_path: Path) -> None:
    app.release("r1", {"2026_11_28_000001_add_phone": fake_laravel.GOOD_MIGRATION})
    app.release("r2", {"2026_11_28_000002_broken": fake_laravel.FAILING_MIGRATION})
    inventory = yaml.safe_load(app.inventory.read_text())
    inventory["all"]["vars"]["ansible_python_interpreter"] = sys.executable
    pdd = tmp_path / "pdd"

    def deploy(release: str) -> tuple[int, dict, str]:
        extravars = {
            "rollback_release_id": release,
            "rollback_release_archive": str(app.archives / f"{release}.tar.gz"),
        }
        return run_like_awx(pdd, "deploy.yml", inventory, extravars, {})

    rc, status, stdout = deploy("r1")
    assert (rc, status) == (0, {"status": "successful", "rc": 0}), stdout[-3000:]
    assert app.current == "r1"

    # a failed deploy is a failed job (non-zero rc) whose output names the step and the recovery time
    rc, status, stdout = deploy("r2")
    assert rc != 0 and status["status"] == "failed", stdout[-3000:]
    assert re.search(r"failed at step 'Run the migrations'.*recovery took [\d.]+ s", stdout, re.S)
    assert app.current == "r1"


CREDENTIAL_TYPES = ROOT / "docs" / "awx" / "credential_types"


def inject(credential_type: dict, filled: dict[str, str]) -> tuple[dict, dict]:
    """The extra vars and environment AWX injects for a credential of this type. An input the credential
    leaves empty is rendered as an empty string (ansible/awx#488), and so injected."""
    fields = {field["id"]: filled.get(field["id"], "") for field in credential_type["inputs"]["fields"]}
    env = ImmutableSandboxedEnvironment()

    def render(section: str) -> dict:
        return {
            k: env.from_string(v).render(**fields) for k, v in credential_type["injectors"].get(section, {}).items()
        }

    return render("extra_vars"), render("env")


def test_b2_credential_with_only_its_required_inputs_keeps_the_off_site_copy(
    mariadb: MariaDB, backup_db: str, s3_endpoint: S3, tmp_path: Path
) -> None:
    """The B2 credential type injects backup_b2_bucket/region as extra vars, above the group vars: an
    optional bucket left empty in AWX turned the off-site copy off, and the job still succeeded."""
    b2 = yaml.safe_load((CREDENTIAL_TYPES / "b2.yml").read_text())
    bucket = s3_endpoint.new_bucket()
    answers = {"key_id": S3_KEY_ID, "application_key": S3_APP_KEY, "region": "us-west-004", "bucket": bucket}
    required = set(b2["inputs"]["required"])
    extravars, envvars = inject(b2, {k: v for k, v in answers.items() if k in required})
    cnf = write_client_cnf(mariadb, tmp_path / "client.cnf")
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    # where the backups go (bucket, region) also set in the inventory, as docs/b2.md shows it
    group_vars = {
        "backup_database": backup_db,
        "backup_dir": str(tmp_path / "backups"),
        "backup_install_packages": False,
        "backup_login_user": "",
        "backup_config_file": str(cnf),
        "backup_verify": "never",
        "backup_b2_bucket": bucket,
        "backup_b2_region": "us-west-004",
        "backup_b2_endpoint_url": s3_endpoint.url,
    }
    inventory = {"databases": {"hosts": {"db-awx": host}, "vars": group_vars}}

    rc, status, stdout = run_like_awx(tmp_path / "pdd", "backup.yml", inventory, extravars, envvars)

    assert (rc, status) == (0, {"status": "successful", "rc": 0}), stdout[-3000:]
    assert len(s3_endpoint.keys(bucket)) == 2, stdout[-3000:]
