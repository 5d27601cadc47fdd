"""b2_sync against a real S3 HTTP server (moto on 127.0.0.1) behind a proxy that answers like B2."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils._b2sync import (
    STALE_UPLOAD_AGE,
    HashCache,
    SyncConfig,
    abort_stale_uploads,
    push,
)
from tests.integration.b2.b2helpers import APP_KEY, MiB, b2_run, remote_keys, write_backup, write_manifest
from tests.integration.b2.b2proxy import B2Proxy, Fault
from tests.support.mariadb import refused_port
from tests.support.s3server import S3Server

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
PUT_OPS = ("PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload")


def puts(proxy: B2Proxy) -> int:
    return sum(proxy.state.count(op) for op in PUT_OPS)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "dest"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def no_b2_rejections(proxy: B2Proxy) -> Any:
    """Every request the module sends must be one B2 accepts (checked on the wire)."""
    yield
    rejected = [(r.operation, r.status, sorted(r.headers)) for r in proxy.state.rejected]
    assert not rejected, f"requests B2 would reject: {rejected}"


# ----------------------------------------------------------------------------- round trip


def test_push_then_pull_round_trip_is_verified_and_idempotent(bucket, args_for, proxy, src, dest, s3):
    backup = write_backup(src, "app", NOW - dt.timedelta(hours=1), 7 * MiB + 3)
    first = b2_run(args_for(bucket, src=str(src), prefix="prod/db1", part_size_mb=5))
    assert first["changed"] and not first.failed, first
    assert sorted(first["uploaded"]) == sorted([backup.name, backup.name + ".manifest.json"])
    assert first["bytes_transferred"] >= backup.stat().st_size
    head = s3.head_object(Bucket=bucket, Key="prod/db1/" + backup.name)
    assert head["Metadata"]["sha256"] == sha256_of(backup)
    assert proxy.state.count("UploadPart") == 2

    pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), prefix="prod/db1/", latest=True, database="app"))
    assert pulled["changed"] and not pulled.failed, pulled
    target = dest / backup.name
    assert pulled["path"] == str(target)
    assert target.read_bytes() == backup.read_bytes()
    assert pulled["sha256"] == sha256_of(backup)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads((dest / (backup.name + ".manifest.json")).read_text())["sha256"] == sha256_of(backup)
    assert not [p for p in dest.iterdir() if p.name.startswith(".")], "temporary files left in dest"

    again = b2_run(args_for(bucket, mode="pull", dest=str(dest), prefix="prod/db1/", name=backup.name))
    assert not again["changed"] and again["downloaded"] == [], again


def test_second_push_transfers_nothing(bucket, args_for, proxy, src):
    for day in range(3):
        write_backup(src, "app", NOW - dt.timedelta(days=day), 64 * 1024 + day)
    args = args_for(bucket, src=str(src), prefix="db")
    assert b2_run(args)["changed"]
    proxy.state.clear()
    second = b2_run(args)
    assert not second.failed and second["changed"] is False, second
    assert second["uploaded"] == [] and len(second["skipped"]) == 6
    assert puts(proxy) == 0
    assert proxy.state.count("HeadObject") == 0, "the cache should spare a HEAD per object"

    # Without the cache the answer is the same, from the sha256 metadata of each object.
    proxy.state.clear()
    uncached = b2_run({**args, "use_cache": False})
    assert uncached["changed"] is False and puts(proxy) == 0
    assert proxy.state.count("HeadObject") == 6


def test_same_size_change_is_seen_and_mtime_only_change_is_not(bucket, args_for, proxy, src, s3):
    backup = write_backup(src, "app", NOW, 256 * 1024)
    args = args_for(bucket, src=str(src), prefix="db/")
    assert b2_run(args)["changed"]
    pushed = backup.read_bytes()

    original = backup.stat()
    os.utime(backup, ns=(original.st_atime_ns, original.st_mtime_ns + 10**12))
    proxy.state.clear()
    touched = b2_run(args)
    assert touched["changed"] is False and puts(proxy) == 0, touched

    data = bytearray(pushed)
    data[1000] ^= 0xFF
    backup.write_bytes(bytes(data))
    os.utime(backup, ns=(original.st_atime_ns, original.st_mtime_ns))  # same size, same mtime
    write_manifest(backup, "app")  # another backup under the same name, with a manifest of its own
    proxy.state.clear()
    changed = b2_run(args)
    # the cache did not hide the change (the ctime moved); a backup's name is never reused, so the
    # remote backup is kept and the other one is refused
    assert changed.failed and "sha256" in changed["conflicts"][backup.name], changed
    assert changed["uploaded"] == [] and puts(proxy) == 0
    assert s3.get_object(Bucket=bucket, Key="db/" + backup.name)["Body"].read() == pushed


@pytest.mark.parametrize(
    ("size", "parts"),
    [(0, 0), (5 * MiB - 1, 0), (5 * MiB, 0), (5 * MiB + 1, 2), (15 * MiB + 1, 4)],
    ids=["empty", "part-1", "one-part", "part+1", "several-parts"],
)
def test_sizes_round_trip(bucket, args_for, proxy, src, dest, s3, size, parts):
    backup = write_backup(src, "app", NOW, size)
    result = b2_run(args_for(bucket, src=str(src), part_size_mb=5, concurrency=3))
    assert not result.failed, result
    assert proxy.state.count("UploadPart") == parts
    assert s3.head_object(Bucket=bucket, Key=backup.name)["ContentLength"] == size
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), name=backup.name, part_size_mb=5))
    assert not pulled.failed, pulled
    assert sha256_of(dest / backup.name) == sha256_of(backup)


def test_data_file_goes_up_before_its_manifest(bucket, args_for, proxy, src):
    for hour in range(3):
        write_backup(src, "app", NOW - dt.timedelta(hours=hour), 6 * MiB if hour == 0 else 1000)
    assert not b2_run(args_for(bucket, src=str(src), part_size_mb=5)).failed
    order = [s.path.split("?")[0].rsplit("/", 1)[-1] for s in proxy.state.seen if s.operation in PUT_OPS]
    last_write = {name: i for i, name in enumerate(order)}
    first_write = {}
    for i, name in enumerate(order):
        first_write.setdefault(name, i)
    manifests = [n for n in last_write if n.endswith(".manifest.json")]
    assert len(manifests) == 3
    for manifest in manifests:
        assert first_write[manifest] > last_write[manifest[: -len(".manifest.json")]]


def test_check_mode_lists_and_transfers_nothing(bucket, args_for, proxy, src, s3):
    backup = write_backup(src, "app", NOW, 1000)
    result = b2_run(args_for(bucket, src=str(src)), check=True)
    assert result["changed"] and sorted(result["uploaded"]) == sorted([backup.name, backup.name + ".manifest.json"])
    assert puts(proxy) == 0 and remote_keys(s3, bucket) == {}


def test_include_exclude_and_hidden_files(bucket, args_for, src, s3):
    write_backup(src, "app", NOW, 100)
    write_backup(src, "audit", NOW, 100)
    (src / ".app-20260101T000000Z.sql.zst.tmp").write_bytes(b"partial")
    (src / "notes.txt").write_text("not a backup")
    result = b2_run(args_for(bucket, src=str(src), exclude=["audit-*"]))
    assert not result.failed, result
    assert sorted(remote_keys(s3, bucket)) == sorted(
        n for n in os.listdir(src) if n.startswith("app-") and not n.startswith(".")
    )


def test_a_file_name_that_is_no_utf8_does_not_stop_the_other_backups(bucket, args_for, src, s3):
    """S3 keys are UTF-8: a stray latin-1 name in src is left out with a warning, not a traceback every run."""
    backup = write_backup(src, "app", NOW, 100)
    stray = os.path.join(os.fsencode(src), b"caf\xe9-20260101T000000Z.sql.zst")
    with open(stray, "wb") as handle:
        handle.write(b"x")
    result = b2_run(args_for(bucket, src=str(src), keep_last=1))
    assert not result.failed and "Traceback" not in result.stderr, result
    assert sorted(remote_keys(s3, bucket)) == sorted([backup.name, backup.name + ".manifest.json"])
    assert result["unsupported_names"] == ["caf\\xe9-20260101T000000Z.sql.zst"], result
    assert any("no UTF-8" in str(w) and "xe9-20260101T000000Z.sql.zst" in str(w) for w in result["warnings"]), result


# ----------------------------------------------------------------------------- retention


def test_retention_deletes_every_version_only_of_managed_keys(bucket, args_for, proxy, src, s3):
    days = [NOW - dt.timedelta(days=d) for d in range(5)]
    for when in days:
        write_backup(src, "app", when, 100)
    write_backup(src, "app", days[4], 50, label="predeploy")  # its own group: never pushed out
    # An older version of the oldest backup, and things retention must never touch.
    oldest = f"app-{days[4].strftime('%Y%m%dT%H%M%SZ')}.sql.zst"
    s3.put_object(Bucket=bucket, Key="db/" + oldest, Body=b"older version")
    untouchable = {
        f"db-old/{oldest}": b"other prefix",
        f"db/sub/{oldest}": b"deeper folder",
        "db/README.txt": b"not a backup",
    }
    for key, body in untouchable.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    args = args_for(bucket, src=str(src), prefix="db")
    assert not b2_run(args).failed

    planned = b2_run({**args, "keep_last": 2}, check=True)
    assert planned["changed"] and {d["key"] for d in planned["deleted"]}
    assert proxy.state.count("DeleteObjects") == 0
    assert len(remote_keys(s3, bucket, "db/")) == 14  # 12 pushed, README.txt, sub/...

    proxy.state.clear()
    result = b2_run({**args, "keep_last": 2})
    assert result["changed"] and not result.failed, result
    remaining = set(remote_keys(s3, bucket))
    kept = {f"app-{w.strftime('%Y%m%dT%H%M%SZ')}.sql.zst" for w in days[:2]}
    expected = {f"db/{n}" for n in kept} | {f"db/{n}.manifest.json" for n in kept}
    predeploy = f"app-predeploy-{days[4].strftime('%Y%m%dT%H%M%SZ')}.sql.zst"
    expected |= {f"db/{predeploy}", f"db/{predeploy}.manifest.json"} | set(untouchable)
    assert remaining == expected
    versions = s3.list_object_versions(Bucket=bucket, Prefix="db/" + oldest)
    assert not versions.get("Versions") and not versions.get("DeleteMarkers"), "deleted by version, not hidden"
    assert s3.get_object(Bucket=bucket, Key=f"db-old/{oldest}")["Body"].read() == b"other prefix"
    assert len(list(src.iterdir())) == 12, "nothing local is ever deleted"

    proxy.state.clear()
    again = b2_run({**args, "keep_last": 2})
    assert again["changed"] is False and puts(proxy) == 0, again
    assert len(again["not_uploaded_retention"]) == 6


def complete_remote(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys = remote_keys(s3, bucket, prefix)
    return sorted(k for k in keys if not k.endswith(".manifest.json") and k + ".manifest.json" in keys)


def test_retention_never_lets_a_backup_without_manifest_push_out_a_complete_one(bucket, args_for, src, s3):
    old = write_backup(src, "app", NOW - dt.timedelta(days=2), 1000)
    args = args_for(bucket, src=str(src), prefix="db", keep_last=1)
    assert not b2_run(args).failed
    # mysql_backup renamed a new data file into place but its manifest is not written (or failed).
    local_new = write_backup(src, "app", NOW - dt.timedelta(hours=3), 1000)
    Path(f"{local_new}.manifest.json").unlink()
    result = b2_run(args)
    assert not result.failed and result["deleted"] == [], result
    assert result["uploaded"] == [local_new.name] and result["not_uploaded_retention"] == []
    # A newer data object whose manifest never arrived (the local copy is gone since).
    local_new.unlink()
    remote_new = f"app-{(NOW - dt.timedelta(hours=2)).strftime('%Y%m%dT%H%M%SZ')}.sql.zst"
    s3.put_object(Bucket=bucket, Key="db/" + remote_new, Body=b"partial")
    result = b2_run(args)
    assert not result.failed and result["deleted"] == [], result
    assert complete_remote(s3, bucket, "db/") == ["db/" + old.name]
    report = b2_run(args_for(bucket, mode="status", prefix="db", database=["app"], max_age_hours=100))
    assert report["backups"]["app"]["count"] == 1 and report["healthy"], report
    assert report["backups"]["app"]["incomplete"] == sorted([local_new.name, remote_new])
    # Once a newer complete backup exists, the rules apply to the data-only objects as well.
    newest = write_backup(src, "app", NOW - dt.timedelta(hours=1), 1000)
    result = b2_run(args)
    assert not result.failed, result
    assert complete_remote(s3, bucket, "db/") == ["db/" + newest.name]
    gone = {"db/" + old.name, f"db/{old.name}.manifest.json", "db/" + local_new.name, "db/" + remote_new}
    assert {d["key"] for d in result["deleted"]} == gone


def test_object_lock_upload_and_locked_versions_retained(locked_bucket, args_for, proxy, src, s3):
    for day in range(3):
        write_backup(src, "app", NOW - dt.timedelta(days=day), 6 * MiB if day == 0 else 1000)
    args = args_for(
        locked_bucket, src=str(src), prefix="p/", part_size_mb=5, object_lock_mode="governance", object_lock_days=1
    )
    first = b2_run(args)
    assert first["changed"] and not first.failed, first
    head = s3.head_object(Bucket=locked_bucket, Key="p/" + first["uploaded"][0])
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"] > NOW
    for seen in proxy.state.seen:
        if seen.operation in ("PutObject", "UploadPart"):
            assert "content-md5" in seen.headers

    result = b2_run({**args, "keep_last": 1})
    assert not result.failed, result
    assert result["retained_locked"] and result["deleted"] == []
    assert {e["mode"] for e in result["retained_locked"]} == {"GOVERNANCE"}
    assert len(remote_keys(s3, locked_bucket)) == 6


@pytest.mark.parametrize("held", ["data", "manifest"])
def test_a_legal_hold_on_one_file_keeps_the_whole_backup(locked_bucket, args_for, proxy, src, s3, held):
    old = write_backup(src, "app", NOW - dt.timedelta(days=1), 1000)
    write_backup(src, "app", NOW, 1000)
    args = args_for(locked_bucket, src=str(src), prefix="p")
    assert not b2_run(args).failed
    held_key = "p/" + old.name + (".manifest.json" if held == "manifest" else "")
    s3.put_object_legal_hold(Bucket=locked_bucket, Key=held_key, LegalHold={"Status": "ON"})
    proxy.state.clear()
    result = b2_run({**args, "keep_last": 1})
    assert not result.failed and result["deleted"] == [], result
    assert [e["key"] for e in result["retained_locked"]] == [held_key]
    assert proxy.state.count("DeleteObjects") == 0
    assert complete_remote(s3, locked_bucket, "p/") == sorted(f"p/{f.name}" for f in src.glob("*.zst"))
    # Once the hold is lifted, the next run deletes the backup, manifest first.
    s3.put_object_legal_hold(Bucket=locked_bucket, Key=held_key, LegalHold={"Status": "OFF"})
    result = b2_run({**args, "keep_last": 1})
    assert [d["key"] for d in result["deleted"]] == [f"p/{old.name}.manifest.json", f"p/{old.name}"], result


def test_a_key_that_may_not_delete_versions_fails_retention_instead_of_keeping_everything(
    bucket, args_for, proxy, src, s3
):
    """B2 refuses a key without deleteFiles with per-object AccessDenied, as it does a lock."""
    old = write_backup(src, "app", NOW - dt.timedelta(days=1), 1000)
    write_backup(src, "app", NOW, 1000)
    args = args_for(bucket, src=str(src), prefix="p")
    assert not b2_run(args).failed
    before = remote_keys(s3, bucket)
    proxy.state.faults.append(Fault("DeleteObjects", 1, delete_error="AccessDenied"))
    result = b2_run({**args, "keep_last": 1})
    assert result.failed, result
    assert "deleteFiles" in result["msg"] and f"p/{old.name}.manifest.json" in result["msg"], result["msg"]
    assert "neither Object Lock nor a legal hold" in result["msg"]
    assert remote_keys(s3, bucket) == before
    # With the capability back, the same run deletes the old backup.
    result = b2_run({**args, "keep_last": 1})
    assert not result.failed and result["retained_locked"] == [], result
    assert [d["key"] for d in result["deleted"]] == [f"p/{old.name}.manifest.json", f"p/{old.name}"]


def test_a_lock_set_between_reading_and_deleting_is_reported_as_locked(locked_bucket, args_for, proxy, src, s3):
    old = write_backup(src, "app", NOW - dt.timedelta(days=1), 1000)
    write_backup(src, "app", NOW, 1000)
    args = args_for(locked_bucket, src=str(src), prefix="p")
    assert not b2_run(args).failed
    manifest_key = f"p/{old.name}.manifest.json"

    def hold_before_delete(seen):
        if seen.operation == "DeleteObjects":
            proxy.state.hook = None
            s3.put_object_legal_hold(Bucket=locked_bucket, Key=manifest_key, LegalHold={"Status": "ON"})

    proxy.state.hook = hold_before_delete
    result = b2_run({**args, "keep_last": 1})
    assert not result.failed and result["deleted"] == [], result
    assert [(e["key"], e["mode"]) for e in result["retained_locked"]] == [(manifest_key, "LEGAL_HOLD")], result
    assert complete_remote(s3, locked_bucket, "p/") == sorted(f"p/{f.name}" for f in src.glob("*.zst"))
    s3.put_object_legal_hold(Bucket=locked_bucket, Key=manifest_key, LegalHold={"Status": "OFF"})


# ----------------------------------------------------------------------------- status


def test_status_reports_freshness_per_database(bucket, args_for, src, s3):
    write_backup(src, "app", NOW - dt.timedelta(hours=30), 100)
    write_backup(src, "app", NOW - dt.timedelta(hours=2), 200)
    write_backup(src, "billing", NOW - dt.timedelta(hours=50), 300)
    assert not b2_run(args_for(bucket, src=str(src), prefix="h1")).failed
    incomplete = f"app-{(NOW - dt.timedelta(hours=1)).strftime('%Y%m%dT%H%M%SZ')}.sql.zst"
    s3.put_object(Bucket=bucket, Key="h1/" + incomplete, Body=b"no manifest yet")

    report = b2_run(args_for(bucket, mode="status", prefix="h1", database=["app", "billing", "crm"]))
    assert not report.failed and report["changed"] is False, report
    app = report["backups"]["app"]
    assert app["count"] == 2 and app["bytes"] == 300 and app["healthy"]
    assert app["newest"].startswith(f"app-{(NOW - dt.timedelta(hours=2)).strftime('%Y%m%dT%H%M%SZ')}")
    assert 1.9 < app["age_hours"] < 2.5 and app["incomplete"] == [incomplete]
    assert report["backups"]["billing"]["healthy"] is False
    assert report["backups"]["crm"] == {**report["backups"]["crm"], "count": 0, "healthy": False, "newest": None}
    assert report["healthy"] is False

    only_app = b2_run(args_for(bucket, mode="status", prefix="h1", database="app", max_age_hours=3))
    assert only_app["healthy"] is True
    stale = b2_run(args_for(bucket, mode="status", prefix="h1", database="app", max_age_hours=1))
    assert stale["healthy"] is False
    empty = b2_run(args_for(bucket, mode="status", prefix="nothing-here"))
    assert empty["healthy"] is False and empty["backups"] == {}


def test_databases_whose_names_extend_each_other_are_told_apart(bucket, args_for, proxy, src, dest):
    app = write_backup(src, "app", NOW - dt.timedelta(days=3), 100)
    archive = write_backup(src, "app-archive", NOW - dt.timedelta(hours=1), 100)
    predeploy = write_backup(src, "app", NOW - dt.timedelta(days=4), 100, label="predeploy")
    assert not b2_run(args_for(bucket, src=str(src), prefix="h")).failed
    # app-archive-<ts> also parses as app's backup labelled "archive": its manifest says whose it is.
    args = args_for(bucket, mode="status", prefix="h", database=["app", "app-archive"])
    report = b2_run(args)
    assert not report.failed, report
    assert report["backups"]["app"] == {**report["backups"]["app"], "count": 2, "newest": app.name, "healthy": False}
    assert report["backups"]["app-archive"] == {**report["backups"]["app-archive"], "count": 1, "healthy": True}
    only_app = b2_run(args_for(bucket, mode="status", prefix="h", database=["app"]))
    assert only_app["backups"]["app"]["newest"] == app.name and only_app["healthy"] is False, only_app
    proxy.state.clear()
    again = b2_run(args)["backups"]
    assert {db: (e["newest"], e["count"]) for db, e in again.items()} == {
        "app": (app.name, 2),
        "app-archive": (archive.name, 1),
    }
    assert proxy.state.count("GetObject") == 0, "manifest owners come from the cache"

    pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), prefix="h", latest=True, database="app"))
    assert pulled["name"] == app.name, pulled
    labelled = b2_run(
        args_for(bucket, mode="pull", dest=str(dest), prefix="h", latest=True, database="app", label="predeploy")
    )
    assert labelled["name"] == predeploy.name, labelled
    none = b2_run(
        args_for(bucket, mode="pull", dest=str(dest), prefix="h", latest=True, database="app", label="archive")
    )
    assert none.failed and "no complete backup of database 'app'" in none["msg"], none
    assert archive.name not in os.listdir(dest)


def test_an_ambiguous_name_whose_manifest_is_no_json_counts_for_nobody(bucket, args_for, src, s3):
    """As local retention reads it: a manifest that is no JSON object confirms no owner."""
    app = write_backup(src, "app", NOW - dt.timedelta(days=3), 100)
    archive = write_backup(src, "app-archive", NOW - dt.timedelta(hours=1), 100)
    assert not b2_run(args_for(bucket, src=str(src), prefix="h")).failed
    s3.put_object(Bucket=bucket, Key=f"h/{archive.name}.manifest.json", Body=b"not json")
    report = b2_run(args_for(bucket, mode="status", prefix="h", database=["app"]))
    assert not report.failed, report
    assert report["backups"]["app"]["newest"] == app.name, report


def test_retention_and_status_tell_database_app_archive_from_app_labelled_archive(bucket, args_for, src, s3):
    """The same stem, two owners: each (database, label) keeps its own newest backup."""
    lone = write_backup(src, "app-archive", NOW - dt.timedelta(days=2), 100)  # database app-archive's only one
    labelled = write_backup(src, "app", NOW - dt.timedelta(hours=1), 100, label="archive")
    nightly = write_backup(src, "app", NOW - dt.timedelta(hours=2), 100)
    args = args_for(bucket, src=str(src), prefix="h", keep_last=1)
    result = b2_run(args)
    assert not result.failed and result["deleted"] == [] and result["not_uploaded_retention"] == [], result
    assert complete_remote(s3, bucket, "h/") == sorted(f"h/{b.name}" for b in (lone, labelled, nightly))

    # the same from the remote manifests alone (nothing local any more), and with a second labelled backup
    for path in src.iterdir():
        path.unlink()
    newer = write_backup(src, "app", NOW - dt.timedelta(minutes=30), 100, label="archive")
    result = b2_run(args)
    assert not result.failed, result
    assert {d["key"] for d in result["deleted"]} == {f"h/{labelled.name}", f"h/{labelled.name}.manifest.json"}
    assert complete_remote(s3, bucket, "h/") == sorted(f"h/{b.name}" for b in (lone, newer, nightly))

    report = b2_run(args_for(bucket, mode="status", prefix="h", max_age_hours=26))
    assert not report.failed, report
    backups = report["backups"]
    assert set(backups) == {"app", "app-archive", "app (label archive)"}, backups
    assert backups["app-archive"] == {**backups["app-archive"], "database": "app-archive", "label": None}
    assert backups["app-archive"]["newest"] == lone.name and backups["app-archive"]["healthy"] is False
    assert backups["app (label archive)"]["newest"] == newer.name and backups["app (label archive)"]["count"] == 1
    assert report["healthy"] is False, "the stale database app-archive must not hide behind app's label"


def test_a_local_backup_that_no_longer_matches_its_manifest_is_not_pushed(bucket, args_for, src, s3):
    good = write_backup(src, "app", NOW - dt.timedelta(days=1), 4000)
    args = args_for(bucket, src=str(src), prefix="db", keep_last=1)
    assert not b2_run(args).failed
    good.unlink()
    Path(f"{good}.manifest.json").unlink()  # local retention took it; the remote copy is the only one
    damaged = write_backup(src, "app", NOW, 4000)
    data = bytearray(damaged.read_bytes())
    data[100:116] = b"\0" * 16  # a bad sector, after mysql_backup wrote the manifest
    damaged.write_bytes(bytes(data))
    result = b2_run(args)
    assert result.failed and damaged.name in result["damaged"], result
    assert "do not match their manifests" in result["msg"] and "retention did not run" in result["msg"]
    assert result["uploaded"] == [] and result["deleted"] == []
    assert sorted(remote_keys(s3, bucket, "db/")) == [f"db/{good.name}", f"db/{good.name}.manifest.json"]
    # a manifest that is no manifest is no proof either
    Path(f"{damaged}.manifest.json").write_text("{}")
    result = b2_run(args)
    assert result.failed and "cannot be read as one" in result["damaged"][damaged.name], result


def test_a_local_manifest_without_its_backup_file_is_not_pushed(bucket, args_for, src, s3):
    backup = write_backup(src, "app", NOW - dt.timedelta(hours=1), 1000)
    backup.unlink()  # an interrupted local retention deletes the data file first
    kept = write_backup(src, "app", NOW, 1000)
    result = b2_run(args_for(bucket, src=str(src), prefix="db"))
    assert not result.failed, result
    assert result["orphaned_manifests"] == [f"{backup.name}.manifest.json"]
    assert any("neither in src nor remote" in str(w) for w in result.get("warnings", [])), result
    assert sorted(remote_keys(s3, bucket, "db/")) == [f"db/{kept.name}", f"db/{kept.name}.manifest.json"]


def versions_of(s3: Any, bucket: str, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(versions, delete markers) of exactly ``key``."""
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return (
        [v for v in listing.get("Versions", []) if v["Key"] == key],
        [m for m in listing.get("DeleteMarkers", []) if m["Key"] == key],
    )


