"""Run the collection's modules and playbooks the way Ansible does, for tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".build" / "collections"
# The ansible-core under test: the one installed beside the Python running the tests (`make compat`
# runs them from a venv with an older release).
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def ensure_collection_path() -> None:
    link = COLLECTIONS / "ansible_collections" / "mutuapix" / "ops"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another pytest-xdist worker made it first
            link.symlink_to(ROOT)


def module_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(COLLECTIONS) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
    env["ANSIBLE_NOCOLOR"] = "1"
    if extra:
        env.update(extra)
    return env


class ModuleResult(dict):
    """The module's JSON result, plus rc/stderr of the process that ran it."""

    rc: int
    stderr: str

    @property
    def failed(self) -> bool:
        return bool(self.get("failed"))


def run_module(
    name: str,
    args: dict[str, Any],
    check: bool = False,
    diff: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    popen_hook: Any = None,
) -> ModuleResult:
    """Run plugins/modules/<name>.py as a separate process with ANSIBLE_MODULE_ARGS."""
    ensure_collection_path()
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    payload.setdefault("_ansible_tmpdir", tempfile.gettempdir())
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
        args_path = handle.name
    try:
        os.chmod(args_path, 0o600)
        cmd = [sys.executable, "-m", f"ansible_collections.mutuapix.ops.plugins.modules.{name}", args_path]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=module_env(env), cwd=tempfile.gettempdir()
        )
        if popen_hook is not None:
            popen_hook(proc)
        out, err = proc.communicate(timeout=timeout)
    finally:
        os.unlink(args_path)
    text = out.decode("utf-8", "replace")
    try:
        start = text.index("{")
        result = ModuleResult(json.loads(text[start:]))
    except ValueError:
        result = ModuleResult({"failed": True, "msg": "module printed no JSON", "stdout": text})
    result.rc = proc.returncode
    result.stderr = err.decode("utf-8", "replace")
    return result


def run_playbook(
    playbook: str | os.PathLike[str],
    inventory: str | os.PathLike[str] | None = None,
    extra_vars: dict[str, Any] | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1200,
) -> subprocess.CompletedProcess[str]:
    ensure_collection_path()
    cmd = [str(ANSIBLE_PLAYBOOK), str(playbook)]
    if inventory:
        cmd += ["-i", str(inventory)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += args or []
    return subprocess.run(
        cmd, capture_output=True, text=True, env=module_env(env), timeout=timeout, cwd=str(ROOT), check=False
    )
