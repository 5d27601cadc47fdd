"""Fixtures for mysql_restore_verify: real backups made by mysql_backup on the test server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.restore.helpers import make_backup
from tests.support import datagen
from tests.support.mariadb import MariaDB, temporary_server


@pytest.fixture(scope="module")
def source_db(mariadb: MariaDB) -> Iterator[str]:
    """A Laravel-like database for this test module (read-only for tests)."""
    name = "rsrc"
    datagen.create_database(mariadb, name, 400_000)
    yield name
    mariadb.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="module")
def backup(mariadb: MariaDB, source_db: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real backup of ``source_db`` (zstd, 64 KB frames so big tables have several)."""
    return make_backup(mariadb, source_db, tmp_path_factory.mktemp("backups"))


@pytest.fixture
def login(mariadb: MariaDB) -> dict[str, Any]:
    return dict(mariadb.login)


@pytest.fixture(scope="module")
def private_server() -> Iterator[MariaDB]:
    """A second MariaDB only these tests use, for killing the server mid-restore."""
    with temporary_server("mutuapix-restore-kill-") as server:
        yield server
