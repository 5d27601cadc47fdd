"""Shared bench plumbing: a private MariaDB with a ≥ 1 GB-dump database, timing, peak RSS."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / ".build" / "collections"))

from tests.support import datagen  # noqa: E402
from tests.support.mariadb import MariaDB  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BENCH_DB_DIR = ROOT / ".build" / "bench-mariadb"


def bench_server(size_mb: int, database: str = "bench") -> MariaDB:
    """Start (or reuse) the bench server; (re)generate ``database`` when its size differs."""
    server = MariaDB(BENCH_DB_DIR, buffer_pool="4G")
    server.start(timeout=300)
    marker = BENCH_DB_DIR / f".{database}.size_mb"
    if not marker.exists() or marker.read_text().strip() != str(size_mb):
        print(f"bench: generating database {database!r} for a plain dump of about {size_mb} MB ...", flush=True)
        started = time.monotonic()
        datagen.create_database(server, database, size_mb * 1_000_000)
        marker.write_text(str(size_mb))
        print(f"bench: generated in {time.monotonic() - started:.0f}s", flush=True)
    return server


def module_dump_options(server: MariaDB, database: str = "bench", binary: bool | None = None) -> list[str]:
    """The options mysql_backup gives mariadb-dump on this server, so peers dump exactly alike.

    The bench server logs binlogs, so the module adds its snapshot-position options. ``binary``
    False: the options of a utf8mb4 session instead, whatever the module would choose.
    """
    from ansible_collections.mutuapix.ops.plugins.module_utils import _backup, _dumpfile
    from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import server_info

    conn = server.connect()
    try:
        info = server_info(conn)
        extra = _backup.snapshot_position_args(conn, info, "mariadb-dump", [])
        if binary is None:
            binary = _backup.binary_session_safe(conn, database, info)
    finally:
        conn.close()
    return [*_dumpfile.dump_options(binary), *extra]


def module_cmd(args: dict, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The command (and environment) that runs mysql_backup with ``args``, as Ansible would."""
    path = workdir / "args.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    env = dict(os.environ, PYTHONPATH=str(ROOT / ".build" / "collections"))
    python = str(ROOT / ".venv" / "bin" / "python")
    return [python, "-m", "ansible_collections.mutuapix.ops.plugins.modules.mysql_backup", str(path)], env


def option_file(server: MariaDB) -> Path:
    path = BENCH_DB_DIR / "client.cnf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f'[client]\nuser=root\npassword="{server.ROOT_PASSWORD}"\nsocket={server.socket}\n')
    return path


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a running process (the database server), or None."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(
    cmd: list[str] | str, shell: bool = False, env: dict[str, str] | None = None, server_pid: int | None = None
) -> dict[str, Any]:
    """Run a command; wall time, the peak RSS (VmHWM) of the top process, sampled, and CPU seconds.

    ``cpu_s`` is the command's own process tree (user + system, children included);
    ``server_cpu_s`` the database server's over the same interval, when ``server_pid`` is given.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = process_cpu_s(server_pid)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, shell=shell, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak_kb = 0
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.02)
    out, err = proc.communicate()
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_after = process_cpu_s(server_pid)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({proc.returncode}): {err.decode()[-2000:]} {out.decode()[-2000:]}")
    result = {
        "seconds": round(elapsed, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
        "stdout": out.decode()[-4000:],
    }
    if server_before is not None and server_after is not None:
        result["server_cpu_s"] = round(server_after - server_before, 2)
    return result


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
