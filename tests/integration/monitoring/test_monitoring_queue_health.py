"""queue_health against the private MariaDB with Laravel's jobs and failed_jobs tables."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils._probes import app_timezone, read_queue_stats
from tests.integration.monitoring.conftest import FAILED_DDL, JOBS_DDL, Queues, Server, posts
from tests.support.mariadb import MariaDB, temporary_server
from tests.support.runner import ModuleResult, run_module


def health(mariadb: MariaDB, db: Queues, state: Path, check: bool = False, **kwargs: Any) -> ModuleResult:
    args = {**mariadb.login, "database": db.database, "state_file": str(state), **kwargs}
    return run_module("queue_health", args, check=check)


def test_healthy_queue(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    queues.job(age_s=5, count=3)
    queues.job(reserved_age_s=10)  # a worker holds one, recently
    queues.job(age_s=-600)  # delayed: not waiting yet
    queues.failed(3, age_s=60)
    result = health(mariadb, queues, tmp_path / "s.json")
    assert not result.failed, result
    assert result["healthy"] is True
    default = result["queues"]["default"]
    assert (default["pending"], default["reserved"], default["delayed"], default["expired_reservations"]) == (
        3,
        1,
        1,
        0,
    )
    assert 4 <= default["oldest_wait_s"] <= 30
    assert result["failed_recent"] == 3
    assert result["problems"] == {} and result["alerts"] == []


def test_stalled_queue_is_detected(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    """Workers RUNNING but nothing processed: the oldest pending job keeps ageing."""
    queues.job(age_s=900)
    queues.job(age_s=10, count=5)
    queues.job(queue="mail", age_s=100)
    result = health(
        mariadb,
        queues,
        tmp_path / "s.json",
        queues=[{"name": "default", "max_wait_s": 300}, {"name": "mail", "max_wait_s": 60}, {"name": "idle"}],
    )
    assert result["healthy"] is False
    assert set(result["problems"]) == {"queue:default:wait", "queue:mail:wait"}
    assert 895 <= result["queues"]["default"]["oldest_wait_s"] <= 930
    assert "has waited" in result["problems"]["queue:default:wait"]
    assert result["queues"]["idle"] == {
        "pending": 0,
        "delayed": 0,
        "reserved": 0,
        "expired_reservations": 0,
        "oldest_wait_s": 0,
    }
    assert {a["check"] for a in result["alerts"]} == {"queue:default:wait", "queue:mail:wait"}


def test_max_pending(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    queues.job(age_s=1, count=6)
    result = health(mariadb, queues, tmp_path / "s.json", queues=[{"name": "default", "max_pending": 5}])
    assert list(result["problems"]) == ["queue:default:pending"]
    assert "6 pending jobs (max_pending 5)" in result["problems"]["queue:default:pending"]


def test_stuck_reservations_mean_a_dead_worker(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    queues.job(reserved_age_s=200)
    queues.job(reserved_age_s=30)
    result = health(mariadb, queues, tmp_path / "s.json", retry_after_s=90)
    assert result["queues"]["default"]["expired_reservations"] == 1
    assert result["queues"]["default"]["reserved"] == 2
    assert "a worker died or hangs" in result["problems"]["queue:default:expired_reservations"]
    relaxed = health(mariadb, queues, tmp_path / "s2.json", retry_after_s=600)
    assert relaxed["healthy"] is True, relaxed


def test_failed_burst_counts_only_the_window(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    queues.failed(12, age_s=30)
    queues.failed(50, age_s=7200)
    result = health(mariadb, queues, tmp_path / "s.json", failed_window_s=600, max_failed=10)
    assert result["failed_recent"] == 12
    assert "12 jobs failed in the last 600 s" in result["problems"]["failed_jobs"]
    assert health(mariadb, queues, tmp_path / "s2.json", failed_window_s=600, max_failed=12)["healthy"] is True


def test_failed_at_is_read_in_the_apps_time_zone(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    """Laravel writes failed_at in app.timezone: a burst is counted in that zone, not the server's."""
    queues.failed(12, age_s=30, app_timezone="America/Sao_Paulo")  # UTC-3: the wall clock is 3 h behind UTC
    args = {"failed_window_s": 600, "max_failed": 10}
    seen = health(mariadb, queues, tmp_path / "sp.json", app_timezone="America/Sao_Paulo", **args)
    assert seen["failed_recent"] == 12 and "failed_jobs" in seen["problems"]
    assert health(mariadb, queues, tmp_path / "off.json", app_timezone="-03:00", **args)["failed_recent"] == 12
    missed = health(mariadb, queues, tmp_path / "utc.json", **args)  # the wrong zone: they look 3 h old
    assert missed["failed_recent"] == 0
    queues.clear()
    queues.failed(5, age_s=7200, app_timezone="Asia/Kolkata")  # UTC+5:30, two hours ago
    assert health(mariadb, queues, tmp_path / "in.json", app_timezone="Asia/Kolkata", **args)["failed_recent"] == 0
    assert health(mariadb, queues, tmp_path / "in2.json", app_timezone="+05:30", **args)["failed_recent"] == 0
    assert health(mariadb, queues, tmp_path / "utc2.json", **args)["failed_recent"] == 5  # "in the future"
    bad = health(mariadb, queues, tmp_path / "bad.json", app_timezone="Mars/Olympus_Mons", **args)
    assert bad.failed and "app_timezone 'Mars/Olympus_Mons' is not a time zone this host knows" in bad["msg"]
    assert not (tmp_path / "bad.json").exists()


