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
# The Python that runs the modules, as a managed host's would (default: the one running the tests):
# run_module uses it, and the test inventories name it as ansible_python_interpreter.
# Point it at an older interpreter to run the module tests on it (README: Install).
MODULE_PYTHON = os.environ.get("MUTUAPIX_MODULE_PYTHON") or sys.executable
# The tests' Pythons import BYTECODE_HOOK/sitecustomize.py, which caches the compiled AnsiballZ payloads
# of the modules the playbooks run in BYTECODE_CACHE (see that file: the same code, compiled once).
BYTECODE_HOOK = Path(__file__).resolve().parent / "ansiballz_cache"
BYTECODE_CACHE = ROOT / ".build" / "ansiballz-bytecode"


def ensure_collection_path() -> None:
    link = COLLECTIONS / "ansible_collections" / "mutuapix" / "ops"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another pytest-xdist worker made it first
            link.symlink_to(ROOT)


def _foreign_python_env(env: dict[str, str]) -> dict[str, str]:
    """For another Python than ours: ansible's own package on its path, alone (as AnsiballZ ships
    ansible's module_utils to a managed host; our venv's other packages are not that host's)."""
    if MODULE_PYTHON == sys.executable:
        return env
    import ansible

    # One per venv: `make compat` runs the tests again from venvs with older ansible-core releases.
    shim = ROOT / ".build" / f"module-python-{Path(sys.prefix).name}"
    link = shim / "ansible"
    if not link.exists():
        shim.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another pytest-xdist worker made it first
            link.symlink_to(Path(ansible.__file__).resolve().parent)
    env["PYTHONPATH"] += os.pathsep + str(shim)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def module_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # BYTECODE_HOOK's sitecustomize keeps the modules' compiled AnsiballZ payloads (a third of a playbook's time)
    paths = [str(BYTECODE_HOOK), str(COLLECTIONS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["MUTUAPIX_TEST_BYTECODE_CACHE"] = str(BYTECODE_CACHE)
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
        cmd = [MODULE_PYTHON, "-m", f"ansible_collections.mutuapix.ops.plugins.modules.{name}", args_path]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_foreign_python_env(module_env(env)),
            cwd=tempfile.gettempdir(),
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
