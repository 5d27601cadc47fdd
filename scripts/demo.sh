#!/usr/bin/env bash
# `make demo`: the whole story on this machine, against inventories/local:
#   two private MariaDB servers under .demo/ (db1 ≥ 25 MB of Laravel-like data, db2 smaller: the fleet),
#   a local S3 endpoint (moto_server on 127.0.0.1) standing in for Backblaze B2,
#   backup.yml: backup → proof of restore → off-site copy with retention, on both hosts in parallel,
#   deploy.yml: a good release, then one whose migration fails half-way → automatic rollback,
#   with what happened and the recovery time printed.
# `make demo-stop` (scripts/demo.sh stop) stops everything the demo started. .demo/ is git-ignored.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections" PYTHONPATH="$ROOT/.build/collections:$ROOT"
export ANSIBLE_NOCOLOR=1 ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_DISPLAY_SKIPPED_HOSTS=0
DEMO="$ROOT/.demo"
HOSTS=(db1 db2)
declare -A SIZE_MB=([db1]="${DEMO_SIZE_MB:-30}" [db2]="${DEMO_DB2_SIZE_MB:-5}")
S3_DIR="$DEMO/s3"
BUCKET=demo-backups
# The S3 endpoint's keys reach b2_sync from the environment, as an AWX credential injects them.
export B2_APPLICATION_KEY_ID=demo-key-id B2_APPLICATION_KEY=demo-application-key MOTO_ALLOW_NONEXISTENT_REGION=true

say() { printf '\n== %s\n' "$*"; }

start_server() {  # start_server NAME
  python - "$DEMO/$1" <<'PY'
import os
import sys
from tests.support.mariadb import MariaDB
server = MariaDB(sys.argv[1])
server.start()
print(f"{server.port}")
(server.basedir / "port").write_text(str(server.port))
cnf = server.basedir / "client.cnf"
fd = os.open(cnf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as handle:
    handle.write(f"[client]\nuser=root\npassword=\"{server.ROOT_PASSWORD}\"\nsocket={server.socket}\n")
PY
}

stop_server() {  # stop_server NAME
  [ -f "$DEMO/$1/mysqld.pid" ] || return 0
  python - "$DEMO/$1" <<'PY'
import sys
from tests.support.mariadb import MariaDB
MariaDB(sys.argv[1]).stop()
PY
  echo "demo: stopped MariaDB $1"
}

s3_running() { [ -f "$S3_DIR/pid" ] && kill -0 "$(cat "$S3_DIR/pid")" 2>/dev/null; }

start_s3() {
  mkdir -p "$S3_DIR"
  if s3_running; then
    echo "demo: S3 endpoint already running on 127.0.0.1:$(cat "$S3_DIR/port")"
  else
    local port="" pid
    # Port 0: moto binds a port the kernel picks and logs it, so no other process can take it first.
    nohup moto_server -H 127.0.0.1 -p 0 >"$S3_DIR/moto.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      port="$(sed -n 's|.*Running on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$S3_DIR/moto.log")"
      [ -n "$port" ] && break
      sleep 0.1
    done
    if [ -z "$port" ]; then
      kill "$pid" 2>/dev/null || true
      tail -n 20 "$S3_DIR/moto.log" >&2
      echo "demo: could not start the local S3 endpoint (moto_server); see $S3_DIR/moto.log" >&2
      exit 1
    fi
    echo "$pid" >"$S3_DIR/pid"
    echo "$port" >"$S3_DIR/port"
    echo "demo: S3 endpoint (moto_server, standing in for B2) on 127.0.0.1:$port"
  fi
  # moto keeps objects in memory: make sure the versioned bucket exists (B2 keeps every version).
  python - "$(cat "$S3_DIR/port")" "$BUCKET" <<'PY'
import os
import sys
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                  aws_access_key_id=os.environ["B2_APPLICATION_KEY_ID"], aws_secret_access_key=os.environ["B2_APPLICATION_KEY"],
                  config=Config(s3={"addressing_style": "path"}))
if sys.argv[2] not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket=sys.argv[2])
    s3.put_bucket_versioning(Bucket=sys.argv[2], VersioningConfiguration={"Status": "Enabled"})
    print(f"demo: bucket {sys.argv[2]} created (versioned)")
PY
}

