"""Where mysql_backup's time over the floor goes: the pipeline built up one stage at a time.

Each variant is a fresh process that runs the dump program exactly as the module does (its
options, the ``stdbuf`` 1 MiB output buffer) and feeds the output through the module's own
code, with one more stage each time. Every variant runs once per round, in the same order,
so each round's drift cancels out in the paired ratios:

  floor      mariadb-dump > /dev/null
  pipe       the module's reader (``_backup.pump``), whose worker thread discards each chunk
  +parse     the worker parses (``_dumpfile.DumpParser``: frames, row counts) and discards
  +zstd      the worker only compresses (``_dumpfile.FrameWriter``: the module's default
             zstd settings, SHA-256 of the output), into /dev/null, without parsing
  pipeline   parse and compress into a file: the module's hot path without the module
  module     the mysql_backup module itself (preflight, lock, fsync, manifest included)

The worker runs at the module's default ``cpu_priority: idle``. ``cpu s`` is the process
tree's CPU (user + system), the dump program's included.

Usage: bench/bench_pipeline.py [--size-mb 1100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, bench_server, module_cmd, module_dump_options, option_file, save, timed

STAGES = ("pipe", "+parse", "+zstd", "pipeline")


def child(stage: str, dump: list[str], out_dir: str) -> None:
    """One variant: the dump program piped into the module's reader, with ``stage``'s work."""
    from ansible_collections.mutuapix.ops.plugins.module_utils import _backup, _dumpfile

    proc = subprocess.Popen([*_backup.output_buffering_prefix(), *dump], stdout=subprocess.PIPE)
    writer = None
    if stage == "pipe":

        def consume(_chunk: bytearray) -> None:
            return None

    elif stage == "+parse":
        consume = _dumpfile.DumpParser(_dumpfile.NullFrameWriter("xxh64-32"), digest=False).feed
    elif stage == "+zstd":
        sink = open(os.devnull, "wb")
        writer = _dumpfile.FrameWriter(sink)
        writer.begin()
        consume = writer.write
    else:
        sink = open(os.path.join(out_dir, "pipeline.sql.zst"), "wb")
        parser = _dumpfile.DumpParser(_dumpfile.FrameWriter(sink), digest=False)
        consume = parser.feed
    _backup.pump(proc.stdout, consume, "idle")
    if proc.wait() != 0:
        raise SystemExit(f"the dump program failed with exit code {proc.returncode}")
    if stage == "pipeline":
        parser.finish()
        if not parser.completed:
            raise SystemExit("the dump ended without its trailer")
        sink.close()
    elif writer is not None:
        writer.end()
        sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1100, help="approximate plain dump size of the database")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, json.loads(args.dump), args.out)
        return

    server = bench_server(args.size_mb)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=str(ROOT / ".build")))
    try:
        cnf = option_file(server)
        dump = ["mariadb-dump", f"--defaults-file={cnf}", *module_dump_options(server), "bench"]
        module, env = module_cmd(
            {
                "login_unix_socket": server.socket,
                "config_file": str(cnf),
                "database": "bench",
                "dest": str(work / "module"),
            },
            work,
        )
        me = [sys.executable, str(Path(__file__).resolve())]
        # A shell redirect: timed() captures what a command prints, and the dump must not be captured.
        variants: dict[str, list[str] | str] = {"floor": shlex.join(dump) + " > /dev/null"}
        for stage in STAGES:
            variants[stage] = [*me, "--child", stage, "--dump", json.dumps(dump), "--out", str(work)]
        variants["module"] = module
        results: dict[str, list[dict]] = {name: [] for name in variants}
        for rnd in range(args.rounds):
            print(f"bench: round {rnd + 1}/{args.rounds}", flush=True)
            for name, cmd in variants.items():
                shutil.rmtree(work / "module", ignore_errors=True)
                res = timed(cmd, shell=name == "floor", env=env)
                res.pop("stdout", None)
                results[name].append(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()

    floor = [r["seconds"] for r in results["floor"]]
    summary = {}
    previous = 1.0
    print(f"\n{'variant':<9} {'median s':>9} {'cpu s':>6} {'x floor':>8} {'step':>7}   (ratios: paired medians)")
    for name, runs in results.items():
        ratio = statistics.median(r["seconds"] / f for r, f in zip(runs, floor, strict=True))
        row = {
            "median_s": round(statistics.median(r["seconds"] for r in runs), 2),
            "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 2),
            "vs_floor_paired_median": round(ratio, 3),
            "per_round": [round(r["seconds"] / f, 3) for r, f in zip(runs, floor, strict=True)],
        }
        summary[name] = row
        # The "+zstd" variant compresses without parsing: its step is against "pipe".
        base = summary["pipe"]["vs_floor_paired_median"] if name == "+zstd" else previous
        step = "" if name == "floor" else f"{ratio - base:+7.3f}"
        print(f"{name:<9} {row['median_s']:>9.2f} {row['cpu_s']:>6.1f} {ratio:>8.3f} {step:>7}")
        if name != "+zstd":
            previous = ratio
    path = save("pipeline", {"rounds": args.rounds, "runs": results, "summary": summary})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
