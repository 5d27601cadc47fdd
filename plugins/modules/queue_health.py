#!/usr/bin/python
# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: queue_health
short_description: Detect stalled Laravel database queues and failure bursts, alerting on state changes only
version_added: 0.1.0
description:
  - Reads Laravel's C(jobs) and C(failed_jobs) tables (the C(database) queue driver) and judges
    each queue - the age of its oldest pending job, how many are pending, and reservations older
    than O(retry_after_s), the sign of a dead or hung worker - plus the number of jobs failed in
    the last O(failed_window_s) seconds.
  - Workers can sit C(RUNNING) in supervisor while nothing is processed; this probe looks at the
    queue itself, so it notices.
  - The verdict is compared with the previous run's, kept in O(state_file), so a webhook
    notification goes out only on a transition - OK to failing (one alert), failing to OK (one
    recovery) - plus a reminder every O(realert_after_s) while a problem lasts. A missing or corrupt
    state file is treated as unknown, with a warning, and never produces a recovery.
  - Times are measured with the database server's clock.
  - When the server cannot be reached, refuses the login or drops the connection while the tables are
    read, that is the problem C(db_unreachable) - alerted once, recovered once like any other - and
    the task fails after notifying. The queue checks, not evaluated then, keep their previous verdict
    (no recovery, see RV(not_evaluated)).
  - When reading the tables does not finish within O(query_timeout) - another session holds a lock on them
    (an C(ALTER TABLE), C(LOCK TABLES), a long transaction), the server is overloaded or the network stalls -
    that is the problem C(db_timeout), alerted and failing the task the same way, with what blocked in its
    message. The probe never waits for good, so a scheduled run cannot hang and hide an outage.
  - When the server answers but the queue tables cannot be read - a table missing (dropped or renamed by a
    migration, the wrong O(database)), C(SELECT) revoked, a column renamed - that is the problem
    C(db_unreadable), alerted and failing the task the same way, so that a probe that cannot see the queues does not
    fall silent.
  - The task reports C(changed) when it alerted or recovered.
extends_documentation_fragment:
  - mutuapix.ops.mysql
  - mutuapix.ops.alerts