@pytest.mark.parametrize("damage", ["same-size", "truncated"])
def test_a_damaged_local_file_whose_manifest_is_gone_never_replaces_the_good_remote_copy(
    bucket, args_for, proxy, src, s3, damage
):
    """Without its manifest the damage check cannot see the damage: the remote manifest decides."""
    old = write_backup(src, "app", NOW - dt.timedelta(days=2), 1000)
    backup = write_backup(src, "app", NOW - dt.timedelta(days=1), 4000)
    args = args_for(bucket, src=str(src), prefix="db", keep_last=2)
    assert not b2_run(args).failed
    good = backup.read_bytes()
    Path(f"{backup}.manifest.json").unlink()
    data = bytearray(good)
    if damage == "same-size":
        data[100:116] = b"\0" * 16  # a bad sector
    else:
        del data[3000:]  # a copy cut short
    backup.write_bytes(bytes(data))
    new = write_backup(src, "app", NOW, 1000)  # tonight's backup must still go up
    both_new = sorted([new.name, new.name + ".manifest.json"])

    proxy.state.clear()
    planned = b2_run(args, check=True)
    assert planned.failed and list(planned["conflicts"]) == [backup.name], planned
    assert sorted(planned["uploaded"]) == both_new and puts(proxy) == 0

    result = b2_run(args)
    assert_clean_failure(result, backup.name, "remote backup's manifest says 4000 bytes", "retention did not run")
    assert list(result["conflicts"]) == [backup.name], result
    assert sha256_of(backup) in result["conflicts"][backup.name]
    assert sorted(result["uploaded"]) == both_new and result["deleted"] == [], result
    assert s3.get_object(Bucket=bucket, Key=f"db/{backup.name}")["Body"].read() == good
    versions, markers = versions_of(s3, bucket, f"db/{backup.name}")
    assert len(versions) == 1 and markers == [], "no newer version over the good one"
    assert complete_remote(s3, bucket, "db/") == sorted(f"db/{b.name}" for b in (old, backup, new))

    # Once the damaged file is moved aside, the push succeeds and retention runs again.
    backup.rename(src.parent / backup.name)
    result = b2_run(args)
    assert not result.failed and result["conflicts"] == {}, result
    assert complete_remote(s3, bucket, "db/") == sorted(f"db/{b.name}" for b in (backup, new))


