"""playbooks/monitor.yml (the monitoring role) end to end: real MariaDB, HTTP servers and webhook."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from tests.integration.monitoring.conftest import Queues, Server, posts, start_server
from tests.support.mariadb import MariaDB
from tests.support.runner import MODULE_PYTHON, ROOT, run_playbook

PLAYBOOK = ROOT / "playbooks" / "monitor.yml"


def monitor(mariadb: MariaDB, queues: Queues, tmp_path: Path, **extra: Any):
    option_file = tmp_path / "client.cnf"
    option_file.write_text("[client]\n")
    variables = {
        "monitoring_hosts": "localhost",
        "ansible_python_interpreter": MODULE_PYTHON,
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
        files = sorted(p.name for p in (tmp_path / "state").iterdir())
        state_files = [name for name in files if name.endswith(".json")]
        assert [name.split("-")[0] for name in state_files] == ["endpoint_check"] * 2 + ["queue_health"]
        assert state_files[2].startswith(f"queue_health-{queues.database}-")  # named by the module (server hash)
        assert len(state_files) == 3
        assert sorted(files) == sorted(state_files + [name + ".lock" for name in state_files])  # one lock each
        assert posts(webhook) == []

        queues.job(age_s=1200)
        http_server.status = 503
        failing = monitor(mariadb, queues, tmp_path, **common)
        assert failing.returncode != 0
        assert "unhealthy (probed from localhost):" in failing.stdout
        assert "the oldest pending job has waited" in failing.stdout and "answered HTTP 503" in failing.stdout
        assert len(posts(webhook)) == 2  # one alert per probe that changed state
        assert "s3cr3t" not in failing.stdout

        queues.clear()
        http_server.status = 200
        recovered = monitor(mariadb, queues, tmp_path, monitoring_fail_on_unhealthy=False, **common)
        assert recovered.returncode == 0, recovered.stdout[-3000:]
        assert [("RECOVERED" in p["text"]) for p in posts(webhook)] == [False, False, True, True]
    finally:
        broken.stop()


def test_report_keeps_every_probe_of_one_url(http_server: Server, tmp_path: Path):
    """Probes of one URL by IP address with different Host headers (and two that differ in nothing the key could
    show) each keep their entry in monitoring_report; a URL probed once keeps the URL as its key."""
    url, other = http_server.url, http_server.url + "?once"
    endpoints = [
        {"url": url, "headers": {"Host": "app.example.com"}},
        {"url": url, "headers": {"host": "admin.example.com"}, "expected_status": [204]},
        {"url": other, "name": "once"},
        {"url": url + "?twice"},
        {"url": url + "?twice", "expected_status": [500]},
    ]
    playbook = tmp_path / "report.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: mutuapix.ops.monitoring\n"
        "  tasks:\n    - ansible.builtin.copy:\n        content: '{{ monitoring_report | to_json }}'\n"
        f"        dest: {tmp_path / 'report.json'}\n        mode: '0600'\n"
    )
    variables = {
        "ansible_python_interpreter": MODULE_PYTHON,
        "monitoring_state_dir": str(tmp_path / "state"),
        "monitoring_endpoints": endpoints,
        "monitoring_fail_on_unhealthy": False,
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables))
    run = run_playbook(playbook, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])
    assert run.returncode == 0, run.stdout[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["endpoints"] == {
        f"{url} (Host: app.example.com)": True,
        f"{url} (Host: admin.example.com)": False,
        other: True,
        f"{url}?twice (#4)": True,
        f"{url}?twice (#5)": False,
    }
    assert [(e["key"], e["url"], e["name"], e["host"], e["healthy"]) for e in report["endpoint_results"]] == [
        (f"{url} (Host: app.example.com)", url, "", "app.example.com", True),
        (f"{url} (Host: admin.example.com)", url, "", "admin.example.com", False),
        (other, other, "once", "", True),
        (f"{url}?twice (#4)", f"{url}?twice", "", "", True),
        (f"{url}?twice (#5)", f"{url}?twice", "", "", False),
    ]
    assert "answered HTTP 200" in json.dumps(report["endpoint_results"][1]["problems"])
    assert report["healthy"] is False


def test_database_down_still_runs_every_probe_and_alerts(
    mariadb: MariaDB, queues: Queues, http_server: Server, webhook: Server, tmp_path: Path
):
    """The worst outage, database and site down, was the silent one: queue_health's failure ended the play."""
    # The server is reached through a link to its socket, removed for the outage: the same target
    # (the state file is named after the socket path) that stops answering.
    link = tmp_path / "db.sock"
    link.symlink_to(mariadb.socket)
    common = {
        "monitoring_endpoints": [{"url": http_server.url, "name": "app"}],
        "monitoring_notify_url": webhook.url,
        "monitoring_fail_on_unhealthy": False,  # probe errors fail the play anyway
        "monitoring_login_unix_socket": str(link),
    }
    assert monitor(mariadb, queues, tmp_path, **common).returncode == 0
    http_server.status = 500
    link.unlink()
    # plus an endpoint that cannot even be probed: its error must not hide the others either
    broken_config = {
        **common,
        "monitoring_endpoints": [{"url": "ftp://example.invalid/"}, *common["monitoring_endpoints"]],
    }
    down = monitor(mariadb, queues, tmp_path, **broken_config)
    assert down.returncode != 0
    assert "unhealthy (probed from localhost):" in down.stdout and "cannot connect to MySQL" in down.stdout
    assert "must be an absolute http:// or https:// URL" in down.stdout
    assert "answered HTTP 500" in down.stdout  # the endpoint was probed after the database error
    alerts = [a["check"] for post in posts(webhook) for a in post["mutuapix"]["alerts"]]
    assert sorted(alerts) == ["db_unreachable", "status"]
    assert mariadb.ROOT_PASSWORD not in down.stdout

    again = monitor(mariadb, queues, tmp_path, **common)
    assert again.returncode != 0 and len(posts(webhook)) == 2  # still down: no repeated alert

    http_server.status = 200
    link.symlink_to(mariadb.socket)
    back = monitor(mariadb, queues, tmp_path, **common)
    assert back.returncode == 0, back.stdout[-3000:]
    recovered = [r["check"] for post in posts(webhook) for r in post["mutuapix"]["recoveries"]]
    assert sorted(recovered) == ["db_unreachable", "status"]


