"""endpoint_check: documentation matches the argument spec; option errors are clear (no server needed)."""

from __future__ import annotations

import re

import yaml

from ansible_collections.mutuapix.ops.plugins.doc_fragments.alerts import ModuleDocFragment as AlertsFragment
from ansible_collections.mutuapix.ops.plugins.modules import endpoint_check
from tests.support.runner import run_module


def accepted_options(name: str, required: dict) -> set[str]:
    result = run_module(name, {**required, "zzz_not_an_option": 1})
    return set(re.search(r"Supported parameters include: (.*)\.$", result["msg"]).group(1).split(", "))


def test_documented_options_are_the_accepted_ones():
    doc = yaml.safe_load(endpoint_check.DOCUMENTATION)
    alerts = yaml.safe_load(AlertsFragment.DOCUMENTATION)["options"]
    assert doc["extends_documentation_fragment"] == ["mutuapix.ops.alerts"]
    assert not set(doc["options"]) & set(alerts)
    documented = set(doc["options"]) | set(alerts)
    assert documented == accepted_options("endpoint_check", {"url": "http://127.0.0.1/"})
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert "notify_url" in alerts


def test_return_and_examples_are_valid_yaml_with_fqcn():
    returned = yaml.safe_load(endpoint_check.RETURN)
    for key in ("healthy", "status", "latency_ms", "tls_days_left", "tls_not_after", "alerts", "recoveries"):
        assert "description" in returned[key] and "returned" in returned[key], key
    for task in yaml.safe_load(endpoint_check.EXAMPLES):
        assert "mutuapix.ops.endpoint_check" in task


def test_notify_url_is_no_log_and_bad_options_are_clear():
    result = run_module("endpoint_check", {"url": "http://127.0.0.1:1/", "expected_status": "abc"})
    assert result.failed and "expected_status" in result["msg"]
    masked = run_module(
        "endpoint_check", {"url": "notaurl", "notify_url": "https://hooks.slack.com/services/T0/B0/SECRETVALUE"}
    )
    assert masked.failed and "must be an absolute http" in masked["msg"]
    assert "SECRETVALUE" not in str(masked)


def test_headers_are_not_logged():
    result = run_module("endpoint_check", {"url": "notaurl", "headers": {"Authorization": "Bearer header-token-value"}})
    assert result.failed and "header-token-value" not in str(result)