def test_a_local_file_the_remote_manifest_vouches_for_repairs_the_remote_copy(bucket, args_for, src, s3):
    """The other way round: the remote data file was overwritten, the local one matches the remote manifest."""
    backup = write_backup(src, "app", NOW, 4000)
    args = args_for(bucket, src=str(src), prefix="db")
    assert not b2_run(args).failed
    Path(f"{backup}.manifest.json").unlink()
    s3.put_object(Bucket=bucket, Key=f"db/{backup.name}", Body=b"z" * 4000)
    result = b2_run(args)
    assert not result.failed and result["conflicts"] == {}, result
    assert result["uploaded"] == [backup.name] and result["upload_reasons"][backup.name] == "no sha256 metadata"
    assert s3.get_object(Bucket=bucket, Key=f"db/{backup.name}")["Body"].read() == backup.read_bytes()


def test_a_remote_data_file_without_manifest_is_replaced_only_when_nothing_speaks_for_it(bucket, args_for, src, s3):
    """Uploaded by b2_sync (its sha256 metadata), its manifest not yet: never replaced. Another tool's
    object (no sha256 metadata): replaced by a complete local backup only, B2 keeping it as an older version."""
    backup = write_backup(src, "app", NOW, 1000)
    manifest = Path(f"{backup}.manifest.json")
    manifest.rename(src.parent / manifest.name)  # mysql_backup writes it after the data file
    args = args_for(bucket, src=str(src), prefix="db")
    assert b2_run(args)["uploaded"] == [backup.name]
    first = backup.read_bytes()
    backup.write_bytes(b"q" * 1000)
    result = b2_run(args)
    assert result.failed and "has no manifest yet" in result["conflicts"][backup.name], result
    assert s3.get_object(Bucket=bucket, Key=f"db/{backup.name}")["Body"].read() == first

    foreign = write_backup(src, "app", NOW - dt.timedelta(hours=1), 1000)
    foreign_manifest = Path(f"{foreign}.manifest.json")
    foreign_manifest.rename(src.parent / foreign_manifest.name)
    backup.unlink()
    s3.put_object(Bucket=bucket, Key=f"db/{foreign.name}", Body=b"another tool's partial copy")
    result = b2_run(args)
    assert result.failed and "neither has a manifest" in result["conflicts"][foreign.name], result
    (src.parent / foreign_manifest.name).rename(foreign_manifest)  # a complete local backup now
    result = b2_run(args)
    assert not result.failed and result["upload_reasons"][foreign.name] == "size", result
    assert s3.get_object(Bucket=bucket, Key=f"db/{foreign.name}")["Body"].read() == foreign.read_bytes()


