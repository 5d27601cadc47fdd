"""b2_sync side by side with `aws s3 sync` and `rclone sync`, one run, same local endpoint.

The bench starts its own S3-compatible server (moto_server, a separate process on
127.0.0.1), makes its own data, and counts every request each tool sends from the server's
access log. Two scenarios:

1. first upload of a backup set: one >= 500 MB backup plus smaller ones and their manifests;
2. no-op re-sync of 1,000 files already uploaded (b2_sync vs `rclone sync --checksum`,
   with `aws s3 sync` for reference): once with backup-sized files (500 backups of
   64 KiB..2 MiB plus their manifests), once with 1,000 tiny files, where process start-up
   dominates.

Every timing is the median of --rounds runs, the order of the tools rotated each round,
because a shared machine's load moves single runs by tens of percent.

Usage: .venv/bin/python bench/bench_b2.py [--big-mb 512] [--files 1000] [--rounds 3] [--out bench/results/b2.json]
(--size-mb, which bench/run_all.sh passes to every bench, is the same as --big-mb.)
awscli is taken from .venv-bench (scripts/bootstrap.sh bench), rclone from Debian.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import process_cpu_s  # noqa: E402

from tests.support.runner import COLLECTIONS, ensure_collection_path, module_env  # noqa: E402

KEY_ID, SECRET = "benchkey", "benchsecret"
LOG_RE = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (/[^ ]*) HTTP/1\.1" (\d{3})')
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours 3xx/4xx/5xx lines
STARTED_RE = re.compile(r"Running on https://127\.0\.0\.1:(\d+)")  # werkzeug, once it has bound the port


class Moto:
    """moto_server as a child process; its access log tells how many requests each tool sent."""

    def __init__(self, workdir: Path) -> None:
        self.log_path = workdir / "moto.log"
        self._log = open(self.log_path, "w")
        exe = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen(
            # TLS (a throw-away certificate), as against B2: the clients sign as they would in production,
            # where botocore does not hash upload bodies for SigV4 (it does over plain http).
            # Port 0: moto binds a port the kernel picks and logs it (no race for a free port).
            [str(exe), "-H", "127.0.0.1", "-p", "0", "-s"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            match = STARTED_RE.search(self.log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                self.url = f"https://127.0.0.1:{self.port}"
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not start: see {self.log_path}")

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the server has used so far."""
        return process_cpu_s(self.proc.pid) or 0.0

    def mark(self) -> int:
        self._log.flush()
        return self.log_path.stat().st_size

    def requests_since(self, offset: int, bucket: str) -> dict[str, int]:
        time.sleep(0.3)  # let the server flush its last log lines
        counts: collections.Counter[str] = collections.Counter()
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            for line in handle:
                match = LOG_RE.search(ANSI_RE.sub("", line))
                if match and match.group(2).startswith(f"/{bucket}"):
                    counts[operation(match.group(1), match.group(2))] += 1
        counts["total"] = sum(counts.values())
        return dict(counts)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def operation(method: str, path: str) -> str:
    sys.path.insert(0, str(COLLECTIONS))
    from ansible_collections.mutuapix.ops.plugins.module_utils._s3 import classify_request

    return classify_request(method, "http://x" + path)


def admin(url: str) -> Any:
    import boto3
    import urllib3
    from botocore.config import Config

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # our own throw-away certificate

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
        verify=False,
    )


def make_backup(directory: Path, name: str, size: int, database: str) -> None:
    """A file of incompressible bytes plus the manifest mysql_backup would write."""
    path = directory / name
    digest = hashlib.sha256()
    block = os.urandom(4 * 1024 * 1024)
    with open(path, "wb") as handle:
        remaining = size
        counter = 0
        while remaining > 0:
            chunk = (counter.to_bytes(8, "big") + block)[: min(len(block), remaining)]
            handle.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
            counter += 1
    manifest = {
        "format_version": 1,
        "database": database,
        "file": name,
        "size": size,
        "sha256": digest.hexdigest(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    (directory / (name + ".manifest.json")).write_text(json.dumps(manifest, indent=2))


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%SZ")


def make_big_set(directory: Path, big_mb: int) -> int:
    now = dt.datetime.now(dt.timezone.utc)
    make_backup(directory, f"app-{stamp(now)}.sql.zst", big_mb * 1024 * 1024 + 12345, "app")
    for day in range(1, 4):
        make_backup(directory, f"crm-{stamp(now - dt.timedelta(days=day))}.sql.zst", 3 * 1024 * 1024 + day, "crm")
    return sum(p.stat().st_size for p in directory.iterdir())


def make_many(directory: Path, files: int, min_kb: int, max_kb: int) -> int:
    """``files`` files: half backups of min_kb..max_kb KiB (spread evenly), half their manifests."""
    now = dt.datetime.now(dt.timezone.utc)
    count = files // 2
    for i in range(count):
        size = (min_kb + (max_kb - min_kb) * i // max(count - 1, 1)) * 1024 + i
        make_backup(directory, f"db{i % 10}-{stamp(now - dt.timedelta(hours=i))}.sql.zst", size, f"db{i % 10}")
    return sum(p.stat().st_size for p in directory.iterdir())


# ----------------------------------------------------------------------------- the tools


def tool_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "B2_", "RCLONE_"))}
    env.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1")
    return env