stop_s3() {
  if s3_running; then
    kill "$(cat "$S3_DIR/pid")" && echo "demo: stopped the S3 endpoint"
  fi
  rm -f "$S3_DIR/pid" "$S3_DIR/port"
}

case "${1:-start}" in
  stop)
    stop_s3
    for h in "${HOSTS[@]}"; do stop_server "$h"; done
    exit 0
    ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

mkdir -p "$DEMO"
chmod 700 "$DEMO"
say "1. Two database hosts (private MariaDB servers) and an off-site store"
for h in "${HOSTS[@]}"; do
  if [ -S "$DEMO/$h/mysqld.sock" ] && [ -f "$DEMO/$h/mysqld.pid" ] && kill -0 "$(cat "$DEMO/$h/mysqld.pid")" 2>/dev/null; then
    echo "demo: MariaDB $h already running"
  else
    port="$(start_server "$h")"
    echo "demo: MariaDB $h on 127.0.0.1:$port, socket $DEMO/$h/mysqld.sock"
  fi
  if [ ! -f "$DEMO/$h/.seeded" ]; then
    echo "demo: seeding database 'app' on $h with about ${SIZE_MB[$h]} MB of Laravel-like data..."
    pwfile="$(mktemp)"; chmod 600 "$pwfile"
    python -c 'from tests.support.mariadb import MariaDB; print(MariaDB.ROOT_PASSWORD)' > "$pwfile"
    python -m tests.support.datagen --socket "$DEMO/$h/mysqld.sock" --password-file "$pwfile" --database app --size "${SIZE_MB[$h]}"
    rm -f "$pwfile"
    touch "$DEMO/$h/.seeded"
  fi
done
start_s3

say "2. backup.yml on the fleet: backup → restore-verify → off-site copy (both hosts in parallel)"
ansible-playbook -i inventories/local playbooks/backup.yml

for h in "${HOSTS[@]}"; do
  latest="$(find "$DEMO/$h/backups/app" -maxdepth 1 -name '*.sql.zst' -printf '%T@ %p\n' 2>/dev/null \
    | sort -rn | head -n1 | cut -d' ' -f2- || true)"
  [ -n "$latest" ] || { echo "demo: no backup found for $h" >&2; exit 1; }
  echo
  echo "-- $h --"
  echo "backup:   $latest ($(stat -c %s "$latest") bytes)"
  echo "manifest: $latest.manifest.json"
  python - "$latest.manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
tables = {k: v["rows"] for k, v in m["tables"].items() if v["kind"] == "table"}
print(f"rows:     {sum(tables.values())} in {len(tables)} tables; uncompressed {m['uncompressed_size']} bytes; sha256 {m['sha256'][:16]}…")
b = m.get("binlog") or {}
if b:
    kind = "exact, the dump's snapshot" if b.get("exact") else "approximate, read before the dump"
    print(f"binlog:   {b.get('file')} position {b.get('position')}, GTID {b.get('gtid')} ({kind}): PITR replays from here")
PY
  echo "verified: $(cat "$DEMO/$h/backups/app/.last-verified" 2>/dev/null || echo 'not yet')"
  echo "restore by hand (standard tools only):"
  echo "  sha256sum $latest   # compare with the manifest's sha256"
  echo "  mariadb --defaults-extra-file=$DEMO/$h/client.cnf -e 'CREATE DATABASE app_restored'"
  echo "  zstdcat $latest | mariadb --defaults-extra-file=$DEMO/$h/client.cnf app_restored"
done
echo
echo "off-site (bucket $BUCKET on the local S3 endpoint):"
python - "$(cat "$S3_DIR/port")" "$BUCKET" <<'PY'
import sys
import boto3
from botocore.config import Config
import os
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                  aws_access_key_id=os.environ["B2_APPLICATION_KEY_ID"], aws_secret_access_key=os.environ["B2_APPLICATION_KEY"],
                  config=Config(s3={"addressing_style": "path"}))
