"""monitor.yml / roles/monitoring run the way AWX runs it: the probes on a managed host, credentials on the controller."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.integration.roles.conftest import PLAYBOOKS, S3, S3_APP_KEY, S3_KEY_ID, write_inventory
from tests.support.runner import MODULE_PYTHON, run_playbook


def managed_host_python(path: Path) -> str:
    """An interpreter that, like a module on a host reached over SSH, does not see the controller's B2 variables."""
    path.write_text(
        f"#!/bin/sh\nexec env -u B2_APPLICATION_KEY_ID -u B2_APPLICATION_KEY -u AWS_ACCESS_KEY_ID "
        f'-u AWS_SECRET_ACCESS_KEY {MODULE_PYTHON} "$@"\n'
    )
    path.chmod(0o755)
    return str(path)


def test_backup_freshness_with_b2_keys_from_the_controllers_environment(s3_endpoint: S3, tmp_path: Path) -> None:
    """docs/monitoring.md (AWX): the B2 credential injects B2_APPLICATION_KEY_ID/KEY, monitoring_b2_key_id left empty."""
    bucket = s3_endpoint.new_bucket()
    fresh = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    name = f"app-{fresh:%Y%m%dT%H%M%SZ}.sql.zst"
    for key in (name, name + ".manifest.json"):
        s3_endpoint.client.put_object(Bucket=bucket, Key=f"web1/app/{key}", Body=b"{}")
    inventory = write_inventory(
        tmp_path / "inventory.yml",
        {"app": {"web1": {"ansible_python_interpreter": managed_host_python(tmp_path / "remote-python")}}},
    )
    variables = {
        "monitoring_state_dir": str(tmp_path / "state"),
        "monitoring_b2_bucket": bucket,
        "monitoring_b2_prefix": "web1/app/",
        "monitoring_b2_region": "us-west-004",
        "monitoring_b2_endpoint_url": s3_endpoint.url,
        "monitoring_b2_databases": ["app"],
    }
    env = {"B2_APPLICATION_KEY_ID": S3_KEY_ID, "B2_APPLICATION_KEY": S3_APP_KEY}

    proc = run_playbook(PLAYBOOKS / "monitor.yml", inventory, variables, args=["-v"], env=env)

    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "no B2 credentials" not in proc.stdout
    assert S3_APP_KEY not in proc.stdout + proc.stderr