def test_a_local_manifest_goes_up_only_when_it_describes_the_remote_backup_file(bucket, args_for, src, s3):
    backup = write_backup(src, "app", NOW, 1000)
    manifest = Path(f"{backup}.manifest.json")
    args = args_for(bucket, src=str(src), prefix="db")
    assert b2_run({**args, "exclude": ["*.manifest.json"]})["uploaded"] == [backup.name]
    backup.unlink()  # the data file is only remote now
    result = b2_run(args)  # the manifest describes it: the remote backup becomes complete
    assert not result.failed and result["uploaded"] == [manifest.name], result
    good = manifest.read_bytes()
    claims = json.loads(good)
    manifest.write_text(json.dumps({**claims, "sha256": "0" * 64}))  # damaged in a way JSON survives
    result = b2_run(args)
    assert result.failed and list(result["conflicts"]) == [manifest.name], result
    assert f"sha256 {claims['sha256']}" in result["conflicts"][manifest.name]
    manifest.write_text("{not json")
    result = b2_run(args)
    assert result.failed and "cannot be read as a manifest" in result["conflicts"][manifest.name], result
    assert s3.get_object(Bucket=bucket, Key=f"db/{manifest.name}")["Body"].read() == good


def test_retention_deletes_remote_manifests_whose_backup_file_is_gone(bucket, args_for, proxy, src, s3):
    backups = [write_backup(src, "app", NOW - dt.timedelta(days=d), 1000) for d in range(3)]
    args = args_for(bucket, src=str(src), prefix="db")
    assert not b2_run(args).failed
    for path in src.iterdir():
        path.unlink()  # local retention took them: only the remote copies are left
    lost = backups[1]
    for version in versions_of(s3, bucket, f"db/{lost.name}")[0]:  # deleted by hand, every version
        s3.delete_object(Bucket=bucket, Key=f"db/{lost.name}", VersionId=version["VersionId"])
    stranger = "app-20200101T000000Z.sql.zst.manifest.json"
    untouchable = {
        f"db/sub/{stranger}": b"{}",  # a deeper folder
        f"db-old/{stranger}": b"{}",  # another prefix that merely starts the same
        "db/notes.manifest.json": b"{}",  # no backup name
    }
    for key, body in untouchable.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    orphan_key = f"db/{lost.name}.manifest.json"

    without_retention = b2_run(args)
    assert without_retention["changed"] is False and without_retention["deleted_orphaned_manifests"] == []
    planned = b2_run({**args, "keep_last": 5}, check=True)
    assert planned["deleted_orphaned_manifests"] == [f"{lost.name}.manifest.json"], planned
    assert planned["changed"] and proxy.state.count("DeleteObjects") == 0

    result = b2_run({**args, "keep_last": 5})
    assert not result.failed and result["changed"], result
    assert result["deleted_orphaned_manifests"] == [f"{lost.name}.manifest.json"], result
    assert {d["key"] for d in result["deleted"]} == {orphan_key}
    assert versions_of(s3, bucket, orphan_key) == ([], []), "deleted by version, not hidden"
    kept = {f"db/{b.name}" for b in (backups[0], backups[2])}
    assert set(remote_keys(s3, bucket)) == kept | {k + ".manifest.json" for k in kept} | set(untouchable)

    again = b2_run({**args, "keep_last": 5})
    assert again["changed"] is False and again["deleted_orphaned_manifests"] == [], again