for obj in s3.list_objects_v2(Bucket=sys.argv[2]).get("Contents", []):
    print(f"  {obj['Key']}  {obj['Size']} bytes")
PY

say "3. deploy.yml: a release whose migration succeeds"
APP="$DEMO/app"
mkdir -p "$APP/shared/storage" "$DEMO/releases"
python - "$APP/shared/.env" "$DEMO/db1/mysqld.sock" "$DEMO/releases" <<'PY'
import sys
from tests.support import fake_laravel
from tests.support.mariadb import MariaDB
env, sock, releases = sys.argv[1:]
fake_laravel.write_env(env, "app", sock, "root", MariaDB.ROOT_PASSWORD)
fake_laravel.build_release(releases, "v1", {"2026_11_28_000001_add_phone": fake_laravel.GOOD_MIGRATION})
PY
ansible-playbook -i inventories/local playbooks/deploy.yml \
  -e rollback_release_id=v1 -e rollback_release_archive="$DEMO/releases/v1.tar.gz" | grep -E '^ok: .*msg|"msg"|PLAY RECAP|db1 ' || true
echo "current -> $(readlink "$APP/current")"

say "4. deploy.yml: a release whose migration fails half-way (partial DDL) → automatic rollback"
v2="v2-$(date -u +%Y%m%dT%H%M%S)"
python - "$DEMO/releases" "$v2" <<'PY'
import sys
from tests.support import fake_laravel
fake_laravel.build_release(sys.argv[1], sys.argv[2], {
    "2026_11_28_000001_add_phone": fake_laravel.GOOD_MIGRATION,
    "2026_11_28_000002_add_fees": fake_laravel.FAILING_MIGRATION,
})
PY
echo "migration 2026_11_28_000002_add_fees of $v2:"
python -c 'from tests.support import fake_laravel; print(fake_laravel.FAILING_MIGRATION)' | sed 's/^/    /'
set +e
ansible-playbook -i inventories/local playbooks/deploy.yml \
  -e rollback_release_id="$v2" -e rollback_release_archive="$DEMO/releases/$v2.tar.gz" >"$DEMO/deploy-$v2.log" 2>&1
rc=$?
set -e
if [ "$rc" -eq 0 ]; then
  echo "demo: the failing deploy succeeded?! see $DEMO/deploy-$v2.log" >&2
  exit 1
fi
echo "ansible-playbook exit code: $rc (the play failed, as it must; full log: $DEMO/deploy-$v2.log)"
echo "what the play reported:"
python - "$DEMO/deploy-$v2.log" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
found = re.findall(r'fatal: \[db1\]: FAILED! => (\{.*\})', text)
msg = json.loads(found[-1])["msg"] if found else "(no failure message found)"
for part in msg.split(" --- "):
    print("  " + part.replace("\n", "\n  "))
PY
echo "current -> $(readlink "$APP/current")"
echo "maintenance mode: $([ -e "$APP/shared/storage/framework/down" ] && echo ON || echo off)"
echo "release $v2 marked bad: $(test -f "$APP/releases/$v2/.release-bad.json" && echo yes || echo no)"
python - "$DEMO/db1/mysqld.sock" <<'PY'
import sys
import pymysql
from tests.support.mariadb import MariaDB
conn = pymysql.connect(unix_socket=sys.argv[1], user="root", password=MariaDB.ROOT_PASSWORD, database="app")
with conn.cursor() as cur:
    cur.execute("SHOW COLUMNS FROM transactions LIKE 'fee_cents'")
    fee = cur.fetchone()
    cur.execute("SHOW TABLES LIKE 'payouts'")
    payouts = cur.fetchone()
    cur.execute("SELECT COUNT(*) FROM sessions")
    sessions = cur.fetchone()[0]
print(f"database: transactions.fee_cents {'PRESENT (bad)' if fee else 'absent'}, table payouts "
      f"{'PRESENT (bad)' if payouts else 'absent'}, sessions rows {sessions} (the migration had deleted them)")
PY

say "demo: done. Stop everything with: make demo-stop"
