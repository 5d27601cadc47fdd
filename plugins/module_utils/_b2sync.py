# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Push, pull, status and remote retention of backups on B2 (private API of b2_sync).

Content identity is size + sha256, the sha256 kept in the object's metadata
(``x-amz-meta-sha256``), never the ETag (a multipart ETag is no content hash). A local
cache remembers sha256 values so that a no-op run neither rehashes unchanged files
(keyed by device, inode, size, mtime and ctime) nor sends a HEAD per object (keyed by the
ETag, size and last-modified second the listing returns, so any overwrite invalidates it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.mutuapix.ops.plugins.module_utils._flock import remove_stale_files
from ansible_collections.mutuapix.ops.plugins.module_utils._retention import (
    MANIFEST_SUFFIX,
    BackupName,
    future_backups,
    manifest_confirms,
    parse_backup_name,
    select_for_deletion,
    select_incomplete_for_deletion,
)
from ansible_collections.mutuapix.ops.plugins.module_utils._s3 import (
    CLIENT_ERRORS,
    TRANSFER_ERRORS,
    FileRange,
    file_sha256,
    is_access_denied,
    is_not_found,
)

DEFAULT_INCLUDE = [
    "*.sql.zst",
    "*.sql.zst.age",
    "*.sql.gz",
    "*.sql.gz.age",
    "*.sql",
    "*.sql.age",
    "*" + MANIFEST_SUFFIX,
]
SHA256_META = "sha256"
MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
# B2's largest part, and largest single upload: 5 GB (S3's is 5 GiB)
MAX_PART_SIZE = 5_000_000_000 // MiB * MiB
MAX_PARTS = 10_000
STALE_UPLOAD_AGE = dt.timedelta(hours=24)
# A download's temporary file (".<name>.<mkstemp's 8 characters>.part") is locked while written;
# an unlocked one this much older than its last write belongs to a killed run.
PART_SUFFIX = ".part"
STALE_PART_AGE_S = 60
CACHE_VERSION = 1
RETRY_BASE_S = 0.25


class SyncError(Exception):
    """A failure with a message a person can act on; ``cause`` is the service error if any."""

    def __init__(self, msg: str, cause: BaseException | None = None) -> None:
        super().__init__(msg)
        self.cause = cause


def normalize_prefix(prefix: str | None) -> str:
    """``prod/db1`` -> ``prod/db1/``; empty stays empty. Leading slashes are dropped."""
    prefix = (prefix or "").lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix


def backup_stem(name: str) -> str | None:
    """``app-nightly`` for ``app-nightly-20260101T000000Z.sql.zst``; None for other names.

    Retention groups by (database, label); grouping by the whole stem gives the same groups
    without knowing where the database name ends and the label begins.
    """
    data_name = name[: -len(MANIFEST_SUFFIX)] if name.endswith(MANIFEST_SUFFIX) else name
    marker = data_name.rfind(".sql")
    if marker < 0:
        return None
    head = data_name[:marker]
    stem = head.rsplit("-", 1)[0] if "-" in head else None
    if stem and parse_backup_name(data_name, stem):
        return stem
    return None


def is_manifest(name: str) -> bool:
    return name.endswith(MANIFEST_SUFFIX)


def matches(name: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    if name.startswith("."):
        return False  # temporary files (mysql_backup writes .<name>.tmp) and hidden files
    return any(fnmatch.fnmatchcase(name, p) for p in include) and not any(fnmatch.fnmatchcase(name, p) for p in exclude)


# ---------------------------------------------------------------------------------------
# Cache


class HashCache:
    """sha256 values of local files and remote objects, and the database each remote manifest
    names, persisted as a 0600 JSON file."""

    def __init__(self, path: str | None, scope: str) -> None:
        self.path = path
        self.scope = scope
        self.local: dict[str, list[Any]] = {}
        self.remote: dict[str, list[Any]] = {}
        self.owners: dict[str, list[Any]] = {}
        self._other_scopes: dict[str, dict[str, Any]] = {"remote": {}, "owners": {}}
        self._lock = threading.Lock()
        self.dirty = False
        self.warning: str | None = None  # why an existing file was not used, for the module to warn
        if path and os.path.exists(path):
            self._load(path)

    def _load(self, path: str) -> None:
        """Read the file; a damaged one (no JSON, or JSON of another shape) is no cache, rewritten on save."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as exc:
            self._discard(f"cannot read the cache file {path} ({exc.strerror or exc})")
            return
        except ValueError as exc:
            self._discard(f"ignored the cache file {path}, which is no JSON ({exc})")
            return
        if isinstance(data, dict) and "version" in data and data["version"] != CACHE_VERSION:
            return  # another release's format: not ours to read, replaced when this run has something to save
        problem = cache_shape_error(data)
        if problem:
            self._discard(f"ignored the cache file {path}, which is damaged ({problem})")
            return
        self.local = dict(data.get("local", {}))
        self.remote = dict(data.get("remote", {}).get(self.scope, {}))
        self.owners = dict(data.get("owners", {}).get(self.scope, {}))
        for section in self._other_scopes:
            scopes = data.get(section, {}).items()
            self._other_scopes[section] = {k: v for k, v in scopes if k != self.scope}

    def _discard(self, problem: str) -> None:
        """No cache this run (only a slower run: every file hashed, every object's metadata read)."""
        self.warning = f"{problem}; this run goes without it (slower, not wrong) and writes it anew (not in check mode)"
        self.dirty = True  # rewritten by save() even when this run learns nothing new

    @staticmethod
    def _stat_key(st: os.stat_result) -> list[Any]:
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def local_sha256(self, path: str, st: os.stat_result) -> str | None:
        entry = self.local.get(path)
        if entry and entry[:5] == self._stat_key(st):
            return str(entry[5])
        return None

    def set_local(self, path: str, st: os.stat_result, sha256: str) -> None:
        with self._lock:
            self.local[path] = [*self._stat_key(st), sha256]
            self.dirty = True

    @staticmethod
    def _object_value(table: dict[str, list[Any]], key: str, etag: str, size: int, modified: int) -> str | None:
        """What ``table`` remembers of the object version (ETag, size, modified second), if anything."""
        entry = table.get(key)
        if entry and entry[:3] == [etag, size, modified]:
            return str(entry[3])
        return None

    def _remember(self, table: dict[str, list[Any]], key: str, etag: str, size: int, modified: int, value: str) -> None:
        with self._lock:
            table[key] = [etag, size, modified, value]
            self.dirty = True

    def remote_sha256(self, key: str, etag: str, size: int, modified: int) -> str | None:
        return self._object_value(self.remote, key, etag, size, modified)

    def set_remote(self, key: str, etag: str, size: int, modified: int, sha256: str) -> None:
        self._remember(self.remote, key, etag, size, modified, sha256)

    def manifest_owner(self, key: str, etag: str, size: int, modified: int) -> str | None:
        """The ``database`` a remote manifest names ("" for none), or None when not known."""
        return self._object_value(self.owners, key, etag, size, modified)

    def set_manifest_owner(self, key: str, etag: str, size: int, modified: int, database: str) -> None:
        self._remember(self.owners, key, etag, size, modified, database)

    def forget_remote(self, key: str) -> None:
        with self._lock:
            if self.remote.pop(key, None) is not None:
                self.dirty = True

    def save(self) -> str | None:
        """Write the cache atomically (0600); returns a warning instead of failing the run."""
        if not self.path or not self.dirty:
            return None
        directory = os.path.dirname(self.path) or "."
        local = {p: v for p, v in self.local.items() if os.path.exists(p)}
        data = {
            "version": CACHE_VERSION,
            "local": local,
            "remote": {**self._other_scopes["remote"], self.scope: self.remote},
            "owners": {**self._other_scopes["owners"], self.scope: self.owners},
        }
        tmp = None
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".b2_sync-cache-", dir=directory)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            return f"cannot write the cache file {self.path} ({exc}); the next run will be slower, not wrong"
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _local_entry_ok(entry: Any) -> bool:
    """[device, inode, size, mtime_ns, ctime_ns, sha256]"""
    return isinstance(entry, list) and len(entry) == 6 and all(map(_is_int, entry[:5])) and isinstance(entry[5], str)


def _object_entry_ok(entry: Any) -> bool:
    """[etag, size, modified second, value]"""
    return (
        isinstance(entry, list)
        and len(entry) == 4
        and isinstance(entry[0], str)
        and _is_int(entry[1])
        and _is_int(entry[2])
        and isinstance(entry[3], str)
    )


def cache_shape_error(data: Any) -> str | None:
    """What is wrong with a parsed cache file of CACHE_VERSION's format, or None when it is one.

    Checked whole before anything is used: an entry of another shape would otherwise end the run
    in a traceback, or pass a wrong sha256 off as a remote object's.
    """
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if data.get("version") != CACHE_VERSION:
        return f"no version {CACHE_VERSION}"
    local = data.get("local", {})
    if not isinstance(local, dict):
        return "'local' is no object"
    bad = next((path for path, entry in local.items() if not _local_entry_ok(entry)), None)
    if bad is not None:
        return f"the entry of {bad!r} in 'local' is not [device, inode, size, mtime, ctime, sha256]"
    for section in ("remote", "owners"):
        scopes = data.get(section, {})
        if not isinstance(scopes, dict) or not all(isinstance(table, dict) for table in scopes.values()):
            return f"{section!r} is no object of objects"
        for scope, table in scopes.items():
            bad = next((key for key, entry in table.items() if not _object_entry_ok(entry)), None)
            if bad is not None:
                return f"the entry of {bad!r} under {scope!r} in {section!r} is not [etag, size, modified, value]"
    return None


# ---------------------------------------------------------------------------------------
# Data model


@dataclass
class LocalFile:
    name: str
    path: str
    size: int
    stat: os.stat_result
    sha256: str | None = None


@dataclass
class RemoteObject:
    name: str
    key: str
    size: int
    etag: str
    modified: dt.datetime

    @property
    def modified_s(self) -> int:
        return int(self.modified.timestamp())


@dataclass
class SyncConfig:
    bucket: str
    prefix: str
    part_size: int = 100 * MiB
    concurrency: int = 4
    include: list[str] = field(default_factory=lambda: list(DEFAULT_INCLUDE))
    exclude: list[str] = field(default_factory=list)
    verify: str = "head"
    max_attempts: int = 6
    lock_mode: str | None = None
    lock_days: int | None = None
    retention: dict[str, int | None] = field(default_factory=dict)
    check_mode: bool = False

    @property
    def retention_enabled(self) -> bool:
        return any(v is not None for v in self.retention.values())


@dataclass
class Stats:
    bytes_transferred: int = 0
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, count: int) -> None:
        with self._lock:
            self.bytes_transferred += count

    def summary(self) -> dict[str, Any]:
        duration = max(time.monotonic() - self.started, 1e-6)
        return {
            "bytes_transferred": self.bytes_transferred,
            "duration_s": round(duration, 3),
            "throughput_mb_s": round(self.bytes_transferred / duration / 1e6, 2),
        }


def _call(action: str, func: Callable[..., Any], **kwargs: Any) -> Any:
    """Run a client call; service errors become SyncError naming the action."""
    try:
        return func(**kwargs)
    except CLIENT_ERRORS as exc:
        raise SyncError(action, exc) from exc


# ---------------------------------------------------------------------------------------
# Listing


def printable_name(name: str) -> str:
    """A file name that is no UTF-8 (undecodable bytes kept as surrogates), with those bytes as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def scan_local(
    src: str, include: list[str], exclude: list[str], unsupported: list[str] | None = None
) -> list[LocalFile]:
    """The files of ``src`` to push; names that are no UTF-8 (no S3 key can hold them) go to ``unsupported``."""
    if not os.path.isdir(src):
        raise SyncError(f"src {src} is not a directory")
    files = []
    with os.scandir(src) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=True) or not matches(entry.name, include, exclude):
                continue
            if printable_name(entry.name) != entry.name:
                if unsupported is not None:
                    unsupported.append(printable_name(entry.name))
                continue
            st = entry.stat(follow_symlinks=True)
            files.append(LocalFile(entry.name, entry.path, st.st_size, st))
    files.sort(key=lambda f: f.name)
    return files


def list_remote(client: Any, bucket: str, prefix: str) -> dict[str, RemoteObject]:
    """Current objects directly under ``prefix`` (not in sub-folders), by file name."""
    found: dict[str, RemoteObject] = {}
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if name and "/" not in name:
                    found[name] = RemoteObject(name, item["Key"], int(item["Size"]), item["ETag"], item["LastModified"])
    except CLIENT_ERRORS as exc:
        raise SyncError(f"listing {prefix or '/'}", exc) from exc
    return found


def list_versions(client: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every version and delete marker directly under ``prefix``, by file name."""
    found: dict[str, list[dict[str, Any]]] = {}
    paginator = client.get_paginator("list_object_versions")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                name = item["Key"][len(prefix) :]
                if name and "/" not in name:
                    found.setdefault(name, []).append(item)
    except CLIENT_ERRORS as exc:
        raise SyncError(f"listing versions under {prefix or '/'}", exc) from exc
    return found


# ---------------------------------------------------------------------------------------
# Hashing and comparing


def hash_local_files(files: list[LocalFile], cache: HashCache, workers: int) -> None:
    todo = []
    for item in files:
        item.sha256 = cache.local_sha256(item.path, item.stat)
        if item.sha256 is None:
            todo.append(item)

    def work(item: LocalFile) -> None:
        item.sha256 = file_sha256(item.path)
        cache.set_local(item.path, item.stat, item.sha256)

    # hashlib releases the GIL on large buffers: threads use both cores.
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo) or 1))) as pool:
        list(pool.map(work, todo))


