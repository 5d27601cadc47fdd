"""Against real Backblaze B2: runs only when B2_TEST_BUCKET, B2_APPLICATION_KEY_ID and
B2_APPLICATION_KEY are set (and B2_TEST_REGION or B2_TEST_ENDPOINT_URL), skipped otherwise.

Everything it writes lives under a unique prefix and is deleted by version at the end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from pathlib import Path

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils._s3 import ClientSettings, create_client
from tests.integration.b2.b2helpers import MiB, write_backup
from tests.support.runner import run_module

LIVE = {name: os.environ.get(name) for name in ("B2_TEST_BUCKET", "B2_APPLICATION_KEY_ID", "B2_APPLICATION_KEY")}
pytestmark = [
    pytest.mark.live_b2,
    pytest.mark.skipif(not all(LIVE.values()), reason="set B2_TEST_BUCKET, B2_APPLICATION_KEY_ID, B2_APPLICATION_KEY"),
]


def test_live_push_status_pull_retention(tmp_path: Path) -> None:
    prefix = f"mutuapix-ops-test/{uuid.uuid4().hex[:12]}/"
    endpoint = os.environ.get("B2_TEST_ENDPOINT_URL")
    common = {
        "bucket": LIVE["B2_TEST_BUCKET"],
        "region": os.environ.get("B2_TEST_REGION"),
        "endpoint_url": endpoint,
        "prefix": prefix,
        "part_size_mb": 5,
        "cache_file": str(tmp_path / "cache.json"),
    }
    common = {k: v for k, v in common.items() if v is not None}
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    newest = write_backup(src, "app", now, 6 * MiB + 1)
    write_backup(src, "app", now - dt.timedelta(days=1), 1000)
    settings = ClientSettings.from_params(common)
    settings.key_id, settings.application_key = LIVE["B2_APPLICATION_KEY_ID"], LIVE["B2_APPLICATION_KEY"]
    client = create_client(settings)
    try:
        first = run_module("b2_sync", {**common, "src": str(src), "verify": "download"})
        assert first["changed"] and not first.failed, first
        second = run_module("b2_sync", {**common, "src": str(src), "use_cache": False})
        assert second["changed"] is False, second
        report = run_module("b2_sync", {**common, "mode": "status", "database": "app"})
        assert report["healthy"] and report["backups"]["app"]["count"] == 2, report
        pulled = run_module("b2_sync", {**common, "mode": "pull", "dest": str(dest), "latest": True, "database": "app"})
        assert pulled["name"] == newest.name, pulled
        assert hashlib.sha256((dest / newest.name).read_bytes()).hexdigest() == pulled["sha256"]
        pruned = run_module("b2_sync", {**common, "src": str(src), "keep_last": 1})
        assert len({d["key"] for d in pruned["deleted"]}) == 2 and not pruned.failed, pruned
    finally:
        versions = client.list_object_versions(Bucket=common["bucket"], Prefix=prefix)
        for item in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
            client.delete_object(Bucket=common["bucket"], Key=item["Key"], VersionId=item["VersionId"])