def run_b2_sync(url: str, bucket: str, src: Path, cache: Path, use_cache: bool = True, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "ANSIBLE_MODULE_ARGS": {
            "src": str(src),
            "bucket": bucket,
            "prefix": "bench/",
            "endpoint_url": url,
            "key_id": KEY_ID,
            "application_key": SECRET,
            "cache_file": str(cache),
            "use_cache": use_cache,
            "validate_certs": False,
            **extra,
        }
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(args, handle)
    try:
        cmd = [sys.executable, "-m", "ansible_collections.mutuapix.ops.plugins.modules.b2_sync", handle.name]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=module_env(tool_env()), check=False)
    finally:
        os.unlink(handle.name)
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    if result.get("failed"):
        raise RuntimeError(f"b2_sync failed: {result.get('msg')}")
    return result


def run_aws(url: str, bucket: str, src: Path) -> None:
    aws = ROOT / ".venv-bench" / "bin" / "aws"
    if not aws.exists():
        raise RuntimeError("awscli missing: run scripts/bootstrap.sh bench")
    cmd = [str(aws), "s3", "sync", str(src), f"s3://{bucket}/bench/", "--endpoint-url", url, "--only-show-errors"]
    cmd.append("--no-verify-ssl")
    subprocess.run(cmd, check=True, env=tool_env(), stderr=subprocess.DEVNULL)


def run_rclone(url: str, bucket: str, src: Path, checksum: bool = False) -> None:
    env = tool_env()
    env.update(
        RCLONE_CONFIG_BENCH_TYPE="s3",
        RCLONE_CONFIG_BENCH_PROVIDER="Other",
        RCLONE_CONFIG_BENCH_ENDPOINT=url,
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=KEY_ID,
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET,
        RCLONE_CONFIG_BENCH_REGION="us-east-1",
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
    )
    cmd = ["rclone", "sync", str(src), f"bench:{bucket}/bench", "--config", "/dev/null", "--no-check-certificate"]
    if checksum:
        cmd.append("--checksum")
    subprocess.run(cmd, check=True, env=env, capture_output=True)


