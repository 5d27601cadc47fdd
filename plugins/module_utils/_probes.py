# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the probe modules measure (private API): Laravel database queues and HTTP/TLS endpoints.

Each probe returns its measurements plus a dict of *problems* (``{check_id: message}``)
that :mod:`_alerts` turns into transition-only notifications.
"""

from __future__ import annotations

import datetime
import http.client
import re
import socket
import ssl
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import quote_identifier

try:
    import zoneinfo  # novm (Python 3.9+; 3.8 hosts take the ImportError below)

    HAS_ZONEINFO = True
except ImportError:  # pragma: no cover - Python 3.8 managed hosts: fixed offsets and UTC only
    HAS_ZONEINFO = False

try:
    from cryptography import x509

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

# datetime.UTC needs Python 3.11; managed hosts may run an older Python.
_UTC = datetime.timezone.utc
# Bytes of the response body read to measure a complete answer without downloading a file.
MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = "mutuapix.ops-endpoint_check/1"


_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
# A header name http.client sends (its own rule): no colon, no line break, no leading space.
_HEADER_NAME = re.compile(r"[^:\s][^:\r\n]*")
# What HTTP ignores around a header value; a vaulted block scalar (``token: |``) ends in a line break.
_HEADER_PADDING = " \t\r\n"


class ProbeError(Exception):
    """The probe itself cannot run (bad option, missing table): not a health verdict."""


def app_timezone(name: str) -> datetime.tzinfo:
    """The Laravel app's ``app.timezone``: an IANA name (``America/Sao_Paulo``) or a fixed offset (``-03:00``)."""
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return _UTC
    offset = _OFFSET.match(name)
    if offset:
        hours, minutes = int(offset.group(2)), int(offset.group(3))
        if hours > 14 or minutes > 59:
            raise ProbeError(f"app_timezone {name!r}: offsets run from -14:00 to +14:00")
        delta = datetime.timedelta(hours=hours, minutes=minutes)
        return datetime.timezone(-delta if offset.group(1) == "-" else delta)
    if not HAS_ZONEINFO:
        raise ProbeError(f"app_timezone {name!r}: this Python has no zoneinfo (3.9+); give an offset like -03:00")
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        raise ProbeError(
            f"app_timezone {name!r} is not a time zone this host knows (an IANA name such as America/Sao_Paulo, "
            f"or an offset such as -03:00; is tzdata installed?): {exc}"
        ) from exc


# --------------------------------------------------------------------------- queues


# The problem of a run that cannot read the queues at all: the server is down or refuses the login.
DB_UNREACHABLE = "db_unreachable"
# The problem of a run whose reads did not finish within query_timeout: a lock held on the queue
# tables (ALTER TABLE, LOCK TABLES, a long transaction), an overloaded server, a stalled network.
DB_TIMEOUT = "db_timeout"
# The problem of a run that reached the server but could not read the queue tables: a table missing
# (dropped or renamed by a migration, the wrong database), SELECT revoked, a column renamed.
DB_UNREADABLE = "db_unreadable"
# PyMySQL error codes of a connection lost while reading (server gone away, lost during query).
CONNECTION_LOST = (2006, 2013)
# Server errors of a statement stopped by the session limits set in limit_session.
LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT: lock_wait_timeout (metadata locks) or a row lock
STATEMENT_TIMEOUTS = (1969, 3024)  # MariaDB max_statement_time, MySQL max_execution_time
UNKNOWN_SYSTEM_VARIABLE = 1193
# Seconds the socket waits beyond query_timeout: the server's own limits answer first, with a reason.
SOCKET_TIMEOUT_MARGIN_S = 5


def socket_timeout(query_timeout: float) -> float:
    """The connection's read/write timeout: only for a server or network that stops answering."""
    return query_timeout + SOCKET_TIMEOUT_MARGIN_S


