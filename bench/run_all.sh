#!/usr/bin/env bash
# `make bench`: every side-by-side benchmark, each in one run against its peers.
# Results: printed tables and JSON files under bench/results/. BENCH_SIZE_MB scales the
# database (default: a plain dump of about 1.1 GB, as the issues ask).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONPATH="$ROOT/.build/collections:$ROOT"
SIZE="${BENCH_SIZE_MB:-1100}"
status=0
run() {
  echo
  echo "=================== $* ==================="
  "$PY" "$@" || { echo "bench: $1 FAILED" >&2; status=1; }
}
run bench/bench_backup.py --size-mb "$SIZE"
for extra in bench/bench_parse.py bench/bench_pipeline.py bench/bench_sched.py bench/bench_restore.py bench/bench_b2.py bench/bench_rollback.py; do
  if [ -f "$extra" ]; then
    run "$extra" --size-mb "$SIZE"
  fi
done
exit "$status"
