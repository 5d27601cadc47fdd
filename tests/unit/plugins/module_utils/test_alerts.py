"""Transition logic, state file handling and webhook delivery of _alerts."""

from __future__ import annotations

import http.server
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _alerts

NOW = 1_800_000_000.0


def run(previous, problems, now=NOW, realert=3600, not_evaluated=()):
    return _alerts.evaluate(
        previous, problems, now=now, realert_after_s=realert, probe="p", target="t", not_evaluated=not_evaluated
    )


def test_ok_to_ok_is_silent():
    first = run(None, {})
    assert (first.alerts, first.recoveries, first.previous_known) == ([], [], False)
    second = run(first.state, {})
    assert (second.alerts, second.recoveries, second.previous_known) == ([], [], True)


def test_ok_to_failing_alerts_once_then_silent_until_realert():
    ok = run(None, {}).state
    failing = run(ok, {"db": "down"}, now=NOW + 10)
    assert [(a["check"], a["repeat"]) for a in failing.alerts] == [("db", False)]
    assert failing.state["failing"]["db"]["since"] == NOW + 10
    still = run(failing.state, {"db": "still down"}, now=NOW + 3600)
    assert still.alerts == [] and still.recoveries == []
    assert still.state["failing"]["db"]["message"] == "still down"
    reminder = run(still.state, {"db": "still down"}, now=NOW + 10 + 3600)
    assert [a["repeat"] for a in reminder.alerts] == [True]
    assert reminder.alerts[0]["since"] == _alerts._iso(NOW + 10)  # the original start, not the reminder time
    assert run(reminder.state, {"db": "x"}, now=NOW + 20 + 3600).alerts == []


def test_realert_zero_never_reminds():
    state = run(None, {"db": "down"}).state
    assert run(state, {"db": "down"}, now=NOW + 10**7, realert=0).alerts == []


def test_failing_to_ok_recovers_once_with_duration():
    state = run(None, {"db": "down", "disk": "full"}).state
    partial = run(state, {"disk": "full"}, now=NOW + 120)
    assert [(r["check"], r["duration_s"]) for r in partial.recoveries] == [("db", 120)]
    assert partial.alerts == []
    assert "recovered: down" in partial.recoveries[0]["message"]
    done = run(partial.state, {}, now=NOW + 180)
    assert [r["check"] for r in done.recoveries] == ["disk"]
    assert run(done.state, {}, now=NOW + 240).recoveries == []


def test_unknown_state_alerts_on_failure_and_never_recovers():
    assert [a["check"] for a in run(None, {"db": "down"}).alerts] == ["db"]
    assert run(None, {}).recoveries == []


def test_a_failure_not_evaluated_now_is_kept_not_recovered():
    """A certificate expiring soon, then the server goes down: no 'RECOVERED tls_expiry'."""
    soon = run(None, {"tls_expiry": "expires in 5 day(s)"}).state
    down = run(soon, {"unreachable": "refused"}, now=NOW + 7200, not_evaluated={"status", "tls_expiry"})
    assert [a["check"] for a in down.alerts] == ["unreachable"]
    assert down.recoveries == [] and down.not_evaluated == ["tls_expiry"]
    # carried over as it was: no reminder either, although realert_after_s has passed
    assert down.state["failing"]["tls_expiry"] == soon["failing"]["tls_expiry"]
    back = run(down.state, {"tls_expiry": "expires in 5 day(s)"}, now=NOW + 7260)
    assert [r["check"] for r in back.recoveries] == ["unreachable"]
    assert [(a["check"], a["repeat"]) for a in back.alerts] == [("tls_expiry", True)]  # a reminder, not a new alert
    assert back.alerts[0]["since"] == _alerts._iso(NOW)
    renewed = run(back.state, {}, now=NOW + 7320)
    assert [(r["check"], r["duration_s"]) for r in renewed.recoveries] == [("tls_expiry", 7320)]


def test_every_other_check_not_evaluated():
    state = run(None, {"queue:default:wait": "waited", "failed_jobs": "11 failed"}).state
    outage = run(state, {"db_unreachable": "refused"}, now=NOW + 60, not_evaluated={_alerts.EVERY_OTHER_CHECK})
    assert [a["check"] for a in outage.alerts] == ["db_unreachable"] and outage.recoveries == []
    assert outage.not_evaluated == ["failed_jobs", "queue:default:wait"]
    assert set(outage.state["failing"]) == {"db_unreachable", "failed_jobs", "queue:default:wait"}
    back = run(outage.state, {"failed_jobs": "11 failed"}, now=NOW + 120)
    assert sorted(r["check"] for r in back.recoveries) == ["db_unreachable", "queue:default:wait"]
    assert back.alerts == [] and back.not_evaluated == []