def limit_session(connection: Any, query_timeout: int) -> None:
    """Bound how long each statement of the probe may wait or run, on the server's side.

    Without this a read waits as long as the server makes it: behind an ``ALTER TABLE jobs``
    waiting for its metadata lock, or a ``LOCK TABLES``, the probe (and the play, and a cron job
    under ``flock -n``) would hang for good and the outage would never be alerted.
    ``lock_wait_timeout`` bounds waits for table (metadata) locks; MariaDB's
    ``max_statement_time`` and MySQL's ``max_execution_time`` (SELECT only) bound a statement's
    run time - a second longer, so a lock wait is reported as one. A server too old for the latter
    is left with the lock limit and the socket timeout.
    """
    seconds = max(1, int(query_timeout))
    mariadb = "mariadb" in str(getattr(connection, "server_version", "") or "").lower()
    with connection.cursor() as cur:
        cur.execute("SET SESSION lock_wait_timeout = %s", (seconds,))
        if mariadb:
            _set_if_known(cur, "SET SESSION max_statement_time = %s", seconds + 1)
        else:
            _set_if_known(cur, "SET SESSION max_execution_time = %s", (seconds + 1) * 1000)


def _set_if_known(cur: Any, statement: str, value: int) -> None:
    try:
        cur.execute(statement, (value,))
    except Exception as exc:  # PyMySQL's error class is not imported here: only 1193 is swallowed
        if not exc.args or exc.args[0] != UNKNOWN_SYSTEM_VARIABLE:
            raise


def timeout_problem(exc: BaseException, database: str, query_timeout: int) -> str | None:
    """The ``db_timeout`` message for a read stopped by ``query_timeout``, or None for any other error."""
    code = exc.args[0] if exc.args else None
    text = exc.args[1] if len(exc.args) > 1 else str(exc)
    if code == LOCK_WAIT_TIMEOUT:
        why = (
            "it waited for a lock on the queue tables: another session holds one - an ALTER TABLE, OPTIMIZE "
            "TABLE, LOCK TABLES or a long transaction; find it with SHOW PROCESSLIST"
        )
    elif code in STATEMENT_TIMEOUTS:
        why = (
            "a statement ran longer than that (max_statement_time / max_execution_time): is the server "
            "overloaded, or waiting on a lock? See SHOW PROCESSLIST"
        )
    elif code in CONNECTION_LOST and isinstance(exc.__context__, (socket.timeout, TimeoutError)):
        why = (
            f"the server sent no answer for {socket_timeout(query_timeout):g} s: is it overloaded, or does the "
            "network drop packets?"
        )
    else:
        return None
    return (
        f"reading the queue tables of {database} did not finish within query_timeout {query_timeout} s: "
        f"{why} ({code}: {text})"
    )


@dataclass
class QueueLimits:
    name: str
    max_wait_s: int = 300
    max_pending: int | None = None


def queue_limits(option: list[dict[str, Any]] | None, found: list[str]) -> list[QueueLimits]:
    """Queues to judge: the ones configured, or every queue present in the table plus ``default``."""
    if option:
        return [_configured_limits(q) for q in option]
    names = sorted(set(found) | {"default"})
    return [QueueLimits(name) for name in names]


def _configured_limits(queue: dict[str, Any]) -> QueueLimits:
    # Only a missing value takes the default: max_wait_s 0 means no job may wait at all.
    max_wait_s = queue.get("max_wait_s")
    default = QueueLimits(queue["name"])
    return QueueLimits(
        queue["name"], default.max_wait_s if max_wait_s is None else int(max_wait_s), queue.get("max_pending")
    )


def _table_exists(cur: Any, database: str, table: str) -> bool:
    cur.execute(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (database, table),
    )
    return bool(cur.fetchone()[0])


# Rows of failed_jobs read, newest first, to count the recent failures (see read_queue_stats).
NEWEST_FAILED_ROWS = 10_000


def _has_id_key(cur: Any, database: str, table: str) -> bool:
    """Whether ``table`` has Laravel's ``id`` column as the first column of its primary key."""
    cur.execute(
        "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
        " AND INDEX_NAME = 'PRIMARY' AND SEQ_IN_INDEX = 1 AND COLUMN_NAME = 'id'",
        (database, table),
    )
    return bool(cur.fetchone()[0])


