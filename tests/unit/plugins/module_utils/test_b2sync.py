"""Pure parts of the sync logic (_b2sync.py): names, prefixes, plans, the hash cache."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import botocore.exceptions
import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils._b2sync import (
    DEFAULT_INCLUDE,
    MAX_PARTS,
    MIN_PART_SIZE,
    NOT_A_MANIFEST,
    HashCache,
    RemoteObject,
    SyncConfig,
    SyncError,
    _explain_refusals,
    backup_stem,
    effective_part_size,
    is_owned,
    latest_backup,
    matches,
    normalize_prefix,
    orphan_manifest_candidates,
    retention_split,
    scan_local,
    write_file_atomic,
)
from ansible_collections.mutuapix.ops.plugins.module_utils._retention import parse_backup_name

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("", ""), (None, ""), ("db", "db/"), ("db/", "db/"), ("/prod/db1", "prod/db1/"), ("a/b/", "a/b/")],
)
def test_normalize_prefix(given, expected):
    assert normalize_prefix(given) == expected


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("app-20260102T030405Z.sql.zst", "app"),
        ("app-nightly-20260102T030405Z.sql.gz.age", "app-nightly"),
        ("my-app-20260102T030405Z.sql.zst.manifest.json", "my-app"),
        ("app-20260102T030405Z.sql", "app"),
        ("README.txt", None),
        ("app.sql.zst", None),
        ("app-2026.sql.zst", None),
    ],
)
def test_backup_stem(name, stem):
    assert backup_stem(name) == stem


def test_default_include_matches_backups_and_manifests_only():
    wanted = [
        "app-20260102T030405Z.sql.zst",
        "app-20260102T030405Z.sql.zst.age",
        "app-20260102T030405Z.sql.gz",
        "app-20260102T030405Z.sql.zst.manifest.json",
    ]
    unwanted = [".app-20260102T030405Z.sql.zst.tmp", "notes.txt", "app.lock", ".x.manifest.json"]
    assert all(matches(n, DEFAULT_INCLUDE, []) for n in wanted)
    assert not any(matches(n, DEFAULT_INCLUDE, []) for n in unwanted)
    assert not matches(wanted[0], DEFAULT_INCLUDE, ["app-*"])


def test_effective_part_size_grows_past_ten_thousand_parts():
    mib = 1024 * 1024
    assert effective_part_size(10 * mib, 1) == MIN_PART_SIZE
    assert effective_part_size(10 * mib, 100 * mib) == 100 * mib
    huge = 100 * mib * MAX_PARTS + 1
    size = effective_part_size(huge, 100 * mib)
    assert size == 200 * mib and huge <= size * MAX_PARTS


def test_retention_split_groups_by_stem_and_keeps_newest():
    names = [f"app-{(NOW - dt.timedelta(days=d)).strftime('%Y%m%dT%H%M%SZ')}.sql.zst" for d in range(4)]
    names += [n + ".manifest.json" for n in names]
    names += ["app-predeploy-20200101T000000Z.sql.zst", "README.txt"]
    doomed = retention_split(names, {"keep_last": 2}, NOW)
    assert doomed == set(sorted(n for n in names if n.startswith("app-2") and not n.endswith(".json"))[:2])
    assert retention_split(names, {"keep_last": None}, NOW) == set()


def test_retention_split_counts_only_complete_backups():
    stamp = [(NOW - dt.timedelta(days=d)).strftime("%Y%m%dT%H%M%SZ") for d in range(4)]
    complete = f"app-{stamp[2]}.sql.zst"
    newer_incomplete = f"app-{stamp[0]}.sql.zst"  # its manifest is not written (or uploaded) yet
    older_incomplete = f"app-{stamp[3]}.sql.zst"  # a manifest that never came
    names = [complete, complete + ".manifest.json", newer_incomplete, older_incomplete]
    assert retention_split(names, {"keep_last": 1}, NOW) == {older_incomplete}
    second = f"app-{stamp[1]}.sql.zst"
    doomed = retention_split([*names, second, second + ".manifest.json"], {"keep_last": 1}, NOW)
    assert doomed == {complete, older_incomplete}


def remote(name: str, size: int = 1) -> RemoteObject:
    return RemoteObject(name, "p/" + name, size, '"e"', NOW)


def test_latest_backup_needs_a_manifest_and_honours_label():
    objects = {
        n: remote(n)
        for n in (
            "app-20260101T000000Z.sql.zst",
            "app-20260101T000000Z.sql.zst.manifest.json",
            "app-20260102T000000Z.sql.zst",  # newest but incomplete
            "app-predeploy-20260101T120000Z.sql.zst",
            "app-predeploy-20260101T120000Z.sql.zst.manifest.json",
        )
    }
    assert latest_backup(objects, "app") == "app-predeploy-20260101T120000Z.sql.zst"
    assert latest_backup(objects, "app", label=None) == "app-predeploy-20260101T120000Z.sql.zst"
    assert latest_backup(objects, "app", label="predeploy") == "app-predeploy-20260101T120000Z.sql.zst"
    assert latest_backup(objects, "crm") is None


def test_latest_backup_skips_what_confirm_refuses():
    objects = {
        n: remote(n)
        for base in ("app-20260101T000000Z.sql.zst", "app-archive-20260102T000000Z.sql.zst")
        for n in (base, base + ".manifest.json")
    }
    assert latest_backup(objects, "app") == "app-archive-20260102T000000Z.sql.zst"  # by name alone
    mine = latest_backup(objects, "app", confirm=lambda b: b.label is None)
    assert mine == "app-20260101T000000Z.sql.zst"
    assert latest_backup(objects, "app", confirm=lambda b: False) is None


@pytest.mark.parametrize(
    ("owner", "owned"),
    [("app", True), ("app-archive", False), ("", True), (NOT_A_MANIFEST, False)],
)
def test_an_ambiguous_name_is_owned_only_as_its_manifest_says(tmp_path: Path, owner: str, owned: bool):
    """app-archive-<ts> as app's backup labelled archive: only a manifest naming app (or no database) says so."""
    name = "app-archive-20260102T000000Z.sql.zst"
    manifest = RemoteObject(name + ".manifest.json", "p/" + name + ".manifest.json", 10, '"e"', NOW)
    cache = HashCache(str(tmp_path / "cache.json"), "https://s3/b1")
    cache.set_manifest_owner(manifest.key, manifest.etag, manifest.size, manifest.modified_s, owner)
    backup = parse_backup_name(name, "app")
    assert backup is not None and backup.ambiguous
    # the owner comes from the cache: no client call is made
    assert is_owned(None, None, {manifest.name: manifest}, backup, cache) is owned