def test_two_app_hosts_announce_a_change_once(
    mariadb: MariaDB, queues: Queues, http_server: Server, webhook: Server, tmp_path: Path
):
    """playbooks/monitor.yml runs on every app host (production.example: web1, web2), each with its own state
    directory, as on two machines; the database and the URL they probe are the same, so each change is one post."""
    inventory = tmp_path / "hosts.yml"
    hosts = {
        name: {"ansible_connection": "local", "monitoring_state_dir": str(tmp_path / name / "state")}
        for name in ("web1", "web2")
    }
    inventory.write_text(json.dumps({"all": {"children": {"app": {"hosts": hosts}}}}))
    option_file = tmp_path / "client.cnf"
    option_file.write_text("[client]\n")
    variables = {
        "ansible_python_interpreter": MODULE_PYTHON,
        "monitoring_queue_database": queues.database,
        "monitoring_login_unix_socket": mariadb.socket,
        "monitoring_login_user": "root",
        "monitoring_login_password": mariadb.ROOT_PASSWORD,
        "monitoring_config_file": str(option_file),
        "monitoring_endpoints": [{"url": http_server.url, "name": "app"}],
        "monitoring_notify_url": webhook.url,
        "monitoring_fail_on_unhealthy": False,
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables))

    def play() -> Any:
        return run_playbook(PLAYBOOK, inventory=inventory, args=["-e", f"@{vars_file}"])

    assert play().returncode == 0
    queues.job(age_s=1200)
    http_server.status = 503
    failing = play()
    assert failing.returncode == 0, failing.stdout[-3000:]
    alerts = sorted(a["check"] for post in posts(webhook) for a in post["mutuapix"]["alerts"])
    assert alerts == ["queue:default:wait", "status"], alerts  # not twice each
    queues.clear()
    http_server.status = 200
    assert play().returncode == 0
    recovered = sorted(r["check"] for post in posts(webhook) for r in post["mutuapix"]["recoveries"])
    assert recovered == ["queue:default:wait", "status"]
    assert not (tmp_path / "web2" / "state").exists()  # probed from the first host only