def test_a_local_data_file_gives_a_remote_orphan_manifest_its_backup_back(bucket, args_for, src, s3):
    """Uploaded in the same push, before retention: the manifest is no orphan then."""
    backup = write_backup(src, "app", NOW, 1000)
    args = args_for(bucket, src=str(src), prefix="db", keep_last=5)
    assert not b2_run(args).failed
    for version in versions_of(s3, bucket, f"db/{backup.name}")[0]:
        s3.delete_object(Bucket=bucket, Key=f"db/{backup.name}", VersionId=version["VersionId"])
    Path(f"{backup}.manifest.json").unlink()  # the data file alone is still here
    result = b2_run(args)
    assert not result.failed and result["uploaded"] == [backup.name], result
    assert result["deleted_orphaned_manifests"] == [] and result["deleted"] == []
    assert complete_remote(s3, bucket, "db/") == [f"db/{backup.name}"]


def test_retention_keeps_the_manifest_of_a_hidden_backup_file_until_its_bytes_are_gone(bucket, args_for, src, s3):
    """Deleted by name, B2 only hides a file (its bytes stay): un-hiding it must give back a complete backup."""
    hidden = write_backup(src, "app", NOW - dt.timedelta(days=1), 1000)
    write_backup(src, "app", NOW, 1000)
    args = args_for(bucket, src=str(src), prefix="db")
    assert not b2_run(args).failed
    for path in src.iterdir():
        path.unlink()
    key = f"db/{hidden.name}"
    s3.delete_object(Bucket=bucket, Key=key)  # a delete marker: hidden
    result = b2_run({**args, "keep_last": 5})
    assert not result.failed and result["deleted"] == [] and result["changed"] is False, result
    assert result["hidden_backups"] == [hidden.name], result
    assert any("hidden in the bucket" in str(w) and hidden.name in str(w) for w in result["warnings"]), result
    assert s3.head_object(Bucket=bucket, Key=key + ".manifest.json")

    version = versions_of(s3, bucket, key)[0][0]
    s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])  # a lifecycle rule, or by hand
    result = b2_run({**args, "keep_last": 5})
    assert not result.failed and result["deleted_orphaned_manifests"] == [hidden.name + ".manifest.json"], result
    assert result["hidden_backups"] == []
    versions, markers = versions_of(s3, bucket, key)
    assert versions == [] and len(markers) == 1, "the data key's delete marker is not retention's to remove"


def test_a_locked_orphan_manifest_is_reported_not_deleted(locked_bucket, args_for, src, s3):
    backup = write_backup(src, "app", NOW, 1000)
    args = args_for(locked_bucket, src=str(src), prefix="p", keep_last=5)
    assert not b2_run(args).failed
    backup.unlink()
    Path(f"{backup}.manifest.json").unlink()
    for version in versions_of(s3, locked_bucket, f"p/{backup.name}")[0]:
        s3.delete_object(Bucket=locked_bucket, Key=f"p/{backup.name}", VersionId=version["VersionId"])
    manifest_key = f"p/{backup.name}.manifest.json"
    s3.put_object_legal_hold(Bucket=locked_bucket, Key=manifest_key, LegalHold={"Status": "ON"})
    try:
        result = b2_run(args)
        assert not result.failed and result["deleted_orphaned_manifests"] == [] and result["deleted"] == [], result
        assert [(e["key"], e["mode"]) for e in result["retained_locked"]] == [(manifest_key, "LEGAL_HOLD")]
    finally:
        s3.put_object_legal_hold(Bucket=locked_bucket, Key=manifest_key, LegalHold={"Status": "OFF"})


def test_a_cache_file_of_the_wrong_shape_is_no_cache_and_is_rewritten(bucket, args_for, src, tmp_path):
    backup = write_backup(src, "app", NOW, 1000)
    args = args_for(bucket, src=str(src), prefix="db")
    cache = Path(args["cache_file"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    assert b2_run(args)["changed"]
    scope = next(iter(json.loads(cache.read_text())["remote"]))
    for damaged in (
        [1, 2, 3],
        {"version": 1, "local": [1]},
        {"version": 1, "local": {str(backup): "not a list"}},
        {"version": 1, "remote": {scope: {f"db/{backup.name}": 5}}},
        {"version": 1, "owners": {scope: ["x"]}},
    ):
        cache.write_text(json.dumps(damaged))
        result = b2_run(args)
        assert not result.failed and "Traceback" not in result.stderr, (damaged, result)
        assert result["uploaded"] == [] and len(result["skipped"]) == 2, result
        assert any(str(cache) in str(w) and "damaged" in str(w) for w in result.get("warnings", [])), result
        rewritten = json.loads(cache.read_text())
        assert rewritten["version"] == 1 and str(backup) in rewritten["local"], rewritten
        assert not b2_run(args).get("warnings"), "read without complaint once rewritten"


def test_a_backup_dated_in_the_future_neither_blocks_uploads_nor_looks_fresh(bucket, args_for, src, s3):
    """A host whose clock was a year ahead once: that backup must not be 'the newest' for a year."""
    future = write_backup(src, "app", NOW + dt.timedelta(days=365), 1000)
    assert not b2_run(args_for(bucket, src=str(src), prefix="db")).failed
    future.unlink()
    Path(f"{future}.manifest.json").unlink()
    tonight = write_backup(src, "app", NOW - dt.timedelta(minutes=5), 1000)
    result = b2_run(args_for(bucket, src=str(src), prefix="db", keep_daily=1))
    assert not result.failed and result["not_uploaded_retention"] == [] and result["deleted"] == [], result
    assert complete_remote(s3, bucket, "db/") == sorted([f"db/{future.name}", f"db/{tonight.name}"])

    report = b2_run(args_for(bucket, mode="status", prefix="db", database="app", max_age_hours=1))
    app = report["backups"]["app"]
    assert app["newest"] == tonight.name and app["future"] == [future.name] and app["count"] == 2, report
    assert report["healthy"] is True and any("dated in the future" in str(w) for w in report.get("warnings", []))
    tonight_only = b2_run(args_for(bucket, mode="status", prefix="db", database="app", max_age_hours=0.01))
    assert tonight_only["healthy"] is False, "freshness comes from real backups, not from the future one"


def test_pull_latest_never_picks_a_backup_dated_in_the_future(bucket, args_for, src, dest, s3):
    """A backup taken while the clock was a year ahead is old, not the newest: restoring it loses a year."""
    future = write_backup(src, "app", NOW + dt.timedelta(days=365), 1000)
    assert not b2_run(args_for(bucket, src=str(src), prefix="db")).failed
    only_future = b2_run(args_for(bucket, mode="pull", dest=str(dest), prefix="db", latest=True, database="app"))
    assert only_future.failed and future.name in only_future["msg"] and "name" in only_future["msg"], only_future
    assert list(dest.iterdir()) == []
    tonight = write_backup(src, "app", NOW - dt.timedelta(minutes=5), 1000)
    assert not b2_run(args_for(bucket, src=str(src), prefix="db")).failed
    pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), prefix="db", latest=True, database="app"))
    assert not pulled.failed and pulled["name"] == tonight.name, pulled
    assert sorted(os.listdir(dest)) == [tonight.name, tonight.name + ".manifest.json"]