def test_hash_cache_keeps_manifest_owners_per_scope(tmp_path: Path):
    path = str(tmp_path / "cache.json")
    cache = HashCache(path, "https://s3/b1")
    cache.set_manifest_owner("p/a.manifest.json", '"e"', 10, 5, "app-archive")
    cache.set_remote("p/a.manifest.json", '"e"', 10, 5, "f" * 64)
    assert cache.save() is None
    other = HashCache(path, "https://s3/b2")
    assert other.manifest_owner("p/a.manifest.json", '"e"', 10, 5) is None
    other.set_manifest_owner("p/a.manifest.json", '"e"', 10, 5, "")
    assert other.save() is None
    again = HashCache(path, "https://s3/b1")
    assert again.manifest_owner("p/a.manifest.json", '"e"', 10, 5) == "app-archive"
    assert again.manifest_owner("p/a.manifest.json", '"e2"', 10, 5) is None  # overwritten since
    assert again.remote_sha256("p/a.manifest.json", '"e"', 10, 5) == "f" * 64
    assert HashCache(path, "https://s3/b2").manifest_owner("p/a.manifest.json", '"e"', 10, 5) == ""


def test_hash_cache_round_trip_and_invalidation(tmp_path: Path):
    path = tmp_path / "c" / "cache.json"
    data = tmp_path / "f"
    data.write_bytes(b"x")
    st = data.stat()
    cache = HashCache(str(path), "http://e/b")
    assert cache.local_sha256(str(data), st) is None
    cache.set_local(str(data), st, "aa")
    cache.set_remote("p/k", '"e"', 1, 100, "bb")
    cache.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again = HashCache(str(path), "http://e/b")
    assert again.local_sha256(str(data), data.stat()) == "aa"
    assert again.remote_sha256("p/k", '"e"', 1, 100) == "bb"
    assert again.remote_sha256("p/k", '"other"', 1, 100) is None
    assert again.remote_sha256("p/k", '"e"', 1, 101) is None
    assert HashCache(str(path), "http://e/other-bucket").remote_sha256("p/k", '"e"', 1, 100) is None

    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert again.local_sha256(str(data), data.stat()) is None


