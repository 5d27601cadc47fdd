"""How much an idle-priority CPU consumer next to a dump slows the dump, on this machine.

mysql_backup compresses at SCHED_IDLE (``cpu_priority: idle``) so that, in principle, it only
uses CPU the database server and the dump program leave free. This bench checks that
principle without the module: the dump runs alone (the floor) and beside synthetic CPU work
(a CRC-32 loop on a 64 KiB buffer: no memory traffic, no I/O, no pipe) of about as many
CPU-seconds as a backup adds (``--work-s``, default 2.4 s: the module's extra CPU per 1.1 GB):

  floor        mariadb-dump > /dev/null
  idle x1      the same, plus one SCHED_IDLE process doing all of the work
  idle x2      the same work split over two SCHED_IDLE processes
  nice19 x1    one process at nice 19 (SCHED_OTHER) doing all of it

Every variant runs once per round, in the same order. ``dump s`` is when the dump finished,
``all s`` when the work had finished too. Ideal SCHED_IDLE behaviour: the dump as fast as the
floor (ratio 1.00), the work done in the floor's idle time and after the dump.

Usage: bench/bench_sched.py [--size-mb 1100] [--rounds 5] [--work-s 2.4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_server, module_dump_options, option_file, save

# A child that sets its own policy, then spins for a number of CRC-32 iterations.
WORKER = """
import os, sys, zlib
policy = sys.argv[1]
if policy == "idle":
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
elif policy == "nice19":
    os.setpriority(os.PRIO_PROCESS, 0, 19)
buf = b"x" * 65536
for _round in range(int(sys.argv[2])):
    zlib.crc32(buf)
"""


def calibrate(seconds: float = 0.5) -> float:
    """CRC-32 iterations per CPU-second of this interpreter (measured at normal priority)."""
    buf = b"x" * 65536
    count = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        for _round in range(1000):
            zlib.crc32(buf)
        count += 1000
    return count / (time.process_time() - start)


def run(dump: list[str], workers: list[tuple[str, int]]) -> tuple[float, float]:
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, policy, str(n)]) for policy, n in workers]
    with open(os.devnull, "wb") as null:
        subprocess.run(dump, stdout=null, check=True)
    dumped = time.monotonic() - started
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError("a CPU worker failed")
    return dumped, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1100, help="approximate plain dump size of the database")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work-s", type=float, default=2.4, help="CPU-seconds of synthetic work beside the dump")
    args = parser.parse_args()
    rate = calibrate()
    total = int(rate * args.work_s)
    variants = {
        "floor": [],
        "idle x1": [("idle", total)],
        "idle x2": [("idle", total // 2), ("idle", total // 2)],
        "nice19 x1": [("nice19", total)],
    }
    server = bench_server(args.size_mb)
    try:
        dump = ["mariadb-dump", f"--defaults-file={option_file(server)}", *module_dump_options(server), "bench"]
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for rnd in range(args.rounds):
            print(f"bench: round {rnd + 1}/{args.rounds}", flush=True)
            for name, workers in variants.items():
                results[name].append(run(dump, workers))
    finally:
        server.stop()
    floor = [r[1] for r in results["floor"]]
    summary = {}
    header = f"{'variant':<10} {'dump s':>7} {'all s':>7} {'dump/floor':>11} {'all/floor':>10}"
    print(f"\n{header}   (medians; ratios paired)")
    for name, runs in results.items():
        row = {
            "dump_s": round(statistics.median(r[0] for r in runs), 2),
            "all_s": round(statistics.median(r[1] for r in runs), 2),
            "dump_vs_floor_paired_median": round(
                statistics.median(r[0] / f for r, f in zip(runs, floor, strict=True)), 3
            ),
            "all_vs_floor_paired_median": round(
                statistics.median(r[1] / f for r, f in zip(runs, floor, strict=True)), 3
            ),
        }
        summary[name] = row
        print(
            f"{name:<10} {row['dump_s']:>7.2f} {row['all_s']:>7.2f} "
            f"{row['dump_vs_floor_paired_median']:>11.3f} {row['all_vs_floor_paired_median']:>10.3f}"
        )
    path = save("sched", {"work_s": args.work_s, "rounds": args.rounds, "runs": results, "summary": summary})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
