"""endpoint_check against real HTTP(S) servers on 127.0.0.1 and a real webhook receiver."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from ansible_collections.mutuapix.ops.plugins.module_utils._alerts import default_state_file
from tests.integration.monitoring.conftest import CertFactory, Server, posts, start_server
from tests.support.runner import ModuleResult, run_module


def probe(url: str, state: Path, **kwargs: Any) -> ModuleResult:
    return run_module("endpoint_check", {"url": url, "state_file": str(state), "timeout": 5, **kwargs})


def warnings_text(result: ModuleResult) -> str:
    return json.dumps(result.get("warnings", []))


def test_healthy_https_reports_status_latency_and_days_left(https_server, certs: CertFactory, tmp_path: Path):
    server = https_server(60)
    state = tmp_path / "sub" / "ep.json"
    result = probe(server.url, state, ca_path=str(certs.ca_path))
    assert not result.failed, result
    assert result["healthy"] is True
    assert result["status"] == 200
    assert result["tls_days_left"] == 60
    assert result["tls_not_after"].endswith("Z")
    assert isinstance(result["latency_ms"], int) and result["latency_ms"] < 5000
    assert result["alerts"] == [] and result["recoveries"] == []
    assert result["changed"] is False
    # first run: the missing state is a warning, not a recovery
    assert "does not exist yet" in warnings_text(result)
    assert result["previous_state_known"] is False
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    assert json.loads(state.read_text())["healthy"] is True


def test_certificate_expiring_soon_is_a_problem(https_server, certs: CertFactory, tmp_path: Path):
    server = https_server(5)
    result = probe(server.url, tmp_path / "s.json", ca_path=str(certs.ca_path), tls_min_days=14)
    assert result["healthy"] is False
    assert result["status"] == 200
    assert result["tls_days_left"] == 5
    assert "expires in 5 day(s)" in result["problems"]["tls_expiry"]
    assert [a["check"] for a in result["alerts"]] == ["tls_expiry"]
    # the same certificate is fine with a lower threshold
    ok = probe(server.url, tmp_path / "s2.json", ca_path=str(certs.ca_path), tls_min_days=3)
    assert ok["healthy"] is True, ok


def test_expired_certificate_fails_verification_and_reports_expiry(https_server, certs: CertFactory, tmp_path: Path):
    server = https_server(-3)
    result = probe(server.url, tmp_path / "s.json", ca_path=str(certs.ca_path))
    assert result["healthy"] is False
    assert result["status"] is None
    assert "expired" in result["problems"]["tls_invalid"]
    assert result["tls_days_left"] == -3
    assert "expired on" in result["problems"]["tls_expiry"]


def test_unknown_ca_is_tls_invalid_unless_validation_is_off(https_server, tmp_path: Path):
    server = https_server(90)
    result = probe(server.url, tmp_path / "s.json")
    assert result["healthy"] is False
    assert "unable to get local issuer certificate" in result["problems"]["tls_invalid"]
    assert result["tls_days_left"] == 90  # still read from the unverified certificate
    relaxed = probe(server.url, tmp_path / "s2.json", validate_certs=False)
    assert relaxed["healthy"] is True, relaxed
    assert relaxed["tls_days_left"] == 90


def test_http_500_is_unhealthy_unless_expected(tmp_path: Path):
    server = start_server(500)
    try:
        url = f"http://127.0.0.1:{server.port}/health"
        result = probe(url, tmp_path / "s.json")
        assert result["healthy"] is False
        assert result["status"] == 500
        assert "answered HTTP 500, expected 200" in result["problems"]["status"]
        assert result["tls_days_left"] is None
        expected = probe(url, tmp_path / "s2.json", expected_status=[500, 503], method="HEAD")
        assert expected["healthy"] is True, expected
        assert server.requests[-1]["method"] == "HEAD"
    finally:
        server.stop()


def test_refused_port_is_unreachable(refused_port: int, tmp_path: Path):
    result = probe(f"http://127.0.0.1:{refused_port}/", tmp_path / "s.json")
    assert not result.failed
    assert result["healthy"] is False
    assert result["status"] is None
    assert "connection refused" in result["problems"]["unreachable"]
    assert result["error"] == result["problems"]["unreachable"]


def test_server_down_is_no_recovery_of_what_it_cannot_show(
    https_server, certs: CertFactory, refused_port: int, webhook: Server, tmp_path: Path
):
    """A certificate about to expire, then the site goes down: 'unreachable' alerts, nothing recovers."""
    state = tmp_path / "s.json"
    soon = https_server(5)
    first = probe(soon.url, state, ca_path=str(certs.ca_path), notify_url=webhook.url)
    assert [a["check"] for a in first["alerts"]] == ["tls_expiry"]
    # the same state file, the site gone (a refused https port stands for the stopped server)
    down = probe(f"https://127.0.0.1:{refused_port}/health", state, notify_url=webhook.url)
    assert [a["check"] for a in down["alerts"]] == ["unreachable"]
    assert down["recoveries"] == [] and down["not_evaluated"] == ["tls_expiry"]
    assert "RECOVERED" not in json.dumps(posts(webhook))
    assert set(json.loads(state.read_text())["failing"]) == {"tls_expiry", "unreachable"}
    back = probe(soon.url, state, ca_path=str(certs.ca_path), notify_url=webhook.url)
    assert [r["check"] for r in back["recoveries"]] == ["unreachable"]
    assert back["alerts"] == []  # tls_expiry was never recovered, so it is not a new problem
    assert len(posts(webhook)) == 3

    # the same with an HTTP 500: 'down' is no "RECOVERED status"
    http_state = tmp_path / "http.json"
    server = start_server(500)
    try:
        assert probe(server.url, http_state)["problems"].keys() == {"status"}
    finally:
        server.stop()
    gone = probe(f"http://127.0.0.1:{refused_port}/health", http_state)
    assert gone["recoveries"] == [] and gone["not_evaluated"] == ["status"]


def test_fail_on_unhealthy_fails_after_saving_state(refused_port: int, tmp_path: Path):
    state = tmp_path / "s.json"
    result = probe(f"http://127.0.0.1:{refused_port}/", state, fail_on_unhealthy=True)
    assert result.failed
    assert "is unhealthy: " in result["msg"] and "connection refused" in result["msg"]
    assert "unreachable" in json.loads(state.read_text())["failing"]


def test_bad_url_and_unwritable_state_are_clear_errors(http_server: Server, tmp_path: Path):
    bad = probe("ftp://example.com/x", tmp_path / "s.json")
    assert bad.failed and "must be an absolute http:// or https:// URL" in bad["msg"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    unwritable = probe(http_server.url, blocker / "state.json")
    assert unwritable.failed and "cannot write state file" in unwritable["msg"]
    assert "Traceback" not in unwritable.stderr


def test_a_header_value_ending_in_a_line_break_is_sent_trimmed_never_echoed(http_server: Server, tmp_path: Path):
    # A vaulted token written as a YAML block scalar (`token: |`) ends in a line break.
    result = probe(http_server.url, tmp_path / "s.json", headers={"Authorization": "Bearer s3cr3t-hdr-token\n"})
    assert not result.failed, result
    assert result["healthy"] is True and result["status"] == 200
    assert http_server.requests[-1]["headers"]["Authorization"] == "Bearer s3cr3t-hdr-token"
    assert "s3cr3t-hdr-token" not in json.dumps(result) + result.stderr
    inside = probe(http_server.url, tmp_path / "s2.json", headers={"X-Token": "s3cr3t-hdr\r\nX-Evil: 1"})
    assert inside.failed and "X-Token" in inside["msg"] and "line break" in inside["msg"], inside
    assert "s3cr3t-hdr" not in json.dumps(inside) + inside.stderr
    assert "Traceback" not in inside.stderr
    assert not (tmp_path / "s2.json").exists()
    named = probe(http_server.url, tmp_path / "s3.json", headers={"X-Token:": "some-value"})  # "X-Token: abc"
    assert named.failed and "'X-Token:' is not a valid header name" in named["msg"], named
    assert "Traceback" not in named.stderr


def test_a_bad_port_in_the_url_is_a_clear_error(tmp_path: Path):
    for url, why in (("http://127.0.0.1:99999/health", "out of range"), ("https://127.0.0.1:44x/", "integer")):
        result = probe(url, tmp_path / "s.json")
        assert result.failed and url in result["msg"] and why in result["msg"], result
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "s.json").exists()


def test_check_mode_writes_no_state_and_sends_nothing(webhook: Server, refused_port: int, tmp_path: Path):
    state = tmp_path / "s.json"
    result = run_module(
        "endpoint_check",
        {"url": f"http://127.0.0.1:{refused_port}/", "state_file": str(state), "notify_url": webhook.url},
        check=True,
    )
    assert result["healthy"] is False
    assert [a["check"] for a in result["alerts"]] == ["unreachable"]
    assert not state.exists()
    assert posts(webhook) == []


def test_transition_table(http_server: Server, webhook: Server, tmp_path: Path):
    """OK->OK silent, OK->failing one alert, failing->failing silent until realert, failing->OK one recovery."""
    state = tmp_path / "state.json"
    secret_hook = webhook.url + "?token=s3cr3t-hook-token"

    def run(**kwargs: Any) -> ModuleResult:
        args = {"notify_url": secret_hook, "realert_after_s": 3600, **kwargs}
        result = probe(http_server.url, state, **args)
        assert not result.failed, result
        assert "s3cr3t-hook-token" not in json.dumps(result)
        return result

    first = run()  # unknown -> OK: nothing, no false recovery
    assert (first["alerts"], first["recoveries"], first["changed"]) == ([], [], False)
    assert run()["alerts"] == []  # OK -> OK
    assert posts(webhook) == []

    http_server.status = 500
    failing = run()  # OK -> failing: one alert
    assert [a["check"] for a in failing["alerts"]] == ["status"]
    assert failing["alerts"][0]["repeat"] is False
    assert failing["changed"] is True and failing["notified"] is True
    sent = posts(webhook)
    assert len(sent) == 1
    assert sent[0]["text"].startswith("[endpoint_check]") and "FAILING status" in sent[0]["text"]
    assert sent[0]["attachments"][0]["color"] == "danger"
    assert sent[0]["mutuapix"]["healthy"] is False

    still = run()  # failing -> failing: silent
    assert (still["alerts"], still["recoveries"], still["changed"]) == ([], [], False)
    assert len(posts(webhook)) == 1

    saved = json.loads(state.read_text())
    saved["failing"]["status"]["last_alert_at"] -= 3601  # an hour passes
    state.write_text(json.dumps(saved))
    reminder = run()  # failing -> failing after realert_after_s: one reminder
    assert [a["repeat"] for a in reminder["alerts"]] == [True]
    assert "STILL FAILING" in posts(webhook)[-1]["text"]
    assert run()["alerts"] == []  # the reminder reset the clock
    assert run(realert_after_s=0)["alerts"] == []  # 0: never remind

    http_server.status = 200
    recovered = run()  # failing -> OK: one recovery
    assert [r["check"] for r in recovered["recoveries"]] == ["status"]
    assert recovered["alerts"] == []
    assert "RECOVERED status" in posts(webhook)[-1]["text"]
    assert posts(webhook)[-1]["attachments"][0]["color"] == "good"
    assert run()["recoveries"] == []  # OK -> OK
    assert len(posts(webhook)) == 3  # alert, reminder, recovery


def test_times_from_a_clock_that_ran_ahead_never_silence_the_reminders(http_server: Server, tmp_path: Path):
    """A host whose clock ran a day ahead (fixed by NTP, a VM snapshot restored) left times in the future."""
    state = tmp_path / "state.json"
    http_server.status = 500
    assert [a["check"] for a in probe(http_server.url, state)["alerts"]] == ["status"]
    saved = json.loads(state.read_text())
    saved["failing"]["status"]["since"] += 86400
    saved["failing"]["status"]["last_alert_at"] += 86400
    state.write_text(json.dumps(saved))

    first = probe(http_server.url, state, realert_after_s=2)  # the reminder clock starts again now
    assert first["alerts"] == [], first
    time.sleep(2.2)
    reminder = probe(http_server.url, state, realert_after_s=2)
    assert [a["repeat"] for a in reminder["alerts"]] == [True], reminder  # not in a day's time
    http_server.status = 200
    recovered = probe(http_server.url, state)
    assert [r["check"] for r in recovered["recoveries"]] == ["status"]
    assert 0 <= recovered["recoveries"][0]["duration_s"] < 600, recovered


def test_corrupt_or_missing_state_never_gives_a_false_recovery(http_server: Server, webhook: Server, tmp_path: Path):
    state = tmp_path / "state.json"
    http_server.status = 500
    assert probe(http_server.url, state)["alerts"]  # failing recorded
    http_server.status = 200
    state.write_text("{not json")
    corrupt = probe(http_server.url, state, notify_url=webhook.url)
    assert not corrupt.failed
    assert corrupt["recoveries"] == [] and corrupt["alerts"] == []
    assert "corrupt" in warnings_text(corrupt)
    assert corrupt["previous_state_known"] is False
    assert json.loads(state.read_text())["healthy"] is True  # rewritten valid
    assert posts(webhook) == []

    # unknown -> failing alerts (one extra alert beats a silent outage)
    http_server.status = 500
    state.write_text('{"version": 1, "failing": []}')
    unknown_failing = probe(http_server.url, state)
    assert "unexpected format" in warnings_text(unknown_failing)
    assert [a["check"] for a in unknown_failing["alerts"]] == ["status"]
    # valid JSON, a field of the wrong type: the same warning, not a traceback
    state.write_text('{"version": 1, "failing": {"status": {"since": null}}}')
    odd = probe(http_server.url, state)
    assert not odd.failed, odd
    assert "failing.status.since is not a time" in warnings_text(odd) and "Traceback" not in odd.stderr
    assert [a["check"] for a in odd["alerts"]] == ["status"]


def test_webhook_failure_keeps_the_transition_and_retries(http_server: Server, tmp_path: Path):
    hook = start_server(500)
    try:
        state = tmp_path / "state.json"
        probe(http_server.url, state, notify_url=hook.url)
        http_server.status = 500
        failing = probe(http_server.url, state, notify_url=hook.url)
        assert not failing.failed
        assert [a["check"] for a in failing["alerts"]] == ["status"]
        assert failing["notified"] is False
        assert "HTTP 500" in failing["notify_error"]
        assert "webhook POST" in warnings_text(failing)
        saved = json.loads(state.read_text())
        assert "status" in saved["failing"]  # the state change is not lost
        assert len(saved["undelivered"]) == 1

        hook.status = 200
        retried = probe(http_server.url, state, notify_url=hook.url)
        assert retried["alerts"] == []  # no new transition...
        assert retried["notified"] is True  # ...but the undelivered alert went out now
        delivered = [p for p in posts(hook) if "FAILING status" in p["text"]]
        assert len(delivered) == 2  # the refused attempt plus the successful retry
        assert json.loads(state.read_text())["undelivered"] == []
    finally:
        hook.stop()


def test_a_host_header_asks_for_and_verifies_that_sites_certificate(sni_server, certs: CertFactory, tmp_path: Path):
    """Probing by IP with a Host header: SNI and verification use the Host name, so the site's own certificate is
    measured - not the default vhost's, and not checked against the IP address."""
    server = sni_server(90, {"app.example.test": 5})
    url = f"https://127.0.0.1:{server.port}/health"
    site = probe(
        url, tmp_path / "site.json", ca_path=str(certs.ca_path), headers={"Host": f"app.example.test:{server.port}"}
    )
    assert not site.failed, site
    assert site["tls_days_left"] == 5, site  # the site's certificate, about to expire
    assert set(site["problems"]) == {"tls_expiry"} and site["status"] == 200
    relaxed = probe(url, tmp_path / "relaxed.json", validate_certs=False, headers={"host": "app.example.test"})
    assert relaxed["tls_days_left"] == 5, relaxed
    default = probe(url, tmp_path / "default.json", ca_path=str(certs.ca_path))
    assert default["healthy"] is True and default["tls_days_left"] == 90  # no Host header: the address's certificate
    other = probe(url, tmp_path / "other.json", ca_path=str(certs.ca_path), headers={"Host": "other.example.test"})
    # (the name itself shows masked: headers are no_log as a whole)
    assert f"(at 127.0.0.1:{server.port}): Hostname mismatch" in other["problems"]["tls_invalid"]
    assert other["tls_days_left"] == 90  # what that name gets: the default certificate, read unverified


