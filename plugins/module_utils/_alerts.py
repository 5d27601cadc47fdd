# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transition-only alerting shared by the probe modules (private API).

A probe (``queue_health``, ``endpoint_check``) reduces what it saw to a dict of *problems*:
``{check_id: message}``. :func:`evaluate` compares it with the state persisted by the
previous run and decides what to say:

========================  =====================================================
previous -> now           outcome
========================  =====================================================
OK -> failing             one alert
failing -> failing        nothing, until ``realert_after_s`` has passed (reminder)
failing -> OK             one recovery
OK -> OK                  nothing
unknown -> failing        one alert (state missing or corrupt: better one extra
                          alert than a silent outage)
unknown -> OK             nothing: never a recovery we cannot prove
failing -> not evaluated  nothing: the failure is kept as it was (see below)
========================  =====================================================

A check missing from ``problems`` is only a recovery when the probe could evaluate it. A
probe names the checks it could not evaluate this run in ``not_evaluated`` (an endpoint
that does not answer has no status code and shows no certificate; a database that refuses
the connection shows no queue): a previous failure of such a check is carried over
unchanged - no recovery, no reminder - until a run evaluates it again. ``EVERY_OTHER_CHECK``
in ``not_evaluated`` stands for every check not in ``problems``.

The state file is written atomically (temporary file, fsync, rename) with mode 0600.
Notifications that could not be delivered stay in the state file and go out with the next
run, so a webhook failure never loses the transition. Runs for the same state file take
turns (an flock on ``<state_file>.lock`` from reading the state to saving it): two
overlapping runs, say a schedule and a manual AWX launch, would otherwise both alert, or
one would overwrite the other's failure with an OK it never announced as a recovery.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

from ansible_collections.mutuapix.ops.plugins.module_utils._flock import wait_for_flock

STATE_VERSION = 1
# Undelivered notifications kept for the next run; older ones are dropped first.
MAX_UNDELIVERED = 20
# Longest "text" of a payload: Discord's Slack-compatible endpoint rejects more than 2000 characters
# (Slack itself truncates at 40000). Every message stays whole in the payload's "mutuapix" object.
MAX_TEXT_CHARS = 1900
# 4xx answers that do not condemn one payload: 408/429 are "later", and 401/403/404/410 refuse the
# URL itself (a revoked or mistyped webhook), so dropping would lose every notification; those are kept.
RETRYABLE_4XX = (401, 403, 404, 408, 410, 429)
DEFAULT_STATE_DIR = "/var/lib/mutuapix-ops"
# In ``not_evaluated``: every check missing from ``problems`` was not evaluated this run.
EVERY_OTHER_CHECK = "*"
# The notification options of every probe module (documented in doc_fragments/alerts.py).
ALERT_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "realert_after_s": {"type": "int", "default": 3600},
    "notify_url": {"type": "str", "no_log": True},
    "notify_timeout": {"type": "int", "default": 10},
}
# Where the default state file goes (each module names the file; see default_state_file).
STATE_DIR_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {"state_dir": {"type": "path"}}


def alert_options(params: dict[str, Any]) -> dict[str, Any]:
    """The module's ALERT_ARGUMENT_SPEC options, as keyword arguments of :func:`run_transitions`."""
    return {name: params[name] for name in ALERT_ARGUMENT_SPEC}


class StateError(Exception):
    """The state file cannot be written: the probe result would be lost."""


class WebhookRejected(RuntimeError):
    """The webhook refused this payload for good (HTTP 4xx): sending it again cannot succeed."""


@dataclass
class Evaluation:
    """What a probe run decided: notifications to send and the state to persist."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Checks failing before that this run could not evaluate: kept failing, not recovered.
    not_evaluated: list[str] = field(default_factory=list)
    previous_known: bool = True

    @property
    def transitions(self) -> bool:
        return bool(self.alerts or self.recoveries)


def load_state(path: str) -> tuple[dict[str, Any] | None, str | None]:
    """The previous run's state, or ``(None, warning)`` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None, f"state file {path} does not exist yet: previous state unknown, no recovery will be reported"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"state file {path} is unreadable or corrupt ({exc}): previous state unknown, it will be rewritten"
    problem = _format_problem(data)
    if problem:
        return None, (
            f"state file {path} has an unexpected format ({problem}): previous state unknown, it will be rewritten"
        )
    return data, None