def test_load_state_missing_corrupt_and_wrong_shape(tmp_path: Path):
    path = tmp_path / "s.json"
    state, warning = _alerts.load_state(str(path))
    assert state is None and "does not exist yet" in warning
    for text, expected in [
        ("{oops", "corrupt"),
        (b"\xff\xfe", "corrupt"),
        ("[]", "unexpected format"),
        ('{"version": 99, "failing": {}}', "unexpected format"),
        ('{"version": 1, "failing": {"a": 3}}', "unexpected format"),
    ]:
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        state, warning = _alerts.load_state(str(path))
        assert state is None and expected in warning, text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"version": 1, "failing": {"status": {"since": null}}}', "failing.status.since is not a time"),
        ('{"version": 1, "failing": {"status": {"since": "yesterday"}}}', "failing.status.since is not a time"),
        ('{"version": 1, "failing": {"status": {"since": NaN}}}', "failing.status.since is not a time"),
        ('{"version": 1, "failing": {"status": {"last_alert_at": true}}}', "failing.status.last_alert_at is not"),
        ('{"version": 1, "failing": {"status": {"message": 5}}}', "failing.status.message is not a string"),
        ('{"version": 1, "failing": {}, "undelivered": 3}', "'undelivered' is not a list"),
        ('{"version": 1, "failing": {}, "undelivered": ["x"]}', "'undelivered' is not a list"),
    ],
)
def test_valid_json_with_bad_fields_is_an_unknown_state_not_a_crash(tmp_path: Path, text: str, reason: str):
    path = tmp_path / "s.json"
    path.write_text(text)
    for problems in ({"status": "HTTP 500"}, {}):  # still failing (would re-alert), and recovered
        out = _alerts.run_transitions(
            probe="p", target="t", problems=problems, state_file=str(path), realert_after_s=60, notify_url=None
        )
        assert out["previous_state_known"] is False and out["recoveries"] == []
        assert [a["check"] for a in out["alerts"]] == list(problems)
        assert "unexpected format" in out["warnings"][0] and reason in out["warnings"][0]
        path.write_text(text)
    _alerts.save_state(str(path), run(None, {"status": "HTTP 500"}).state)
    assert _alerts.load_state(str(path))[1] is None  # what save_state writes passes the checks