def read_queue_stats(
    connection: Any,
    database: str,
    *,
    jobs_table: str,
    failed_jobs_table: str,
    retry_after_s: int,
    failed_window_s: int,
    app_tz: datetime.tzinfo = _UTC,
    newest_failed: int = NEWEST_FAILED_ROWS,
) -> dict[str, Any]:
    """Per-queue counts from Laravel's ``jobs`` table and recent failures from ``failed_jobs``.

    Times come from the database server's clock (``UNIX_TIMESTAMP()``), the clock Laravel's
    rows are compared with by the workers' own queries on the same server.

    ``failed_jobs`` is never pruned unless the app schedules ``queue:prune-failed``, and Laravel
    does not index ``failed_at``: counting the window over the whole table read every row, every
    run (a million failures of 4.5 KB: 8 s, near the default ``query_timeout``). With Laravel's
    auto-increment ``id``, only the ``newest_failed`` newest rows are read (backwards along the
    primary key), so a count reaching it means at least that many.
    """
    jobs = f"{quote_identifier(database)}.{quote_identifier(jobs_table)}"
    failed = f"{quote_identifier(database)}.{quote_identifier(failed_jobs_table)}"
    with connection.cursor() as cur:
        for table in (jobs_table, failed_jobs_table):
            if not _table_exists(cur, database, table):
                raise ProbeError(
                    f"table {database}.{table} does not exist or this account cannot see it: is {database} the Laravel "
                    "database, are the queue tables created (php artisan queue:table / queue:failed-table, then "
                    f"migrate), and does the account have SELECT on {database}.{table}? Set jobs_table / "
                    "failed_jobs_table if they are named differently"
                )
        cur.execute("SELECT UNIX_TIMESTAMP()")
        now = int(cur.fetchone()[0])
        cur.execute(
            f"SELECT queue,"
            f" SUM(reserved_at IS NULL AND available_at <= %s),"
            f" SUM(reserved_at IS NULL AND available_at > %s),"
            f" SUM(reserved_at IS NOT NULL),"
            f" SUM(reserved_at IS NOT NULL AND reserved_at <= %s),"
            f" MIN(CASE WHEN reserved_at IS NULL AND available_at <= %s THEN available_at END)"
            f" FROM {jobs} GROUP BY queue",
            (now, now, now - retry_after_s, now),
        )
        queues: dict[str, dict[str, Any]] = {}
        for name, pending, delayed, reserved, expired, oldest in cur.fetchall():
            queues[str(name)] = {
                "pending": int(pending or 0),
                "delayed": int(delayed or 0),
                "reserved": int(reserved or 0),
                "expired_reservations": int(expired or 0),
                "oldest_wait_s": max(0, now - int(oldest)) if oldest is not None else 0,
            }
        # Laravel writes failed_at as the app's wall-clock time (app.timezone), whatever the server's zone.
        condition, bounds = failed_at_condition(now - failed_window_s, now, app_tz)
        if _has_id_key(cur, database, failed_jobs_table):
            cur.execute(
                f"SELECT COUNT(*) FROM (SELECT failed_at FROM {failed} ORDER BY id DESC LIMIT %s) AS newest"
                f" WHERE {condition}",
                (newest_failed, *bounds),
            )
        else:
            cur.execute(f"SELECT COUNT(*) FROM {failed} WHERE {condition}", bounds)
        failed_recent = int(cur.fetchone()[0])
    return {"now": now, "queues": queues, "failed_recent": failed_recent}


_WALL_CLOCK = "%Y-%m-%d %H:%M:%S"
# Step of the search for a change of UTC offset: no zone changes its offset twice within an hour.
_OFFSET_STEP_S = 3600


def _offset(timestamp: int, tz: datetime.tzinfo) -> datetime.timedelta | None:
    return datetime.datetime.fromtimestamp(timestamp, tz=tz).utcoffset()


