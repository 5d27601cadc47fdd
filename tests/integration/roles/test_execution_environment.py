"""meta/execution-environment.yml is a definition ansible-builder accepts, with runtime dependencies only."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.runner import ROOT

META = ROOT / "meta"
TEST_ONLY = {"pytest", "moto", "ansible-lint", "ruff", "yamllint", "pytest-xdist", "ansible-builder", "superlance"}


def requirement_names(path: Path) -> dict[str, str]:
    reqs = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~ \[]", line, maxsplit=1)[0].lower()
            reqs[name] = line
    return reqs


def test_ansible_builder_creates_the_build_context(tmp_path: Path) -> None:
    # the layout the docs describe: the definition in meta/, the collection tarball in .build/ee/
    (tmp_path / "meta").mkdir()
    for name in ("execution-environment.yml", "ee-requirements.txt", "ee-bindep.txt"):
        shutil.copy(META / name, tmp_path / "meta" / name)
    (tmp_path / ".build" / "ee").mkdir(parents=True)
    (tmp_path / ".build" / "ee" / "mutuapix-ops-0.1.0.tar.gz").write_bytes(b"stand-in for the built collection")
    builder = Path(sys.executable).parent / "ansible-builder"
    proc = subprocess.run(
        [
            str(builder),
            "create",
            "-f",
            "meta/execution-environment.yml",
            "-c",
            "context",
            "--output-filename",
            "Containerfile",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    context = tmp_path / "context"
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install --offline /build/collection/mutuapix-ops-" in containerfile
    assert (context / "_build" / "collection" / "mutuapix-ops-0.1.0.tar.gz").exists()
    assert requirement_names(context / "_build" / "requirements.txt").keys() >= {"pymysql", "boto3", "zstandard"}
    assert "mariadb-client [platform:dpkg]" in (context / "_build" / "bindep.txt").read_text()


def test_requirements_are_lower_bounds_of_runtime_libraries_only() -> None:
    reqs = requirement_names(META / "ee-requirements.txt")
    for name, line in reqs.items():
        assert re.fullmatch(r"[A-Za-z0-9_.-]+>=[0-9][0-9.]*", line), f"{line}: lower bounds only"
        assert name not in TEST_ONLY, f"{name} is a test tool, not a runtime dependency"
    # every third-party library a module imports is in the image
    imported = set()
    for path in (ROOT / "plugins").rglob("*.py"):
        for lib in ("pymysql", "boto3", "botocore", "zstandard", "cryptography"):
            if re.search(rf"^\s*(import|from) {lib}\b", path.read_text(), re.M):
                imported.add(lib)
    assert imported <= reqs.keys(), imported - reqs.keys()
