"""Judging queue counts and parsing endpoint URLs in _probes (the measuring runs in integration tests)."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _probes
from tests.support.mariadb import refused_port


def stats(queues: dict, failed: int = 0) -> dict:
    full = {name: {**_probes.empty_queue(), **counts} for name, counts in queues.items()}
    return {"now": 0, "queues": full, "failed_recent": failed}


def judge(data: dict, limits: list[_probes.QueueLimits], max_failed: int = 10):
    return _probes.queue_problems(data, limits, retry_after_s=90, failed_window_s=3600, max_failed=max_failed)


def test_default_limits_cover_found_queues_and_default():
    limits = _probes.queue_limits(None, ["mail", "payments"])
    assert [(q.name, q.max_wait_s, q.max_pending) for q in limits] == [
        ("default", 300, None),
        ("mail", 300, None),
        ("payments", 300, None),
    ]
    configured = _probes.queue_limits([{"name": "x", "max_wait_s": 5, "max_pending": 2}], ["y"])
    assert [(q.name, q.max_wait_s, q.max_pending) for q in configured] == [("x", 5, 2)]


def test_app_timezone_names_and_offsets():
    at = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.timezone.utc)
    assert _probes.app_timezone("UTC") is datetime.timezone.utc
    assert at.astimezone(_probes.app_timezone("-03:00")).strftime("%H:%M") == "09:00"
    assert at.astimezone(_probes.app_timezone("+05:30")).strftime("%H:%M") == "17:30"
    assert at.astimezone(_probes.app_timezone("America/Sao_Paulo")).strftime("%H:%M") == "09:00"
    for bad in ("+15:00", "-03:60", "Nowhere/Atlantis", "../../etc/passwd", ""):
        with pytest.raises(_probes.ProbeError, match="app_timezone"):
            _probes.app_timezone(bad)


def test_failed_at_condition_per_utc_offset():
    """One range per offset: a fixed zone keeps the single open-ended bound; Berlin's clocks going back on
    2025-10-26 01:00 UTC give two bounded ranges of the repeated hour, going forward two ranges apart."""
    at = int(datetime.datetime(2025, 10, 26, 1, 0, tzinfo=datetime.timezone.utc).timestamp())
    assert _probes.failed_at_condition(at - 1800, at + 600, _probes.app_timezone("-03:00")) == (
        "failed_at >= %s",
        ("2025-10-25 21:30:00",),
    )
    berlin = _probes.app_timezone("Europe/Berlin")
    assert _probes.failed_at_condition(at - 1200, at + 600, berlin) == (
        "((failed_at >= %s AND failed_at < %s) OR (failed_at >= %s AND failed_at < %s))",
        ("2025-10-26 02:40:00", "2025-10-26 03:00:00", "2025-10-26 02:00:00", "2025-10-26 02:10:01"),
    )
    # past the repeated hour, the latest range is open again (an app clock a little ahead still counts)
    assert _probes.failed_at_condition(at - 1200, at + 3700, berlin)[0].endswith("OR failed_at >= %s)")
    spring = int(datetime.datetime(2025, 3, 30, 1, 0, tzinfo=datetime.timezone.utc).timestamp())
    assert _probes.wall_clock_ranges(spring - 1200, spring + 600, berlin) == [
        ("2025-03-30 01:40:00", "2025-03-30 02:00:00"),
        ("2025-03-30 03:00:00", "2025-03-30 03:10:01"),
    ]


def test_max_wait_zero_is_kept_not_replaced_by_the_default():
    limits = _probes.queue_limits([{"name": "payments", "max_wait_s": 0}, {"name": "mail", "max_wait_s": None}], [])
    assert [(q.name, q.max_wait_s) for q in limits] == [("payments", 0), ("mail", 300)]
    _judged, problems = judge(stats({"payments": {"pending": 1, "oldest_wait_s": 1}}), limits)
    assert "(max_wait_s 0)" in problems["queue:payments:wait"]


def test_each_problem_kind():
    data = stats(
        {"default": {"pending": 9, "oldest_wait_s": 301, "expired_reservations": 2}, "mail": {"pending": 1}},
        failed=11,
    )
    judged, problems = judge(data, [_probes.QueueLimits("default", 300, 5), _probes.QueueLimits("mail")])
    assert set(problems) == {
        "queue:default:wait",
        "queue:default:pending",
        "queue:default:expired_reservations",
        "failed_jobs",
    }
    assert judged["mail"]["pending"] == 1
    assert "2 job(s) reserved more than 90 s ago" in problems["queue:default:expired_reservations"]


def test_limits_are_exclusive_thresholds():
    data = stats({"default": {"pending": 5, "oldest_wait_s": 300}}, failed=10)
    assert judge(data, [_probes.QueueLimits("default", 300, 5)])[1] == {}


def test_unknown_queue_is_empty_and_healthy():
    judged, problems = judge(stats({}), [_probes.QueueLimits("idle")])
    assert judged == {"idle": _probes.empty_queue()} and problems == {}


@pytest.mark.parametrize("url", ["ftp://x/", "example.com/health", "http:///nohost"])
def test_bad_urls(url: str):
    with pytest.raises(_probes.ProbeError, match="absolute http"):
        _probes.check_endpoint(url)


def test_safe_url_drops_credentials_and_query():
    parts = _probes.urllib.parse.urlsplit("https://user:pw@example.com:8443/up?token=abc")
    assert _probes._safe_url(parts) == "https://example.com:8443/up"


@pytest.mark.parametrize(
    ("scheme", "not_evaluated"), [("http", {"status"}), ("https", {"status", "tls_expiry", "tls_invalid"})]
)
def test_an_unreachable_endpoint_evaluates_nothing_else(scheme: str, not_evaluated: set[str]):
    """No answer, no certificate: those checks are not evaluated (and so not recovered)."""
    with refused_port() as port:
        result = _probes.check_endpoint(f"{scheme}://127.0.0.1:{port}/up", timeout=2)
    assert set(result.problems) == {"unreachable"}
    assert result.not_evaluated == not_evaluated


def test_tls_server_name_comes_from_the_host_header():
    assert _probes.tls_server_name("10.0.0.5", {"Host": "app.example.com:8443"}) == "app.example.com"
    assert _probes.tls_server_name("10.0.0.5", {"host": "App.Example.com"}) == "app.example.com"
    assert _probes.tls_server_name("10.0.0.5", {"Host": "[2001:db8::1]:443"}) == "2001:db8::1"
    assert _probes.tls_server_name("10.0.0.5", {"Authorization": "x"}) == "10.0.0.5"
    assert _probes.tls_server_name("10.0.0.5", None) == "10.0.0.5"
    assert _probes.endpoint_identity("https://10.0.0.5/", {"Host": "A"}) != _probes.endpoint_identity(
        "https://10.0.0.5/", {"Host": "B"}
    )


def test_timeout_problem_names_what_blocked():
    lock = _probes.timeout_problem(Exception(1205, "Lock wait timeout exceeded"), "app", 5)
    assert lock and "within query_timeout 5 s" in lock and "waited for a lock" in lock and "(1205:" in lock
    statement = _probes.timeout_problem(Exception(1969, "Query execution was interrupted"), "app", 5)
    assert statement and "max_statement_time" in statement
    silent = None
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError:
            raise Exception(2013, "Lost connection to MySQL server during query (timed out)")  # noqa: B904
    except Exception as exc:  # noqa: BLE001
        silent = _probes.timeout_problem(exc, "app", 5)
    assert silent and "sent no answer for 10 s" in silent
    assert _probes.timeout_problem(Exception(2013, "Lost connection"), "app", 5) is None  # killed: db_unreachable
    assert _probes.timeout_problem(Exception(1146, "no such table"), "app", 5) is None
