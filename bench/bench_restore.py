"""mysql_restore_verify side by side with the tools a DBA would use instead, in ONE run.

On a private MariaDB (2 GB buffer pool) this bench generates a Laravel-like database whose
plain dump is ``--size-mb`` (default 1100 MB), backs it up with mysql_backup, then times on
the same server, one after the other, each into a fresh database:

* the file check alone (``check_backup``) as ``verify: content`` and ``verify: rows`` run it
* ``zstdcat f | mariadb db``                        (plain restore of the same file)
* ``zstdcat f | mariadb --init-command=sql_log_bin=0`` (the same without binlog, as the module runs)
* mysql_restore_verify mode=verify verify=content   (restore + content verification)
* mysql_restore_verify mode=verify verify=rows      (the restore part: load + exact row counts)
* ``myloader -t 2`` of a ``mydumper -t 2 -c`` dump of the same data
* mysql_restore_verify mode=restore                 (shadow + verify + cutover; reports cutover_ms)

The module runs as a separate process as Ansible runs it; its peak RSS is its VmHWM from
/proc. Prints a table of ratios and writes JSON to bench/results/.

    .venv/bin/python bench/bench_restore.py --size-mb 1100
    .venv/bin/python bench/bench_restore.py --size-mb 30      # smoke check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import datagen  # noqa: E402
from tests.support.mariadb import MariaDB  # noqa: E402
from tests.support.runner import COLLECTIONS, ensure_collection_path, run_module  # noqa: E402

ensure_collection_path()
sys.path.insert(0, str(COLLECTIONS))
from ansible_collections.mutuapix.ops.plugins.module_utils import _restore  # noqa: E402


def peak_rss_watcher(holder: dict[str, int]) -> Any:
    """A popen_hook recording the module process's VmHWM (peak RSS, kB) until it exits."""

    def hook(proc: subprocess.Popen[bytes]) -> None:
        def poll() -> None:
            path = f"/proc/{proc.pid}/status"
            while proc.poll() is None:
                try:
                    with open(path, encoding="ascii") as handle:
                        for line in handle:
                            if line.startswith("VmHWM:"):
                                holder["kb"] = max(holder.get("kb", 0), int(line.split()[1]))
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)

        threading.Thread(target=poll, daemon=True).start()

    return hook


LOAD: dict[str, float] = {}


def note_load(label: str) -> None:
    """The 1-minute load average before each measurement: other work on the machine skews timings."""
    LOAD[label] = round(os.getloadavg()[0], 2)


def timed_module(name: str, args: dict[str, Any]) -> tuple[float, dict[str, Any], int]:
    rss: dict[str, int] = {}
    started = time.monotonic()
    result = run_module(name, args, popen_hook=peak_rss_watcher(rss), timeout=3600)
    elapsed = time.monotonic() - started
    if result.get("failed"):
        raise SystemExit(f"{name} failed: {result.get('msg')}\n{result.stderr[-3000:]}")
    return elapsed, dict(result), rss.get("kb", 0)