def _last_second_at_offset(first: int, last: int, tz: datetime.tzinfo) -> int:
    """The last second of ``first``..``last`` still at ``first``'s UTC offset in ``tz``."""
    offset = _offset(first, tz)
    low = first
    while low < last:
        probe = min(low + _OFFSET_STEP_S, last)
        if _offset(probe, tz) == offset:
            low = probe
            continue
        high = probe  # the offset changed in low+1..probe: find the last second before the change
        while high - low > 1:
            middle = (low + high) // 2
            if _offset(middle, tz) == offset:
                low = middle
            else:
                high = middle
        return low
    return last


def wall_clock_ranges(start: int, end: int, tz: datetime.tzinfo) -> list[tuple[str, str]]:
    """The wall-clock times of ``tz`` the instants ``start``..``end`` (Unix seconds) were written as.

    One range per UTC offset in force: ``[first, after)`` (``after`` is the wall-clock time one second
    past the range, so fractional seconds are not lost). Across a DST change the wall clock jumps:
    forward, the ranges are apart; back (the repeated hour), they overlap.
    """
    ranges: list[tuple[str, str]] = []
    first = start
    while first <= end:
        last = _last_second_at_offset(first, end, tz)
        zone = datetime.timezone(_offset(first, tz) or datetime.timedelta(0))
        ranges.append(
            (
                datetime.datetime.fromtimestamp(first, tz=zone).strftime(_WALL_CLOCK),
                datetime.datetime.fromtimestamp(last + 1, tz=zone).strftime(_WALL_CLOCK),
            )
        )
        first = last + 1
    return ranges


def failed_at_condition(start: int, end: int, tz: datetime.tzinfo) -> tuple[str, tuple[str, ...]]:
    """The SQL condition on ``failed_at`` (a wall-clock time of ``tz``) for failures from ``start`` to ``end``.

    Subtracting the window from the wall clock is wrong across a DST change: after the clocks go
    back, "an hour ago" is a wall-clock time after the failures of the last minutes. The window is
    counted per UTC offset instead. The latest range is left open (a failure stamped by an app server
    whose clock is a little ahead still counts), unless the clocks went back less than an hour ago:
    then it would take in the rest of the repeated hour's first pass. A failure stamped during the
    repeated hour cannot be told from its twin an hour apart; it counts when either is in the window.
    """
    ranges = wall_clock_ranges(start, end, tz)
    clauses: list[str] = []
    bounds: list[str] = []
    for index, (first, after) in enumerate(ranges):
        if index == len(ranges) - 1 and all(after > earlier[1] for earlier in ranges[:index]):
            clauses.append("failed_at >= %s")
            bounds.append(first)
        else:
            clauses.append("(failed_at >= %s AND failed_at < %s)")
            bounds.extend((first, after))
    condition = " OR ".join(clauses)
    return (condition if len(clauses) == 1 else f"({condition})"), tuple(bounds)


def empty_queue() -> dict[str, int]:
    return {"pending": 0, "delayed": 0, "reserved": 0, "expired_reservations": 0, "oldest_wait_s": 0}


def queue_problems(
    stats: dict[str, Any], limits: list[QueueLimits], *, retry_after_s: int, failed_window_s: int, max_failed: int
) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """The judged queues (name -> counts) and the problems found."""
    judged: dict[str, dict[str, int]] = {}
    problems: dict[str, str] = {}
    for limit in limits:
        counts = stats["queues"].get(limit.name, empty_queue())
        judged[limit.name] = counts
        if counts["oldest_wait_s"] > limit.max_wait_s:
            problems[f"queue:{limit.name}:wait"] = (
                f"queue {limit.name}: the oldest pending job has waited {counts['oldest_wait_s']} s "
                f"(max_wait_s {limit.max_wait_s}) with {counts['pending']} pending: are the workers running?"
            )
        if limit.max_pending is not None and counts["pending"] > limit.max_pending:
            problems[f"queue:{limit.name}:pending"] = (
                f"queue {limit.name}: {counts['pending']} pending jobs (max_pending {limit.max_pending})"
            )
        if counts["expired_reservations"]:
            problems[f"queue:{limit.name}:expired_reservations"] = (
                f"queue {limit.name}: {counts['expired_reservations']} job(s) reserved more than {retry_after_s} s "
                "ago (retry_after_s): a worker died or hangs"
            )
    if stats["failed_recent"] > max_failed:
        problems["failed_jobs"] = (
            f"{stats['failed_recent']} jobs failed in the last {failed_window_s} s (max_failed {max_failed})"
        )
    return judged, problems