@pytest.mark.parametrize("with_database", [True, False], ids=["database", "all"])
def test_status_with_a_key_that_may_not_read_files_counts_by_name(bucket, args_for, proxy, src, with_database):
    """A monitoring key with listFiles only: ambiguous names are counted by name, with a warning."""
    app = write_backup(src, "app", NOW - dt.timedelta(hours=1), 100)
    labelled = write_backup(src, "app", NOW - dt.timedelta(hours=2), 100, label="predeploy")
    assert not b2_run(args_for(bucket, src=str(src), prefix="h", use_cache=False)).failed
    proxy.state.faults.append(Fault("GetObject", 100, status=403, code="AccessDenied"))
    extra = {"database": ["app"]} if with_database else {}
    report = b2_run(args_for(bucket, mode="status", prefix="h", use_cache=False, **extra))
    assert not report.failed and report["healthy"], report
    assert report["unreadable_manifests"] == [f"h/{labelled.name}.manifest.json"]
    assert any("readFiles" in str(w) for w in report.get("warnings", [])), report
    newest = {entry["newest"] for entry in report["backups"].values()}
    assert app.name in newest


def test_a_push_with_nothing_to_upload_still_aborts_a_killed_runs_upload(bucket, args_for, src, s3):
    write_backup(src, "app", NOW, 1000)
    assert not b2_run(args_for(bucket, src=str(src), prefix="db")).failed
    # a killed run's upload of a name under the prefix; only its age (a day) tells it is stale
    s3.create_multipart_upload(Bucket=bucket, Key="db/app-20200101T000000Z.sql.zst")
    a_day_later = dt.datetime.now(dt.timezone.utc) + STALE_UPLOAD_AGE + dt.timedelta(hours=1)
    check = SyncConfig(bucket=bucket, prefix="db/", check_mode=True)
    planned = push(s3, check, str(src), HashCache(None, ""), a_day_later)
    assert planned["uploaded"] == [] and planned["aborted_uploads"] == ["db/app-20200101T000000Z.sql.zst"], planned
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), "check mode aborted nothing"
    done = push(s3, SyncConfig(bucket=bucket, prefix="db/"), str(src), HashCache(None, ""), a_day_later)
    assert done["uploaded"] == [] and done["aborted_uploads"] == ["db/app-20200101T000000Z.sql.zst"], done
    assert done["changed"] and not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_two_pushes_at_once_take_turns_instead_of_aborting_each_others_upload(bucket, args_for, proxy, src, s3):
    """An AWX job overlapping the scheduled push: the second aborted the first's multipart upload (a push
    aborts the unfinished uploads of the keys it writes), and the first failed with NoSuchUpload."""
    backup = write_backup(src, "app", NOW, 30 * MiB)
    uploading = threading.Event()

    def slow_parts(seen: Any) -> None:
        if seen.operation == "UploadPart":
            uploading.set()
            time.sleep(0.5)

    proxy.state.hook = slow_parts
    args = args_for(bucket, src=str(src), prefix="db", part_size_mb=5, concurrency=1)
    results: dict[str, Any] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", b2_run(args, timeout=300)))
    first.start()
    try:
        assert uploading.wait(60), "the first push never uploaded a part"
        second = b2_run(args, timeout=300)
    finally:
        first.join(300)
        proxy.state.hook = None
    assert not results["first"].failed, results["first"]
    assert not second.failed, second
    assert sorted(results["first"]["uploaded"]) == sorted([backup.name, backup.name + ".manifest.json"])
    assert second["uploaded"] == [] and second.get("aborted_uploads", []) == [], second
    assert proxy.state.count("AbortMultipartUpload") == 0
    assert s3.head_object(Bucket=bucket, Key="db/" + backup.name)["ContentLength"] == backup.stat().st_size


def test_a_push_that_cannot_take_its_lock_still_pushes_and_says_so(bucket, args_for, src, tmp_path, s3):
    """The lock lies beside cache_file; a directory that cannot hold it costs the lock, never the push."""
    backup = write_backup(src, "app", NOW, 1000)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = b2_run(args_for(bucket, src=str(src), prefix="db", cache_file=str(blocker / "b2_sync.json")))
    assert not result.failed and backup.name in result["uploaded"], result
    assert any("no push lock" in str(w) for w in result.get("warnings", [])), result
    assert s3.head_object(Bucket=bucket, Key="db/" + backup.name)["ContentLength"] == 1000


# ----------------------------------------------------------------------------- pull safety


def test_pull_refuses_a_damaged_remote_copy(bucket, args_for, src, dest, s3):
    backup = write_backup(src, "app", NOW, 4096)
    assert not b2_run(args_for(bucket, src=str(src))).failed
    s3.put_object(Bucket=bucket, Key=backup.name, Body=b"x" * 4096)  # same size, other bytes
    result = b2_run(args_for(bucket, mode="pull", dest=str(dest), name=backup.name))
    assert result.failed and "sha256" in result["msg"] and "damaged" in result["msg"], result
    assert list(dest.iterdir()) == []


def test_pull_refuses_a_remote_manifest_that_belongs_to_another_backup(bucket, args_for, src, dest, s3):
    """A manifest copied over another backup's (same size, say) would vouch for the wrong file."""
    older = write_backup(src, "app", NOW - dt.timedelta(hours=2), 4096)
    newer = write_backup(src, "app", NOW - dt.timedelta(hours=1), 4096, seed=3)
    assert not b2_run(args_for(bucket, src=str(src))).failed
    s3.put_object(
        Bucket=bucket,
        Key=newer.name + ".manifest.json",
        Body=(src / (older.name + ".manifest.json")).read_bytes(),
    )
    for args in (
        args_for(bucket, mode="pull", dest=str(dest), name=newer.name),
        args_for(bucket, mode="pull", dest=str(dest), latest=True, database="app"),
    ):
        for check in (True, False):
            result = b2_run(args, check=check)
            assert_clean_failure(result, f"is the manifest of {older.name!r}, not of {newer.name}")
    assert list(dest.iterdir()) == []
    pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), name=older.name))
    assert not pulled.failed and (dest / older.name).read_bytes() == older.read_bytes(), pulled