# Europe/Berlin's real transitions of 2025 (tzdata): the clocks went back at 01:00 UTC on 26 October (03:00 CEST
# -> 02:00 CET, the hour from 02:00 to 03:00 runs twice) and forward at 01:00 UTC on 30 March (02:00 CET -> 03:00).
FALL_BACK = int(dt.datetime(2025, 10, 26, 1, 0, tzinfo=dt.timezone.utc).timestamp())
SPRING_FORWARD = int(dt.datetime(2025, 3, 30, 1, 0, tzinfo=dt.timezone.utc).timestamp())


@pytest.mark.parametrize(
    ("change", "now_s", "window_s", "failed_s", "expected"),
    [
        # 02:10 CET, window 30 min: failures at 02:05 CET and 02:50 CEST are in it, 02:20 CEST (50 min) and 01:30
        # CEST are not. From the wall clock, "30 min ago" is 02:40 - after the failure of five minutes ago.
        (FALL_BACK, 600, 1800, [-5400, -2400, -600, 300], 2),
        # 02:30 CET, window 1 h: 02:50 CEST, 02:05 CET and 02:25 CET are in it, 01:30 CEST is not.
        (FALL_BACK, 1800, 3600, [-5400, -600, 300, 1500], 3),
        # 04:00 CET, window 1 h, after the repeated hour: only 03:23 CET.
        (FALL_BACK, 7200, 3600, [-5400, -600, 5000], 1),
        # 03:10 CEST, window 30 min, the clocks went forward at 02:00 CET: 01:50 CET and 03:05 CEST, not 01:20 CET.
        (SPRING_FORWARD, 600, 1800, [-2400, -600, 300], 2),
    ],
    ids=["fall-back-30min", "fall-back-1h", "after-fall-back", "spring-forward"],
)
def test_failed_window_across_a_dst_change(
    mariadb: MariaDB, queues: Queues, change: int, now_s: int, window_s: int, failed_s: list[int], expected: int
):
    """Laravel stamps failed_at with the wall clock of app.timezone, which repeats an hour in autumn: the window
    of failed_window_s is the last failed_window_s seconds of real time, not of the wall clock. Times are seconds
    from the DST change; the probe's connection reads the server clock set to ``change + now_s``."""
    berlin = app_timezone("Europe/Berlin")
    connection = mariadb.connect(database=queues.database)
    try:
        with connection.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")  # failed_at read back exactly as written
            cur.execute("SET timestamp = %s", (change + now_s,))  # the server's clock, as the probe reads it
            for offset in failed_s:
                stamp = dt.datetime.fromtimestamp(change + offset, tz=berlin).strftime("%Y-%m-%d %H:%M:%S")
                cur.execute(
                    "INSERT INTO failed_jobs (uuid, connection, queue, payload, exception, failed_at)"
                    " VALUES (UUID(), 'database', 'default', '{}', 'RuntimeException: boom', %s)",
                    (stamp,),
                )
        stats = read_queue_stats(
            connection,
            queues.database,
            jobs_table="jobs",
            failed_jobs_table="failed_jobs",
            retry_after_s=90,
            failed_window_s=window_s,
            app_tz=berlin,
        )
    finally:
        connection.close()
    assert stats["now"] == change + now_s
    assert stats["failed_recent"] == expected


