#!/usr/bin/env bash
# `make demo`: private MariaDB under .demo/ (git-ignored), ≥ 25 MB of Laravel-like data,
# then the collection's playbooks against inventories/local. `make demo-stop` stops it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections" PYTHONPATH="$ROOT/.build/collections:$ROOT"
export ANSIBLE_NOCOLOR=1 ANSIBLE_STDOUT_CALLBACK=default
DEMO="$ROOT/.demo"
HOSTS=(db1)
SIZE_MB="${DEMO_SIZE_MB:-30}"

start_server() {  # start_server NAME
  python - "$DEMO/$1" <<'PY'
import sys
from tests.support.mariadb import MariaDB
server = MariaDB(sys.argv[1])
server.start()
print(f"{server.port}")
(server.basedir / "port").write_text(str(server.port))
import os
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

case "${1:-start}" in
  stop)
    for h in "${HOSTS[@]}"; do stop_server "$h"; done
    exit 0
    ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

mkdir -p "$DEMO"
chmod 700 "$DEMO"
for h in "${HOSTS[@]}"; do
  if [ -S "$DEMO/$h/mysqld.sock" ] && [ -f "$DEMO/$h/mysqld.pid" ] && kill -0 "$(cat "$DEMO/$h/mysqld.pid")" 2>/dev/null; then
    echo "demo: MariaDB $h already running"
  else
    port="$(start_server "$h")"
    echo "demo: MariaDB $h on 127.0.0.1:$port, socket $DEMO/$h/mysqld.sock"
  fi
  if [ ! -f "$DEMO/$h/.seeded" ]; then
    echo "demo: seeding database 'app' on $h with about ${SIZE_MB} MB of Laravel-like data..."
    pwfile="$(mktemp)"; chmod 600 "$pwfile"
    python -c 'from tests.support.mariadb import MariaDB; print(MariaDB.ROOT_PASSWORD)' > "$pwfile"
    python -m tests.support.datagen --socket "$DEMO/$h/mysqld.sock" --password-file "$pwfile" --database app --size "$SIZE_MB"
    rm -f "$pwfile"
    touch "$DEMO/$h/.seeded"
  fi
done

echo
echo "demo: running playbooks/backup.yml against inventories/local"
ansible-playbook -i inventories/local playbooks/backup.yml

for h in "${HOSTS[@]}"; do
  latest="$(ls -1t "$DEMO/$h/backups/"*.sql.zst 2>/dev/null | head -n1 || true)"
  [ -n "$latest" ] || { echo "demo: no backup found for $h" >&2; exit 1; }
  echo
  echo "== $h =="
  echo "backup:   $latest ($(stat -c %s "$latest") bytes)"
  echo "manifest: $latest.manifest.json"
  python - "$latest.manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
tables = {k: v["rows"] for k, v in m["tables"].items() if v["kind"] == "table"}
print(f"rows:     {sum(tables.values())} in {len(tables)} tables; uncompressed {m['uncompressed_size']} bytes; sha256 {m['sha256'][:16]}…")
PY
  echo "restore by hand (standard tools only):"
  echo "  sha256sum $latest   # compare with the manifest's sha256"
  echo "  mariadb --defaults-extra-file=$DEMO/$h/client.cnf -e 'CREATE DATABASE app_restored'"
  echo "  zstdcat $latest | mariadb --defaults-extra-file=$DEMO/$h/client.cnf app_restored"
done
echo
echo "demo: done. Stop the servers with: make demo-stop"
