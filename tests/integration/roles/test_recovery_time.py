"""The recovery-time promise on a 100 MB database: failure detected → previous release and database back < 30 s."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.roles.conftest import App
from tests.support import datagen, fake_laravel
from tests.support.mariadb import MariaDB


@pytest.fixture
def big_app(mariadb: MariaDB, tmp_path: Path) -> Iterator[App]:
    database = "rt_" + uuid.uuid4().hex[:10]
    datagen.create_database(mariadb, database, 100_000_000)
    try:
        yield App(mariadb, database, tmp_path)
    finally:
        for (name,) in mariadb.execute("SHOW DATABASES LIKE %s", (f"{database}%",)):
            mariadb.execute(f"DROP DATABASE IF EXISTS `{name}`")


def test_recovery_under_30_seconds_for_100_mb(big_app: App, record_property: pytest.RecordProperty) -> None:
    big_app.release("r0")
    assert big_app.deploy("r0").returncode == 0
    big_app.release("r1", {"2026_11_28_000002_add_fees": fake_laravel.FAILING_MIGRATION})

    proc = big_app.deploy("r1")

    assert proc.returncode != 0
    match = re.search(r"recovery took ([\d.]+) s", proc.stdout)
    assert match, proc.stdout[-3000:]
    recovery_s = float(match.group(1))
    record_property("recovery_s", recovery_s)
    print(f"\nrecovery time for a 100 MB database: {recovery_s} s")
    manifest = big_app.predeploy_manifest("r1")
    assert manifest["uncompressed_size"] >= 95_000_000
    assert recovery_s < 30
    assert big_app.current == "r0"
    assert not big_app.in_maintenance
    for name, entry in manifest["tables"].items():
        if entry.get("kind", "table") == "table":
            [(rows,)] = big_app.server.execute(f"SELECT COUNT(*) FROM `{name}`", database=big_app.database)
            assert rows == entry["rows"], name
    assert "fee_cents" not in big_app.schema()["transactions"]