def remote_sha256(client: Any, bucket: str, obj: RemoteObject, cache: HashCache) -> str | None:
    cached = cache.remote_sha256(obj.key, obj.etag, obj.size, obj.modified_s)
    if cached is not None:
        return cached
    head = _call(f"reading metadata of {obj.key}", client.head_object, Bucket=bucket, Key=obj.key)
    sha = head.get("Metadata", {}).get(SHA256_META)
    if sha:
        cache.set_remote(obj.key, obj.etag, obj.size, obj.modified_s, sha)
    return sha


@dataclass
class PushPlan:
    upload: list[tuple[LocalFile, str]] = field(default_factory=list)  # (file, reason)
    skipped: list[str] = field(default_factory=list)
    not_uploaded_retention: list[str] = field(default_factory=list)
    orphaned_manifests: list[str] = field(default_factory=list)  # no backup file here nor remote
    damaged: dict[str, str] = field(default_factory=dict)  # local data file -> how it fails its manifest
    conflicts: dict[str, str] = field(default_factory=dict)  # local file -> why it may not replace the remote one
    delete: list[str] = field(default_factory=list)  # remote names (data files) retention removes
    orphans: list[str] = field(default_factory=list)  # remote manifests without their data file, for retention


def retention_split(
    names: Iterable[str],
    retention: dict[str, int | None],
    now: dt.datetime,
    owners: dict[str, str] | None = None,
) -> set[str]:
    """Data file names retention would delete, grouped per (database, label).

    ``owners`` maps a complete backup's data file name to the database its manifest names
    (see ``manifest_owners``): ``app-archive-<ts>`` is then grouped with database ``app``'s
    ``archive`` backups or with database ``app-archive``'s, never with both. A name without
    a known owner is grouped by its whole stem, which is right whenever the stem is unambiguous.
    Only complete backups (a manifest among ``names``) count towards the rules, so a data file
    whose manifest is missing never pushes out the last complete backup; it is deleted itself
    only when the rules would delete it were it complete.
    """
    names = set(names)
    complete: list[BackupName] = []
    incomplete: list[BackupName] = []
    for name in names:
        backup = resolve_backup(name, (owners or {}).get(name))
        if backup:
            (complete if backup.manifest_name in names else incomplete).append(backup)
    _keep, delete = select_for_deletion(complete, now=now, **retention)
    delete += select_incomplete_for_deletion(complete, incomplete, now=now, **retention)
    return {b.name for b in delete}


