#!/usr/bin/env bash
# A stand-in database host of another Debian release for the module tests, in a chroot that
# shares /tmp, /work and /root with this machine. Not part of `make test` (it downloads the
# release, about 1-3 minutes); run it when a change may depend on the managed host's Python,
# libraries or MariaDB client release:
#
#   scripts/debian-host.sh bullseye setup  # Debian 11: Python 3.9, MariaDB 10.5's clients, and
#                                          # exactly the lower bounds of requirements.txt (pip)
#   scripts/debian-host.sh trixie setup    # Debian 13: Python 3.13, MariaDB 11.8's clients, and
#                                          # Debian's own python3-* libraries (what the backup role installs),
#                                          # and what the roles' tests run there (PHP for the stand-in app)
#   MUTUAPIX_MODULE_PYTHON=$PWD/.build/debian13-python make integration   # everything, roles included
#   MUTUAPIX_MODULE_PYTHON=$PWD/.build/debian11-python make integration \
#     PYTEST_ARGS='--ignore=tests/integration/roles --ignore=tests/integration/workers'
#   scripts/debian-host.sh <suite> teardown  # unmounts
# (On bullseye the roles' stand-in Laravel app lacks PHP; supervisord runs outside the chroot.)
# DEBIAN_HOST_CHROOT picks the directory (default /var/tmp/mutuapix-<suite>).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SUITE="${1:-}"
case "$SUITE" in
  bullseye) NUMBER=11 ;;
  trixie) NUMBER=13 ;;
  *) echo "usage: $0 bullseye|trixie setup|teardown" >&2; exit 2 ;;
esac
CHROOT="${DEBIAN_HOST_CHROOT:-/var/tmp/mutuapix-$SUITE}"
WRAPPER="$ROOT/.build/debian$NUMBER-python"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

mounted() { findmnt -rn -o TARGET | grep -qx "$1"; }
in_chroot() {
  chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DEBIAN_FRONTEND=noninteractive sh -c "$1"
}

setup() {
  [ "$(id -u)" = 0 ] || { echo "debian-host: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  if [ ! -x "$CHROOT/usr/bin/python3" ]; then
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip "$SUITE" "$CHROOT" "$MIRROR"
  fi
  printf 'deb %s %s main\ndeb %s-security %s-security main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" \
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
  local python
  if [ "$SUITE" = bullseye ]; then
    in_chroot 'apt-get -qq update && apt-get -qq install -y mariadb-client zstd >/dev/null'
    # Exactly the lower bounds of requirements.txt: the oldest libraries the collection claims to work with.
    grep -E '^[A-Za-z]' "$ROOT/requirements.txt" | sed 's/>=/==/' > "$CHROOT/opt/lower-bounds.txt"
    in_chroot '[ -x /opt/venv/bin/python ] || /usr/bin/python3 -m venv /opt/venv
      /opt/venv/bin/pip install -q --disable-pip-version-check --cert /opt/host-ca.crt -r /opt/lower-bounds.txt'
    python=/opt/venv/bin/python
  else
    # The distribution's own libraries, as the backup role installs them (backup_packages).
    in_chroot 'apt-get -qq update && apt-get -qq install -y mariadb-client zstd python3-pymysql python3-boto3 \
      python3-zstandard python3-cryptography php-cli git rsync age systemd >/dev/null'
    python=/usr/bin/python3
  fi
  mkdir -p "$(dirname "$WRAPPER")"
  cat > "$WRAPPER" <<WRAP
#!/bin/sh
# Python of the Debian $NUMBER chroot $CHROOT (scripts/debian-host.sh). PATH is kept (tests put
# stand-in programs first); its /usr/bin is the chroot's.
cd / || exit 1
exec chroot "$CHROOT" /usr/bin/env PATH="\${PATH}:/usr/bin:/bin" $python "\$@"
WRAP
  chmod 0755 "$WRAPPER"
  echo "debian-host: $("$WRAPPER" --version), $(chroot "$CHROOT" mariadb-dump --version)"
  if [ "$SUITE" = bullseye ]; then
    echo "debian-host: MUTUAPIX_MODULE_PYTHON=$WRAPPER make integration" \
      "PYTEST_ARGS='--ignore=tests/integration/roles --ignore=tests/integration/workers'"
  else
    echo "debian-host: MUTUAPIX_MODULE_PYTHON=$WRAPPER make integration"
  fi
}

teardown() {
  for dir in tmp root work dev proc; do
    if mounted "$CHROOT/$dir"; then umount -R "$CHROOT/$dir"; fi
  done
  rm -f "$WRAPPER"
}

case "${2:-}" in
  setup) setup ;;
  teardown) teardown ;;
  *) echo "usage: $0 bullseye|trixie setup|teardown" >&2; exit 2 ;;
esac