def test_pull_never_replaces_another_local_backup_of_the_same_name(bucket, args_for, proxy, src, dest, s3):
    """A disaster-recovery host whose dest holds a file of that name with other bytes keeps it."""
    backup = write_backup(src, "app", NOW - dt.timedelta(hours=1), 4096)
    assert not b2_run(args_for(bucket, src=str(src))).failed
    args = args_for(bucket, mode="pull", dest=str(dest), latest=True, database="app")

    # another backup bearing the name, with its own valid manifest: kept, the pull fails naming both hashes
    other = write_backup(dest, "app", NOW - dt.timedelta(hours=1), 4096, seed=7)
    other_manifest = dest / (other.name + ".manifest.json")
    kept = {path.name: path.read_bytes() for path in dest.iterdir()}
    for check in (True, False):
        result = b2_run(args, check=check)
        assert_clean_failure(result, str(other), sha256_of(backup), sha256_of(other), "move the local file")
        assert {path.name: path.read_bytes() for path in dest.iterdir()} == kept, "a local file was replaced"

    # a file of that name without any manifest: nothing says it is a damaged copy, so it is kept too
    other_manifest.unlink()
    result = b2_run(args)
    assert_clean_failure(result, str(other), "no local manifest")
    assert other.read_bytes() == kept[other.name] and sorted(os.listdir(dest)) == [other.name]

    # a damaged copy of this very backup (its local manifest describes the remote one): repaired
    other.write_bytes(b"\0" * 100)
    (dest / (backup.name + ".manifest.json")).write_bytes((src / (backup.name + ".manifest.json")).read_bytes())
    repaired = b2_run(args)
    assert not repaired.failed and repaired["downloaded"] == [backup.name], repaired
    assert (dest / backup.name).read_bytes() == backup.read_bytes()
    assert not b2_run(args)["changed"]


def test_pull_that_cannot_fit_is_refused_before_downloading(bucket, args_for, proxy, src, tmpfs):
    """A restore onto a disk too small fails at once, not after downloading until the disk is full."""
    backup = write_backup(src, "app", NOW - dt.timedelta(hours=1), 3 * MiB)
    assert not b2_run(args_for(bucket, src=str(src))).failed
    small = tmpfs("small", size="1m")
    proxy.state.clear()
    for check in (True, False):
        result = b2_run(args_for(bucket, mode="pull", dest=str(small), latest=True, database="app"), check=check)
        needed = backup.stat().st_size + (src / (backup.name + ".manifest.json")).stat().st_size
        assert_clean_failure(result, f"not enough free space in {small}", f"need {needed} bytes", "nothing was")
    assert list(small.iterdir()) == []
    assert proxy.state.count("GetObject") == 2, "only the manifest was read (once per run), never the backup"


def test_pull_of_an_incomplete_backup_fails_clearly(bucket, args_for, src, dest, s3):
    s3.put_object(Bucket=bucket, Key="app-20260101T000000Z.sql.zst", Body=b"data without manifest")
    result = b2_run(args_for(bucket, mode="pull", dest=str(dest), name="app-20260101T000000Z.sql.zst"))
    assert result.failed and "incomplete" in result["msg"], result
    missing = b2_run(args_for(bucket, mode="pull", dest=str(dest), latest=True, database="nope"))
    assert missing.failed and "no complete backup of database 'nope'" in missing["msg"]


def test_pull_of_a_backup_whose_data_file_was_deleted_says_so(bucket, args_for, src, dest, s3):
    backup = write_backup(src, "app", NOW, 1000)
    assert not b2_run(args_for(bucket, src=str(src), prefix="db")).failed
    for version in s3.list_object_versions(Bucket=bucket, Prefix="db/" + backup.name)["Versions"]:
        if version["Key"] == "db/" + backup.name:
            s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    result = b2_run(args_for(bucket, mode="pull", dest=str(dest), prefix="db", name=backup.name))
    assert_clean_failure(result, f"db/{backup.name} does not exist although its manifest does", "incomplete")
    assert "bucket" not in result["msg"] and list(dest.iterdir()) == []


# ----------------------------------------------------------------------------- faults


def assert_clean_failure(result: Any, *words: str) -> None:
    assert result.failed, result
    assert "Traceback" not in result["msg"] and "Traceback" not in result.stderr
    for word in words:
        assert word in result["msg"], result["msg"]
    assert APP_KEY not in json.dumps(result) and APP_KEY not in result.stderr


def test_wrong_credentials(bucket, args_for, src):
    write_backup(src, "app", NOW, 10)
    result = b2_run(args_for(bucket, src=str(src), key_id="0049999999999990000000009"))
    assert_clean_failure(result, "InvalidAccessKeyId", "key ID or application key")


def test_missing_credentials(bucket, args_for, src):
    args = args_for(bucket, src=str(src))
    del args["key_id"], args["application_key"]
    assert_clean_failure(b2_run(args), "no B2 credentials", "B2_APPLICATION_KEY_ID")


def test_credentials_from_the_environment(bucket, args_for, src, s3):
    write_backup(src, "app", NOW, 10)
    args = args_for(bucket, src=str(src))
    key_id, app_key = args.pop("key_id"), args.pop("application_key")
    result = b2_run(args, env={"B2_APPLICATION_KEY_ID": key_id, "B2_APPLICATION_KEY": app_key})
    assert result["changed"] and not result.failed, result
    assert len(remote_keys(s3, bucket)) == 2


def test_missing_bucket(args_for, src):
    assert_clean_failure(b2_run(args_for("no-such-bucket-here", src=str(src))), "no-such-bucket-here", "does not exist")


def test_unreachable_endpoint(args_for, src):
    with refused_port() as port:
        args = args_for("any", src=str(src), endpoint_url=f"http://127.0.0.1:{port}", max_attempts=2)
        assert_clean_failure(b2_run(args, timeout=120), "cannot reach", "endpoint_url")


def test_bad_options_fail_clearly(args_for, src, dest):
    assert_clean_failure(b2_run(args_for("b", src=str(src), part_size_mb=4)), "part_size_mb must be between 5")
    assert_clean_failure(b2_run(args_for("b", mode="pull", dest=str(dest))), "needs either name or latest")
    assert_clean_failure(b2_run(args_for("b", src=str(src / "nope"))), "is not a directory")
    assert_clean_failure(b2_run(args_for("b", mode="status", keep_last=3)), "keep_* options apply to mode=push")
    assert_clean_failure(b2_run(args_for("b", src=str(src), keep_daily=-1)), "keep_daily must be 0 or more")
    assert_clean_failure(b2_run(args_for("b", src=str(src), part_size_mb=5000)), "and 4768", "5 GB")
    # days alone would upload without any lock: refused, not ignored
    assert_clean_failure(b2_run(args_for("b", src=str(src), object_lock_days=30)), "object_lock_mode")


@pytest.mark.parametrize("endpoint", ["https://bad host", "https://", "s3 .us-west-004.backblazeb2.com"])
def test_an_endpoint_url_that_is_no_url_fails_clearly(args_for, src, endpoint):
    """A mistyped endpoint_url must be named in a message, not end in a traceback."""
    result = b2_run(args_for("b", src=str(src), endpoint_url=endpoint, max_attempts=1, connect_timeout=2), timeout=120)
    assert_clean_failure(result, "endpoint_url")


def test_slowdown_is_retried(bucket, args_for, proxy, src, dest):
    backup = write_backup(src, "app", NOW, 11 * MiB)
    proxy.state.faults += [Fault("UploadPart", 2), Fault("PutObject", 1), Fault("ListObjects", 1, status=500)]
    result = b2_run(args_for(bucket, src=str(src), part_size_mb=5, max_attempts=4))
    assert result["changed"] and not result.failed, result
    assert sum(1 for s in proxy.state.seen if s.status in (500, 503)) == 4
    pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), name=backup.name, part_size_mb=5))
    assert sha256_of(dest / backup.name) == pulled["sha256"] == sha256_of(backup)


def test_slowdown_beyond_max_attempts_fails_clearly(bucket, args_for, proxy, src, s3):
    write_backup(src, "app", NOW, 6 * MiB)
    proxy.state.faults.append(Fault("UploadPart", 100))
    result = b2_run(args_for(bucket, src=str(src), part_size_mb=5, max_attempts=2))
    assert_clean_failure(result, "SlowDown", "max_attempts")
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), "the failed upload was aborted"
    assert set(remote_keys(s3, bucket)) == set(), "no manifest without its data"


