"""A real supervisord per test (own config dir, socket and logs under a temp dir) and worker
scripts that behave like ``php artisan queue:work``: they loop over "jobs", finish the current
one on SIGTERM, and can be told to leak memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.runner import ModuleResult, run_module

SUPERVISORD = shutil.which("supervisord") or "/usr/bin/supervisord"

WORKER = textwrap.dedent(
    """\
    import argparse, os, signal, sys, time

    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--leak-mb-per-s", type=float, default=0.0)
    parser.add_argument("--job-s", type=float, default=0.1)
    parser.add_argument("--max-mb", type=float, default=400)
    args = parser.parse_args()
    stopping = False

    def on_term(signum, frame):
        global stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)

    def log(event):
        with open(args.log, "a") as handle:
            handle.write(f"{event} {os.getpid()} {time.time():.3f} {os.environ.get('WORKER_TAG', '')}\\n")

    log("start")
    hog = []
    step = min(args.job_s, 0.1)
    while not stopping:
        job_end = time.monotonic() + args.job_s  # one "job": a SIGTERM lets it run to its end
        while time.monotonic() < job_end:
            time.sleep(step)
            if args.leak_mb_per_s and len(hog) * args.leak_mb_per_s * step < args.max_mb:  # at most --max-mb
                hog.append(b"x" * int(args.leak_mb_per_s * step * 1024 * 1024))
    log("graceful-stop")
    """
)

FAKE_ARTISAN = textwrap.dedent(
    """\
    <?php
    // Stands in for Laravel's artisan: records its arguments, then works until stopped.
    file_put_contents(getenv('ARTISAN_LOG'), implode(' ', $argv) . "\\n", FILE_APPEND);
    while (true) { usleep(100000); }
    """
)


class Supervisord:
    """supervisord -n with its socket, conf.d and logs in ``base``."""

    def __init__(self, base: Path, username: str | None = None, password: str | None = None) -> None:
        self.base = base
        self.conf_d = base / "conf.d"
        self.logs = base / "logs"
        self.socket = base / "supervisor.sock"
        self.url = f"unix://{self.socket}"
        self.username = username
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        self.conf_d.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        # supervisord expands %(name)s in its own options too: a literal '%' is written doubled.
        auth = (
            f"username={self.username}\npassword={(self.password or '').replace('%', '%%')}\n" if self.username else ""
        )
        conf = self.base / "supervisord.conf"
        conf.write_text(
            textwrap.dedent(
                f"""\
                [unix_http_server]
                file={self.socket}
                chmod=0700
                """
            )
            + auth
            + textwrap.dedent(
                f"""\

                [supervisord]
                logfile={self.base}/supervisord.log
                pidfile={self.base}/supervisord.pid
                childlogdir={self.logs}
                loglevel=info

                [rpcinterface:supervisor]
                supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

                [include]
                files = {self.conf_d}/*.conf
                """
            )
        )
        return conf

    def start(self) -> Supervisord:
        conf = self.write_config()
        self.proc = subprocess.Popen(
            [SUPERVISORD, "-n", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"supervisord exited: {(self.base / 'supervisord.log').read_text()[-2000:]}")
            if self.socket.exists():
                return self
            time.sleep(0.05)
        raise RuntimeError("supervisord did not create its socket")

    def stop(self) -> None:
        """Stop supervisord and make sure none of its children outlive it (a test worker may ignore SIGTERM)."""
        if self.proc is None:
            return
        children: list[int] = []
        with contextlib.suppress(Exception):
            children = [p["pid"] for p in self.rpc().getAllProcessInfo() if p["pid"]]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        for pid in children:  # each child runs in its own process group (supervisor calls setpgrp)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def rpc(self) -> Any:
        from ansible_collections.mutuapix.ops.plugins.module_utils._memmon import server_proxy

        return server_proxy(self.url, self.username, self.password, timeout=30).supervisor

    def pids(self, group: str) -> dict[str, int]:
        return {
            f"{group}:{p['name']}": p["pid"]
            for p in self.rpc().getAllProcessInfo()
            if p["group"] == group and p["statename"] == "RUNNING"
        }

    def groups(self) -> set[str]:
        return {p["group"] for p in self.rpc().getAllProcessInfo()}


@pytest.fixture
def supervisord() -> Iterator[Supervisord]:
    base = Path(tempfile.mkdtemp(prefix="mpx-sv-"))  # short: a Unix socket path is limited to 107 bytes
    server = Supervisord(base).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def worker_script(tmp_path: Path) -> Path:
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path


@pytest.fixture
def fake_laravel(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "artisan").write_text(FAKE_ARTISAN)
    return app


class Workers:
    """Runs supervisor_worker_limits against the test supervisord."""

    def __init__(self, server: Supervisord, script: Path, tmp: Path) -> None:
        self.server = server
        self.script = script
        self.tmp = tmp

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.events"

    def events(self, name: str) -> list[list[str]]:
        path = self.log(name)
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def args(
        self, name: str, leak: float = 0, job_s: float = 0.1, max_mb: float | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        command = [sys.executable, str(self.script), "--log", str(self.log(name)), "--job-s", str(job_s)]
        if leak:
            command += ["--leak-mb-per-s", str(leak)]
        if max_mb is not None:
            command += ["--max-mb", str(max_mb)]
        base = {
            "name": name,
            "command": command,
            "timeout_s": 5,
            "retry_after_s": 30,
            "config_dir": str(self.server.conf_d),
            "supervisor_url": self.server.url,
            "log_file": str(self.server.logs / f"{name}.log"),
            "listener_path": str(self.tmp / "lib" / "memlimit.py"),
        }
        if self.server.username:
            base["supervisor_username"] = self.server.username
            base["supervisor_password"] = self.server.password
        base.update(kwargs)
        return base

    def run(self, name: str, check: bool = False, diff: bool = False, **kwargs: Any) -> ModuleResult:
        return run_module("supervisor_worker_limits", self.args(name, **kwargs), check=check, diff=diff, timeout=120)


@pytest.fixture
def workers(supervisord: Supervisord, worker_script: Path, tmp_path: Path) -> Workers:
    return Workers(supervisord, worker_script, tmp_path)


def wait_for(predicate: Any, timeout: float = 20, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def read_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
