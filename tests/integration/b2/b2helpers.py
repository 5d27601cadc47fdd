"""Helpers for the b2_sync integration tests: fake backups, module runs, remote views."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tests.support.runner import ModuleResult, run_module

KEY_ID = "0041a2b3c4d5e6f0000000001"
APP_KEY = "K004secret+application/key0123456789abcd"
REGION = "us-west-004"
MiB = 1024 * 1024


def b2_run(args: dict[str, Any], check: bool = False, env: dict[str, str] | None = None, **kw: Any) -> ModuleResult:
    """Run b2_sync; credentials from the developer's shell (AWS_*, B2_*) are blanked out."""
    blanked = {name: "" for name in os.environ if name.startswith(("AWS_", "B2_"))}
    return run_module("b2_sync", args, check=check, env={**blanked, **(env or {})}, **kw)


def write_backup(
    directory: Path, database: str, when: dt.datetime, size: int, label: str | None = None, seed: int = 0
) -> Path:
    """A fake backup of ``size`` bytes plus the manifest mysql_backup would write beside it."""
    stem = database if not label else f"{database}-{label}"
    name = f"{stem}-{when.strftime('%Y%m%dT%H%M%SZ')}.sql.zst"
    path = directory / name
    block = hashlib.sha256(f"{name}-{seed}".encode()).digest() * 2048  # 64 KiB, distinct per file
    with open(path, "wb") as handle:
        remaining = size
        while remaining > 0:
            chunk = block[: min(len(block), remaining)]
            handle.write(chunk)
            remaining -= len(chunk)
    write_manifest(path, database)
    return path


def write_manifest(path: Path, database: str) -> Path:
    data = path.read_bytes()
    manifest = {
        "format_version": 1,
        "database": database,
        "file": path.name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    target = path.parent / (path.name + ".manifest.json")
    target.write_text(json.dumps(manifest, indent=2))
    return target


def remote_keys(s3: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = int(item["Size"])
    return found