def test_a_download_cut_mid_body_is_resumed(bucket, args_for, proxy, src, dest):
    backup = write_backup(src, "app", NOW, 11 * MiB)
    args = args_for(bucket, src=str(src), part_size_mb=5, verify="download")
    proxy.state.faults.append(Fault("GetObject", 1, truncate=True))
    pushed = b2_run(args)
    assert pushed["changed"] and not pushed.failed, pushed
    proxy.state.faults.append(Fault("GetObject", 2, truncate=True))
    pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), name=backup.name, part_size_mb=5))
    assert not pulled.failed and sha256_of(dest / backup.name) == pulled["sha256"] == sha256_of(backup), pulled
    assert not proxy.state.faults[-1].count and proxy.state.count("GetObject") >= 2 + 3 + 2
    resumed = [s.headers["range"] for s in proxy.state.seen if s.operation == "GetObject" and "range" in s.headers]
    assert any(not r.startswith(("bytes=0-", f"bytes={5 * MiB}-", f"bytes={10 * MiB}-")) for r in resumed), resumed


def test_a_download_that_keeps_breaking_fails_clearly(bucket, args_for, proxy, src, dest, s3):
    backup = write_backup(src, "app", NOW, 3 * MiB)
    assert b2_run(args_for(bucket, src=str(src)))["changed"]
    proxy.state.faults.append(Fault("GetObject", 100, truncate=True))
    pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), name=backup.name, max_attempts=2))
    assert_clean_failure(pulled, "connection broke", "run again")
    assert list(dest.iterdir()) == [], "no partial file, no temporary file"
    newer = write_backup(src, "app", NOW + dt.timedelta(hours=1), 3 * MiB)
    checked = b2_run(args_for(bucket, src=str(src), verify="download", max_attempts=2))
    assert_clean_failure(checked, f"downloading {newer.name}", "connection broke at byte", "2 attempts", "run again")
    assert f"{newer.name}.manifest.json" not in remote_keys(s3, bucket), "no manifest for an unchecked upload"


def test_server_stopped_mid_upload_then_rerun_completes(bucket, args_for, proxy, src, dest, s3, moto_server):
    backup = write_backup(src, "app", NOW, 26 * MiB)
    stopped = threading.Event()

    def stop_after_two_parts(seen: Any) -> None:
        if seen.operation == "UploadPart" and proxy.state.count("UploadPart") >= 3 and not stopped.is_set():
            stopped.set()
            moto_server.stop()

    proxy.state.hook = stop_after_two_parts
    args = args_for(bucket, src=str(src), part_size_mb=5, concurrency=2, max_attempts=2, connect_timeout=2)
    failed = b2_run(args, timeout=300)
    assert stopped.is_set()
    assert_clean_failure(failed)
    proxy.state.hook = None

    _restart(moto_server, proxy)
    assert s3_now(moto_server).list_multipart_uploads(Bucket=bucket).get("Uploads"), "the dead run left an upload"
    rerun = b2_run(args)
    assert rerun["changed"] and not rerun.failed, rerun
    assert rerun["aborted_uploads"] == [backup.name]
    assert not s3_now(moto_server).list_multipart_uploads(Bucket=bucket).get("Uploads")
    pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), name=backup.name))
    assert sha256_of(dest / backup.name) == pulled["sha256"] == sha256_of(backup)


@pytest.mark.parametrize("prefix", ["db/", ""])
def test_stale_upload_cleanup_stays_directly_under_the_prefix(bucket, s3, prefix):
    name = "app-20260101T000000Z.sql.zst"
    keys = [prefix + name, f"{prefix}sub/{name}", f"other-host/{name}", f"{prefix}notes.txt"]
    for key in keys:
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    config = SyncConfig(bucket=bucket, prefix=prefix)
    a_day_later = dt.datetime.now(dt.timezone.utc) + STALE_UPLOAD_AGE + dt.timedelta(hours=1)
    assert abort_stale_uploads(s3, config, set(), a_day_later) == [prefix + name]
    left = {u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}
    assert left == set(keys[1:])


def _restart(moto_server: S3Server, proxy: B2Proxy) -> None:
    proxy.state.upstream = moto_server.start()


def s3_now(moto_server: S3Server) -> Any:
    from tests.integration.b2.conftest import Admin

    return Admin(moto_server).client


def test_another_backup_under_a_pushed_name_never_replaces_it(bucket, args_for, src, s3):
    """Two hosts pushing to one prefix, or a file rewritten with a manifest of its own: the remote backup stays."""
    backup = write_backup(src, "app", NOW, 100)
    assert b2_run(args_for(bucket, src=str(src)))["changed"]
    pushed = (backup.read_bytes(), Path(f"{backup}.manifest.json").read_bytes())
    backup.write_bytes(b"y" * 120)
    write_manifest(backup, "app")
    result = b2_run(args_for(bucket, src=str(src)))
    assert_clean_failure(result, "differ from the remote backup of the same name", "own prefix")
    assert list(result["conflicts"]) == [backup.name] and result["uploaded"] == [], result
    assert "120 bytes" in result["conflicts"][backup.name] and "says 100 bytes" in result["conflicts"][backup.name]
    remote = (
        s3.get_object(Bucket=bucket, Key=backup.name)["Body"].read(),
        s3.get_object(Bucket=bucket, Key=backup.name + ".manifest.json")["Body"].read(),
    )
    assert remote == pushed


def test_remote_overwrite_invalidates_the_cache(bucket, args_for, proxy, src, s3):
    backup = write_backup(src, "app", NOW, 2048)
    args = args_for(bucket, src=str(src))
    assert b2_run(args)["changed"]
    s3.put_object(Bucket=bucket, Key=backup.name, Body=b"z" * 2048)  # same size, someone else's bytes
    proxy.state.clear()
    result = b2_run(args)
    assert result["uploaded"] == [backup.name], result
    assert result["upload_reasons"][backup.name] == "no sha256 metadata"
    assert s3.get_object(Bucket=bucket, Key=backup.name)["Body"].read() == backup.read_bytes()


def test_pull_removes_what_killed_downloads_left_and_nothing_else(bucket, args_for, src, dest):
    backup = write_backup(src, "app", NOW, 4096)
    assert b2_run(args_for(bucket, src=str(src)))["changed"]
    long_ago = time.time() - 3600

    def part(name: str, age: float = long_ago) -> Path:
        path = dest / name
        path.write_bytes(b"\0" * 1024)
        os.utime(path, (age, age))
        return path

    killed = part(f".{backup.name}.k2j4h5g6.part")
    killed_manifest = part(".app-20250101T000000Z.sql.gz.age.manifest.json.x1y2z3w4.part")
    starting = part(f".{backup.name}.a1b2c3d4.part", age=time.time())  # another pull just began
    running = part(f".{backup.name}.r9s8t7u6.part")  # another pull, stalled but alive
    not_ours = [part(".notes.txt.abcdefgh.part"), part(f".{backup.name}.short.part"), part("plain.part")]
    held = os.open(running, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        check = b2_run(args_for(bucket, mode="pull", dest=str(dest), latest=True, database="app"), check=True)
        assert check["removed_partials"] == [] and killed.exists()
        pulled = b2_run(args_for(bucket, mode="pull", dest=str(dest), latest=True, database="app"))
        assert not pulled.failed, pulled
        assert pulled["removed_partials"] == sorted([str(killed), str(killed_manifest)])
        assert not killed.exists() and not killed_manifest.exists()
        assert starting.exists() and running.exists() and all(p.exists() for p in not_ours)
        assert (dest / backup.name).read_bytes() == backup.read_bytes()
    finally:
        os.close(held)


def test_pull_in_check_mode_writes_nothing(bucket, args_for, proxy, src, dest):
    backup = write_backup(src, "app", NOW, 4096)
    assert b2_run(args_for(bucket, src=str(src)))["changed"]
    proxy.state.clear()
    result = b2_run(args_for(bucket, mode="pull", dest=str(dest), latest=True, database="app"), check=True)
    assert result["changed"] and result["downloaded"] == [backup.name, backup.name + ".manifest.json"], result
    assert list(dest.iterdir()) == []
    assert proxy.state.count("GetObject") == 1  # the manifest, to know what would be pulled
