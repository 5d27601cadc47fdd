"""Recovery time of a deploy whose migration fails half-way, on a large database.

Recovery time = failure detected (the migrate command exits non-zero) → the site back on the
previous release and the database restored from the pre-deploy backup, maintenance mode off.
The role measures it and prints it in the play's failure message; this script runs deploy.yml
against the stand-in Laravel app and a private MariaDB holding a ``--size-mb`` database
(default about 1.1 GB of plain dump), checks the database is back to the pre-deploy manifest
(exact row counts per table), and writes bench/results/rollback-<time>.json.

    .venv/bin/python bench/bench_rollback.py --size-mb 1100 [--workdir DIR] [--restore-verify rows]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import ROOT, bench_server, option_file, save

from tests.support import datagen, fake_laravel
from tests.support.mariadb import MariaDB
from tests.support.runner import module_env


def deploy(inventory: Path, release: str, archive: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "ansible-playbook"),
            str(ROOT / "playbooks" / "deploy.yml"),
            "-i",
            str(inventory),
            "-e",
            json.dumps({"rollback_release_id": release, "rollback_release_archive": str(archive)}),
        ],
        capture_output=True,
        text=True,
        env=module_env(),
        check=False,
    )
    return proc.returncode, proc.stdout, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1100, help="plain dump size of the database (default 1100)")
    parser.add_argument("--workdir", help="own MariaDB and files here (default: the shared bench server)")
    parser.add_argument(
        "--restore-verify",
        choices=["content", "rows"],
        default="content",
        help="rollback_restore_verify: check of the shadow copy before the cutover (default content)",
    )
    args = parser.parse_args()

    own_server = None
    if args.workdir:
        own_server = MariaDB(Path(args.workdir) / "server", buffer_pool="2G")
        own_server.start(timeout=300)
        server = own_server
        marker = Path(args.workdir) / ".bench.size_mb"
        if not marker.exists() or marker.read_text() != str(args.size_mb):
            print(f"bench: generating a database for a plain dump of about {args.size_mb} MB ...", flush=True)
            datagen.create_database(server, "bench", args.size_mb * 1_000_000)
            marker.write_text(str(args.size_mb))
        cnf = Path(args.workdir) / "client.cnf"
        cnf.write_text(f'[client]\nuser=root\npassword="{server.ROOT_PASSWORD}"\nsocket={server.socket}\n')
        cnf.chmod(0o600)
        base = Path(args.workdir) / "rollback"
    else:
        server = bench_server(args.size_mb)
        cnf = option_file(server)
        base = Path(tempfile.mkdtemp(prefix="bench-rollback-"))
    try:
        app = base / "app"
        (app / "shared" / "storage").mkdir(parents=True, exist_ok=True)
        fake_laravel.write_env(app / "shared" / ".env", "bench", server.socket, "root", server.ROOT_PASSWORD)
        good = fake_laravel.build_release(base / "archives", "r0")
        bad_id = "r1-" + time.strftime("%Y%m%dT%H%M%S")
        bad = fake_laravel.build_release(
            base / "archives", bad_id, {"2030_01_01_000001_fees": fake_laravel.FAILING_MIGRATION}
        )
        inventory = base / "inventory.yml"
        host = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "rollback_deploy_root": str(app),
            "rollback_database": "bench",
            "rollback_backup_dir": str(base / "predeploy"),
            "rollback_config_file": str(cnf),
            "rollback_build_commands": [],
            "rollback_restore_keep_old": 0,
            "rollback_restore_verify": args.restore_verify,
        }
        inventory.write_text(yaml.safe_dump({"app": {"hosts": {"web1": host}}}))

        rc, out, _wall = deploy(inventory, "r0", good)
        if rc != 0:
            print(out[-3000:])
            raise SystemExit("bench: the first (good) deploy failed")
        rc, out, wall = deploy(inventory, bad_id, bad)
        match = re.search(r"recovery took ([\d.]+) s", out)
        if rc == 0 or not match:
            print(out[-3000:])
            raise SystemExit("bench: the failing deploy did not roll back as expected")
        recovery_s = float(match.group(1))
        timings = re.search(r"restore ([\d.]+) s, cutover ([\d.]+) ms", out)

        [manifest_path] = (base / "predeploy").glob(f"bench-pre-deploy-{bad_id}-*.manifest.json")
        manifest = json.loads(manifest_path.read_text())
        backup = Path(str(manifest_path)[: -len(".manifest.json")])
        mismatches = []
        conn = server.connect("bench")
        with conn.cursor() as cur:
            for name, entry in manifest["tables"].items():
                if entry.get("kind", "table") != "table":
                    continue
                cur.execute(f"SELECT COUNT(*) FROM `{name}`")
                if cur.fetchone()[0] != entry["rows"]:
                    mismatches.append(name)
            cur.execute("SHOW TABLES LIKE 'payouts'")
            if cur.fetchone():
                mismatches.append("payouts (created by the failed migration) still exists")
        conn.close()
        current = Path((app / "current").readlink()).name
        result = {
            "size_mb_plain_dump": manifest.get("uncompressed_size", 0) // 1_000_000,
            "backup_bytes": backup.stat().st_size,
            "restore_verify": args.restore_verify,
            "recovery_s": recovery_s,
            "restore_module_s": float(timings.group(1)) if timings else None,
            "cutover_ms": float(timings.group(2)) if timings else None,
            "failed_deploy_wall_s": round(wall, 1),
            "current_after": current,
            "database_matches_predeploy_manifest": not mismatches,
            "mismatches": mismatches,
        }
        print(json.dumps(result, indent=2))
        print(f"results: {save('rollback', result)}")
        ok = current == "r0" and not mismatches
        print(
            f"\nrollback bench: recovery {recovery_s:.1f} s for a {result['size_mb_plain_dump']} MB database "
            f"(restore {result['restore_module_s']} s, cutover {result['cutover_ms']} ms, "
            f"verify={args.restore_verify}); "
            f"database back to the pre-deploy manifest: {'yes' if not mismatches else 'NO'}, current: {current}"
        )
        return 0 if ok else 1
    finally:
        if own_server is not None:
            own_server.stop()
        else:
            shutil.rmtree(base, ignore_errors=True)
            server.stop()  # like the other benches: nothing is left running


if __name__ == "__main__":
    raise SystemExit(main())