def test_the_plays_module_defaults_reach_queue_health(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    """No monitoring_login_*: the connection comes from module_defaults (here TCP, not the default port)."""
    option_file = tmp_path / "client.cnf"
    option_file.write_text("[client]\n")
    password = "Qmon-tcp-4-tests!"
    mariadb.execute("DROP USER IF EXISTS 'qmon_tcp'@'127.0.0.1'")
    mariadb.execute("CREATE USER 'qmon_tcp'@'127.0.0.1' IDENTIFIED BY %s", (password,))
    mariadb.execute(f"GRANT SELECT ON `{queues.database}`.* TO 'qmon_tcp'@'127.0.0.1'")
    login = {**mariadb.login_tcp, "login_user": "qmon_tcp", "login_password": password, "config_file": str(option_file)}
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Monitor with the connection in module_defaults",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "module_defaults": {"group/mutuapix.ops.mysql": login},
                    "roles": [{"role": "mutuapix.ops.monitoring"}],
                }
            ]
        )
    )
    variables = {
        "ansible_python_interpreter": MODULE_PYTHON,
        "monitoring_state_dir": str(tmp_path / "state"),
        "monitoring_queue_database": queues.database,
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables))
    queues.job(age_s=5)
    try:
        result = run_playbook(playbook, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])
        assert result.returncode == 0, result.stdout[-3000:]
        (state_path,) = (tmp_path / "state").glob(f"queue_health-{queues.database}-*.json")
        state = json.loads(state_path.read_text())
        assert state["failing"] == {}  # no false db_unreachable
        assert password not in result.stdout

        # a variable that is set still wins over module_defaults, key by key
        variables["monitoring_login_port"] = 1
        vars_file.write_text(json.dumps(variables))
        refused = run_playbook(playbook, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])
        assert refused.returncode != 0 and "qmon_tcp@127.0.0.1:1" in refused.stdout, refused.stdout[-3000:]
    finally:
        mariadb.execute("DROP USER IF EXISTS 'qmon_tcp'@'127.0.0.1'")