def test_transitions_with_webhook(mariadb: MariaDB, queues: Queues, webhook: Server, tmp_path: Path):
    state = tmp_path / "state.json"

    def run(**kwargs: Any) -> ModuleResult:
        result = health(mariadb, queues, state, notify_url=webhook.url, **kwargs)
        assert not result.failed, result
        return result

    assert run()["alerts"] == []  # unknown -> OK
    queues.job(age_s=1000)
    queues.job(reserved_age_s=500)
    stalled = run()
    assert {a["check"] for a in stalled["alerts"]} == {"queue:default:wait", "queue:default:expired_reservations"}
    assert len(posts(webhook)) == 1
    assert "FAILING queue:default:wait" in posts(webhook)[0]["text"]
    assert posts(webhook)[0]["mutuapix"]["probe"] == "queue_health"
    assert run()["alerts"] == []  # failing -> failing: silent
    queues.failed(20)
    burst = run()  # a new problem while others persist: alert for the new one only
    assert [a["check"] for a in burst["alerts"]] == ["failed_jobs"]
    queues.clear()
    recovered = run()
    assert {r["check"] for r in recovered["recoveries"]} == {
        "queue:default:wait",
        "queue:default:expired_reservations",
        "failed_jobs",
    }
    assert recovered["changed"] is True
    assert run()["recoveries"] == []
    assert len(posts(webhook)) == 3
    assert json.loads(state.read_text())["failing"] == {}


def test_database_outage_is_one_alert_one_recovery_and_no_false_recovery(
    mariadb: MariaDB, queues: Queues, webhook: Server, tmp_path: Path
):
    """The server goes away: db_unreachable alerts once and fails the task; the stalled queue is not 'recovered'."""
    state = tmp_path / "state.json"
    down = {"login_unix_socket": str(tmp_path / "gone.sock"), "notify_url": webhook.url}
    queues.job(age_s=1000)
    assert [a["check"] for a in health(mariadb, queues, state, notify_url=webhook.url)["alerts"]] == [
        "queue:default:wait"
    ]
    outage = health(mariadb, queues, state, **down)
    assert outage.failed and "cannot connect to MySQL" in outage["msg"] and "is the server running" in outage["msg"]
    assert [a["check"] for a in outage["alerts"]] == ["db_unreachable"]
    assert outage["recoveries"] == [] and outage["not_evaluated"] == ["queue:default:wait"]
    assert outage["notified"] is True and "FAILING db_unreachable" in posts(webhook)[-1]["text"]
    assert mariadb.ROOT_PASSWORD not in json.dumps(outage)
    still = health(mariadb, queues, state, **down)
    assert still.failed and still["alerts"] == [] and still["changed"] is False  # failing -> failing: silent
    assert set(json.loads(state.read_text())["failing"]) == {"db_unreachable", "queue:default:wait"}
    back = health(mariadb, queues, state, notify_url=webhook.url)  # the queue is still stalled
    assert not back.failed, back
    assert [r["check"] for r in back["recoveries"]] == ["db_unreachable"] and back["alerts"] == []
    assert len(posts(webhook)) == 3  # wait, db_unreachable, its recovery: never "RECOVERED queue:default:wait"
    assert "RECOVERED queue" not in json.dumps(posts(webhook))


def test_connection_lost_while_reading_is_db_unreachable(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    """The server drops the probe's connection mid-query (here: KILL while it waits for a table lock)."""
    state = tmp_path / "state.json"
    locker = mariadb.connect(queues.database)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES jobs WRITE")
        args = {**mariadb.login, "database": queues.database, "state_file": str(state)}
        killer_done: list[int] = []

        def kill_when_waiting(proc: subprocess.Popen[bytes]) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killer_done and proc.poll() is None:
                waiting = mariadb.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE STATE LIKE %s AND INFO LIKE %s",
                    ("%metadata lock%", "%reserved_at%"),
                )
                if waiting:
                    mariadb.execute(f"KILL CONNECTION {int(waiting[0][0])}")
                    killer_done.append(int(waiting[0][0]))
                time.sleep(0.1)

        result = run_module("queue_health", args, popen_hook=kill_when_waiting, timeout=120)
    finally:
        locker.close()
    assert killer_done, "the probe never waited on the lock"
    assert result.failed and "lost the connection to MySQL while reading the queue tables" in result["msg"]
    assert [a["check"] for a in result["alerts"]] == ["db_unreachable"]
    assert "db_unreachable" in json.loads(state.read_text())["failing"]