def test_hash_cache_survives_a_damaged_file(tmp_path: Path):
    path = tmp_path / "cache.json"
    path.write_text("{not json")
    cache = HashCache(str(path), "s")
    assert cache.local == {} and cache.remote == {}
    path.write_text(json.dumps({"version": 999, "local": {"x": 1}}))
    assert HashCache(str(path), "s").local == {}


@pytest.mark.parametrize(
    "damaged",
    [
        [1, 2, 3],
        "a string",
        {},
        {"version": 1, "local": [1]},
        {"version": 1, "local": {"/x": "not a list"}},
        {"version": 1, "local": {"/x": {"a": 1}}},
        {"version": 1, "local": {"/x": [1, 2, 3, 4, 5]}},
        {"version": 1, "local": {"/x": [1, 2, 3, 4, "5", "sha"]}},
        {"version": 1, "remote": []},
        {"version": 1, "remote": {"s": {"k": 5}}},
        {"version": 1, "remote": {"other": {"k": ["e", 1, 1, None]}}},
        {"version": 1, "owners": {"s": ["x"]}},
    ],
)
def test_a_cache_of_the_wrong_shape_is_no_cache_with_a_warning_and_is_rewritten(tmp_path: Path, damaged):
    """JSON that parses but is not what save() writes: never a traceback, nor a wrong sha256 taken from it."""
    path = tmp_path / "cache.json"
    path.write_text(json.dumps(damaged))
    data = tmp_path / "f"
    data.write_bytes(b"x")
    cache = HashCache(str(path), "s")
    assert cache.warning and str(path) in cache.warning and "damaged" in cache.warning
    assert (cache.local, cache.remote, cache.owners) == ({}, {}, {})
    assert cache.local_sha256(str(data), data.stat()) is None and cache.remote_sha256("k", "e", 1, 1) is None
    assert cache.dirty, "rewritten even by a run that learns nothing"
    assert cache.save() is None
    again = HashCache(str(path), "s")
    assert again.warning is None and json.loads(path.read_text())["version"] == 1


def test_an_unreadable_cache_warns(tmp_path: Path):
    path = tmp_path / "cache.json"
    path.write_text("{not json")
    cache = HashCache(str(path), "s")
    assert cache.warning and "no JSON" in cache.warning and str(path) in cache.warning
    path.unlink()
    path.mkdir()
    assert "cannot read the cache file" in str(HashCache(str(path), "s").warning)


def test_a_cache_of_another_format_version_is_ignored_quietly(tmp_path: Path):
    path = tmp_path / "cache.json"
    path.write_text(json.dumps({"version": 2, "local": "whatever a later release writes"}))
    cache = HashCache(str(path), "s")
    assert cache.warning is None and cache.local == {}


