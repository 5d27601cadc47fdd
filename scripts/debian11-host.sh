#!/usr/bin/env bash
# A stand-in Debian 11 database host for the module tests: Python 3.9 and MariaDB 10.5's client
# programs in a bullseye chroot that shares /tmp, /work and /root with this machine. Not part of
# `make test` (it downloads Debian 11, about 3 minutes); run it when a change may depend on the
# managed host's Python or client release:
#
#   scripts/debian11-host.sh setup      # once (as root)
#   MUTUAPIX_MODULE_PYTHON=$PWD/.build/debian11-python make integration \
#     PYTEST_ARGS='--ignore=tests/integration/roles --ignore=tests/integration/workers'
#   scripts/debian11-host.sh teardown   # unmounts
# (The roles' stand-in Laravel app needs PHP, and supervisord runs outside the chroot.)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CHROOT="${DEBIAN11_CHROOT:-/var/tmp/mutuapix-bullseye}"
WRAPPER="$ROOT/.build/debian11-python"
MIRROR="${DEBIAN11_MIRROR:-http://deb.debian.org/debian}"

mounted() { findmnt -rn -o TARGET | grep -qx "$1"; }

setup() {
  [ "$(id -u)" = 0 ] || { echo "debian11-host: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  if [ ! -x "$CHROOT/usr/bin/python3" ]; then
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip bullseye "$CHROOT" "$MIRROR"
  fi
  printf 'deb %s bullseye main\ndeb %s-security bullseye-security main\n' "$MIRROR" "$MIRROR" \
    > "$CHROOT/etc/apt/sources.list"
  cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$CHROOT/opt/host-ca.crt"
  mounted "$CHROOT/proc" || mount -t proc proc "$CHROOT/proc"
  mounted "$CHROOT/dev" || mount --rbind /dev "$CHROOT/dev"
  for dir in /work /root; do
    mkdir -p "$CHROOT$dir"
    mounted "$CHROOT$dir" || mount --bind "$dir" "$CHROOT$dir"
  done
  # The tests mount tmpfs directories under /tmp: they must appear in the chroot too.
  mounted /tmp || mount --bind /tmp /tmp
  mount --make-shared /tmp
  if ! mounted "$CHROOT/tmp"; then
    mount --rbind /tmp "$CHROOT/tmp"
    mount --make-rslave "$CHROOT/tmp"
  fi
  chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get -qq update && apt-get -qq install -y mariadb-client zstd >/dev/null'
  # Exactly the lower bounds of requirements.txt: the oldest libraries the collection claims to work with.
  grep -E '^[A-Za-z]' "$ROOT/requirements.txt" | sed 's/>=/==/' > "$CHROOT/opt/lower-bounds.txt"
  chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh -c \
    '[ -x /opt/venv/bin/python ] || /usr/bin/python3 -m venv /opt/venv
     /opt/venv/bin/pip install -q --disable-pip-version-check --cert /opt/host-ca.crt -r /opt/lower-bounds.txt'
  mkdir -p "$(dirname "$WRAPPER")"
  cat > "$WRAPPER" <<EOF
#!/bin/sh
# Python 3.9 of the Debian 11 chroot $CHROOT (scripts/debian11-host.sh). PATH is kept (tests put
# stand-in programs first); its /usr/bin is the chroot's.
cd / || exit 1
exec chroot "$CHROOT" /usr/bin/env PATH="\${PATH}:/usr/bin:/bin" /opt/venv/bin/python "\$@"
EOF
  chmod 0755 "$WRAPPER"
  echo "debian11-host: $("$WRAPPER" --version), $(chroot "$CHROOT" mariadb-dump --version)"
  echo "debian11-host: MUTUAPIX_MODULE_PYTHON=$WRAPPER make integration" \
    "PYTEST_ARGS='--ignore=tests/integration/roles --ignore=tests/integration/workers'"
}

teardown() {
  for dir in tmp root work dev proc; do
    if mounted "$CHROOT/$dir"; then umount -R "$CHROOT/$dir"; fi
  done
  rm -f "$WRAPPER"
}

case "${1:-}" in
  setup) setup ;;
  teardown) teardown ;;
  *) echo "usage: $0 setup|teardown" >&2; exit 2 ;;
esac