def resolve_backup(name: str, owner: str | None) -> BackupName | None:
    """``name`` (a data file) parsed for the database its manifest names, else for its whole stem."""
    stem = backup_stem(name)
    if not stem or is_manifest(name):
        return None
    if owner and owner not in (stem, NOT_A_MANIFEST):
        named = parse_backup_name(name, owner)
        if named:
            return named
    return parse_backup_name(name, stem)


def owner_named_by(manifest: Any) -> str:
    """The database a (parsed) manifest names: "" when it names none, NOT_A_MANIFEST when it is no JSON object."""
    return str(manifest.get("database") or "") if isinstance(manifest, dict) else NOT_A_MANIFEST


def read_local_manifests(local: list[LocalFile]) -> dict[str, Any]:
    """Each local manifest parsed once per push (retention's owners, the damage check): name -> JSON, or
    the OSError/ValueError that reading it raised."""
    found: dict[str, Any] = {}
    for item in local:
        if is_manifest(item.name):
            try:
                found[item.name] = json.loads(_read_bytes(item.path))
            except (OSError, ValueError) as exc:
                found[item.name] = exc
    return found


def manifest_owners(
    client: Any,
    config: SyncConfig,
    remote: dict[str, RemoteObject],
    cache: HashCache,
    local: list[LocalFile] | None = None,
    denied: list[str] | None = None,
    local_manifests: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The database named by the manifest of each complete backup whose name is ambiguous.

    Keyed by data file name. A local manifest (about to be pushed) wins over the remote one;
    a remote one costs a small GetObject the first time, read in parallel and remembered in the
    cache. Names without a ``-`` in their stem (``app-<ts>``) are never ambiguous: not read.
    """
    local_manifests = local_manifests if local_manifests is not None else read_local_manifests(local or [])
    owners: dict[str, str] = {}
    to_read: list[tuple[str, RemoteObject]] = []
    without_manifest: dict[str, str] = {}  # data file name -> stem
    for name in set(remote) | {f.name for f in local or []}:
        stem = None if is_manifest(name) else backup_stem(name)
        if not stem or "-" not in stem:
            continue
        manifest_name = name + MANIFEST_SUFFIX
        if manifest_name in local_manifests:
            owners[name] = owner_named_by(local_manifests[manifest_name])
        elif manifest_name in remote:
            to_read.append((name, remote[manifest_name]))
        else:
            without_manifest[name] = stem
    if to_read:
        with ThreadPoolExecutor(max_workers=max(1, min(config.concurrency * 2, len(to_read)))) as pool:
            read = list(pool.map(lambda item: manifest_owner(client, config, item[1], cache, denied), to_read))
        for index, owner in enumerate(read):
            if owner is not None:
                owners[to_read[index][0]] = owner
    # A data file without manifest (an upload under way, an orphan) belongs where the complete
    # backups of its stem do, when they all agree; otherwise it is grouped by its stem.
    by_stem: dict[str, set[str]] = {}
    for name, owner in owners.items():
        by_stem.setdefault(backup_stem(name) or "", set()).add(owner)
    for name, stem in without_manifest.items():
        agreed = by_stem.get(stem, set())
        if len(agreed) == 1:
            owners[name] = next(iter(agreed))
    return owners


def plan_push(
    client: Any,
    config: SyncConfig,
    local: list[LocalFile],
    remote: dict[str, RemoteObject],
    cache: HashCache,
    now: dt.datetime,
) -> PushPlan:
    plan = PushPlan()
    doomed: set[str] = set()
    local_manifests = read_local_manifests(local)
    if config.retention_enabled:
        # Retention runs after this run's uploads: a backup is complete when its manifest is
        # remote or about to be uploaded.
        owners = manifest_owners(client, config, remote, cache, local, local_manifests=local_manifests)
        doomed = retention_split(set(remote) | {f.name for f in local}, config.retention, now, owners)
        plan.delete = sorted(n for n in doomed if n in remote)
    candidates = []
    local_names = {f.name for f in local}
    for item in local:
        data_name = item.name[: -len(MANIFEST_SUFFIX)] if is_manifest(item.name) else item.name
        if data_name in doomed:
            plan.not_uploaded_retention.append(item.name)  # retention would delete it right away
        elif data_name != item.name and data_name not in local_names and data_name not in remote:
            # e.g. left by an interrupted local retention (data file deleted first): a remote
            # manifest must mean a complete backup.
            plan.orphaned_manifests.append(item.name)
        else:
            candidates.append(item)
    hash_local_files(candidates, cache, workers=2)
    plan.damaged = damaged_backups(candidates, local_manifests)
    if plan.damaged:
        # Neither the file nor its manifest goes up (a remote manifest means a good backup), and
        # no retention: the damaged backup must not count as the newest and push out a good one.
        bad = set(plan.damaged) | {name + MANIFEST_SUFFIX for name in plan.damaged}
        candidates = [item for item in candidates if item.name not in bad]
        plan.delete = []

    def compare(item: LocalFile) -> tuple[LocalFile, str | None]:
        obj = remote.get(item.name)
        if obj is None:
            return item, "missing"
        if obj.size != item.size:
            return item, "size"
        sha = remote_sha256(client, config.bucket, obj, cache)
        if sha is None:
            return item, "no sha256 metadata"
        return item, None if sha == item.sha256 else "content"

    with ThreadPoolExecutor(max_workers=max(1, config.concurrency * 2)) as pool:
        for item, reason in pool.map(compare, candidates):
            if reason is None:
                plan.skipped.append(item.name)
            else:
                plan.upload.append((item, reason))
    plan.conflicts = refused_replacements(client, config, plan.upload, candidates, remote, local_manifests, cache)
    if plan.conflicts:
        # The remote copy stays, the rest goes up; no retention, as after a damaged file (the task fails).
        refused = set(plan.conflicts) | {name + MANIFEST_SUFFIX for name in plan.conflicts}
        plan.upload = [(item, reason) for item, reason in plan.upload if item.name not in refused]
        plan.delete = []
    elif config.retention_enabled and not plan.damaged:
        plan.orphans = orphan_manifest_candidates(remote, {item.name for item, _reason in plan.upload})
    return plan


def refused_replacements(
    client: Any,
    config: SyncConfig,
    upload: list[tuple[LocalFile, str]],
    candidates: list[LocalFile],
    remote: dict[str, RemoteObject],
    local_manifests: dict[str, Any],
    cache: HashCache,
) -> dict[str, str]:
    """Planned uploads that would replace a remote backup with other bytes (file name -> why), refused.

    A backup's name is never reused (it holds its UTC timestamp; mysql_backup never overwrites one),
    so a local file that differs from the remote one of its name is a copy damaged on disk (its
    manifest gone, so the damage check could not see it) or another backup that happens to bear the
    name: either way not one to put over the remote copy. What the remote side knows decides:

    - a data file goes over an existing remote one (or beside a remote manifest whose data file is
      gone) only when the remote manifest vouches for the local bytes, size and sha256: then it is
      the remote data file that was damaged or overwritten, and the upload repairs the backup;
    - without a remote manifest, a remote data file with sha256 metadata (uploaded by this module,
      its manifest not yet) is never replaced; one without (not uploaded by this module: another
      tool's, a partial copy) only by a complete local backup, its manifest checked against it;
    - a manifest whose data file is not in ``src`` goes up only when it describes the remote data
      file (size and sha256 metadata), so that a remote manifest still means a good backup.

    A data file and its manifest that are both pushed were checked against each other before
    (``damaged_backups``); a data file no remote object bears a name of is new, and goes up.
    B2 keeps what an upload replaces as an older version, which retention deletes with the backup.
    """
    local_names = {item.name for item in candidates}
    conflicts: dict[str, str] = {}
    for item, reason in upload:
        if is_manifest(item.name):
            continue
        if item.name + MANIFEST_SUFFIX in remote:
            why = _unvouched_by_remote_manifest(client, config, item)
        elif reason == "missing":
            why = None
        else:
            why = _unvouched_without_remote_manifest(client, config, item, remote[item.name], local_names, cache)
        if why:
            conflicts[item.name] = why
    for item, _reason in upload:
        data_name = item.name[: -len(MANIFEST_SUFFIX)]
        if not is_manifest(item.name) or data_name in local_names or data_name not in remote:
            continue  # pushed with its data file (or refused with it), or an orphan (never planned)
        why = _manifest_misfits(client, config, item, local_manifests.get(item.name), remote[data_name], cache)
        if why:
            conflicts[item.name] = why
    return conflicts


def _manifest_facts(manifest: Any) -> tuple[int, str]:
    """(size, sha256) a parsed manifest states; ValueError, KeyError or TypeError when it states none."""
    if isinstance(manifest, Exception):
        raise ValueError(str(manifest))
    return int(manifest["size"]), str(manifest["sha256"])


def _unvouched_by_remote_manifest(client: Any, config: SyncConfig, item: LocalFile) -> str | None:
    """Why the remote manifest does not vouch for the local data file ``item``, or None when it does."""
    try:
        _raw, manifest = read_manifest(client, config, item.name)
    except SyncError as exc:
        if exc.cause is not None:
            raise  # the service failed: not a verdict on the file
        return f"differs from the remote copy, and the remote manifest cannot tell which one is right ({exc})"
    size, sha256 = _manifest_facts(manifest)  # read_manifest checked both
    if (size, sha256) == (item.size, item.sha256):
        return None
    return (
        f"{item.size} bytes with sha256 {item.sha256}, but the remote backup's manifest says {size} bytes with "
        f"sha256 {sha256}"
    )


def _unvouched_without_remote_manifest(
    client: Any, config: SyncConfig, item: LocalFile, obj: RemoteObject, local_names: set[str], cache: HashCache
) -> str | None:
    """Why the local data file ``item`` may not replace ``obj``, a remote data file without manifest, or None."""
    sha256 = remote_sha256(client, config.bucket, obj, cache)
    if sha256:
        return (
            f"{item.size} bytes with sha256 {item.sha256}, but the remote copy, uploaded as {obj.size} bytes with "
            f"sha256 {sha256}, differs (and has no manifest yet)"
        )
    if item.name + MANIFEST_SUFFIX not in local_names:
        return "differs from the remote copy, and neither has a manifest (nor the remote one sha256 metadata) to tell"
    return None  # the remote object is not this module's upload; a complete local backup goes over it


def _manifest_misfits(
    client: Any, config: SyncConfig, item: LocalFile, manifest: Any, data: RemoteObject, cache: HashCache
) -> str | None:
    """Why the local manifest ``item`` does not describe the remote data file ``data``, or None when it does."""
    try:
        size, sha256 = _manifest_facts(manifest)
    except (ValueError, KeyError, TypeError) as exc:
        return f"cannot be read as a manifest (needs size and sha256: {exc}), and would replace the remote one"
    remote_sha256_value = remote_sha256(client, config.bucket, data, cache)
    if size == data.size and sha256 == remote_sha256_value:
        return None
    return (
        f"says {size} bytes with sha256 {sha256}, but the remote {data.name} is {data.size} bytes with sha256 "
        f"{remote_sha256_value or 'unknown (no sha256 metadata)'}"
    )


def orphan_manifest_candidates(remote: dict[str, RemoteObject], uploading: set[str]) -> list[str]:
    """Remote manifests of backup names whose data file is not there, nor uploaded by this push.

    Only names that parse as backups count (a data file uploaded first, its manifest after, never
    leaves one behind). ``apply_retention`` deletes one once no version of its data file is left.
    """
    found = []
    for name in remote:
        data_name = name[: -len(MANIFEST_SUFFIX)]
        if is_manifest(name) and backup_stem(name) and data_name not in remote and data_name not in uploading:
            found.append(name)
    return sorted(found)


def damaged_backups(candidates: list[LocalFile], local_manifests: dict[str, Any]) -> dict[str, str]:
    """Local data files (hashed) that do not match the manifest beside them, with the reason.

    A backup damaged on disk after it was written (a bad sector, a truncated copy, an edit)
    would otherwise go up as a complete backup, its manifest with it.
    """
    pushed = {item.name for item in candidates}
    damaged: dict[str, str] = {}
    for item in candidates:
        manifest_name = item.name + MANIFEST_SUFFIX
        if is_manifest(item.name) or manifest_name not in pushed:
            continue
        manifest = local_manifests.get(manifest_name)
        error: Exception | None = manifest if isinstance(manifest, Exception) else None
        if error is None:
            try:
                size, sha256 = int(manifest["size"]), str(manifest["sha256"])
            except (ValueError, KeyError, TypeError) as exc:
                error = exc
        if error is not None:
            damaged[item.name] = f"its manifest cannot be read as one (needs size and sha256): {error}"
            continue
        if size != item.size:
            damaged[item.name] = f"{item.size} bytes, its manifest says {size}"
        elif sha256 != item.sha256:
            damaged[item.name] = f"sha256 {item.sha256}, its manifest says {sha256}"
    return damaged


# ---------------------------------------------------------------------------------------
# Uploading


def effective_part_size(size: int, part_size: int) -> int:
    """The configured part size, grown when a file would need more than 10,000 parts."""
    part_size = min(max(part_size, MIN_PART_SIZE), MAX_PART_SIZE)
    while size > part_size * MAX_PARTS and part_size < MAX_PART_SIZE:
        part_size = min(part_size * 2, MAX_PART_SIZE)
    if size > part_size * MAX_PARTS:
        raise SyncError(f"a file of {size} bytes needs more than {MAX_PARTS} parts of {part_size} bytes, B2's limit")
    return part_size


def _lock_args(config: SyncConfig, now: dt.datetime) -> dict[str, Any]:
    if not config.lock_mode:
        return {}
    return {
        "ObjectLockMode": config.lock_mode.upper(),
        "ObjectLockRetainUntilDate": now + dt.timedelta(days=int(config.lock_days or 0)),
    }


def abort_stale_uploads(client: Any, config: SyncConfig, keys: set[str], now: dt.datetime) -> list[str]:
    """Abort incomplete multipart uploads of the keys we are about to write, and old ones of ours
    (in check mode: only name them).

    A run killed mid-upload (or an endpoint that went away) leaves parts that B2 bills for.
    Ours are directly under the prefix, as everything this module touches: never a deeper
    folder's (another host's prefix, another tool's uploads).
    """
    aborted = []
    paginator = client.get_paginator("list_multipart_uploads")
    try:
        for page in paginator.paginate(Bucket=config.bucket, Prefix=config.prefix):
            for upload in page.get("Uploads", []):
                key = upload["Key"]
                name = key[len(config.prefix) :]
                if not name or "/" in name:  # the listing is by prefix: only deeper folders to skip
                    continue
                initiated = upload.get("Initiated") or now
                stale = now - initiated > STALE_UPLOAD_AGE and matches(name, config.include, config.exclude)
                if key in keys or stale:
                    if not config.check_mode:
                        client.abort_multipart_upload(Bucket=config.bucket, Key=key, UploadId=upload["UploadId"])
                    aborted.append(key)
    except CLIENT_ERRORS as exc:
        raise SyncError(f"cleaning up incomplete uploads under {config.prefix or '/'}", exc) from exc
    return aborted


def _put_single(client: Any, config: SyncConfig, item: LocalFile, key: str, now: dt.datetime, stats: Stats) -> str:
    with FileRange(item.path, 0, item.size) as body:
        md5 = body.md5_base64()
        response = _call(
            f"uploading {item.name} to {key}",
            client.put_object,
            Bucket=config.bucket,
            Key=key,
            Body=body,
            ContentLength=item.size,
            ContentMD5=md5,
            ContentType=_content_type(item.name),
            Metadata={SHA256_META: item.sha256 or ""},
            **_lock_args(config, now),
        )
    stats.add(item.size)
    return str(response.get("VersionId") or "")


def _put_multipart(client: Any, config: SyncConfig, item: LocalFile, key: str, now: dt.datetime, stats: Stats) -> str:
    part_size = effective_part_size(item.size, config.part_size)
    created = _call(
        f"starting the upload of {item.name} to {key}",
        client.create_multipart_upload,
        Bucket=config.bucket,
        Key=key,
        ContentType=_content_type(item.name),
        Metadata={SHA256_META: item.sha256 or ""},
        **_lock_args(config, now),
    )
    upload_id = created["UploadId"]
    ranges = [(n + 1, off, min(part_size, item.size - off)) for n, off in enumerate(range(0, item.size, part_size))]

    def send(part: tuple[int, int, int]) -> dict[str, Any]:
        number, offset, length = part
        with FileRange(item.path, offset, length) as body:
            md5 = body.md5_base64()
            response = _call(
                f"uploading part {number}/{len(ranges)} of {item.name}",
                client.upload_part,
                Bucket=config.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentLength=length,
                ContentMD5=md5,
            )
        stats.add(length)
        return {"PartNumber": number, "ETag": response["ETag"]}

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(config.concurrency, len(ranges)))) as pool:
            parts = list(pool.map(send, ranges))
        response = _call(
            f"completing the upload of {item.name}",
            client.complete_multipart_upload,
            Bucket=config.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
    except BaseException:
        # Best effort: when the endpoint is gone this fails too, and the next run aborts it.
        with contextlib.suppress(*CLIENT_ERRORS, OSError):
            client.abort_multipart_upload(Bucket=config.bucket, Key=key, UploadId=upload_id)
        raise
    return str(response.get("VersionId") or "")


def _content_type(name: str) -> str:
    if is_manifest(name):
        return "application/json"
    if name.endswith(".zst"):
        return "application/zstd"
    if name.endswith(".gz"):
        return "application/gzip"
    if name.endswith(".sql"):
        return "application/sql"
    return "application/octet-stream"


def verify_upload(client: Any, config: SyncConfig, item: LocalFile, key: str, cache: HashCache, stats: Stats) -> None:
    head = _call(f"checking the uploaded {key}", client.head_object, Bucket=config.bucket, Key=key)
    size = int(head.get("ContentLength", -1))
    sha = head.get("Metadata", {}).get(SHA256_META)
    if size != item.size or sha != item.sha256:
        raise SyncError(
            f"uploaded {key} does not match {item.path} (remote size {size}, sha256 {sha}; local size "
            f"{item.size}, sha256 {item.sha256}); the upload was not stored intact, run again"
        )
    if config.verify == "download":
        actual = download_sha256(client, config, key, item.size, stats)
        if actual != item.sha256:
            raise SyncError(f"downloaded {key} has sha256 {actual}, expected {item.sha256}; run again")
    etag = str(head.get("ETag", ""))
    modified = head.get("LastModified")
    if etag and modified is not None:
        cache.set_remote(key, etag, item.size, int(modified.timestamp()), item.sha256 or "")


def upload_one(
    client: Any, config: SyncConfig, item: LocalFile, cache: HashCache, now: dt.datetime, stats: Stats
) -> dict[str, Any]:
    key = config.prefix + item.name
    cache.forget_remote(key)
    if item.size <= config.part_size:
        version = _put_single(client, config, item, key, now, stats)
    else:
        version = _put_multipart(client, config, item, key, now, stats)
    verify_upload(client, config, item, key, cache, stats)
    return {"name": item.name, "key": key, "size": item.size, "sha256": item.sha256, "version_id": version}


def upload_all(
    client: Any, config: SyncConfig, items: list[LocalFile], cache: HashCache, now: dt.datetime, stats: Stats
) -> list[dict[str, Any]]:
    """Data files first, manifests after, so that a remote manifest means a complete backup."""
    data = [f for f in items if not is_manifest(f.name)]
    manifests = [f for f in items if is_manifest(f.name)]
    done: list[dict[str, Any]] = []
    for batch in (data, manifests):
        small = [f for f in batch if f.size <= config.part_size]
        large = [f for f in batch if f.size > config.part_size]
        with ThreadPoolExecutor(max_workers=max(1, config.concurrency)) as pool:
            futures = [pool.submit(upload_one, client, config, f, cache, now, stats) for f in small]
            for item in large:  # each one uses `concurrency` threads for its parts
                done.append(upload_one(client, config, item, cache, now, stats))
            errors = []
            for future in futures:
                try:
                    done.append(future.result())
                except SyncError as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
    return done


# ---------------------------------------------------------------------------------------
# Downloading


def _stream_object(
    client: Any, config: SyncConfig, key: str, start: int, end: int, sink: Callable[[int, bytes], None], stats: Stats
) -> None:
    """GET bytes ``start``..``end`` of ``key`` and hand each chunk to ``sink`` with its offset, in order.

    botocore retries a request that fails, not a body whose connection breaks half way
    (IncompleteReadError, ResponseStreamingError, ReadTimeoutError): such a break is resumed
    from the first byte not yet received, up to ``max_attempts`` times with backoff.
    """
    offset = start
    attempt = 1
    while True:
        response = _call(
            f"downloading {key}", client.get_object, Bucket=config.bucket, Key=key, Range=f"bytes={offset}-{end}"
        )
        body = response["Body"]
        try:
            for chunk in body.iter_chunks(chunk_size=MiB):
                sink(offset, chunk)
                offset += len(chunk)
                stats.add(len(chunk))
            if offset > end + 1:
                raise SyncError(f"downloading {key}: the endpoint sent more than range {start}-{end}; nothing was kept")
            if offset == end + 1:
                return
            error: BaseException | None = None
        except TRANSFER_ERRORS as exc:
            error = exc
        finally:
            body.close()
        if attempt >= config.max_attempts:
            raise SyncError(
                f"downloading {key} (the connection broke at byte {offset} of range {start}-{end}, {attempt} attempts)",
                error,
            )
        attempt += 1
        _backoff(attempt)


def _backoff(attempt: int) -> None:
    """Wait before ``attempt`` (2, 3, ...) of a transfer whose connection broke."""
    time.sleep(min(RETRY_BASE_S * 2 ** (attempt - 2), 20.0))


def _download_ranges(
    client: Any, config: SyncConfig, key: str, size: int, sink: Callable[[int, bytes], None], stats: Stats
) -> None:
    part = max(config.part_size, MIN_PART_SIZE)
    ranges = [(off, min(off + part, size) - 1) for off in range(0, size, part)]
    with ThreadPoolExecutor(max_workers=max(1, min(config.concurrency, len(ranges) or 1))) as pool:
        list(pool.map(lambda span: _stream_object(client, config, key, *span, sink, stats), ranges))


def download_sha256(client: Any, config: SyncConfig, key: str, size: int, stats: Stats) -> str:
    """sha256 of a remote object, streamed in order (single stream keeps hashing sequential)."""
    digest = hashlib.sha256()
    if size:
        _stream_object(client, config, key, 0, size - 1, lambda _offset, chunk: digest.update(chunk), stats)
    return digest.hexdigest()


def _new_part(dest: str) -> tuple[int, str]:
    """A locked, private temporary file beside ``dest`` (see :func:`remove_stale_parts`)."""
    directory = os.path.dirname(dest) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(dest) + ".", suffix=PART_SUFFIX, dir=directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return fd, tmp


def remove_stale_parts(directory: str) -> list[str]:
    """Remove the temporary files of downloads that were killed (a full-size file each).

    Only names a download makes (``.<backup or manifest name>.XXXXXXXX.part``), unlocked and
    not written for STALE_PART_AGE_S: a running download holds its file's lock.
    """

    def min_age_s(name: str) -> float | None:
        if not (name.startswith(".") and name.endswith(PART_SUFFIX)):
            return None
        base, _dot, random_part = name[1 : -len(PART_SUFFIX)].rpartition(".")
        return STALE_PART_AGE_S if len(random_part) == 8 and backup_stem(base) is not None else None

    return remove_stale_files(directory, min_age_s)


def download_to_file(
    client: Any, config: SyncConfig, key: str, size: int, dest: str, expected_sha256: str, stats: Stats
) -> None:
    """Download ``key`` to ``dest`` atomically: temp file, sha256 check, fsync, rename."""
    directory = os.path.dirname(dest) or "."
    fd, tmp = _new_part(dest)
    try:
        os.ftruncate(fd, size)
        _download_ranges(client, config, key, size, lambda off, chunk: os.pwrite(fd, chunk, off), stats)
        os.fsync(fd)
        actual = file_sha256(tmp)  # the lock is held until the rename: a slow hash is not a killed run
        if actual != expected_sha256:
            raise SyncError(
                f"downloaded {key} has sha256 {actual} but its manifest says {expected_sha256}; the remote "
                "copy is damaged or was replaced; nothing was written to the destination"
            )
        os.replace(tmp, dest)
        os.close(fd)
        fd = -1
        _fsync_dir(directory)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: str) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_file_atomic(dest: str, data: bytes) -> None:
    directory = os.path.dirname(dest) or "."
    fd, tmp = _new_part(dest)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------
# Retention


def _is_locked(head: dict[str, Any], now: dt.datetime) -> bool:
    until = head.get("ObjectLockRetainUntilDate")
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        return True
    return bool(head.get("ObjectLockMode") and until and until > now)


def apply_retention(
    client: Any, config: SyncConfig, names: list[str], now: dt.datetime, orphans: list[str] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Delete every version of each named backup and its manifest; returns (deleted, retained_locked, hidden).

    B2 keeps versions: deleting by key only hides a file, so delete by VersionId. The lock of
    every version of both files is read before anything is deleted: a backup with any version
    under Object Lock or legal hold is kept whole, so a held data file keeps its manifest.
    Manifests go first, so a manifest never points at a deleted backup. Locked versions are
    reported, not treated as errors.

    ``orphans`` are remote manifests whose data file is not current (``orphan_manifest_candidates``):
    each loses every version once no version of its data file is left. While one is (the data file
    hidden: deleted by name, by hand or by another tool, its bytes still stored), un-hiding it
    restores a complete backup, so the manifest stays and the data file's name is returned in
    ``hidden``; the data key's own versions and delete markers are never touched.
    """
    if not names and not orphans:
        return [], [], []
    versions = list_versions(client, config.bucket, config.prefix)
    deleted: list[dict[str, Any]] = []
    locked: list[dict[str, Any]] = []
    gone, hidden = [], []
    for manifest_name in orphans or []:
        data_name = manifest_name[: -len(MANIFEST_SUFFIX)]
        if any("ETag" in v for v in versions.get(data_name, [])):  # a version, not only delete markers
            hidden.append(data_name)
        else:
            gone.append(manifest_name)
    for targets in [(name + MANIFEST_SUFFIX, name) for name in names] + [(m,) for m in gone]:
        plan, held = _plan_backup_deletion(client, config, [versions.get(t, []) for t in targets], now)
        if held:
            locked.extend(held)
            continue
        for to_delete in plan:
            if config.check_mode:
                deleted.extend({"key": o["Key"], "version_id": o["VersionId"]} for o in to_delete)
                continue
            ok, refused = _delete_versions(client, config, to_delete)
            deleted.extend(ok)
            if refused:  # locked since we looked: keep the data file when its manifest stays
                locked.extend(_explain_refusals(client, config, refused, deleted, now))
                break
    return deleted, locked, hidden


def _plan_backup_deletion(
    client: Any, config: SyncConfig, per_file: list[list[dict[str, Any]]], now: dt.datetime
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """(versions to delete per file, locked versions) of one backup's files.

    Stops at the first file with a locked version: the backup is kept whole then, so the locks
    of its other files need not be read (a HEAD request per version).
    """
    plan: list[list[dict[str, Any]]] = []
    held: list[dict[str, Any]] = []
    for entries in per_file:
        if held:
            break
        to_delete = []
        for version in entries:
            vid = version.get("VersionId")
            key = version["Key"]
            if "ETag" in version:  # a real version, not a delete marker: may be locked
                head = _call(
                    f"reading the lock of {key} version {vid}",
                    client.head_object,
                    Bucket=config.bucket,
                    Key=key,
                    VersionId=vid,
                )
                if _is_locked(head, now):
                    held.append(_locked_entry(key, vid, head))
                    continue
            to_delete.append({"Key": key, "VersionId": vid})
        plan.append(to_delete)
    return plan, held


def _locked_entry(key: str, vid: str | None, head: dict[str, Any]) -> dict[str, Any]:
    until = head.get("ObjectLockRetainUntilDate")
    return {
        "key": key,
        "version_id": vid,
        "mode": head.get("ObjectLockMode") or ("LEGAL_HOLD" if head.get("ObjectLockLegalHoldStatus") else None),
        "retain_until": until.isoformat() if until else None,
    }


def _delete_versions(
    client: Any, config: SyncConfig, objects: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    deleted: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for start in range(0, len(objects), 1000):
        batch = objects[start : start + 1000]
        response = _call(
            "deleting old backups",
            client.delete_objects,
            Bucket=config.bucket,
            Delete={"Objects": batch, "Quiet": False},
        )
        gone = [{"key": d["Key"], "version_id": d.get("VersionId")} for d in response.get("Deleted", [])]
        deleted.extend(gone)
        done = {(d["key"], d["version_id"]) for d in gone}
        for err in response.get("Errors", []):
            if err.get("Code") in ("AccessDenied", "ObjectLocked", "InvalidRequest"):
                # Some servers (moto) leave the VersionId out of an error: then every version of
                # that key in this batch that was not deleted is a refused one.
                refused.extend(
                    {"key": o["Key"], "version_id": o["VersionId"], "error": err}
                    for o in batch
                    if o["Key"] == err["Key"]
                    and err.get("VersionId") in (o["VersionId"], None)
                    and (o["Key"], o["VersionId"]) not in done
                )
            else:
                raise SyncError(
                    f"deleting {err.get('Key')} version {err.get('VersionId')} failed: {err.get('Code')} "
                    f"{err.get('Message')}; check the application key's deleteFiles capability"
                )
    return deleted, refused


def _explain_refusals(
    client: Any,
    config: SyncConfig,
    refused: list[dict[str, Any]],
    deleted: list[dict[str, Any]],
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """The locked entries of versions a DeleteObjects call refused; SyncError for any other refusal.

    Every refused version was read as unlocked just before, so a refusal is either a lock set
    since (reported like any lock) or a key that may not delete versions: B2 answers
    ``AccessDenied`` for both, and a key without ``deleteFiles`` would otherwise have every
    retention run "keep" every backup, silently, forever.
    """
    locked: list[dict[str, Any]] = []
    for entry in refused:
        key, vid, err = entry["key"], entry["version_id"], entry["error"]
        why = "that version is under neither Object Lock nor a legal hold"
        try:
            head = client.head_object(Bucket=config.bucket, Key=key, VersionId=vid)
        except CLIENT_ERRORS as exc:
            if is_not_found(exc):
                continue  # gone since: nothing left to keep or to delete
            head, why = {}, f"its lock could not be read either ({exc})"  # e.g. a delete marker: 405
        if _is_locked(head, now):
            locked.append(_locked_entry(key, vid, head))
            continue
        raise SyncError(
            f"B2 refused to delete {key} version {vid} ({err.get('Code')}: {err.get('Message')}), and {why}: "
            "the application key needs the deleteFiles capability (with writeFiles) to delete old versions, "
            "so retention could not remove this backup"
            + (f"; {len(deleted)} older object version(s) were deleted before it" if deleted else "")
        )
    return locked


# ---------------------------------------------------------------------------------------
# The three modes


def push(client: Any, config: SyncConfig, src: str, cache: HashCache, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.timezone.utc)
    stats = Stats()
    unsupported: list[str] = []
    local = scan_local(src, config.include, config.exclude, unsupported)
    remote = list_remote(client, config.bucket, config.prefix)
    plan = plan_push(client, config, local, remote, cache, now)
    result: dict[str, Any] = {
        "uploaded": [item.name for item, _reason in plan.upload],
        "upload_reasons": {f.name: reason for f, reason in plan.upload},
        "skipped": plan.skipped,
        "not_uploaded_retention": plan.not_uploaded_retention,
        "orphaned_manifests": plan.orphaned_manifests,
        "damaged": plan.damaged,
        "conflicts": plan.conflicts,
        "unsupported_names": sorted(unsupported),
        "deleted": [],
        "deleted_orphaned_manifests": [],
        "hidden_backups": [],
        "retained_locked": [],
        "aborted_uploads": [],
        "downloaded": [],
    }
    # Also when nothing is uploaded: a killed run's parts are billed until aborted (check mode: listed).
    keys = {config.prefix + item.name for item, _reason in plan.upload}
    result["aborted_uploads"] = abort_stale_uploads(client, config, keys, now)
    if not config.check_mode and plan.upload:
        result["objects"] = upload_all(client, config, [item for item, _reason in plan.upload], cache, now, stats)
    # Retention runs only after every upload succeeded (upload_all raises otherwise).
    deleted, locked, hidden = apply_retention(client, config, plan.delete, now, plan.orphans)
    result["deleted"] = deleted
    result["retained_locked"] = locked
    result["hidden_backups"] = hidden
    gone, held = {d["key"] for d in deleted}, {e["key"] for e in locked}
    result["deleted_orphaned_manifests"] = [
        name for name in plan.orphans if config.prefix + name in gone and config.prefix + name not in held
    ]
    result["changed"] = bool(plan.upload or deleted or result["aborted_uploads"])
    result.update(stats.summary())
    return result


def _read_small_object(client: Any, config: SyncConfig, key: str) -> bytes:
    """The whole body of a small object; a body cut half way is fetched again (``max_attempts``)."""
    attempt = 1
    while True:
        response = client.get_object(Bucket=config.bucket, Key=key)
        try:
            return bytes(response["Body"].read())
        except TRANSFER_ERRORS:
            if attempt >= config.max_attempts:
                raise
        attempt += 1
        _backoff(attempt)


def read_manifest(client: Any, config: SyncConfig, name: str) -> tuple[bytes, dict[str, Any]]:
    key = config.prefix + name + MANIFEST_SUFFIX
    try:
        raw = _read_small_object(client, config, key)
    except CLIENT_ERRORS as exc:
        if is_not_found(exc):
            raise SyncError(
                f"{key} does not exist: {name} is incomplete or not a backup (its manifest is uploaded last)"
            ) from exc
        raise SyncError(f"reading {key}", exc) from exc
    try:
        manifest = json.loads(raw)
        int(manifest["size"])
        str(manifest["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SyncError(f"{key} is not a valid manifest (needs size and sha256): {exc}") from exc
    described = manifest.get("file", name)  # a JSON object: manifest["size"] was read above
    if described != name:
        raise SyncError(
            f"{key} is the manifest of {described!r}, not of {name}: it was copied or renamed from another "
            "backup's, so it cannot vouch for this one; pull another backup, or upload the manifest mysql_backup "
            "wrote beside this file"
        )
    return raw, manifest


def latest_backup(
    remote: dict[str, RemoteObject],
    database: str,
    label: str | None = None,
    confirm: Callable[[BackupName], bool] | None = None,
    now: dt.datetime | None = None,
) -> str | None:
    """Newest complete backup (data and manifest present) of ``database`` that ``confirm`` accepts.

    With ``now``, a backup dated in the future (beyond ``FUTURE_TOLERANCE``: a clock that was wrong
    when it was taken) is never the newest, as in ``status``: it may be the oldest of all.
    """
    candidates = []
    for name in remote:
        backup = parse_backup_name(name, database)
        if not backup or backup.manifest_name not in remote:
            continue
        if label is not None and backup.label != label:
            continue
        candidates.append(backup)
    if now is not None:
        future = future_backups(candidates, now)
        candidates = [b for b in candidates if b not in future]
    for backup in sorted(candidates, key=lambda b: (b.timestamp, b.name), reverse=True):
        if confirm is None or confirm(backup):
            return backup.name
    return None


# What manifest_owner records for a manifest that is no JSON object (NUL is in no database name).
NOT_A_MANIFEST = "\0"


def manifest_owner(
    client: Any, config: SyncConfig, obj: RemoteObject, cache: HashCache, denied: list[str] | None = None
) -> str | None:
    """The database a remote manifest names: "" when it names none, NOT_A_MANIFEST when it is no JSON object.

    With ``denied`` (status: a monitoring key may lack readFiles), a refused read is noted there
    and None returned: the name alone then decides.
    """
    cached = cache.manifest_owner(obj.key, obj.etag, obj.size, obj.modified_s)
    if cached is not None:
        return cached
    try:
        raw = _read_small_object(client, config, obj.key)
    except CLIENT_ERRORS as exc:
        if denied is not None and is_access_denied(exc):
            denied.append(obj.key)
            return None
        raise SyncError(f"reading {obj.key}", exc) from exc
    try:
        manifest = json.loads(raw)
    except ValueError:
        manifest = None
    owner = owner_named_by(manifest)
    cache.set_manifest_owner(obj.key, obj.etag, obj.size, obj.modified_s, owner)
    return owner


def is_owned(
    client: Any,
    config: SyncConfig,
    remote: dict[str, RemoteObject],
    backup: BackupName,
    cache: HashCache,
    denied: list[str] | None = None,
) -> bool:
    """Whether ``backup`` belongs to the database its name was parsed for.

    Only an ambiguous name (``app-archive-<ts>``: app labelled archive, or app-archive) costs a
    read of its manifest, once per manifest version thanks to the cache; a data file without
    manifest is taken by its name.
    """
    obj = remote.get(backup.manifest_name)
    if not backup.ambiguous or obj is None:
        return True
    owner = manifest_owner(client, config, obj, cache, denied)
    if owner is None:
        return True  # not readable (see manifest_owner): taken by its name
    # as the local check (_backup.local_backups) reads it: a manifest that is no JSON object confirms nothing
    return manifest_confirms(backup, None if owner == NOT_A_MANIFEST else {"database": owner or None})


def pull(
    client: Any,
    config: SyncConfig,
    dest: str,
    name: str | None,
    database: str | None,
    label: str | None = None,
    cache: HashCache | None = None,
) -> dict[str, Any]:
    stats = Stats()
    cache = cache or HashCache(None, "")
    if not os.path.isdir(dest):
        raise SyncError(f"dest {dest} is not a directory; create it first (mode 0700)")
    stale_parts = [] if config.check_mode else remove_stale_parts(dest)
    if not name:
        if not database:
            raise SyncError("pull needs name, or latest=true with database")
        remote = list_remote(client, config.bucket, config.prefix)

        def owned(backup: BackupName) -> bool:
            return is_owned(client, config, remote, backup, cache)

        name = latest_backup(remote, database, label, owned, now=dt.datetime.now(dt.timezone.utc))
        future = None if name else latest_backup(remote, database, label, owned)
        if future:
            raise SyncError(
                f"the only complete backups of database {database!r} under {config.bucket}/{config.prefix} are "
                f"dated in the future (the newest is {future}): a clock was wrong when they were taken, so they may "
                "be older than they look; check their manifests' created_at and pull one by name"
            )
        if not name:
            raise SyncError(
                f"no complete backup of database {database!r} under {config.bucket}/{config.prefix}; "
                "check database, prefix and bucket"
            )
    if "/" in name or name.startswith("."):
        raise SyncError(f"name {name!r} must be a plain file name")
    raw, manifest = read_manifest(client, config, name)
    expected_sha, expected_size = str(manifest["sha256"]), int(manifest["size"])
    target = os.path.join(dest, name)
    target_manifest = target + MANIFEST_SUFFIX
    result: dict[str, Any] = {
        "name": name,
        "path": target,
        "sha256": expected_sha,
        "size": expected_size,
        "downloaded": [],
        "skipped": [],
        "uploaded": [],
        "deleted": [],
        "retained_locked": [],
        "removed_partials": stale_parts,
    }
    present = _local_copy_matches(target, target_manifest, name, expected_size, expected_sha)
    manifest_same = os.path.exists(target_manifest) and _read_bytes(target_manifest) == raw
    if present:
        result["skipped"].append(name)
    else:
        result["downloaded"].append(name)
        _check_free_space(dest, name, expected_size + len(raw))
        if not config.check_mode:
            key = config.prefix + name
            head = _head_data_file(client, config, key, name)
            if int(head["ContentLength"]) != expected_size:
                raise SyncError(
                    f"{key} is {head['ContentLength']} bytes but its manifest says {expected_size}; "
                    "the remote backup is damaged or incomplete"
                )
            download_to_file(client, config, key, expected_size, target, expected_sha, stats)
    if manifest_same:
        result["skipped"].append(name + MANIFEST_SUFFIX)
    else:
        result["downloaded"].append(name + MANIFEST_SUFFIX)
        if not config.check_mode:
            write_file_atomic(target_manifest, raw)
            stats.add(len(raw))
    result["changed"] = bool(result["downloaded"])
    result.update(stats.summary())
    return result


def _check_free_space(dest: str, name: str, needed: int) -> None:
    """Refuse up front a pull that cannot fit: finding out at ENOSPC wastes the whole download."""
    try:
        free = shutil.disk_usage(dest).free
    except OSError:
        return  # not measurable here: the download itself will tell
    if free < needed:
        raise SyncError(
            f"not enough free space in {dest}: {free} bytes free, the backup {name} and its manifest need "
            f"{needed} bytes (downloaded whole beside the destination, then renamed into place); nothing was "
            "downloaded: free space or pull into another dest"
        )


def _local_copy_matches(target: str, target_manifest: str, name: str, size: int, sha256: str) -> bool:
    """Whether ``target`` already holds the backup; SyncError when it holds other bytes that may matter.

    A backup's name is never reused, so a file of that name with other bytes is a damaged copy or
    another backup bearing the name (another host's, the same second). It is replaced only when its
    local manifest describes the remote backup (same size and sha256: the local copy was damaged);
    anything else stays as it is and the pull fails: nothing local is ever deleted.
    """
    if not os.path.lexists(target):
        return False
    if os.path.isfile(target):
        local_size = os.path.getsize(target)
        local_sha = file_sha256(target) if local_size == size else None
        if local_sha == sha256:
            return True
        what = f"has {local_size} bytes" + (f" with sha256 {local_sha}" if local_sha else "")
    else:
        what = "is no regular file"
    try:
        local_manifest = json.loads(_read_bytes(target_manifest))
        vouched = int(local_manifest["size"]) == size and str(local_manifest["sha256"]) == sha256
    except (OSError, ValueError, KeyError, TypeError):
        vouched = False
    if vouched:
        return False  # a damaged copy of this very backup: the pull repairs it
    raise SyncError(
        f"{target} already exists and {what}, but the remote backup {name} has {size} bytes with sha256 "
        f"{sha256}, and no local manifest says the local file is a damaged copy of it: it may be another "
        "backup bearing the name. Nothing was downloaded; move the local file (and its manifest) aside, "
        "or pull into another dest"
    )


def _head_data_file(client: Any, config: SyncConfig, key: str, name: str) -> dict[str, Any]:
    try:
        return dict(client.head_object(Bucket=config.bucket, Key=key))
    except CLIENT_ERRORS as exc:
        if is_not_found(exc):
            raise SyncError(
                f"{key} does not exist although its manifest does: the backup {name} is incomplete (its data "
                "file was deleted); pull another backup"
            ) from exc
        raise SyncError(f"reading metadata of {key}", exc) from exc


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _group_sort_key(group: Any) -> tuple[str, str]:
    return (group, "") if isinstance(group, str) else (group[0], group[1] or "")


def status(
    client: Any,
    config: SyncConfig,
    databases: list[str] | None,
    max_age_hours: float,
    now: dt.datetime | None = None,
    cache: HashCache | None = None,
) -> dict[str, Any]:
    """Per database (or per backup stem when no database is given): newest, age, count, bytes."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cache = cache or HashCache(None, "")
    remote = list_remote(client, config.bucket, config.prefix)
    groups: dict[Any, list[Any]] = {db: [] for db in databases or []}
    longest_first = sorted(databases or [], key=len, reverse=True)
    # without databases: per (database, label), the database an ambiguous name belongs to read
    # from its manifest, so that database app-archive never hides behind app's "archive" label.
    denied: list[str] = []
    owners = {} if databases else manifest_owners(client, config, remote, cache, denied=denied)
    for name in remote:
        if is_manifest(name):
            continue
        if databases:
            parsed = (parse_backup_name(name, db) for db in longest_first)
            backup = next((b for b in parsed if b and is_owned(client, config, remote, b, cache, denied)), None)
        else:
            backup = resolve_backup(name, owners.get(name))
        if backup is None:
            continue
        groups.setdefault(backup.database if databases else backup.group, []).append(backup)
    report: dict[str, dict[str, Any]] = {}
    for group, members in sorted(groups.items(), key=lambda item: _group_sort_key(item[0])):
        complete = [b for b in members if b.name + MANIFEST_SUFFIX in remote]
        # dated in the future (a wrong clock): it would look fresh for months; not counted as newest
        future = future_backups(complete, now)
        newest = max((b for b in complete if b not in future), key=lambda b: (b.timestamp, b.name), default=None)
        age = round((now - newest.timestamp).total_seconds() / 3600, 2) if newest else None
        entry: dict[str, Any] = {
            "newest": newest.name if newest else None,
            "newest_at": newest.timestamp.isoformat() if newest else None,
            "age_hours": age,
            "count": len(complete),
            "incomplete": sorted(b.name for b in members if b not in complete),
            "future": sorted(b.name for b in future),
            "bytes": sum(remote[b.name].size for b in complete),
            "healthy": age is not None and age <= max_age_hours,
        }
        if databases:
            report[group] = entry
        else:
            database, label = group
            key = f"{database}-{label}" if label else database
            if key in report or (label and (key, None) in groups):
                key = f"{database} (label {label})"  # database "app-archive" holds the plain name
            report[key] = {**entry, "database": database, "label": label}
    healthy = bool(report) and all(entry["healthy"] for entry in report.values())
    return {
        "backups": report,
        "healthy": healthy,
        "max_age_hours": max_age_hours,
        "unreadable_manifests": sorted(set(denied)),
        "changed": False,
    }