def test_orphan_manifest_candidates_are_backup_manifests_without_their_data_file():
    def obj(name: str) -> RemoteObject:
        return RemoteObject(name, "p/" + name, 1, '"e"', NOW)

    names = [
        "app-20260101T000000Z.sql.zst.manifest.json",  # orphan
        "app-20260102T000000Z.sql.zst",
        "app-20260102T000000Z.sql.zst.manifest.json",  # complete
        "app-20260103T000000Z.sql.gz.age.manifest.json",  # orphan, but its data file goes up in this push
        "notes.manifest.json",  # no backup name
        "app-20260104T000000Z.sql.zst",  # data without manifest: not a manifest's business
    ]
    remote = {name: obj(name) for name in names}
    uploading = {"app-20260103T000000Z.sql.gz.age"}
    assert orphan_manifest_candidates(remote, uploading) == ["app-20260101T000000Z.sql.zst.manifest.json"]


def test_hash_cache_without_a_path_never_writes(tmp_path: Path):
    cache = HashCache(None, "s")
    cache.set_remote("k", "e", 1, 1, "x")
    cache.save()
    assert list(tmp_path.iterdir()) == []


def test_scan_local_is_flat_and_sorted(tmp_path: Path):
    (tmp_path / "b-20260101T000000Z.sql.zst").write_bytes(b"1")
    (tmp_path / "a-20260101T000000Z.sql.zst").write_bytes(b"22")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c-20260101T000000Z.sql.zst").write_bytes(b"3")
    found = scan_local(str(tmp_path), DEFAULT_INCLUDE, [])
    assert [(f.name, f.size) for f in found] == [("a-20260101T000000Z.sql.zst", 2), ("b-20260101T000000Z.sql.zst", 1)]
    with pytest.raises(SyncError, match="not a directory"):
        scan_local(str(tmp_path / "missing"), DEFAULT_INCLUDE, [])


def test_write_file_atomic(tmp_path: Path):
    target = tmp_path / "m.json"
    write_file_atomic(str(target), b"{}")
    assert target.read_bytes() == b"{}"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_hash_cache_that_cannot_be_written_only_warns(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = HashCache(str(blocker / "sub" / "cache.json"), "s")
    cache.set_remote("k", "e", 1, 1, "x")
    warning = cache.save()
    assert warning and "slower, not wrong" in warning


class _HeadOnly:
    """A client whose HeadObject raises ``errors[key]`` or returns ``heads[key]``."""

    def __init__(self, heads: dict, errors: dict) -> None:
        self.heads, self.errors = heads, errors

    def head_object(self, Bucket: str, Key: str, VersionId: str) -> dict:
        if Key in self.errors:
            raise self.errors[Key]
        return self.heads[Key]


def _head_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadObject"
    )


REFUSAL = {"Code": "AccessDenied", "Message": "Access Denied"}


def test_a_refused_version_gone_since_is_neither_locked_nor_an_error():
    client = _HeadOnly({}, {"k": _head_error("404", 404)})
    refused = [{"key": "k", "version_id": "v1", "error": REFUSAL}]
    assert _explain_refusals(client, SyncConfig("b", "p/"), refused, [], dt.datetime.now(dt.timezone.utc)) == []


def test_a_refused_version_whose_lock_cannot_be_read_fails_naming_both():
    """A delete marker answers HeadObject with 405: the refusal is not a lock, and the message says so."""
    client = _HeadOnly({}, {"k": _head_error("MethodNotAllowed", 405)})
    refused = [{"key": "k", "version_id": "v1", "error": REFUSAL}]
    deleted = [{"key": "older", "version_id": "v0"}]
    with pytest.raises(SyncError) as failed:
        _explain_refusals(client, SyncConfig("b", "p/"), refused, deleted, dt.datetime.now(dt.timezone.utc))
    text = str(failed.value)
    assert "its lock could not be read either" in text and "MethodNotAllowed" in text
    assert "deleteFiles" in text and "1 older object version(s) were deleted before it" in text
