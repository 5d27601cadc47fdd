#!/usr/bin/env bash
# ansible-test sanity needs the tree at .../ansible_collections/mutuapix/ops inside a git
# work tree: copy the files git would ship (tracked + new, not ignored) there and run it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mkdir -p "$ROOT/.build" && mktemp -d "$ROOT/.build/sanity.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
DEST="$WORK/ansible_collections/mutuapix/ops"
mkdir -p "$DEST"
cd "$ROOT"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | rsync -a --from0 --files-from=- ./ "$DEST/"
cd "$DEST"
git init -q . && git add -A
PATH="$ROOT/.venv-sanity/bin:$PATH" ansible-test sanity --python 3.11 --requirements --color no "$@"
