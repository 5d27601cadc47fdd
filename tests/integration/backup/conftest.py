"""Fixtures for mysql_backup integration tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import datagen
from tests.support.mariadb import MariaDB, temporary_server


@pytest.fixture(scope="module")
def backup_db(mariadb: MariaDB) -> Iterator[str]:
    """A ~2 MB Laravel-like database for this test module (read-only for tests)."""
    datagen.create_database(mariadb, "bk_app", 2_000_000)
    yield "bk_app"
    mariadb.execute("DROP DATABASE IF EXISTS bk_app")


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


@pytest.fixture
def second_server() -> Iterator[MariaDB]:
    """A separate private MariaDB that a test may kill."""
    with temporary_server("mutuapix-kill-") as server:
        yield server