def test_monitor_role_rejects_bad_input(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    result = monitor(mariadb, queues, tmp_path, monitoring_endpoints=[{"name": "no url"}])
    assert result.returncode != 0
    assert "url" in result.stdout and "monitoring_endpoints" in result.stdout


def test_monitor_backup_freshness_through_b2_sync_status(tmp_path: Path):
    """The role's B2 wiring against b2_sync mode=status and a local S3 endpoint (moto)."""
    import boto3

    from tests.support.s3server import S3Server

    with S3Server() as server:
        s3 = boto3.client(
            "s3",
            endpoint_url=server.url,
            region_name="us-west-004",
            aws_access_key_id="test-key-id",
            aws_secret_access_key="test-application-key",
        )
        s3.create_bucket(Bucket="backups", CreateBucketConfiguration={"LocationConstraint": "us-west-004"})
        fresh = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        name = f"app-{fresh:%Y%m%dT%H%M%SZ}.sql.zst"
        for key in (name, name + ".manifest.json"):
            s3.put_object(Bucket="backups", Key=f"prod/db1/{key}", Body=b"{}")
        common = {
            "monitoring_hosts": "localhost",
            "ansible_python_interpreter": MODULE_PYTHON,
            "monitoring_state_dir": str(tmp_path / "state"),
            "monitoring_b2_bucket": "backups",
            "monitoring_b2_prefix": "prod/db1/",
            "monitoring_b2_region": "us-west-004",
            "monitoring_b2_endpoint_url": server.url,
            "monitoring_b2_key_id": "test-key-id",
            "monitoring_b2_application_key": "test-application-key",
            "monitoring_b2_databases": ["app"],
        }
        vars_file = tmp_path / "vars.json"
        vars_file.write_text(json.dumps({**common, "monitoring_b2_max_age_hours": 26}))
        ok = run_playbook(PLAYBOOK, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])
        assert ok.returncode == 0, ok.stdout[-3000:]
        # a newer backup whose manifest never arrived (its upload was cut): counted, never taken as the newest
        partial = f"app-{fresh + dt.timedelta(hours=1):%Y%m%dT%H%M%SZ}.sql.zst"
        s3.put_object(Bucket="backups", Key=f"prod/db1/{partial}", Body=b"cut")
        vars_file.write_text(json.dumps({**common, "monitoring_b2_max_age_hours": 1}))
        stale = run_playbook(PLAYBOOK, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])
        assert stale.returncode != 0
        assert "backups on B2 are older than 1 h or missing" in stale.stdout, stale.stdout[-3000:]
        assert "test-application-key" not in stale.stdout
        # the failure names what is stale: which database, its newest backup and its age, or that there is none
        assert re.search(rf"app \(newest {re.escape(name)}, 2\.\d+ h old, 1 without manifest\)", stale.stdout), (
            stale.stdout[-3000:]
        )
        missing = {**common, "monitoring_b2_databases": ["app", "billing"], "monitoring_b2_max_age_hours": 26}
        vars_file.write_text(json.dumps(missing))
        unhealthy = run_playbook(PLAYBOOK, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])
        assert unhealthy.returncode != 0
        assert "billing (no complete backup under backups/prod/db1/)" in unhealthy.stdout, unhealthy.stdout[-3000:]
        detail = unhealthy.stdout.split("older than 26 h or missing: ")[-1].split('"')[0]
        assert "app (" not in detail, detail  # fresh: not named

        # the backup role's layout: a prefix per host and database; every prefix is checked
        old = f"billing-{fresh - dt.timedelta(hours=28):%Y%m%dT%H%M%SZ}.sql.zst"
        for key in (old, old + ".manifest.json"):
            s3.put_object(Bucket="backups", Key=f"prod/db2/billing/{key}", Body=b"{}")
        several = {**common, "monitoring_b2_databases": [], "monitoring_b2_max_age_hours": 26}
        several["monitoring_b2_prefixes"] = ["prod/db1/", "prod/db2/billing/"]
        vars_file.write_text(json.dumps(several))
        both = run_playbook(PLAYBOOK, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])
        assert both.returncode != 0
        detail = both.stdout.split("older than 26 h or missing: ")[-1].split('"')[0]
        assert re.match(rf"prod/db2/billing/billing \(newest {re.escape(old)}, 30\.\d+ h old\)", detail), detail
        assert "prod/db1/" not in detail, detail  # app there is fresh
        several["monitoring_b2_max_age_hours"] = 31
        vars_file.write_text(json.dumps(several))
        fresh_enough = run_playbook(PLAYBOOK, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])
        assert fresh_enough.returncode == 0, fresh_enough.stdout[-3000:]
        # a status that cannot run (no such bucket) fails the play with the module's message for each prefix
        vars_file.write_text(json.dumps({**several, "monitoring_b2_bucket": "no-such-bucket"}))
        refused = run_playbook(PLAYBOOK, inventory="localhost,", args=["-c", "local", "-e", f"@{vars_file}"])
        assert refused.returncode != 0
        final = [line for line in refused.stdout.splitlines() if line.startswith("fatal:") and "unhealthy" in line]
        assert final and final[-1].count("the bucket does not exist") == 2, refused.stdout[-3000:]


def test_argument_specs_match_defaults():
    """meta/argument_specs.yml has exactly the keys and defaults of defaults/main.yml; secrets are no_log."""
    import yaml

    role = ROOT / "roles" / "monitoring"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults), set(options) ^ set(defaults)
    for name, value in defaults.items():
        assert name.startswith("monitoring_") and options[name].get("description"), name
        assert options[name].get("default") == value, name
    secrets = {name for name, spec in options.items() if spec.get("no_log")}
    assert secrets == {
        "monitoring_notify_url",
        "monitoring_login_password",
        "monitoring_b2_key_id",
        "monitoring_b2_application_key",
    }