def _format_problem(data: Any) -> str | None:
    """What makes parsed state unusable (a hand edit, another tool's file), or None when it is sound.

    Every field :func:`evaluate` and :func:`notify` use is checked here, so a valid JSON file
    of the wrong shape is an unknown state with a warning, never a crash mid-run.
    """
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        return f"not a version {STATE_VERSION} state"
    failing = data.get("failing")
    if not isinstance(failing, dict):
        return "'failing' is not an object"
    for check, entry in failing.items():
        if not isinstance(entry, dict):
            return f"failing.{check} is not an object"
        for key in ("since", "last_alert_at"):
            if key in entry and not _is_time(entry[key]):
                return f"failing.{check}.{key} is not a time in seconds"
        if "message" in entry and not isinstance(entry["message"], str):
            return f"failing.{check}.message is not a string"
    undelivered = data.get("undelivered", [])
    if not isinstance(undelivered, list) or not all(isinstance(item, dict) for item in undelivered):
        return "'undelivered' is not a list of notifications"
    return None


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def save_state(path: str, state: dict[str, Any]) -> None:
    """Write the state atomically with mode 0600 (the directory is created 0700 if needed)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StateError(f"cannot write state file {path}: {exc}; check the directory exists and is writable") from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateError(f"cannot write state file {path}: {exc}") from exc


@contextlib.contextmanager
def state_lock(path: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on ``<path>.lock`` (0600); waits up to ``timeout`` seconds."""
    directory = os.path.dirname(os.path.abspath(path))
    lock_path = path + ".lock"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(
            f"cannot write state file {path}: its lock file {lock_path} cannot be opened ({exc}); "
            "check the directory exists and is writable"
        ) from exc
    try:
        if not wait_for_flock(fd, timeout):
            raise StateError(
                f"another run of this probe has held {lock_path} for more than {timeout:g}s; "
                "is a run hanging? Nothing was sent or written"
            )
        yield
    finally:
        os.close(fd)  # closing releases the flock


def evaluate(
    previous: dict[str, Any] | None,
    problems: dict[str, str],
    *,
    now: float,
    realert_after_s: int,
    probe: str,
    target: str,
    not_evaluated: Collection[str] = (),
    evaluated: Collection[str] = (),
) -> Evaluation:
    """Decide alerts and recoveries from the previous state and the current problems.

    ``not_evaluated``: checks this run could not evaluate (or ``EVERY_OTHER_CHECK``); their
    previous failure is carried over instead of being reported as recovered. ``evaluated``:
    checks this run did evaluate although ``not_evaluated`` holds ``EVERY_OTHER_CHECK`` (the
    queue probe that connected, then timed out, did see that the database is reachable).
    """
    result = Evaluation(previous_known=previous is not None)
    old_failing: dict[str, dict[str, Any]] = (previous or {}).get("failing", {})
    failing: dict[str, dict[str, Any]] = {}
    for check, message in sorted(problems.items()):
        before = old_failing.get(check)
        if before is None:
            result.alerts.append({"check": check, "message": message, "since": _iso(now), "repeat": False})
            failing[check] = {"since": now, "last_alert_at": now, "message": message}
            continue
        # Times ahead of now were written by a clock that ran ahead (since set back by NTP, a restored VM
        # snapshot): counted from them, the next reminder would wait until the clock catches up - days, or
        # years. They count from now instead, and a failure never starts after it is seen.
        since = min(float(before.get("since", now)), now)
        last = min(float(before.get("last_alert_at", since)), now)
        entry = {"since": since, "last_alert_at": last, "message": message}
        if realert_after_s > 0 and now - last >= realert_after_s:
            result.alerts.append({"check": check, "message": message, "since": _iso(since), "repeat": True})
            entry["last_alert_at"] = now
        failing[check] = entry
    for check, before in sorted(old_failing.items()):
        if check in problems:
            continue
        if check not in evaluated and (check in not_evaluated or EVERY_OTHER_CHECK in not_evaluated):
            failing[check] = dict(before)
            result.not_evaluated.append(check)
            continue
        since = min(float(before.get("since", now)), now)
        result.recoveries.append(
            {
                "check": check,
                "message": f"recovered: {before.get('message', check)}",
                "failing_since": _iso(since),
                "duration_s": int(now - since),
            }
        )
    result.state = {
        "version": STATE_VERSION,
        "probe": probe,
        "target": target,
        "checked_at": now,
        "checked_at_iso": _iso(now),
        "healthy": not problems,
        "failing": failing,
        "undelivered": list((previous or {}).get("undelivered", []))[-MAX_UNDELIVERED:],
    }
    return result


