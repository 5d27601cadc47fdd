"""playbooks/monitor.yml (the monitoring role) end to end: real MariaDB, HTTP servers and webhook."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.integration.monitoring.conftest import Queues, Server, posts, start_server
from tests.support.mariadb import MariaDB
from tests.support.runner import ROOT, run_playbook

PLAYBOOK = ROOT / "playbooks" / "monitor.yml"


def monitor(mariadb: MariaDB, queues: Queues, tmp_path: Path, **extra: Any):
    option_file = tmp_path / "client.cnf"
    option_file.write_text("[client]\n")
    variables = {
        "monitoring_hosts": "localhost",
        "ansible_python_interpreter": sys.executable,
        "monitoring_state_dir": str(tmp_path / "state"),
        "monitoring_queue_database": queues.database,
        "monitoring_login_unix_socket": mariadb.socket,
        "monitoring_login_user": "root",
        "monitoring_login_password": mariadb.ROOT_PASSWORD,
        "monitoring_config_file": str(option_file),
        **extra,
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables))
    return run_playbook(PLAYBOOK, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])


def test_monitor_playbook_healthy_then_failing_then_recovered(
    mariadb: MariaDB, queues: Queues, http_server: Server, webhook: Server, tmp_path: Path
):
    broken = start_server(500)
    try:
        endpoints = [{"url": http_server.url, "name": "app"}, {"url": broken.url, "expected_status": [500]}]
        common = {"monitoring_endpoints": endpoints, "monitoring_notify_url": webhook.url}
        healthy = monitor(mariadb, queues, tmp_path, **common)
        assert healthy.returncode == 0, healthy.stdout[-3000:]
        state_files = sorted(p.name for p in (tmp_path / "state").iterdir())
        assert state_files[0].startswith("endpoint_check-") and f"queue_health-{queues.database}.json" in state_files
        assert len(state_files) == 3
        assert posts(webhook) == []

        queues.job(age_s=1200)
        http_server.status = 503
        failing = monitor(mariadb, queues, tmp_path, **common)
        assert failing.returncode != 0
        assert "localhost is unhealthy:" in failing.stdout
        assert "the oldest pending job has waited" in failing.stdout and "answered HTTP 503" in failing.stdout
        assert len(posts(webhook)) == 2  # one alert per probe that changed state
        assert "s3cr3t" not in failing.stdout

        relaxed = monitor(mariadb, queues, tmp_path, monitoring_fail_on_unhealthy=False, **common)
        assert relaxed.returncode == 0, relaxed.stdout[-3000:]
        assert len(posts(webhook)) == 2  # still failing: silent

        queues.clear()
        http_server.status = 200
        recovered = monitor(mariadb, queues, tmp_path, **common)
        assert recovered.returncode == 0, recovered.stdout[-3000:]
        assert [("RECOVERED" in p["text"]) for p in posts(webhook)] == [False, False, True, True]
    finally:
        broken.stop()


def test_monitor_role_rejects_bad_input(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    result = monitor(mariadb, queues, tmp_path, monitoring_endpoints=[{"name": "no url"}])
    assert result.returncode != 0
    assert "url" in result.stdout and "monitoring_endpoints" in result.stdout