def pipeline(first: list[str], second: list[str]) -> float:
    started = time.monotonic()
    producer = subprocess.Popen(first, stdout=subprocess.PIPE)
    consumer = subprocess.Popen(second, stdin=producer.stdout)
    assert producer.stdout is not None
    producer.stdout.close()
    rc2 = consumer.wait()
    rc1 = producer.wait()
    if rc1 or rc2:
        raise SystemExit(f"pipeline failed: {first[0]} rc={rc1}, {second[0]} rc={rc2}")
    return time.monotonic() - started


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def file_check_cost(src: str, rounds: int = 3) -> dict[str, float]:
    """check_backup as content verification needs it (data regions hashed) and as ``verify: rows``
    does (frame checksums only): best CPU seconds and wall seconds of ``rounds``, in this process."""
    best: dict[str, float] = {}
    for _round in range(rounds):
        for label, content in (("content", True), ("rows", False)):
            before, started = os.times(), time.monotonic()
            _restore.check_backup(src, [], content_digests=content).close()
            after = os.times()
            cpu = after.user + after.system - before.user - before.system
            wall = time.monotonic() - started
            best[f"{label}_cpu_s"] = round(min(best.get(f"{label}_cpu_s", cpu), cpu), 2)
            best[f"{label}_wall_s"] = round(min(best.get(f"{label}_wall_s", wall), wall), 2)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1100, help="approximate plain dump size (MB)")
    parser.add_argument("--workdir", help="where the server and files go (default: a temp dir, removed)")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mutuapix-bench-restore-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server = MariaDB(workdir / "server", buffer_pool="2G")
    figures: dict[str, Any] = {}
    try:
        server.start()
        login = server.login
        socket_args = ["--socket", server.socket, "-u", "root", f"--password={server.ROOT_PASSWORD}"]

        print(f"bench: generating ~{args.size_mb:g} MB of Laravel-like data ...", flush=True)
        started = time.monotonic()
        rows = datagen.create_database(server, "app", int(args.size_mb * 1_000_000))
        figures["datagen_s"] = round(time.monotonic() - started, 1)

        backups = workdir / "backups"
        backups.mkdir(exist_ok=True)
        elapsed, backup, _rss = timed_module("mysql_backup", dict(login, database="app", dest=str(backups)))
        manifest = json.loads(Path(backup["manifest_path"]).read_text())
        src = backup["path"]
        figures.update(
            backup_s=round(elapsed, 1),
            plain_dump_bytes=manifest["uncompressed_size"],
            file_bytes=manifest["size"],
            rows=rows,
        )
        print(f"bench: plain dump {manifest['uncompressed_size'] / 1e6:.0f} MB, file {manifest['size'] / 1e6:.0f} MB")

        figures["file_check"] = file_check_cost(src)
        print(f"bench: file check (check_backup), CPU-s / wall s: {figures['file_check']}", flush=True)

        def fresh(name: str) -> None:
            server.execute(f"DROP DATABASE IF EXISTS `{name}`")
            server.execute(f"CREATE DATABASE `{name}`")

        def drop(name: str) -> None:
            server.execute(f"DROP DATABASE IF EXISTS `{name}`")

        client = server.client_args()
        fresh("plain")
        note_load("plain")
        figures["plain_s"] = round(pipeline(["zstdcat", "-q", src], [*client, "plain"]), 2)
        drop("plain")
        print(f"bench: zstdcat | mariadb            {figures['plain_s']:8.2f} s", flush=True)

        fresh("plain_nobinlog")
        note_load("plain_nobinlog")
        figures["plain_nobinlog_s"] = round(
            pipeline(["zstdcat", "-q", src], [*client, "--init-command=SET sql_log_bin=0", "plain_nobinlog"]), 2
        )
        drop("plain_nobinlog")
        print(f"bench: zstdcat | mariadb (no binlog) {figures['plain_nobinlog_s']:8.2f} s", flush=True)

        note_load("verify_content")
        elapsed, result, rss = timed_module("mysql_restore_verify", dict(login, src=src, workers=2))
        figures.update(
            verify_content_s=round(elapsed, 2),
            verify_content_rss_mb=round(rss / 1024, 1),
            verify_content_module=dict((k, result[k]) for k in ("restore_s", "verify_s", "duration_s", "bytes")),
        )
        print(f"bench: module verify=content        {elapsed:8.2f} s  peak RSS {rss / 1024:.0f} MB", flush=True)

        note_load("verify_rows")
        elapsed, result, rss = timed_module("mysql_restore_verify", dict(login, src=src, workers=2, verify="rows"))
        figures.update(verify_rows_s=round(elapsed, 2), verify_rows_rss_mb=round(rss / 1024, 1))
        print(f"bench: module verify=rows (restore) {elapsed:8.2f} s  peak RSS {rss / 1024:.0f} MB", flush=True)

        mydumper_dir = workdir / "mydumper"
        shutil.rmtree(mydumper_dir, ignore_errors=True)
        figures["mydumper_s"] = round(
            timed(["mydumper", *socket_args, "-B", "app", "-t", "2", "-c", "-o", str(mydumper_dir), "-v", "1"]), 2
        )
        drop("ml")
        note_load("myloader")
        figures["myloader_s"] = round(
            timed(["myloader", *socket_args, "-d", str(mydumper_dir), "-B", "ml", "-t", "2", "-v", "1"]), 2
        )
        drop("ml")
        print(f"bench: myloader -t 2                {figures['myloader_s']:8.2f} s", flush=True)

        drop("app_restored")
        elapsed, result, rss = timed_module(
            "mysql_restore_verify", dict(login, src=src, workers=2, mode="restore", target_database="app_restored")
        )
        figures.update(
            restore_mode_s=round(elapsed, 2), restore_mode_rss_mb=round(rss / 1024, 1), cutover_ms=result["cutover_ms"]
        )
        # A second restore over the now non-empty target: the cutover swaps 8 tables and keeps the old ones.
        elapsed, result, rss = timed_module(
            "mysql_restore_verify",
            dict(login, src=src, workers=2, mode="restore", target_database="app_restored", force=True, keep_old=0),
        )
        figures.update(restore_replace_s=round(elapsed, 2), cutover_replace_ms=result["cutover_ms"])
        print(
            f"bench: module restore (replace)     {elapsed:8.2f} s  cutover {result['cutover_ms']:.0f} ms", flush=True
        )
    finally:
        server.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    ratios = {
        "verify_content / plain zstdcat|mariadb": figures["verify_content_s"] / figures["plain_s"],
        "verify_content / plain without binlog": figures["verify_content_s"] / figures["plain_nobinlog_s"],
        "verify_rows (restore part) / myloader -t 2": figures["verify_rows_s"] / figures["myloader_s"],
    }
    figures["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    figures["targets"] = {
        "verify_content / plain zstdcat|mariadb": "<= 1.0",
        "verify_rows (restore part) / myloader -t 2": "<= 1.0",
        "peak RSS": "<= 200 MB",
    }
    figures["load_avg_1min_before"] = LOAD
    figures["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "size_mb_arg": args.size_mb}
    print()
    print(f"{'comparison':48s} {'ratio':>7s}")
    for key, value in ratios.items():
        print(f"{key:48s} {value:7.3f}")
    peak = max(figures["verify_content_rss_mb"], figures["verify_rows_rss_mb"], figures["restore_mode_rss_mb"])
    print(f"{'peak RSS of the module (MB)':48s} {peak:7.1f}")
    print(
        f"{'cutover_ms (empty target / replacing)':48s} "
        f"{figures['cutover_ms']:.0f} / {figures['cutover_replace_ms']:.0f}"
    )
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = results / f"restore-{stamp}.json"
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"\nbench: results in {out}")


if __name__ == "__main__":
    main()