options:
  database:
    description:
      - The Laravel application's database.
    type: str
    required: true
  jobs_table:
    description:
      - Name of the jobs table (C(queue.connections.database.table) in Laravel).
    type: str
    default: jobs
  failed_jobs_table:
    description:
      - Name of the failed jobs table (C(queue.failed.table) in Laravel).
    type: str
    default: failed_jobs
  queues:
    description:
      - Queues to judge, with their limits. When omitted, every queue present in the table plus
        C(default) is judged with the default limits.
      - A configured queue with no jobs at all is healthy.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Queue name, as in C(queue:work --queue=...).
        type: str
        required: true
      max_wait_s:
        description:
          - Longest acceptable wait, in seconds, of the oldest pending (available, unreserved) job.
        type: int
        default: 300
      max_pending:
        description:
          - Most pending jobs acceptable. No limit when omitted.
        type: int
  retry_after_s:
    description:
      - The queue connection's C(retry_after). A reservation older than this means the worker that
        took the job died or hangs.
    type: int
    default: 90
  failed_window_s:
    description:
      - Window, in seconds, over which failed jobs are counted.
    type: int
    default: 3600
  app_timezone:
    description:
      - The Laravel application's time zone (C(config/app.php) C(timezone), often C(APP_TIMEZONE)). Laravel
        writes C(failed_jobs.failed_at) as that zone's wall-clock time, so the window of O(failed_window_s) is
        counted in it. With the wrong zone, failures look hours old (never counted) or in the future (counted
        for hours).
      - An IANA name (C(America/Sao_Paulo), needs the host's tzdata) or a fixed offset (C(-03:00)).
      - The window is real time across daylight saving changes, counted per UTC offset in force. A failure
        stamped during the hour the clocks go back cannot be told from its twin an hour apart, so it is
        counted when either falls in the window.
      - Assumes the probe's session reads C(failed_at) as Laravel's does, that is the database connection's
        C(timezone) setting is not set in Laravel (the server's zone is used by both).
    type: str
    default: UTC
  max_failed:
    description:
      - More failed jobs than this within O(failed_window_s) is a problem.
    type: int
    default: 10
  query_timeout:
    description:
      - Seconds each read of the queue tables may wait for a table lock (the session's C(lock_wait_timeout));
        a statement may run a second longer (MariaDB's C(max_statement_time), MySQL's C(max_execution_time)).
        The connection also gives up when the server sends nothing for O(query_timeout) + 5 seconds.
      - Reaching it is the problem C(db_timeout). The probe's queries take milliseconds on a healthy server.
      - O(connect_timeout) still bounds opening the connection.
    type: int
    default: 10
  state_file:
    description:
      - JSON file holding the previous verdict, written atomically with mode 0600.
      - Defaults to C(<state_dir>/queue_health-<database>-<hash>.json), the hash covering the server
        (its socket, or host and port), the database, the two table names and the names in O(queues) -
        two databases of the same name on different servers, or two probes of one database watching
        different queues, never share a file (a shared file announced one target's problem as the
        other's recovery).
      - Earlier builds named it C(queue_health-<database>.json). After an upgrade the first run starts from an
        unknown state - a problem that persists is alerted once more, and nothing is reported as recovered.
      - Runs for the same file take turns - each holds an flock on C(<state_file>.lock) from reading
        the verdict to saving it, so overlapping runs announce a change once. A run waits up to
        O(notify_timeout) + 30 seconds for another, then fails without sending or writing anything.
    type: path
  fail_on_unhealthy:
    description:
      - Fail the task when a queue is unhealthy (after the state is saved and notifications are sent).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: The queues are read and the verdict returned, but the state file is not written and nothing is sent.
  diff_mode:
    support: none
    description: The only file written is the probe's own state file; there is no configuration to show a diff of.
author:
  - MutuaPix ops team (@mutuapix)
"""

EXAMPLES = r"""
- name: Watch the queues of the app database, alert Slack on changes
  mutuapix.ops.queue_health:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: monitor
    login_password: "{{ vault_monitor_password }}"
    database: app
    retry_after_s: 90
    queues:
      - name: default
        max_wait_s: 300
      - name: payments
        max_wait_s: 60
        max_pending: 500
    notify_url: "{{ vault_slack_webhook }}"

- name: Fail the job when the queues are unhealthy (connection details from module_defaults)
  mutuapix.ops.queue_health:
    database: app
    fail_on_unhealthy: true
"""

RETURN = r"""
healthy:
  description: Whether no problem was found.
  returned: success, and on failure when the database cannot be reached or read in time
  type: bool
  sample: false
queues:
  description: Per judged queue, its counts.
  returned: success
  type: dict
  contains:
    pending:
      description: Jobs available now and not reserved.
      type: int
      sample: 12
    delayed:
      description: Jobs not available yet (delayed or released with a delay).
      type: int
      sample: 0
    reserved:
      description: Jobs reserved by a worker.
      type: int
      sample: 2
    expired_reservations:
      description: Reservations older than O(retry_after_s).
      type: int
      sample: 0
    oldest_wait_s:
      description: Seconds the oldest pending job has been available without being taken; 0 when none is pending.
      type: int
      sample: 4
  sample: {"default": {"pending": 12, "delayed": 0, "reserved": 2, "expired_reservations": 0, "oldest_wait_s": 4}}
failed_recent:
  description:
    - Jobs failed within the last O(failed_window_s) seconds.
    - With Laravel's C(id) primary key, counted among the newest 10,000 rows of the failed jobs table (or
      O(max_failed) + 1 when larger), read backwards along the key, so that a table never pruned is not read
      whole on every run; the count then stops there.
  returned: success
  type: int
  sample: 0
problems:
  description: Every problem seen now, by check (C(queue:<name>:wait), C(queue:<name>:pending),
    C(queue:<name>:expired_reservations), C(failed_jobs), C(db_unreachable), C(db_timeout), C(db_unreadable)).
  returned: success, and on failure when the database cannot be reached or read
  type: dict
  sample: {"queue:default:wait": "queue default: the oldest pending job has waited 912 s (max_wait_s 300) ..."}
alerts:
  description: Problems notified by this run - new ones, and reminders (C(repeat=true)) after O(realert_after_s).
  returned: success, and on failure when the database cannot be reached or read
  type: list
  elements: dict
  sample: [{"check": "queue:default:wait", "message": "...", "since": "2026-11-28T15:00:00Z", "repeat": false}]
recoveries:
  description: Problems of the previous run that are gone now.
  returned: success, and on failure when the database cannot be reached or read
  type: list
  elements: dict
  sample: [{"check": "failed_jobs", "message": "recovered: ...", "failing_since": "2026-11-28T15:00:00Z",
            "duration_s": 600}]
not_evaluated:
  description:
    - Problems of the previous run that this run could not evaluate. They stay failing in the state file,
      with no recovery and no reminder.
  returned: success, and on failure when the database cannot be reached or read
  type: list
  elements: str
  sample: ["queue:default:wait"]
previous_state_known:
  description: False when the state file was missing or corrupt (then no recovery can be reported).
  returned: success, and on failure when the database cannot be reached or read
  type: bool
  sample: true
state_file:
  description: The state file used.
  returned: success, and on failure when the database cannot be reached or read
  type: str
  sample: /var/lib/mutuapix-ops/queue_health-app-3f1c2a9d8e7b.json
notified:
  description: Whether a webhook notification was delivered by this run.
  returned: success, and on failure when the database cannot be reached or read
  type: bool
  sample: true
notify_error:
  description:
    - Why the webhook failed; the notification is kept in the state file and retried by the next run.
    - A notification the webhook rejects for good (an HTTP 4xx other than 401, 403, 404, 408, 410 and 429, such as
      400 for a text too long) is dropped instead, and said here, so it cannot hold back the later ones.
  returned: success, and on failure when the database cannot be reached or read
  type: str
  sample: "webhook POST failed: HTTP 500 Internal Server Error"
"""

import contextlib
import json
from collections.abc import Collection
from typing import Any, NoReturn

from ansible_collections.mutuapix.ops.plugins.module_utils._alerts import (
    ALERT_ARGUMENT_SPEC,
    EVERY_OTHER_CHECK,
    STATE_DIR_ARGUMENT_SPEC,
    StateError,
    alert_options,
    default_state_file,
    run_transitions,
)
from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import MySQLError, MySQLModule, connect
from ansible_collections.mutuapix.ops.plugins.module_utils._probes import (
    CONNECTION_LOST,
    DB_TIMEOUT,
    DB_UNREACHABLE,
    DB_UNREADABLE,
    NEWEST_FAILED_ROWS,
    ProbeError,
    app_timezone,
    limit_session,
    queue_limits,
    queue_problems,
    read_queue_stats,
    socket_timeout,
    timeout_problem,
)

try:
    import pymysql
except ImportError:  # pragma: no cover - MySQLModule reports the missing library
    pymysql = None


def probe_identity(server: str, params: dict[str, Any]) -> str:
    """What the default state file's hash covers: the server, the database, the tables, the queues watched."""
    queues = sorted(q["name"] for q in params["queues"]) if params["queues"] else None
    return json.dumps(
        {
            "server": server,
            "database": params["database"],
            "jobs_table": params["jobs_table"],
            "failed_jobs_table": params["failed_jobs_table"],
            "queues": queues,
        },
        sort_keys=True,
    )


def main() -> None:
    module = MySQLModule(
        argument_spec={
            "database": {"type": "str", "required": True},
            "jobs_table": {"type": "str", "default": "jobs"},
            "failed_jobs_table": {"type": "str", "default": "failed_jobs"},
            "queues": {
                "type": "list",
                "elements": "dict",
                "options": {
                    "name": {"type": "str", "required": True},
                    "max_wait_s": {"type": "int", "default": 300},
                    "max_pending": {"type": "int"},
                },
            },
            "retry_after_s": {"type": "int", "default": 90},
            "failed_window_s": {"type": "int", "default": 3600},
            "app_timezone": {"type": "str", "default": "UTC"},
            "max_failed": {"type": "int", "default": 10},
            "query_timeout": {"type": "int", "default": 10},
            "state_file": {"type": "path"},
            **STATE_DIR_ARGUMENT_SPEC,
            **ALERT_ARGUMENT_SPEC,
            "fail_on_unhealthy": {"type": "bool", "default": False},
        },
        mutually_exclusive=[("state_file", "state_dir")],
        supports_check_mode=True,
    )
    p = module.params
    state_file = p["state_file"] or default_state_file(
        "queue_health", p["database"], probe_identity(module.conn_params.server_identity(), p), p["state_dir"]
    )

    def transitions(
        problems: dict[str, str], not_evaluated: Collection[str] = (), evaluated: Collection[str] = ()
    ) -> dict[str, Any]:
        return run_transitions(
            probe="queue_health",
            target=p["database"],
            problems=problems,
            state_file=state_file,
            check_mode=module.check_mode,
            not_evaluated=not_evaluated,
            evaluated=evaluated,
            **alert_options(p),
        )

    def fail_unreadable(check: str, message: str) -> NoReturn:
        # The outage itself is the problem: alert it once; the queues, unseen, keep their verdict.
        # A timeout or an unreadable table came after connecting: the database was reachable, so a
        # db_unreachable recovers.
        problems = {check: message}
        evaluated = {DB_UNREACHABLE} if check in (DB_TIMEOUT, DB_UNREADABLE) else set()
        try:
            outcome = transitions(problems, not_evaluated={EVERY_OTHER_CHECK}, evaluated=evaluated)
        except StateError as exc:
            module.fail_json(msg=f"{message}; the alert could not be recorded either: {exc}")
        for warning in outcome.pop("warnings"):
            module.warn(warning)
        changed = bool(outcome["alerts"] or outcome["recoveries"])
        module.fail_json(msg=message, changed=changed, healthy=False, problems=problems, **outcome)
        raise AssertionError("unreachable: fail_json exits")

    if p["query_timeout"] < 1:
        module.fail_json(msg=f"query_timeout must be at least 1 second, got {p['query_timeout']}")
    try:
        app_tz = app_timezone(p["app_timezone"])
    except ProbeError as exc:
        module.fail_json(msg=str(exc))
    limit = socket_timeout(p["query_timeout"])
    try:
        connection = connect(module.conn_params, read_timeout=limit, write_timeout=limit)
    except MySQLError as exc:
        fail_unreadable(DB_UNREACHABLE, str(exc))
    try:
        limit_session(connection, p["query_timeout"])
        stats = read_queue_stats(
            connection,
            p["database"],
            jobs_table=p["jobs_table"],
            failed_jobs_table=p["failed_jobs_table"],
            retry_after_s=p["retry_after_s"],
            failed_window_s=p["failed_window_s"],
            app_tz=app_tz,
            newest_failed=max(NEWEST_FAILED_ROWS, p["max_failed"] + 1),
        )
    except ProbeError as exc:
        fail_unreadable(DB_UNREADABLE, str(exc))
    except pymysql.err.MySQLError as exc:
        timed_out = timeout_problem(exc, p["database"], p["query_timeout"])
        if timed_out:
            fail_unreadable(DB_TIMEOUT, timed_out)
        if exc.args and exc.args[0] in CONNECTION_LOST:
            fail_unreadable(
                DB_UNREACHABLE, f"lost the connection to MySQL while reading the queue tables of {p['database']}: {exc}"
            )
        fail_unreadable(DB_UNREADABLE, f"reading the queue tables of {p['database']} failed: {exc}")
    finally:
        with contextlib.suppress(pymysql.err.Error):
            connection.close()  # "Already closed" when the connection was lost or timed out
    queues, problems = queue_problems(
        stats,
        queue_limits(p["queues"], list(stats["queues"])),
        retry_after_s=p["retry_after_s"],
        failed_window_s=p["failed_window_s"],
        max_failed=p["max_failed"],
    )
    try:
        outcome = transitions(problems)
    except StateError as exc:
        module.fail_json(msg=str(exc))
    for warning in outcome.pop("warnings"):
        module.warn(warning)
    result = {
        "changed": bool(outcome["alerts"] or outcome["recoveries"]),
        "healthy": not problems,
        "queues": queues,
        "failed_recent": stats["failed_recent"],
        "problems": problems,
        **outcome,
    }
    if problems and p["fail_on_unhealthy"]:
        module.fail_json(msg=f"queues of {p['database']} are unhealthy: " + "; ".join(problems.values()), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
