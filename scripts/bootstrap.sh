#!/usr/bin/env bash
# Installs what `make test`, `make demo` and `make bench` need, idempotently:
# Debian packages, a venv with the pinned test requirements, the collection path
# symlink and ansible-test's pip bootstrap (its download host is unreachable here).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
WHAT="${1:-test}"  # test | sanity | demo | bench | compat
case "$WHAT" in
  test | sanity | demo | bench | compat) ;;
  *) echo "bootstrap: unknown target '$WHAT' (test, sanity, demo, bench or compat)" >&2; exit 2 ;;
esac

# ansible-test sanity skips its shellcheck test (with a warning only) when shellcheck is missing.
# systemd: systemd-analyze, which the backup role's schedule check and the tests use (offline; no
# running systemd needed).
APT_PACKAGES=(mariadb-server mariadb-client zstd age supervisor php-cli git make rsync python3-venv shellcheck systemd)
if [ "$WHAT" = compat ]; then
  # `make compat` runs the modules on Debian's own python3 with the libraries the backup role installs.
  APT_PACKAGES+=(python3-pymysql python3-zstandard python3-cryptography python3-boto3)
fi
if [ "$WHAT" = bench ]; then
  APT_PACKAGES+=(mydumper rclone)
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: need root to install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the packaged services from starting: tests start their own servers.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

make_venv() {  # make_venv DIR REQFILE...
  local dir="$1"; shift
  local stamp="$dir/.requirements.sha256"
  local want
  want="$(cat "$@" | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "bootstrap: preparing $dir"
  [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  local args=()
  for f in "$@"; do args+=(-r "$f"); done
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "${args[@]}"
  echo "$want" > "$stamp"
}

make_venv .venv requirements.txt test-requirements.txt
if [ "$WHAT" = bench ]; then
  make_venv .venv-bench requirements.txt bench-requirements.txt
fi
if [ "$WHAT" = compat ]; then
  # The ansible-core releases of the Makefile's COMPAT_CORES, each with the same pinned test
  # dependencies (the linters, which need the newest core, left out): .venv-core<major.minor>.
  : "${COMPAT_CORES:?set COMPAT_CORES to the ansible-core versions to test, e.g. '2.17.14 2.18.19' (make compat does)}"
  mkdir -p .build
  for core in $COMPAT_CORES; do
    req=".build/compat-requirements-${core%.*}.txt"
    grep -v -E '^(ansible-core|ansible-lint|ruff|vermin|yamllint)==' test-requirements.txt > "$req"
    echo "ansible-core==$core" >> "$req"
    make_venv ".venv-core${core%.*}" requirements.txt "$req"
  done
fi
if [ "$WHAT" = sanity ] || [ "$WHAT" = test ]; then
  # ansible-test installs its own pinned linters with --requirements: keep them apart.
  make_venv .venv-sanity scripts/sanity-requirements.txt
  "$ROOT/scripts/ansible-test-getpip.sh" .venv-sanity
fi

# The collection as Ansible and Python import it: .build/collections/ansible_collections/mutuapix/ops
mkdir -p .build/collections/ansible_collections/mutuapix
ln -sfn "$ROOT" .build/collections/ansible_collections/mutuapix/ops