def test_save_state_is_atomic_0600_and_creates_the_directory(tmp_path: Path):
    path = tmp_path / "deep" / "dir" / "s.json"
    state = run(None, {"db": "down"}).state
    _alerts.save_state(str(path), state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded, warning = _alerts.load_state(str(path))
    assert warning is None and loaded == json.loads(json.dumps(state))
    assert [p.name for p in path.parent.iterdir()] == ["s.json"]  # no temporary file left
    with pytest.raises(_alerts.StateError, match="cannot write state file"):
        _alerts.save_state(str(path / "below-a-file.json"), state)


def test_payload_is_slack_compatible():
    failing = run(None, {"queue:default:wait": "waited 900 s"})
    payload = _alerts.build_payload("queue_health", "app", failing.alerts, [], healthy=False)
    assert payload["text"].startswith("[queue_health] app on ")
    assert "FAILING queue:default:wait: waited 900 s" in payload["text"]
    assert payload["attachments"][0]["color"] == "danger"
    assert payload["mutuapix"]["alerts"] == failing.alerts
    json.dumps(payload)  # serialisable as is
    recovered = run(failing.state, {}, now=NOW + 60)
    ok = _alerts.build_payload("queue_health", "app", [], recovered.recoveries, healthy=True)
    assert "RECOVERED queue:default:wait after 60 s" in ok["text"]
    assert ok["attachments"][0]["color"] == "good"


def _refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook?token=secret-token"


def test_notify_failure_keeps_payload_for_next_run_without_leaking_the_url():
    evaluation = run(None, {"db": "down"})
    outcome = _alerts.notify(_refused_url(), evaluation, probe="p", target="t", healthy=False, timeout=2)
    assert outcome["notified"] is False
    assert "webhook POST failed" in outcome["notify_error"] and "secret-token" not in outcome["notify_error"]
    assert len(evaluation.state["undelivered"]) == 1
    # next run, still failing, nothing new: the old payload is still pending
    later = run(evaluation.state, {"db": "down"}, now=NOW + 5)
    assert len(later.state["undelivered"]) == 1


def test_notify_without_url_sends_nothing_and_keeps_nothing():
    evaluation = run(None, {"db": "down"})
    assert _alerts.notify(None, evaluation, probe="p", target="t", healthy=False) == {
        "notified": False,
        "notify_error": None,
    }
    assert evaluation.state["undelivered"] == []


def test_undelivered_queue_is_capped():
    state = run(None, {}).state
    state["undelivered"] = [{"text": str(i)} for i in range(_alerts.MAX_UNDELIVERED + 5)]
    assert len(run(state, {}).state["undelivered"]) == _alerts.MAX_UNDELIVERED


def test_run_transitions_check_mode_writes_nothing(tmp_path: Path):
    path = tmp_path / "s.json"
    out = _alerts.run_transitions(
        probe="p",
        target="t",
        problems={"a": "b"},
        state_file=str(path),
        realert_after_s=60,
        notify_url=_refused_url(),
        check_mode=True,
    )
    assert [a["check"] for a in out["alerts"]] == ["a"] and not path.exists() and out["notified"] is False
    real = _alerts.run_transitions(
        probe="p", target="t", problems={"a": "b"}, state_file=str(path), realert_after_s=60, notify_url=None
    )
    assert real["alerts"] and path.exists() and os.stat(path).st_size > 0


def test_default_state_file_is_a_safe_name():
    path = _alerts.default_state_file("endpoint_check", "api.example.com:8443/health?x=../../etc")
    assert path.startswith("/var/lib/mutuapix-ops/endpoint_check-")
    assert "/" not in os.path.basename(path)[:-5] and ".." in path  # dots are kept, slashes are not
    assert os.path.dirname(path) == "/var/lib/mutuapix-ops"


class _SlowWebhook:
    """A real local webhook receiver that takes ``delay`` seconds per POST."""

    def __init__(self, delay: float) -> None:

        received = self.received = []
        self.first = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                outer.first.set()
                time.sleep(delay)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        outer = self
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_overlapping_runs_take_turns_so_a_failure_is_announced_once(tmp_path: Path):
    """A scheduled run and a manual launch at once: without the lock both would alert."""
    path = str(tmp_path / "state" / "s.json")
    hook = _SlowWebhook(delay=0.5)
    results: dict[str, dict] = {}

    def probe(name: str) -> None:
        results[name] = _alerts.run_transitions(
            probe="p", target="t", problems={"db": "down"}, state_file=path, realert_after_s=3600, notify_url=hook.url
        )

    try:
        first = threading.Thread(target=probe, args=("first",))
        first.start()
        assert hook.first.wait(10)  # the first run is inside its webhook call, holding the lock
        second = threading.Thread(target=probe, args=("second",))
        second.start()
        first.join(20)
        second.join(20)
    finally:
        hook.close()
    assert [a["check"] for a in results["first"]["alerts"]] == ["db"] and results["first"]["notified"]
    assert results["second"]["alerts"] == [] and results["second"]["previous_state_known"] is True
    assert len(hook.received) == 1
    assert stat.S_IMODE(os.stat(path + ".lock").st_mode) == 0o600


def test_state_lock_times_out_with_a_clear_error_and_check_mode_needs_no_lock(tmp_path: Path):
    path = str(tmp_path / "s.json")
    with _alerts.state_lock(path, 1):
        started = time.monotonic()
        with pytest.raises(_alerts.StateError, match=r"another run of this probe has held .*s\.json\.lock"):
            with _alerts.state_lock(path, 0.2):
                pass
        assert 0.2 <= time.monotonic() - started < 2
        out = _alerts.run_transitions(
            probe="p", target="t", problems={}, state_file=path, realert_after_s=60, notify_url=None, check_mode=True
        )
        assert out["alerts"] == [] and not os.path.exists(path)
    with _alerts.state_lock(path, 0):  # released when the block ended
        pass
    assert _alerts.lock_wait_s(10) > 10


def test_a_check_evaluated_despite_every_other_check_recovers():
    """queue_health connected, then timed out: db_unreachable was evaluated (reachable), the queues were not."""
    state = run(None, {"db_unreachable": "refused", "queue:default:wait": "waited"}).state
    blocked = _alerts.evaluate(
        state,
        {"db_timeout": "lock"},
        now=NOW + 60,
        realert_after_s=3600,
        probe="p",
        target="t",
        not_evaluated={_alerts.EVERY_OTHER_CHECK},
        evaluated={"db_unreachable"},
    )
    assert [r["check"] for r in blocked.recoveries] == ["db_unreachable"]
    assert [a["check"] for a in blocked.alerts] == ["db_timeout"] and blocked.not_evaluated == ["queue:default:wait"]


class _ChatWebhook:
    """A real local webhook that answers like Discord's Slack-compatible endpoint: HTTP 400 for a text longer than
    2000 characters, else ``status`` (200, or a failure set by the test). ``received`` are the accepted texts."""

    def __init__(self) -> None:
        outer = self
        self.status = 200
        self.received: list[str] = []
        self.attempts = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.attempts += 1
                text = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"]
                code = 400 if len(text) > 2000 else outer.status
                if code == 200:
                    outer.received.append(text)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/webhooks/1/secret-token/slack"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_payload_rejected_for_good_is_dropped_and_the_later_ones_go_out():
    """One undelivered payload the webhook always refuses (400: too long) used to block every later notification
    until 20 newer ones pushed it out."""
    hook = _ChatWebhook()
    try:
        state = run(None, {}).state
        state["undelivered"] = [{"text": "[p] t on h: problem\n" + "x" * 3000}, {"text": "[p] t on h: problem\nolder"}]
        evaluation = run(state, {"db": "down"}, now=NOW + 60)
        outcome = _alerts.notify(hook.url, evaluation, probe="p", target="t", healthy=False, timeout=5)
        assert outcome["notified"] is True
        assert (
            "HTTP 400" in outcome["notify_error"]
            and "dropped the notification '[p] t on h: problem'" in (outcome["notify_error"])
        )
        assert "secret-token" not in outcome["notify_error"]
        assert [t.splitlines()[-1] for t in hook.received] == ["older", "FAILING db: down"]
        assert evaluation.state["undelivered"] == []

        for transient in (429, 503, 404):  # later, or the URL itself refused: kept for the next run, in order
            hook.status = transient
            again = run(evaluation.state, {}, now=NOW + 120)
            kept = _alerts.notify(hook.url, again, probe="p", target="t", healthy=True, timeout=5)
            assert kept["notified"] is False and f"HTTP {transient}" in kept["notify_error"]
            assert "1 notification(s) kept" in kept["notify_error"] and len(again.state["undelivered"]) == 1
    finally:
        hook.close()


def test_a_long_text_is_shortened_to_what_chat_webhooks_accept():
    problems = {
        f"queue:q{i}:wait": f"queue q{i}: the oldest pending job has waited {i} s " + "y" * 80 for i in range(60)
    }
    evaluation = run(None, problems)
    payload = _alerts.build_payload("queue_health", "app", evaluation.alerts, [], healthy=False)
    assert len(payload["text"]) <= _alerts.MAX_TEXT_CHARS and len(payload["attachments"][0]["text"]) <= 1900
    assert payload["text"].endswith("every message is in the payload's mutuapix object)")
    assert len(payload["mutuapix"]["alerts"]) == 60  # nothing lost for machines
    hook = _ChatWebhook()
    try:
        assert _alerts.notify(hook.url, evaluation, probe="queue_health", target="app", healthy=False)["notified"]
    finally:
        hook.close()
    assert len(hook.received) == 1


def test_default_state_file_with_an_identity_tells_targets_apart():
    one = _alerts.default_state_file("endpoint_check", "app", "http://app/up")
    two = _alerts.default_state_file("endpoint_check", "app", "https://app/up")
    assert one != two and one.startswith("/var/lib/mutuapix-ops/endpoint_check-app-") and one.endswith(".json")
    long_key = "x" * 200
    assert _alerts.default_state_file("e", long_key, "a") != _alerts.default_state_file("e", long_key, "b")


def test_default_state_file_in_another_directory():
    path = _alerts.default_state_file("queue_health", "app", "tcp:db1:3306", "/srv/state")
    assert path.startswith("/srv/state/queue_health-app-") and path.endswith(".json")
    assert _alerts.default_state_file("queue_health", "app", "tcp:db1:3306") == path.replace(
        "/srv/state", _alerts.DEFAULT_STATE_DIR
    )