def build_payload(
    probe: str, target: str, alerts: list[dict[str, Any]], recoveries: list[dict[str, Any]], healthy: bool
) -> dict[str, Any]:
    """The webhook body: Slack-compatible (``text`` + ``attachments``) plus a ``mutuapix`` object."""
    host = socket.gethostname()
    lines = []
    for alert in alerts:
        prefix = "STILL FAILING" if alert.get("repeat") else "FAILING"
        lines.append(f"{prefix} {alert['check']}: {alert['message']}")
    for recovery in recoveries:
        lines.append(f"RECOVERED {recovery['check']} after {recovery['duration_s']} s")
    headline = "problem" if alerts else "recovery"
    text = f"[{probe}] {target} on {host}: {headline}\n" + "\n".join(lines)
    return {
        "text": _shorten(text),
        "attachments": [
            {
                "color": "danger" if alerts else "good",
                "title": f"{probe} {target}",
                "text": _shorten("\n".join(lines)),
                "footer": f"mutuapix.ops on {host}",
            }
        ],
        "mutuapix": {
            "probe": probe,
            "target": target,
            "host": host,
            "healthy": healthy,
            "alerts": alerts,
            "recoveries": recoveries,
        },
    }


def _shorten(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out (chat webhooks refuse long texts)."""
    if len(text) <= limit:
        return text
    note = "\n... ({} more characters; every message is in the payload's mutuapix object)"
    keep = limit - len(note.format(len(text)))
    return text[:keep] + note.format(len(text) - keep)


def post_webhook(url: str, payload: dict[str, Any], timeout: int = 10, validate_certs: bool = True) -> None:
    """POST the JSON payload; raise ``RuntimeError`` with a readable message when it is not delivered.

    :class:`WebhookRejected` (a ``RuntimeError``) when the webhook refused this payload for good.
    """
    body = json.dumps(payload).encode("utf-8")
    try:
        response = open_url(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
            timeout=timeout,
            validate_certs=validate_certs,
            follow_redirects="safe",
        )
        status = response.getcode()
    except (OSError, ValueError, http.client.HTTPException, UrlsConnectionError) as exc:
        # The webhook URL usually embeds a secret token: never echo it.
        code = getattr(exc, "code", None)
        if isinstance(code, int) and 400 <= code < 500 and code not in RETRYABLE_4XX:
            raise WebhookRejected(f"webhook POST answered {_describe_http_error(exc)}") from exc
        hint = ": is the webhook revoked, or its URL mistyped?" if code in (401, 403, 404, 410) else ""
        raise RuntimeError(f"webhook POST failed: {_describe_http_error(exc)}{hint}") from exc
    if status is None or status >= 300:
        raise RuntimeError(f"webhook POST answered HTTP {status}")


def notify(
    url: str | None,
    evaluation: Evaluation,
    *,
    probe: str,
    target: str,
    healthy: bool,
    timeout: int = 10,
    validate_certs: bool = True,
) -> dict[str, Any]:
    """Send this run's transitions (plus earlier undelivered ones) and update the state to match.

    Returns ``{"notified": bool, "notify_error": str | None}``. On a failure that may pass (no
    answer, HTTP 5xx, 408, 429, or 401/403/404/410 refusing the URL itself) that payload and the
    later ones are queued in ``evaluation.state["undelivered"]`` so the next run retries them,
    oldest first. A payload the webhook rejects for good (any other 4xx, such as 400 for a text
    too long) is dropped and said in ``notify_error``: retried first on every run it would block
    every later notification.
    """
    pending: list[dict[str, Any]] = list(evaluation.state.get("undelivered", []))
    if evaluation.transitions:
        pending.append(build_payload(probe, target, evaluation.alerts, evaluation.recoveries, healthy))
    if not url or not pending:
        evaluation.state["undelivered"] = [] if not url else pending
        return {"notified": False, "notify_error": None}
    delivered = 0
    dropped: list[str] = []
    for index, payload in enumerate(pending):
        try:
            post_webhook(url, payload, timeout=timeout, validate_certs=validate_certs)
        except WebhookRejected as exc:
            dropped.append(f"{exc}: dropped the notification {_summary(payload)!r}, which it will never accept")
            continue
        except RuntimeError as exc:
            evaluation.state["undelivered"] = pending[index:][-MAX_UNDELIVERED:]
            kept = f"{exc}; {len(pending) - index} notification(s) kept in the state file for the next run"
            return {"notified": delivered > 0, "notify_error": "; ".join([*dropped, kept])}
        delivered += 1
    evaluation.state["undelivered"] = []
    return {"notified": delivered > 0, "notify_error": "; ".join(dropped) or None}


def _summary(payload: dict[str, Any]) -> str:
    """The first line of a payload's text, for messages."""
    text = payload.get("text")
    return (text if isinstance(text, str) else "").split("\n", 1)[0][:200]


def _describe_http_error(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if code is not None:
        return f"HTTP {code} {getattr(exc, 'reason', '')}".strip()
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or exc.__class__.__name__


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def default_state_file(probe: str, key: str, identity: str | None = None, directory: str | None = None) -> str:
    """``<directory>/<probe>-<key>.json`` with the key reduced to safe characters.

    ``identity``: what really tells two targets apart (an endpoint's full URL, a database's
    server and name). A short hash of it is appended, so targets whose safe, shortened keys
    coincide never share a file. ``directory`` defaults to ``DEFAULT_STATE_DIR``.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:80] or "default"
    if identity is not None:
        safe = safe[:60] + "-" + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]
    return os.path.join(directory or DEFAULT_STATE_DIR, f"{probe}-{safe}.json")


def run_transitions(
    *,
    probe: str,
    target: str,
    problems: dict[str, str],
    state_file: str,
    realert_after_s: int,
    notify_url: str | None,
    notify_timeout: int = 10,
    validate_certs: bool = True,
    check_mode: bool = False,
    now: float | None = None,
    not_evaluated: Collection[str] = (),
    evaluated: Collection[str] = (),
) -> dict[str, Any]:
    """The whole probe epilogue: load state, evaluate, notify, save. Returns result keys.

    ``not_evaluated`` names the checks the probe could not evaluate this run, ``evaluated`` the
    exceptions to ``EVERY_OTHER_CHECK`` (see :func:`evaluate`).

    In check mode the decision is computed and returned but nothing is sent or written.
    The state is saved even when the webhook fails (the transition is never lost); a state
    file that cannot be written raises :class:`StateError`. Outside check mode the whole
    epilogue holds the state file's lock, waiting at most for another run's webhook call.
    """
    lock = contextlib.nullcontext() if check_mode else state_lock(state_file, lock_wait_s(notify_timeout))
    with lock:
        # The clock is read once the lock is held, so a run that waited sees the other's state.
        now = time.time() if now is None else now
        previous, warning = load_state(state_file)
        evaluation = evaluate(
            previous,
            problems,
            now=now,
            realert_after_s=realert_after_s,
            probe=probe,
            target=target,
            not_evaluated=not_evaluated,
            evaluated=evaluated,
        )
        warnings = [warning] if warning else []
        outcome: dict[str, Any] = {"notified": False, "notify_error": None}
        if not check_mode:
            outcome = notify(
                notify_url,
                evaluation,
                probe=probe,
                target=target,
                healthy=not problems,
                timeout=notify_timeout,
                validate_certs=validate_certs,
            )
            if outcome["notify_error"]:
                warnings.append(outcome["notify_error"])
            save_state(state_file, evaluation.state)
    return {
        "alerts": evaluation.alerts,
        "recoveries": evaluation.recoveries,
        "not_evaluated": evaluation.not_evaluated,
        "previous_state_known": evaluation.previous_known,
        "state_file": state_file,
        "notified": outcome["notified"],
        "notify_error": outcome["notify_error"],
        "warnings": warnings,
    }


def lock_wait_s(notify_timeout: int) -> float:
    """How long a run waits for another one: that run's webhook call plus a margin."""
    return max(0, notify_timeout) + 30.0
