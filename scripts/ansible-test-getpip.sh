#!/usr/bin/env bash
# ansible-test bootstraps pip by downloading get-pip.py from a host that is not
# reachable here; it uses ~/.ansible/test/cache/get_pip_<ver>.py when present.
# Put a stand-in there that installs with a pip 24.2 wheel taken from PyPI.
set -euo pipefail
VENV="$1"
CACHE="${HOME}/.ansible/test/cache"
WHEEL_DIR="$CACHE/pip-wheel"
mkdir -p "$WHEEL_DIR"
if ! ls "$WHEEL_DIR"/pip-24.2-*.whl >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps -d "$WHEEL_DIR" pip==24.2
fi
WHEELS=("$WHEEL_DIR"/pip-24.2-*.whl)
WHEEL="${WHEELS[0]}"
cat > "$CACHE/get_pip_24_2.py" <<PYEOF
"""Stand-in for get-pip.py 24.2: installs with the pip 24.2 wheel from PyPI."""
import sys

sys.path.insert(0, "$WHEEL")
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", *args]))
PYEOF