# --------------------------------------------------------------------------- endpoints


@dataclass
class EndpointResult:
    status: int | None = None
    latency_ms: int | None = None
    tls_days_left: int | None = None
    tls_not_after: str | None = None
    error: str | None = None
    problems: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Checks this request could not evaluate (no answer, no certificate): not a recovery.
    not_evaluated: set[str] = field(default_factory=set)


def _ssl_context(validate_certs: bool, ca_path: str | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=ca_path) if validate_certs else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"cannot load ca_path {ca_path}: {exc}") from exc
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _not_after(der: bytes | None, verified: dict[str, Any] | None) -> datetime.datetime | None:
    if verified and verified.get("notAfter"):
        return datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(verified["notAfter"]), tz=_UTC)
    if der and HAS_CRYPTOGRAPHY:
        cert = x509.load_der_x509_certificate(der)
        if hasattr(cert, "not_valid_after_utc"):
            return cert.not_valid_after_utc
        return cert.not_valid_after.replace(tzinfo=_UTC)
    return None


class _TLSConnection(http.client.HTTPConnection):
    """HTTPS to ``host`` whose TLS server name - sent as SNI and verified - is ``server_name``.

    ``http.client.HTTPSConnection`` always uses the host it dials, so probing a server by IP
    address with a ``Host`` header would read (and check against the IP) the default vhost's
    certificate instead of the site's.
    """

    default_port = 443

    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(host, port, timeout=timeout)
        self.tls_context = context
        self.server_name = server_name

    def connect(self) -> None:
        super().connect()
        self.sock = self.tls_context.wrap_socket(self.sock, server_hostname=self.server_name)


def parse_url(url: str) -> urllib.parse.SplitResult:
    """``url`` split, or a ProbeError naming what is wrong with it (scheme, host, port)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeError(f"url {url!r} must be an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - urllib checks the port only when it is read
    except ValueError as exc:
        raise ProbeError(f"url {url!r} has an invalid port: {exc}") from exc
    return parts


def clean_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """The headers to send: valid names, values without the spaces and line breaks HTTP ignores around them.

    A line break inside a value is refused by name only - http.client's own error would quote the
    value, a secret more often than not, in a traceback.
    """
    clean = {}
    for name, value in (headers or {}).items():
        if not _HEADER_NAME.fullmatch(name):
            raise ProbeError(f"header {name!r} is not a valid header name")
        value = value.strip(_HEADER_PADDING)
        if "\r" in value or "\n" in value or "\x00" in value:
            raise ProbeError(f"the value of header {name} contains a line break or a NUL byte: HTTP cannot send it")
        clean[name] = value
    return clean


def host_header(headers: dict[str, str] | None) -> str | None:
    """The value of a ``Host`` request header (any case), or None."""
    for key, value in (headers or {}).items():
        if key.lower() == "host" and value:
            return value
    return None


def tls_server_name(url_host: str, headers: dict[str, str] | None) -> str:
    """The TLS server name: the ``Host`` header's name without its port when given, else the URL's host."""
    value = host_header(headers)
    if value:
        name = urllib.parse.urlsplit("//" + value.strip()).hostname
        if name:
            return name
    return url_host


def endpoint_identity(url: str, headers: dict[str, str] | None) -> str:
    """What tells two probed endpoints apart: the whole URL, and the ``Host`` header when one is sent."""
    value = host_header(headers)
    return url if not value else f"{url} Host:{value.strip().lower()}"


def _fetch_certificate_unverified(host: str, port: int, timeout: float, server_name: str) -> bytes | None:
    """The server's certificate even when it does not verify (expired, self-signed)."""
    context = _ssl_context(False, None)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None


