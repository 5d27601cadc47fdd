"""Helpers for the mysql_restore_verify integration tests: backups, manifests, fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support.mariadb import MariaDB
from tests.support.runner import run_module

SYSTEM_SCHEMAS = {"information_schema", "mysql", "performance_schema", "sys"}


def schemas(server: MariaDB) -> set[str]:
    return {r[0] for r in server.execute("SHOW DATABASES")} - SYSTEM_SCHEMAS


def table_checksums(server: MariaDB, database: str) -> dict[str, Any]:
    """Content fingerprint of every base table (CHECKSUM TABLE) plus trigger names."""
    tables = [
        r[0]
        for r in server.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
            (database,),
        )
    ]
    out: dict[str, Any] = {}
    for table in sorted(tables):
        out[table] = server.execute(f"CHECKSUM TABLE `{database}`.`{table}` EXTENDED")[0][1]
    out["__triggers"] = sorted(
        r[0]
        for r in server.execute(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", (database,)
        )
    )
    out["__views"] = sorted(
        r[0]
        for r in server.execute("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s", (database,))
    )
    return out


def make_backup(server: MariaDB, database: str, dest: Path, **extra: Any) -> str:
    dest.mkdir(parents=True, exist_ok=True)
    # Small INSERT statements, so 64 KB frames cut big tables into several (the re-dump reuses the option).
    args = dict(
        server.login, database=database, dest=str(dest), chunk_size="64K", extra_dump_args=["--net-buffer-length=16384"]
    )
    args.update(extra)
    result = run_module("mysql_backup", args)
    assert not result.failed, result
    return str(result["path"])


def copy_backup(path: str, dest: Path) -> str:
    """Copy a backup and its manifest into ``dest``; returns the copy's path."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / os.path.basename(path)
    shutil.copyfile(path, target)
    shutil.copyfile(path + ".manifest.json", str(target) + ".manifest.json")
    return str(target)


def read_manifest(path: str) -> dict[str, Any]:
    return json.loads(Path(path + ".manifest.json").read_text())


def write_manifest(path: str, manifest: dict[str, Any], resign: bool = False) -> None:
    """Rewrite a manifest; with ``resign`` its size and sha256 are made to match the file again."""
    if resign:
        data = Path(path).read_bytes()
        manifest["size"] = len(data)
        manifest["sha256"] = hashlib.sha256(data).hexdigest()
    Path(path + ".manifest.json").write_text(json.dumps(manifest))


def frame_sql_file(sql_path: str, dest: Path, database: str, digest: bool = False, version: str = "") -> str:
    """Frame a plain dump (e.g. MySQL 8's mysqldump output) into a backup + manifest, as mysql_backup does.

    ``digest``: SHA-256 data digests in the manifest instead of the frames' checksums."""
    from ansible_collections.mutuapix.ops.plugins.module_utils import _dumpfile

    dest.mkdir(parents=True, exist_ok=True)
    name = f"{database}-20261120T031500Z.sql.zst"
    path = dest / name
    with open(path, "wb") as raw:
        writer = _dumpfile.FrameWriter(raw, "zstd")
        parser = _dumpfile.DumpParser(writer, 4096, digest=digest)
        with open(sql_path, "rb") as handle:
            while block := handle.read(8192):
                parser.feed(block)
        parser.finish()
        sha256, size = writer.close()
    manifest = {
        "format": _dumpfile.FORMAT_NAME,
        "format_version": _dumpfile.FORMAT_VERSION,
        "database": database,
        "created_at": "2026-11-20T03:15:00Z",
        "dump": {
            "program": "mysqldump",
            "version": version,
            "dialect": parser.dialect,
            "options": list(_dumpfile.DUMP_OPTIONS),
        },
        "compression": "zstd",
        "encryption": None,
        "file": name,
        "size": size,
        "sha256": sha256,
        "uncompressed_size": writer.uncompressed,
        "sections": parser.sections,
        "tables": parser.manifest_objects(),
        "routines": parser.routines,
        "events": parser.events,
    }
    Path(str(path) + ".manifest.json").write_text(json.dumps(manifest))
    return str(path)


def mariadb_client(server: MariaDB, sql: str, database: str | None = None) -> None:
    subprocess.run(server.client_args(database), input=sql.encode(), check=True, capture_output=True)