def test_check_mode_and_fail_on_unhealthy(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    state = tmp_path / "s.json"
    queues.job(age_s=1000)
    checked = health(mariadb, queues, state, check=True)
    assert checked["alerts"] and not state.exists()
    failed = health(mariadb, queues, state, fail_on_unhealthy=True)
    assert failed.failed and "queues of" in failed["msg"] and "has waited" in failed["msg"]
    assert "queue:default:wait" in json.loads(state.read_text())["failing"]


def test_missing_table_and_bad_credentials_are_clear_errors(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    missing = health(mariadb, queues, tmp_path / "s.json", jobs_table="queue_jobs")
    assert missing.failed
    assert f"table {queues.database}.queue_jobs does not exist" in missing["msg"]
    assert "Traceback" not in missing.stderr
    login = {**mariadb.login, "login_password": "wrong-password"}
    denied = run_module("queue_health", {**login, "database": queues.database, "state_file": str(tmp_path / "x")})
    assert denied.failed and "cannot connect to MySQL" in denied["msg"] and "(1045)" in denied["msg"]
    assert "wrong-password" not in json.dumps(denied)


def test_select_on_the_two_tables_is_enough(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    """The documented least privilege: SELECT on jobs and failed_jobs, nothing else."""
    db = queues.database
    password = "Qmon-pass-4-tests!"
    mariadb.execute("DROP USER IF EXISTS 'qmon'@'localhost'")
    mariadb.execute("CREATE USER 'qmon'@'localhost' IDENTIFIED BY %s", (password,))
    try:
        mariadb.execute(f"GRANT SELECT ON `{db}`.`jobs` TO 'qmon'@'localhost'")
        login = {**mariadb.login, "login_user": "qmon", "login_password": password}
        args = {**login, "database": db, "state_file": str(tmp_path / "s.json")}
        partial = run_module("queue_health", args)
        assert partial.failed
        assert f"{db}.failed_jobs does not exist or this account cannot see it" in partial["msg"]
        assert f"SELECT on {db}.failed_jobs" in partial["msg"]
        mariadb.execute(f"GRANT SELECT ON `{db}`.`failed_jobs` TO 'qmon'@'localhost'")
        queues.job(age_s=2)
        enough = run_module("queue_health", args)
        assert not enough.failed, enough
        assert enough["queues"]["default"]["pending"] == 1
    finally:
        mariadb.execute("DROP USER IF EXISTS 'qmon'@'localhost'")


def test_a_lock_on_the_queue_tables_is_db_timeout_not_a_hang(
    mariadb: MariaDB, queues: Queues, webhook: Server, tmp_path: Path
):
    """Another session holds LOCK TABLES jobs WRITE (an ALTER TABLE waiting for its lock does the same): the
    probe used to wait for good, so db_unreachable was never alerted and a cron run under flock -n went silent."""
    state = tmp_path / "state.json"
    args = {**mariadb.login, "database": queues.database, "state_file": str(state), "notify_url": webhook.url}
    queues.job(age_s=1000)
    assert [a["check"] for a in run_module("queue_health", args)["alerts"]] == ["queue:default:wait"]
    locker = mariadb.connect(queues.database)
    started: list[subprocess.Popen[bytes]] = []
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES jobs WRITE")
        began = time.monotonic()
        try:
            blocked = run_module("queue_health", args, popen_hook=started.append, timeout=60)  # default query_timeout
        finally:
            for proc in started:  # the old code never returns: do not leave it waiting on the lock
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        elapsed = time.monotonic() - began
    finally:
        locker.close()
    assert elapsed < 30, f"the probe took {elapsed:.0f} s"
    assert blocked.failed and blocked["problems"].keys() == {"db_timeout"}
    assert "did not finish within query_timeout 10 s" in blocked["msg"]
    assert "waited for a lock on the queue tables" in blocked["msg"] and "SHOW PROCESSLIST" in blocked["msg"]
    assert [a["check"] for a in blocked["alerts"]] == ["db_timeout"] and blocked["recoveries"] == []
    assert blocked["not_evaluated"] == ["queue:default:wait"]  # unseen: kept failing, not recovered
    assert "FAILING db_timeout" in posts(webhook)[-1]["text"]

    short = run_module("queue_health", {**args, "query_timeout": 0})
    assert short.failed and "query_timeout must be at least 1 second" in short["msg"]

    back = run_module("queue_health", args)  # lock released: the timeout recovers, the stalled queue stays
    assert not back.failed, back
    assert [r["check"] for r in back["recoveries"]] == ["db_timeout"] and back["alerts"] == []
    assert set(json.loads(state.read_text())["failing"]) == {"queue:default:wait"}
    assert len(posts(webhook)) == 3


def test_a_timeout_after_an_outage_recovers_db_unreachable(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    """Connected but blocked: the database is reachable again, so db_unreachable recovers; db_timeout alerts."""
    state = tmp_path / "state.json"
    args = {**mariadb.login, "database": queues.database, "state_file": str(state), "query_timeout": 1}
    down = run_module("queue_health", {**args, "login_unix_socket": str(tmp_path / "gone.sock")})
    assert [a["check"] for a in down["alerts"]] == ["db_unreachable"]
    locker = mariadb.connect(queues.database)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES failed_jobs WRITE")
        blocked = run_module("queue_health", args, timeout=60)
    finally:
        locker.close()
    assert [a["check"] for a in blocked["alerts"]] == ["db_timeout"]
    assert [r["check"] for r in blocked["recoveries"]] == ["db_unreachable"]
    assert "within query_timeout 1 s" in blocked["msg"]


def test_same_database_name_on_two_servers_never_shares_the_default_state(
    mariadb: MariaDB, queues: Queues, webhook: Server, tmp_path: Path
):
    """Staging and production both call their database 'app': one monitor host probing both used one
    default state file, so the healthy one announced the other's stalled queue as RECOVERED."""
    state_dir = tmp_path / "state"
    queues.job(age_s=1000)  # production: stalled
    production = {**mariadb.login, "database": queues.database, "state_dir": str(state_dir), "notify_url": webhook.url}
    with temporary_server("mutuapix-staging-") as other:
        other.execute(f"CREATE DATABASE `{queues.database}`")
        other.execute(JOBS_DDL, database=queues.database)
        other.execute(FAILED_DDL, database=queues.database)
        staging = {**other.login, "database": queues.database, "state_dir": str(state_dir), "notify_url": webhook.url}
        first = run_module("queue_health", production)
        assert [a["check"] for a in first["alerts"]] == ["queue:default:wait"], first
        healthy = run_module("queue_health", staging)
        assert not healthy.failed and healthy["healthy"] is True, healthy
        assert healthy["recoveries"] == [] and healthy["alerts"] == []
        assert healthy["state_file"] != first["state_file"]
        again = run_module("queue_health", production)
        assert again["alerts"] == [] and again["recoveries"] == []  # failing -> failing: silent
    assert "RECOVERED" not in json.dumps(posts(webhook)) and len(posts(webhook)) == 1
    assert sorted(p.name for p in state_dir.glob("*.json")) == sorted(
        Path(r["state_file"]).name for r in (first, healthy)
    )
    assert Path(first["state_file"]).name.startswith(f"queue_health-{queues.database}-")
    # the same server by another route (TCP instead of its socket) or other queues: other files too
    over_tcp = {k: v for k, v in production.items() if k != "login_unix_socket"}
    by_tcp = run_module("queue_health", {**over_tcp, **mariadb.login_tcp}, check=True)
    assert not by_tcp.failed, by_tcp
    watching = run_module("queue_health", {**production, "queues": [{"name": "mail"}]}, check=True)
    assert len({first["state_file"], by_tcp["state_file"], watching["state_file"]}) == 3
    both = run_module("queue_health", {**production, "state_file": str(tmp_path / "x.json")}, check=True)
    assert both.failed and "mutually exclusive" in both["msg"]


def _rows_scanned(mariadb: MariaDB) -> int:
    """Rows the server read by scanning (table scans and temporary tables), all sessions together."""
    return int(mariadb.execute("SHOW GLOBAL STATUS LIKE 'Handler_read_rnd_next'")[0][1])


def test_failed_jobs_never_pruned_are_not_read_whole(mariadb: MariaDB, queues: Queues, tmp_path: Path):
    """failed_jobs grows for ever unless the app prunes it, and failed_at has no index: the count of recent
    failures read the whole table on every run (a million failures of 4.5 KB took 8 s, near query_timeout).
    Now only the newest rows are read, backwards along the id key; a table without Laravel's id is counted
    as before."""
    mariadb.execute(
        "INSERT INTO failed_jobs (uuid, connection, queue, payload, exception, failed_at)"
        " SELECT UUID(), 'database', 'default', '{}', 'RuntimeException: old', NOW() - INTERVAL 30 DAY"
        " FROM seq_1_to_60000",
        database=queues.database,
    )
    queues.failed(12, age_s=60)
    before = _rows_scanned(mariadb)
    result = health(mariadb, queues, tmp_path / "s.json", max_failed=20)
    scanned = _rows_scanned(mariadb) - before
    assert not result.failed, result
    assert result["failed_recent"] == 12
    assert scanned < 25_000, scanned  # the whole table is 60,012 rows

    # a table of another shape (no id key): every row is read, the count is the same
    mariadb.execute(
        "CREATE TABLE failed_noid AS SELECT uuid, connection, queue, payload, exception, failed_at FROM failed_jobs",
        database=queues.database,
    )
    try:
        result = health(mariadb, queues, tmp_path / "s2.json", failed_jobs_table="failed_noid", max_failed=20)
        assert not result.failed, result
        assert result["failed_recent"] == 12
    finally:
        mariadb.execute("DROP TABLE failed_noid", database=queues.database)


def test_queue_tables_that_cannot_be_read_are_alerted_once_and_recovered(
    mariadb: MariaDB, queues: Queues, webhook: Server, tmp_path: Path
):
    """A migration renames jobs (or a column of it): the probe failed without a word to the webhook, and the state
    file kept saying the queues were fine. Now it is the problem db_unreadable: alerted once, silent while it lasts
    (a stalled queue seen before is not 'recovered'), recovered once the tables read again."""
    state = tmp_path / "state.json"
    queues.job(age_s=1000)
    first = health(mariadb, queues, state, notify_url=webhook.url)
    assert [a["check"] for a in first["alerts"]] == ["queue:default:wait"]
    mariadb.execute("RENAME TABLE jobs TO jobs_old", database=queues.database)
    try:
        gone = health(mariadb, queues, state, notify_url=webhook.url)
        assert gone.failed and f"table {queues.database}.jobs does not exist" in gone["msg"]
        assert [a["check"] for a in gone["alerts"]] == ["db_unreadable"] and gone["recoveries"] == []
        assert "FAILING db_unreadable" in posts(webhook)[-1]["text"]
        mariadb.execute("CREATE TABLE jobs LIKE jobs_old", database=queues.database)
        mariadb.execute("ALTER TABLE jobs CHANGE available_at available_at_s int unsigned", database=queues.database)
        column = health(mariadb, queues, state, notify_url=webhook.url)  # another reason, the same problem
        assert column.failed and "Unknown column" in column["msg"] and "(1054" in column["msg"]
        assert column["alerts"] == [] and column["changed"] is False
        assert set(json.loads(state.read_text())["failing"]) == {"db_unreadable", "queue:default:wait"}
    finally:
        mariadb.execute("DROP TABLE IF EXISTS jobs", database=queues.database)
        mariadb.execute("RENAME TABLE jobs_old TO jobs", database=queues.database)
    back = health(mariadb, queues, state, notify_url=webhook.url)
    assert not back.failed, back
    assert [r["check"] for r in back["recoveries"]] == ["db_unreadable"] and back["alerts"] == []
    assert len(posts(webhook)) == 3 and "RECOVERED queue" not in json.dumps(posts(webhook))
