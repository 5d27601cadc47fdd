"""Fixtures for mysql_backup integration tests."""

from __future__ import annotations

from collections.abc import Iterator

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
def second_server() -> Iterator[MariaDB]:
    """A separate private MariaDB that a test may kill."""
    with temporary_server("mutuapix-kill-") as server:
        yield server
