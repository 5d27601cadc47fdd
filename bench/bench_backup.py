"""mysql_backup side by side with the tools users would pick instead, in one run.

Peers, on the same database (plain dump ≥ 1 GB by default):
  floor           mariadb-dump > /dev/null           (dumping alone, with mysql_backup's options)
  floor, utf8mb4  the same in a utf8mb4 session with --hex-blob (reference: the options mysql_backup
                  uses on MySQL or with a non-utf8 column, and on MariaDB before 2026-12-01)
  gzip            mariadb-dump | gzip > f.sql.gz      (the classic cron job)
  community.mysql mysql_db state=dump target=f.sql.gz (what the `ansible` package ships)
  zstd -T2 -3     mariadb-dump | zstd -T2 -3 > f.zst  (reference)
  zstd -1         mariadb-dump | zstd -1 > f.zst       (reference: mysql_backup's codec and level, no parsing)
  mydumper        mydumper -t 2 -c                    (reference)
  mysql_backup    this collection (defaults: zstd level 1, compressing thread at cpu_priority=idle)
  mysql_backup cpu_priority=normal / low              (the same, compressing at normal priority / nice 19)

Every peer runs once per round, in the same order; the table shows the best and the median
round of each, the ratios to mysql_backup's best and median, and CPU seconds: the peer's own
process tree and the database server's (the floor shows what dumping alone costs the two
cores; whatever a peer adds competes with the server and the dump program for them).

The JSON summary also gives the CPU budget: ``floor_busy_cores`` (the floor's and the server's
CPU seconds per wall second) and, for mysql_backup, the CPU it adds over the floor and the ratio
that CPU alone predicts when none of the floor's idle time can be used,
1 + extra CPU / (cores x floor), with the extra CPU a 1.3 x ratio allows.

Targets (issue 2): mysql_backup <= 1.3 x floor; >= 2 x faster than gzip and community.mysql;
file no larger than gzip -6's; peak RSS of the module process <= 150 MB.

Usage: bench/bench_backup.py [--size-mb 1100] [--rounds 3] [--skip community mydumper]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, bench_server, module_cmd, module_dump_options, option_file, save, size_of, timed

MB = "mysql_backup (defaults)"
UTF8_FLOOR = "floor, utf8mb4 session (--hex-blob)"
BENCH_VENV = ROOT / ".venv-bench" / "bin"


def community_mysql_cmd(server, cnf: Path, db: str, target: Path, workdir: Path) -> list[str]:
    playbook = workdir / "cm.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - community.mysql.mysql_db:\n"
        f"        name: {db}\n        state: dump\n        target: {target}\n"
        f"        login_unix_socket: {server.socket}\n        config_file: {cnf}\n"
        "        single_transaction: true\n"
    )
    return [
        str(BENCH_VENV / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={BENCH_VENV / 'python'}",
        str(playbook),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1100, help="approximate plain dump size of the database")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], help="peers to skip (e.g. community.mysql mydumper)")
    args = parser.parse_args()
    server = bench_server(args.size_mb)
    cnf = option_file(server)
    db = "bench"
    work = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=str(ROOT / ".build")))
    # The peers dump with exactly the options mysql_backup uses.
    dump = ["mariadb-dump", f"--defaults-file={cnf}", *module_dump_options(server), db]
    # The floor with the options of a utf8mb4 session (MySQL, or a column in another character set; and
    # every MariaDB backup before 2026-12-01): what the binary session saves, in the same rounds.
    # (Not run when the module itself dumps in utf8mb4 on this database: it would be the floor again.)
    utf8_dump = ["mariadb-dump", f"--defaults-file={cnf}", *module_dump_options(server, binary=False), db]
    utf8_floor = {UTF8_FLOOR: (" ".join(utf8_dump) + " > /dev/null", True, None, None)} if utf8_dump != dump else {}
    server_pid = int(server.pidfile.read_text().strip())
    results: dict[str, list[dict]] = {}
    try:
        for rnd in range(args.rounds):
            print(f"bench: round {rnd + 1}/{args.rounds}", flush=True)
            runs = {
                "floor (dump > /dev/null)": (" ".join(dump) + " > /dev/null", True, None, None),
                **utf8_floor,
                MB: (None, False, None, work / "mb"),
                "mysql_backup cpu_priority=low": (None, False, None, work / "mb-low"),
                "mysql_backup cpu_priority=normal": (None, False, None, work / "mb-normal"),
                "dump | gzip -6": (" ".join(dump) + f" | gzip -6 > {work}/g.sql.gz", True, None, work / "g.sql.gz"),
                "dump | zstd -T2 -3": (
                    " ".join(dump) + f" | zstd -q -T2 -3 > {work}/z.sql.zst",
                    True,
                    None,
                    work / "z.sql.zst",
                ),
                "dump | zstd -1": (
                    " ".join(dump) + f" | zstd -q -1 > {work}/z1.sql.zst",
                    True,
                    None,
                    work / "z1.sql.zst",
                ),
                "community.mysql mysql_db dump .gz": (None, False, None, work / "cm.sql.gz"),
                "mydumper -t 2 -c": (None, False, None, work / "mydumper"),
            }
            for name, (cmd, shell, env, output) in runs.items():
                if any(s in name for s in args.skip):
                    continue
                if name.startswith("mysql_backup"):
                    shutil.rmtree(output, ignore_errors=True)
                    module_args = {
                        "login_unix_socket": server.socket,
                        "config_file": str(cnf),
                        "database": db,
                        "dest": str(output),
                    }
                    if "cpu_priority=" in name:
                        module_args["cpu_priority"] = name.rsplit("=", 1)[1]
                    cmd, env = module_cmd(module_args, work)
                elif name.startswith("community.mysql"):
                    if not (BENCH_VENV / "ansible-playbook").exists():
                        print("bench: .venv-bench missing (run `make bench`), skipping community.mysql", flush=True)
                        continue
                    cmd = community_mysql_cmd(server, cnf, db, output, work)
                elif name.startswith("mydumper"):
                    shutil.rmtree(output, ignore_errors=True)
                    cmd = [
                        "mydumper",
                        f"--defaults-file={cnf}",
                        "-B",
                        db,
                        "-t",
                        "2",
                        "-c",
                        "-o",
                        str(output),
                        "--routines",
                        "--triggers",
                        "--events",
                    ]
                print(f"bench:   {name} ...", end="", flush=True)
                res = timed(cmd, shell=shell, env=env, server_pid=server_pid)
                res.pop("stdout", None)
                if output is not None and output.exists():
                    res["bytes"] = size_of(output)
                print(f" {res['seconds']} s" + (f", {res['bytes'] / 1e6:.1f} MB" if "bytes" in res else ""), flush=True)
                results.setdefault(name, []).append(res)
        plain = int(
            server.execute("SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (db,))[0][
                0
            ]
        )
        manifest = next((work / "mb").glob("*.manifest.json"), None)
        uncompressed = json.loads(manifest.read_text())["uncompressed_size"] if manifest else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()

    best = {name: min(r["seconds"] for r in runs) for name, runs in results.items()}
    median = {name: statistics.median(r["seconds"] for r in runs) for name, runs in results.items()}
    mb_run = min(results[MB], key=lambda r: r["seconds"])
    print()
    print(f"database: InnoDB data {plain / 1e6:.0f} MB, plain dump {uncompressed / 1e6 if uncompressed else 0:.0f} MB")
    header = ("best s", "median s", "x mb best", "x mb med", "MB", "cpu s", "server")
    print(f"{'peer':36} " + " ".join(f"{h:>{w}}" for h, w in zip(header, (7, 8, 9, 9, 7, 6, 6), strict=True)))
    for name, runs in results.items():
        run = min(runs, key=lambda r: r["seconds"])
        size = f"{run['bytes'] / 1e6:7.1f}" if "bytes" in run else " " * 7
        cpu = statistics.median(r["cpu_s"] for r in runs)
        server_cpu = statistics.median(r.get("server_cpu_s", 0.0) for r in runs)
        print(
            f"{name:36} {best[name]:7.2f} {median[name]:8.2f} {best[name] / best[MB]:9.2f} "
            f"{median[name] / median[MB]:9.2f} {size} {cpu:6.1f} {server_cpu:6.1f}"
        )
    floor = "floor (dump > /dev/null)"

    def ratio(table: dict[str, float], num: str, den: str) -> float | None:
        return round(table[num] / table[den], 3) if num in table and den in table else None

    def paired(num: str, den: str) -> float | None:
        """Median over rounds of num/den in the same round: the machine's drift cancels out."""
        if num not in results or den not in results or len(results[num]) != len(results[den]):
            return None
        pairs = [a["seconds"] / b["seconds"] for a, b in zip(results[num], results[den], strict=True)]
        return round(statistics.median(pairs), 3)

    # The CPUs this bench may run on (affinity), which is what the dump and the module share.
    cores = len(os.sched_getaffinity(0))

    def total_cpu(run: dict) -> float:
        """CPU seconds of a round: the peer's process tree and the database server's."""
        return run["cpu_s"] + run.get("server_cpu_s", 0.0)

    def busy_cores(name: str) -> float | None:
        """Median over rounds of total_cpu / wall seconds."""
        if name not in results:
            return None
        return round(statistics.median(total_cpu(r) / r["seconds"] for r in results[name]), 2)

    def cpu_budget(name: str) -> dict[str, float] | None:
        """The CPU a peer adds over the floor, and the ratio that CPU alone predicts.

        When the floor already keeps the cores busy and none of its idle time can be used
        (on this 2-core reference machine the dump program and the server keep ~1.7 cores
        busy), every CPU-second a backup adds costs 1/cores of a second of wall time:
        predicted ratio = 1 + extra CPU / (cores x floor). Per round, median over rounds.
        """
        if name not in results or floor not in results or len(results[name]) != len(results[floor]):
            return None
        extra, predicted = [], []
        for a, b in zip(results[name], results[floor], strict=True):
            added = total_cpu(a) - total_cpu(b)
            extra.append(added)
            predicted.append(1 + added / (cores * b["seconds"]))
        return {
            "extra_cpu_s": round(statistics.median(extra), 2),
            "predicted_vs_floor": round(statistics.median(predicted), 3),
            "extra_cpu_s_allowed_at_1_3": round(0.3 * cores * median[floor], 2),
        }

    summary = {
        "plain_dump_bytes": uncompressed,
        "rounds": args.rounds,
        "mysql_backup_vs_floor": ratio(best, MB, floor),
        "mysql_backup_vs_floor_median": ratio(median, MB, floor),
        "mysql_backup_vs_floor_paired_median": paired(MB, floor),
        "mysql_backup_vs_floor_rounds": [
            round(a["seconds"] / b["seconds"], 3)
            for a, b in zip(results.get(MB, []), results.get(floor, []), strict=False)
        ],
        "mysql_backup_vs_utf8mb4_floor_paired_median": paired(MB, UTF8_FLOOR),
        "gzip_vs_mysql_backup": ratio(best, "dump | gzip -6", MB),
        "gzip_vs_mysql_backup_median": ratio(median, "dump | gzip -6", MB),
        "gzip_vs_mysql_backup_paired_median": paired("dump | gzip -6", MB),
        "community_mysql_vs_mysql_backup": ratio(best, "community.mysql mysql_db dump .gz", MB),
        "community_mysql_vs_mysql_backup_median": ratio(median, "community.mysql mysql_db dump .gz", MB),
        "cores": cores,
        "floor_busy_cores": busy_cores(floor),
        "mysql_backup_cpu_budget": cpu_budget(MB),
        "mysql_backup_peak_rss_mb": max(r["peak_rss_mb"] for r in results[MB]),
        "mysql_backup_bytes": mb_run.get("bytes"),
        "gzip_bytes": min(results["dump | gzip -6"], key=lambda r: r["seconds"]).get("bytes")
        if "dump | gzip -6" in results
        else None,
    }
    print()
    print(json.dumps(summary, indent=1))
    path = save("backup", {"size_mb": args.size_mb, "results": results, "summary": summary})
    print(f"bench: results written to {path}")


if __name__ == "__main__":
    main()