def test_default_state_files_of_different_endpoints_differ(http_server: Server, webhook: Server):
    """http and https of the same path, or two query strings, used to share one default state file and flap."""
    base = f"127.0.0.1:{http_server.port}/health"
    urls = [f"http://{base}", f"https://{base}", f"http://{base}?check=db", f"http://{base}?check=queue"]
    files = [run_module("endpoint_check", {"url": url, "timeout": 2}, check=True)["state_file"] for url in urls]
    assert len(set(files)) == 4, files
    by_host = [
        run_module("endpoint_check", {"url": urls[0], "headers": {"Host": h}, "timeout": 2}, check=True)["state_file"]
        for h in ("app.example.test", "api.example.test")
    ]
    assert len(set(by_host)) == 2 and not set(by_host) & set(files)
    assert all(f.startswith("/var/lib/mutuapix-ops/endpoint_check-http") for f in files[::2])
    assert files[1].startswith(f"/var/lib/mutuapix-ops/endpoint_check-https_127.0.0.1_{http_server.port}_health-")
    named = run_module("endpoint_check", {"url": urls[0], "name": "app", "timeout": 2}, check=True)["state_file"]
    assert named.startswith("/var/lib/mutuapix-ops/endpoint_check-app-") and named.endswith(".json")
    elsewhere = {"url": urls[0], "name": "app", "timeout": 2, "state_dir": "/srv/state"}
    assert run_module("endpoint_check", elsewhere, check=True)["state_file"] == named.replace(
        "/var/lib/mutuapix-ops", "/srv/state"
    )
    both = run_module("endpoint_check", {**elsewhere, "state_file": "/tmp/x.json"}, check=True)
    assert both.failed and "mutually exclusive" in both["msg"]


def test_probes_of_one_url_for_different_verdicts_keep_their_own_state(http_server: Server):
    """Two probes of one URL and Host header, one expecting 200 and one 503 (or HEAD), shared a state file:
    each run read the other's verdict as its own. Probes with the defaults keep the file name they had."""
    url = f"http://127.0.0.1:{http_server.port}/health"

    def state_file(**args: Any) -> str:
        return run_module("endpoint_check", {"url": url, "timeout": 2, **args}, check=True)["state_file"]

    default = state_file()
    variants = [state_file(expected_status=[503]), state_file(method="HEAD"), state_file(expected_status=[200, 204])]
    assert len({default, *variants}) == 4
    assert state_file(expected_status=[200]) == state_file(expected_status=[200, 200]) == default
    assert state_file(expected_status=[204, 200]) == variants[2]
    # the name as before the change: the hash of the URL alone
    assert default == default_state_file("endpoint_check", f"http_127.0.0.1_{http_server.port}/health", url, None)