def _record_tls(result: EndpointResult, not_after: datetime.datetime | None, tls_min_days: int, now: float) -> None:
    if not_after is None:
        result.warnings.append("could not read the certificate's expiry (install cryptography on the managed host)")
        return
    result.not_evaluated.discard("tls_expiry")
    seconds_left = not_after.timestamp() - now
    result.tls_not_after = not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    result.tls_days_left = int(seconds_left // 86400)
    if seconds_left <= 0:
        result.problems["tls_expiry"] = f"the TLS certificate expired on {result.tls_not_after}"
    elif result.tls_days_left < tls_min_days:
        result.problems["tls_expiry"] = (
            f"the TLS certificate expires in {result.tls_days_left} day(s), on {result.tls_not_after} "
            f"(tls_min_days {tls_min_days}): renew it"
        )


def check_endpoint(
    url: str,
    *,
    method: str = "GET",
    expected_status: list[int] | None = None,
    timeout: float = 10,
    tls_min_days: int = 14,
    validate_certs: bool = True,
    ca_path: str | None = None,
    headers: dict[str, str] | None = None,
) -> EndpointResult:
    """One request to ``url``: status, latency and, for HTTPS, the certificate's remaining days.

    Redirects are not followed: a 301 is reported as 301, so list it in ``expected_status``
    when that is the healthy answer. With a ``Host`` header (probing by IP address), HTTPS
    asks for and verifies that name's certificate (SNI), not the address's. A check the
    request could not get to (the status of a server that does not answer, the certificate
    of one that refuses the connection) is left in ``not_evaluated``: it is neither healthy
    nor failing this run.
    """
    expected = expected_status or [200]
    parts = parse_url(url)
    headers = clean_headers(headers)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    result = EndpointResult()
    result.not_evaluated = {"status", "tls_expiry", "tls_invalid"} if parts.scheme == "https" else {"status"}
    server_name = tls_server_name(host, headers)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = _ssl_context(validate_certs, ca_path)
        connection = _TLSConnection(host, port, timeout=timeout, context=context, server_name=server_name)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    request_headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
    request_headers.update(headers or {})
    started = time.monotonic()
    try:
        connection.connect()
        if parts.scheme == "https":
            # Read the certificate now: with "Connection: close" the socket is gone after the response.
            tls_sock: Any = connection.sock
            result.not_evaluated.discard("tls_invalid")
            der = tls_sock.getpeercert(binary_form=True)
            verified = tls_sock.getpeercert() if validate_certs else None
            _record_tls(result, _not_after(der, verified), tls_min_days, time.time())
        connection.request(method, target, headers=request_headers)
        response = connection.getresponse()
        response.read(MAX_BODY_BYTES)
        result.latency_ms = int((time.monotonic() - started) * 1000)
        result.status = response.status
        result.not_evaluated.discard("status")
    except ssl.SSLCertVerificationError as exc:
        name = f"{host}:{port}" if server_name == host else f"{server_name} (at {host}:{port})"
        result.error = f"TLS verification failed for {name}: {exc.verify_message or exc}"
        result.problems["tls_invalid"] = result.error
        result.not_evaluated.discard("tls_invalid")
        der = _fetch_certificate_unverified(host, port, timeout, server_name)
        if der is not None and HAS_CRYPTOGRAPHY:
            _record_tls(result, _not_after(der, None), tls_min_days, time.time())
    except (OSError, http.client.HTTPException) as exc:
        result.error = f"{method} {_safe_url(parts)} failed: {_describe(exc)}"
        result.problems["unreachable"] = result.error
    finally:
        connection.close()
    if result.status is not None and result.status not in expected:
        result.problems["status"] = (
            f"{method} {_safe_url(parts)} answered HTTP {result.status}, expected {', '.join(map(str, expected))}"
        )
    return result


def _safe_url(parts: urllib.parse.SplitResult) -> str:
    """The URL without user:password and query string, for messages."""
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path or '/'}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    return str(exc) or exc.__class__.__name__
