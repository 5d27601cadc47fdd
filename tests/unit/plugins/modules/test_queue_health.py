"""queue_health: documentation matches the argument spec (shared MySQL options included)."""

from __future__ import annotations

import re

import yaml

from ansible_collections.mutuapix.ops.plugins.doc_fragments.alerts import ModuleDocFragment as AlertsFragment
from ansible_collections.mutuapix.ops.plugins.doc_fragments.mysql import ModuleDocFragment
from ansible_collections.mutuapix.ops.plugins.modules import queue_health
from tests.support.runner import run_module


def accepted_options(name: str, required: dict) -> set[str]:
    result = run_module(name, {**required, "zzz_not_an_option": 1})
    return set(re.search(r"Supported parameters include: (.*)\.$", result["msg"]).group(1).split(", "))


def test_documented_options_are_the_accepted_ones():
    doc = yaml.safe_load(queue_health.DOCUMENTATION)
    # only the options: the fragment's notes are the fragment owner's business
    fragment = yaml.safe_load(ModuleDocFragment.DOCUMENTATION.split("\nrequirements:", maxsplit=1)[0])
    alerts = yaml.safe_load(AlertsFragment.DOCUMENTATION)["options"]
    assert doc["extends_documentation_fragment"] == ["mutuapix.ops.mysql", "mutuapix.ops.alerts"]
    documented = set(doc["options"]) | set(fragment["options"]) | set(alerts)
    assert documented == accepted_options("queue_health", {"database": "app"})
    assert set(doc["options"]["queues"]["suboptions"]) == {"name", "max_wait_s", "max_pending"}


def test_return_and_examples():
    returned = yaml.safe_load(queue_health.RETURN)
    for key in ("healthy", "queues", "failed_recent", "alerts", "recoveries"):
        assert "description" in returned[key] and "returned" in returned[key], key
    assert set(returned["queues"]["contains"]) >= {"pending", "reserved", "expired_reservations", "oldest_wait_s"}
    for task in yaml.safe_load(queue_health.EXAMPLES):
        assert "mutuapix.ops.queue_health" in task


def test_unreachable_server_is_a_clear_error(tmp_path):
    result = run_module(
        "queue_health",
        {
            "database": "app",
            "login_unix_socket": str(tmp_path / "no.sock"),
            "login_password": "pw-never-shown",
            "config_file": str(tmp_path / "none.cnf"),
            "state_file": str(tmp_path / "s.json"),
        },
    )
    assert result.failed
    assert "config_file" in result["msg"] and "does not exist" in result["msg"]
    assert not (tmp_path / "s.json").exists()  # a configuration error, not a database outage
    empty_cnf = tmp_path / "empty.cnf"
    empty_cnf.write_text("[client]\n")
    no_config = run_module(
        "queue_health",
        {
            "database": "app",
            "login_unix_socket": str(tmp_path / "no.sock"),
            "login_password": "pw-never-shown",
            "config_file": str(empty_cnf),
            "state_file": str(tmp_path / "s.json"),
        },
    )
    assert no_config.failed and "cannot connect to MySQL" in no_config["msg"]
    assert "is the server running" in no_config["msg"]
    assert "pw-never-shown" not in str(no_config)
    # the outage is a problem of its own, recorded and alerted before the task fails
    assert no_config["problems"] == {"db_unreachable": no_config["msg"]} and no_config["healthy"] is False
    assert [a["check"] for a in no_config["alerts"]] == ["db_unreachable"]


def test_queue_entries_need_a_name():
    result = run_module("queue_health", {"database": "app", "queues": [{"max_wait_s": 5}]})
    assert result.failed and "name" in result["msg"]


def test_probe_identity_covers_server_database_tables_and_queues():
    params = {"database": "app", "jobs_table": "jobs", "failed_jobs_table": "failed_jobs", "queues": None}
    base = queue_health.probe_identity("tcp:db1:3306", params)
    assert queue_health.probe_identity("tcp:db1:3306", dict(params)) == base
    assert queue_health.probe_identity("tcp:db2:3306", params) != base
    assert queue_health.probe_identity("socket:/run/mysqld/mysqld.sock", params) != base
    assert queue_health.probe_identity("tcp:db1:3306", {**params, "database": "app2"}) != base
    assert queue_health.probe_identity("tcp:db1:3306", {**params, "jobs_table": "jobs2"}) != base
    mail = {**params, "queues": [{"name": "mail", "max_wait_s": 60}, {"name": "default", "max_wait_s": 300}]}
    reordered = {**params, "queues": [{"name": "default", "max_wait_s": 10}, {"name": "mail", "max_wait_s": 5}]}
    # the queues watched count, their order and thresholds do not (a threshold change keeps the state)
    assert queue_health.probe_identity("tcp:db1:3306", mail) == queue_health.probe_identity("tcp:db1:3306", reordered)
    assert queue_health.probe_identity("tcp:db1:3306", mail) != base