def timed(moto: Moto, bucket: str, func: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Wall time, CPU time of the tool's processes and of the server (user + system), requests the server saw.

    The server's CPU tells whether a run measured the tool or the endpoint: moto is one Python process,
    and when its CPU seconds come close to the wall time, the server was the bottleneck.
    """
    offset = moto.mark()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = moto.cpu_s()
    start = time.monotonic()
    func(*args, **kwargs)
    seconds = time.monotonic() - start
    server = moto.cpu_s() - server_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 2),
        "server_cpu_s": round(server, 2),
        "requests": moto.requests_since(offset, bucket),
    }


def fresh_bucket(s3: Any, name: str) -> str:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def drop_bucket(s3: Any, name: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if objects:
            s3.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
    s3.delete_bucket(Bucket=name)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = sorted(r["seconds"] for r in runs)
    return {
        "seconds": statistics.median(seconds),
        "all_seconds": [r["seconds"] for r in runs],
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "server_cpu_s": statistics.median(r["server_cpu_s"] for r in runs),
        "requests": runs[0]["requests"],
    }


def bench_first_upload(moto: Moto, s3: Any, workdir: Path, big_mb: int, rounds: int) -> dict[str, Any]:
    src = workdir / "big"
    src.mkdir()
    info: dict[str, Any] = {"bytes": make_big_set(src, big_mb)}
    info["files"] = len(list(src.iterdir()))
    tools: dict[str, Any] = {
        "b2_sync (defaults: 100 MiB parts, 4 threads)": lambda b: run_b2_sync(moto.url, b, src, workdir / f"c-{b}"),
        "b2_sync (part_size_mb=16, concurrency=8)": lambda b: run_b2_sync(
            moto.url, b, src, workdir / f"c-{b}", part_size_mb=16, concurrency=8
        ),
        "aws s3 sync": lambda b: run_aws(moto.url, b, src),
        "rclone sync": lambda b: run_rclone(moto.url, b, src),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
    names = list(tools)
    for rnd in range(rounds):
        for name in names[rnd % len(names) :] + names[: rnd % len(names)]:  # rotate the order
            bucket = fresh_bucket(s3, f"first-{len(runs[name])}-{names.index(name)}")
            runs[name].append(timed(moto, bucket, tools[name], bucket))
            drop_bucket(s3, bucket)
    info["tools"] = {name: median_run(r) for name, r in runs.items()}
    for run in info["tools"].values():
        run["mb_s"] = round(info["bytes"] / run["seconds"] / 1e6, 1)
    return info


def bench_noop(moto: Moto, s3: Any, workdir: Path, label: str, files: int, kb: tuple[int, int], rounds: int) -> Any:
    src = workdir / label
    src.mkdir()
    info: dict[str, Any] = {"bytes": make_many(src, files, *kb), "files": files}
    cache = workdir / f"cache-{label}"
    tools: dict[str, Any] = {
        "b2_sync": lambda b: run_b2_sync(moto.url, b, src, cache),
        "b2_sync (use_cache=false)": lambda b: run_b2_sync(moto.url, b, src, cache, use_cache=False),
        "rclone sync --checksum": lambda b: run_rclone(moto.url, b, src, checksum=True),
        "aws s3 sync": lambda b: run_aws(moto.url, b, src),
    }
    buckets = {}
    for i, name in enumerate(tools):
        buckets[name] = fresh_bucket(s3, f"noop-{label}-{i}")
        if name != "b2_sync (use_cache=false)":
            tools[name](buckets[name])  # the initial upload, not timed
    buckets["b2_sync (use_cache=false)"] = buckets["b2_sync"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
    names = list(tools)
    for rnd in range(rounds):
        for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
            runs[name].append(timed(moto, buckets[name], tools[name], buckets[name]))
    for name in tools:
        if name != "b2_sync (use_cache=false)":
            drop_bucket(s3, buckets[name])
    info["tools"] = {name: median_run(r) for name, r in runs.items()}
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--big-mb", "--size-mb", dest="big_mb", type=int, default=512, help="size of the big backup (>= 500)"
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "b2.json"))
    opts = parser.parse_args()
    ensure_collection_path()
    workdir = Path(tempfile.mkdtemp(prefix="bench-b2-"))
    moto = Moto(workdir)
    results: dict[str, Any] = {
        "endpoint": "moto_server on 127.0.0.1 over TLS (separate process)",
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "rounds": opts.rounds,
        "note": "seconds are medians of the rounds (order rotated each round); requests from the first round; "
        "cpu_s: the tool's processes, server_cpu_s: moto_server's, both medians",
    }
    try:
        s3 = admin(moto.url)
        results["first_upload"] = bench_first_upload(moto, s3, workdir, opts.big_mb, opts.rounds)
        results["noop_resync_backups"] = bench_noop(moto, s3, workdir, "backups", opts.files, (64, 2048), opts.rounds)
        results["noop_resync_tiny"] = bench_noop(moto, s3, workdir, "tiny", opts.files, (2, 2), opts.rounds)
    finally:
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    results["ratios"] = ratios(results)
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(results, indent=2) + "\n")
    print_report(results)
    return 0


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Other tool's time / b2_sync's time: above 1 means b2_sync is faster."""
    out = {}
    first = results["first_upload"]["tools"]
    for ours in [n for n in first if n.startswith("b2_sync")]:
        for other in ("aws s3 sync", "rclone sync"):
            out[f"first_upload: {other} / {ours}"] = round(first[other]["seconds"] / first[ours]["seconds"], 2)
    for scenario in ("noop_resync_backups", "noop_resync_tiny"):
        tools = results[scenario]["tools"]
        for other in ("rclone sync --checksum", "aws s3 sync"):
            out[f"{scenario}: {other} / b2_sync"] = round(tools[other]["seconds"] / tools["b2_sync"]["seconds"], 2)
    return out


def print_report(results: dict[str, Any]) -> None:
    for scenario in ("first_upload", "noop_resync_backups", "noop_resync_tiny"):
        data = results[scenario]
        print(f"\n{scenario}: {data['files']} files, {data['bytes'] / 1e6:.1f} MB")
        print(
            f"  {'tool':46} {'median s':>8} {'MB/s':>7} {'CPU s':>6} {'server':>6} {'requests':>9}  runs / by operation"
        )
        for tool, run in data["tools"].items():
            ops = {k: v for k, v in run["requests"].items() if k != "total"}
            line = f"  {tool:46} {run['seconds']:8.2f} {run.get('mb_s', ''):>7} {run['cpu_s']:6.2f}"
            line += f" {run['server_cpu_s']:6.2f}"
            line += f" {run['requests']['total']:9d}"
            print(f"{line}  {run['all_seconds']} {ops}")
    print("\nratios (> 1 means b2_sync is faster):")
    for name, value in results["ratios"].items():
        print(f"  {name:80} {value}")


if __name__ == "__main__":
    sys.exit(main())
