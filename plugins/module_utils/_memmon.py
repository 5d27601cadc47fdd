# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hard memory limit for supervisor programs: a supervisor event listener (private API).

PHP's ``queue:work --memory`` is a soft limit: the worker checks it between jobs, so a job
that leaks keeps growing until the OOM killer picks a victim - often MySQL. This listener
enforces a hard limit from outside the process: on every ``TICK_5`` event it reads the
resident memory of each process of one group (the process plus its descendants, from
``/proc``) and restarts, through supervisor's XML-RPC API, every process above the limit, all together:
supervisor's own ``stopProcess`` (the ``stopsignal``, so the worker can finish its job), SIGKILL to
its process group if it is still running ``--grace-s`` seconds later, then ``startProcess``.

The file is both a module_utils file (``supervisor_worker_limits`` imports the XML-RPC
transport and copies this file to the managed host) and a standalone script run by
supervisord. It must only use the standard library.

Usage (as supervisord's ``[eventlistener:x]`` command, with ``events=TICK_5``)::

    python3 memlimit.py --group queue-default --limit-mb 768 --grace-s 30

It talks to supervisord at ``SUPERVISOR_SERVER_URL`` (set by supervisord for its children),
authenticating with ``SUPERVISOR_USERNAME``/``SUPERVISOR_PASSWORD`` when set.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import socket
import sys
import time
import urllib.parse
import xmlrpc.client
from typing import Any, TextIO

PAGE_KB = 1024
# Seconds a worker above the limit gets to finish its job after the stop signal, by default.
DEFAULT_GRACE_S = 30
STOPPED_STATES = ("STOPPED", "EXITED", "FATAL", "BACKOFF")


class UnixStreamHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a Unix socket (supervisord's ``[unix_http_server]``)."""

    def __init__(self, socket_path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class UnixStreamTransport(xmlrpc.client.Transport):
    """xmlrpc transport for ``unix://`` URLs, with optional basic auth."""

    def __init__(self, socket_path: str, timeout: float | None = None) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        # get_host_info turns "user:password@" into the Authorization header.
        _host, self._extra_headers, _x509 = self.get_host_info(host)
        return UnixStreamHTTPConnection(self.socket_path, self.timeout)


class TimeoutTransport(xmlrpc.client.Transport):
    """xmlrpc transport for ``http://`` URLs with a socket timeout."""

    def __init__(self, timeout: float | None = None) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


def server_proxy(
    url: str, username: str | None = None, password: str | None = None, timeout: float | None = None
) -> xmlrpc.client.ServerProxy:
    """A ServerProxy for ``unix:///path/to.sock``, a bare socket path, or ``http://host:port``."""
    if url.startswith("unix://") or url.startswith("/"):
        path = url[len("unix://") :] if url.startswith("unix://") else url
        transport: xmlrpc.client.Transport = UnixStreamTransport(path, timeout)
        netloc = "localhost"
        scheme = "http"
        base_path = "/RPC2"
    else:
        parts = urllib.parse.urlsplit(url)
        transport = TimeoutTransport(timeout)
        scheme = parts.scheme or "http"
        netloc = parts.netloc
        base_path = parts.path if parts.path not in ("", "/") else "/RPC2"
    if username:
        credentials = urllib.parse.quote(username, safe="") + ":" + urllib.parse.quote(password or "", safe="")
        netloc = f"{credentials}@{netloc.rsplit('@', 1)[-1]}"
    return xmlrpc.client.ServerProxy(f"{scheme}://{netloc}{base_path}", transport=transport, allow_none=True)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: split after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def rss_mb(pid: int, tree: dict[int, list[int]] | None = None) -> float | None:
    """Resident memory of ``pid`` plus its descendants, in MiB; None when it cannot be read.

    ``tree`` (parent pid -> child pids) can be passed in to scan ``/proc`` once for many pids.
    """
    if pid <= 0 or not os.path.exists(f"/proc/{pid}"):
        return None
    pids = [pid]
    if tree is None:
        tree = _children_map()
    if tree:
        stack = [pid]
        while stack:
            for child in tree.get(stack.pop(), []):
                pids.append(child)
                stack.append(child)
    return round(sum(_rss_kb(p) for p in pids) / PAGE_KB, 1)


def _log(message: str) -> None:
    sys.stderr.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")
    sys.stderr.flush()


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` starttime); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
        # fields after the command name start at field 3 (state); starttime is field 22
        return int(stat[stat.rfind(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _same_process(rpc: Any, name: str, info: dict[str, Any], ticks: int | None) -> bool:
    """Whether supervisord still runs, as ``name``, the very process measured from ``info``.

    A worker can exit by itself (queue:work's soft ``--memory`` limit) while it is measured; supervisord
    then starts a new one, which may reuse nothing but the name - or, rarely, the pid. Restarting by name
    would stop that new worker. Same pid and same start time (supervisord's, and the kernel's in clock
    ticks) before and after the measurement: the same process.
    """
    pid = int(info.get("pid") or 0)
    try:
        now = rpc.supervisor.getProcessInfo(name)
    except xmlrpc.client.Fault:
        return False
    return (
        ticks is not None
        and now.get("statename") == "RUNNING"
        and int(now.get("pid") or 0) == pid
        and now.get("start") == info.get("start")
        and _start_ticks(pid) == ticks
    )


def check_group(rpc: Any, group: str, limit_mb: float, grace_s: float = DEFAULT_GRACE_S) -> list[str]:
    """Restart every running process of ``group`` above ``limit_mb``, all at once; return their names.

    A process that exited or was replaced since it was measured is left alone (see ``_same_process``).
    """
    over: dict[str, int] = {}
    tree = _children_map()
    for info in rpc.supervisor.getAllProcessInfo():
        if info.get("group") != group or info.get("statename") != "RUNNING":
            continue
        pid = int(info.get("pid") or 0)
        ticks = _start_ticks(pid) if pid > 0 else None
        used = rss_mb(pid, tree)
        if used is None or used <= limit_mb:
            continue
        name = f"{group}:{info['name']}"
        if not _same_process(rpc, name, info, ticks):
            _log(f"{name} (pid {pid}) measured {used:.0f} MB but exited or was restarted since: left alone")
            continue
        _log(f"{name} (pid {pid}) uses {used:.0f} MB, above the hard limit of {limit_mb:.0f} MB: restarting")
        over[name] = pid
    return restart_processes(rpc, over, grace_s) if over else []


def restart_processes(rpc: Any, processes: dict[str, int], grace_s: float) -> list[str]:
    """Graceful stop (supervisor's stopsignal), SIGKILL to the process group after ``grace_s``, start.

    Every process (name -> pid measured) is signalled first and waited for against one deadline, so
    several leaking workers are all back within ``grace_s`` plus a few seconds - one after the
    other, the k-th would wait k times the grace while it kept leaking. The grace is bounded here
    rather than by the program's ``stopwaitsecs``: a leaking job keeps leaking while it finishes.
    The killed jobs are retried by Laravel after ``retry_after``, as after any crash.

    SIGKILL goes to the pid supervisord reports for the process it is stopping, never to the pid
    measured earlier: by then that pid may have exited and been reused by another process, while the
    pid supervisord reports is its own child, not yet reaped, so it cannot belong to anything else.
    """
    for name in processes:
        try:
            rpc.supervisor.stopProcess(name, False)
        except xmlrpc.client.Fault as exc:
            _log(f"stopping {name} failed: {exc.faultString}")
    running = _wait_stopped_all(rpc, list(processes), grace_s)
    for name in running:
        pid = _stopping_pid(rpc, name)
        if not pid:
            continue  # stopped in the meantime
        if pid != processes[name]:
            _log(f"{name} is now pid {pid}, not the pid {processes[name]} measured: killing pid {pid}")
        _log(f"{name} (pid {pid}) still running {grace_s:.0f} s after the stop signal: killing its process group")
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(pid, signal.SIGKILL)
    stuck = set(_wait_stopped_all(rpc, running, 30)) if running else set()
    for name in sorted(stuck):
        _log(f"{name} did not stop: leaving it to supervisor")
    restarted = []
    for name in processes:
        if name in stuck:
            continue
        try:
            rpc.supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as exc:
            _log(f"starting {name} failed: {exc.faultString}")
            continue
        restarted.append(name)
    return restarted


def _stopping_pid(rpc: Any, name: str) -> int:
    """The pid supervisord reports for ``name`` while it has not stopped yet; 0 when stopped or unknown."""
    try:
        info = rpc.supervisor.getProcessInfo(name)
    except xmlrpc.client.Fault:
        return 0
    if info.get("statename") in STOPPED_STATES:
        return 0
    return int(info.get("pid") or 0)


def _wait_stopped_all(rpc: Any, names: list[str], seconds: float) -> list[str]:
    """Wait until every process of ``names`` has stopped, or ``seconds`` passed; return those still running."""
    deadline = time.monotonic() + seconds
    running = list(names)
    while True:
        running = [name for name in running if not _stopped(rpc, name)]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.2)


def _stopped(rpc: Any, name: str) -> bool:
    try:
        state = rpc.supervisor.getProcessInfo(name).get("statename")
    except xmlrpc.client.Fault:
        return True  # the process is gone from supervisor altogether
    return state in STOPPED_STATES


def _read_event(stdin: TextIO) -> tuple[dict[str, str], str]:
    header_line = stdin.readline()
    if not header_line:
        raise EOFError
    headers = dict(token.split(":", 1) for token in header_line.split())
    payload = stdin.read(int(headers.get("len", "0")))
    return headers, payload


def listen(
    group: str,
    limit_mb: float,
    grace_s: float = DEFAULT_GRACE_S,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> None:
    """supervisor's event listener protocol: READY, read one event, RESULT, repeat."""
    url = os.environ.get("SUPERVISOR_SERVER_URL", "unix:///var/run/supervisor.sock")
    rpc = server_proxy(url, os.environ.get("SUPERVISOR_USERNAME"), os.environ.get("SUPERVISOR_PASSWORD"), timeout=None)
    _log(f"watching group {group}: hard memory limit {limit_mb:.0f} MB, {grace_s:.0f} s to stop gracefully")
    while True:
        stdout.write("READY\n")
        stdout.flush()
        try:
            headers, _payload = _read_event(stdin)
        except EOFError:
            return
        if headers.get("eventname", "").startswith("TICK"):
            try:
                check_group(rpc, group, limit_mb, grace_s)
            except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
                _log(f"cannot check {group}: {exc}")
        stdout.write("RESULT 2\nOK")
        stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Restart supervisor processes above a hard memory limit.")
    parser.add_argument("--group", required=True, help="supervisor process group to watch")
    parser.add_argument("--limit-mb", type=float, required=True, help="resident memory limit per process, MiB")
    parser.add_argument(
        "--grace-s", type=float, default=DEFAULT_GRACE_S, help="seconds to stop gracefully before SIGKILL"
    )
    args = parser.parse_args(argv)
    listen(args.group, args.limit_mb, args.grace_s)


if __name__ == "__main__":
    main()
