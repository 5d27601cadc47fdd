#!/usr/bin/env bash
# Kept for the commands in older notes: scripts/debian-host.sh bullseye setup|teardown.
# DEBIAN11_CHROOT still picks the directory.
set -euo pipefail
export DEBIAN_HOST_CHROOT="${DEBIAN_HOST_CHROOT:-${DEBIAN11_CHROOT:-/var/tmp/mutuapix-bullseye}}"
exec "$(dirname "$0")/debian-host.sh" bullseye "$@"
