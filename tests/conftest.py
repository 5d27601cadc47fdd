"""Shared pytest fixtures: the collection on sys.path and a private MariaDB per session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.runner import COLLECTIONS, ensure_collection_path  # noqa: E402

ensure_collection_path()
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from tests.support import datagen  # noqa: E402
from tests.support.mariadb import MariaDB, temporary_server  # noqa: E402


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A private MariaDB server (own datadir, socket, port on 127.0.0.1), stopped at the end."""
    with temporary_server() as server:
        yield server


@pytest.fixture(scope="session")
def app_db(mariadb: MariaDB) -> dict[str, int]:
    """A small Laravel-like database ``app`` (about 1 MB dumped); returns rows per table. Read-only."""
    return datagen.create_database(mariadb, "app", 1_000_000)


@pytest.fixture
def fresh_db(mariadb: MariaDB, request: pytest.FixtureRequest) -> Iterator[str]:
    """A throwaway Laravel-like database named after the test; dropped afterwards."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    datagen.create_database(mariadb, name, 300_000)
    yield name
    mariadb.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[callable]:
    """Mount small tmpfs file systems (disk full, read-only) under tmp_path; unmounted afterwards."""
    mounts: list[Path] = []

    def make(name: str, size: str = "256k", readonly: bool = False) -> Path:
        path = tmp_path / name
        path.mkdir()
        opts = f"size={size},mode=0700" + (",ro" if readonly else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=True)
        mounts.append(path)
        return path

    yield make
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)
