#!/usr/bin/python
# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: b2_sync
short_description: Copy database backups to Backblaze B2, pull one back, keep remote retention
version_added: 1.0.0
description:
  - C(push) uploads the backups and manifests that M(mutuapix.ops.mysql_backup) writes from
    O(src) to O(bucket) under O(prefix), through B2's S3-compatible API. A file is uploaded
    when the remote copy is missing, or differs in size or sha256 and may be replaced (see
    below); the sha256 is kept in the object's metadata (C(x-amz-meta-sha256)), so a second
    run transfers nothing.
  - A data file is uploaded (and checked) before its manifest, so a remote manifest means a
    complete backup. Large files go up in parts of O(part_size_mb), O(concurrency) at a time,
    each with C(Content-MD5); an interrupted upload is aborted, and the next run cleans up
    what an interrupted run could not.
  - After every upload succeeded, remote retention (the same options and rules as
    M(mutuapix.ops.mysql_backup)) deletes old backups and their manifests by version ID, as
    B2 keeps every version. Versions under Object Lock are reported in RV(retained_locked).
    Only names of backups under O(prefix) are ever considered; nothing local is ever deleted.
  - Retention also deletes a remote manifest whose backup file is gone (deleted by hand, or by
    another tool), once no version of that file is left (RV(deleted_orphaned_manifests)). While
    the file is only hidden (deleted by name; B2 keeps its bytes), its manifest is kept, as
    un-hiding the file restores the backup, and a warning names it (RV(hidden_backups)).
  - Only complete backups (with a manifest) count towards the retention rules. A data file
    without manifest is deleted only when the rules would delete it were it complete, so it
    never pushes out the newest complete backup. Rules apply per database and label, and where a
    name could be either (C(app-archive-<ts>)), its manifest says which. A backup dated more than
    an hour in the future (a wrong clock) is kept and takes no part in the rules.
  - Before anything is uploaded, each local backup file is checked against its local manifest
    (size and sha256). A damaged one is not uploaded, nor its manifest, retention does not run,
    and the task fails naming it, so a damaged copy never becomes the newest complete backup.
  - A backup's name is never reused (it holds its UTC timestamp), so a push never replaces a remote
    backup with other bytes. A local file that differs from the remote file of its name goes up
    only when the remote manifest vouches for it (same size and sha256; then the remote data file
    was damaged or overwritten, and the upload repairs it); a local manifest whose backup file is not
    in O(src) goes up only when it describes the remote data file. Anything else (a local file
    damaged with its manifest gone, another host's backup of the same name) is listed in
    RV(conflicts) and not uploaded, nor its manifest; the remote copy stays, the other files are
    pushed, retention does not run, and the task fails naming it.
  - C(pull) downloads one backup and its manifest into O(dest), checks the sha256 against
    the manifest and renames the file into place, so O(dest) never holds a partial backup.
    A file of that name already in O(dest) with other bytes is replaced only when its local manifest
    describes the remote backup (a damaged copy); otherwise the task fails and leaves it as it is.
    A pull that does not fit in the free space of O(dest) fails before downloading anything.
  - C(status) reports the newest complete backup per database and whether it is fresh.
author:
  - MutuaPix ops team (@mutuapix)
extends_documentation_fragment:
  - mutuapix.ops.b2
attributes:
  check_mode:
    support: full
    description: Lists what would be uploaded, downloaded or deleted; transfers and deletes nothing.
  diff_mode:
    support: none
    description: Files are copied, not edited; RV(uploaded), RV(downloaded) and RV(deleted) list the changes.
options:
  mode:
    description:
      - C(push) copies local backups to B2, C(pull) copies one backup from B2, C(status)
        reports the freshness of the remote backups.
    type: str
    choices: [push, pull, status]
    default: push
  src:
    description:
      - Directory holding the backups to push (not searched recursively). Required with O(mode=push).
    type: path
  dest:
    description:
      - Existing directory to pull a backup into. Required with O(mode=pull).
    type: path
  prefix:
    description:
      - Key prefix of the backups in the bucket, for example C(prod/db1/). A C(/) is added
        when missing. Objects in deeper folders, or under another prefix that merely starts
        the same (C(db-old/) for C(db/)), are never touched.
    type: str
    default: ''
  include:
    description:
      - Glob patterns of the file names to push. Hidden files (starting with C(.)) are never pushed.
      - Defaults to the backups and manifests M(mutuapix.ops.mysql_backup) writes.
    type: list
    elements: str
    default: ['*.sql.zst', '*.sql.zst.age', '*.sql.gz', '*.sql.gz.age', '*.sql', '*.sql.age', '*.manifest.json']
  exclude:
    description:
      - Glob patterns of file names not to push, applied after O(include).
    type: list
    elements: str
    default: []
  part_size_mb:
    description:
      - Files larger than this are uploaded in parts of this many MiB (at least 5, at most
        4768, B2's largest part and largest single upload, 5 GB); B2 recommends 100. The part
        size grows by itself when a file would need more than 10,000 parts. Also the range
        size of parallel downloads.
    type: int
    default: 100
  concurrency:
    description:
      - Parts (or small files) transferred at the same time.
    type: int
    default: 4
  verify:
    description:
      - How each upload is checked. C(head) compares the stored size and sha256 metadata;
        C(download) also downloads the object and hashes it (doubles the traffic).
    type: str
    choices: [head, download]
    default: head
  object_lock_mode:
    description:
      - Upload with Object Lock in this mode (the bucket must have Object Lock enabled).
        C(compliance) cannot be shortened or removed by anyone, C(governance) by keys with
        the C(bypassGovernance) capability.
    type: str
    choices: [governance, compliance]
  object_lock_days:
    description:
      - Days each uploaded version stays locked. Required with O(object_lock_mode), and
        O(object_lock_mode) with it (days alone would upload without any lock).
    type: int
  keep_last:
    description:
      - Remote retention (push only). Keep the N newest backups of each database and label.
      - Retention applies only when at least one C(keep_*) option is set; a backup is kept
        when any rule keeps it, and the newest backup of each database and label is always kept.
      - One set of rules for every series under O(prefix) (unlike M(mutuapix.ops.mysql_backup), which prunes
        only its own label locally). To keep a label's series longer off-site, push it to a prefix of its own
        (O(include) its names there, O(exclude) them from the other push).
    type: int
  keep_days:
    description:
      - Keep every backup taken in the last N days.
    type: int
  keep_daily:
    description:
      - Keep the newest backup of each of the last N days that have one.
    type: int
  keep_weekly:
    description:
      - Keep the newest backup of each of the last N ISO weeks that have one.
    type: int
  keep_monthly:
    description:
      - Keep the newest backup of each of the last N months that have one.
    type: int
  name:
    description:
      - With O(mode=pull), the file name of the backup to pull (its manifest comes with it).
    type: str
  latest:
    description:
      - With O(mode=pull), pull the newest complete backup of O(database) instead of O(name).
      - A backup dated more than an hour in the future (taken while a clock was wrong) is never the
        newest; when it is the only complete one, the task fails naming it, so that it is pulled by O(name).
    type: bool
    default: false
  database:
    description:
      - Database name(s). O(mode=pull) with O(latest=true) needs exactly one.
      - A backup name that could belong to more than one database (C(app-archive-<ts>) is
        C(app) labelled C(archive), or C(app-archive)) counts for a database only when its
        manifest names it; that costs one read per such manifest, remembered in O(cache_file).
        Among the databases given, the longest name that fits is tried first.
      - With O(mode=status), report these databases (all labels together), and report a
        database without any backup as unhealthy. Without it, status reports one entry per
        database-and-label found under O(prefix), reading the manifests of ambiguous names too.
      - A status-only key without C(readFiles) cannot read manifests, so ambiguous names are then
        counted by name alone, with a warning (RV(unreadable_manifests)).
    type: list
    elements: str
  label:
    description:
      - With O(mode=pull) and O(latest=true), only consider backups with this label
        (for example C(predeploy)).
    type: str
  max_age_hours:
    description:
      - With O(mode=status), a database is healthy when its newest complete backup is at most this old.
    type: float
    default: 26
  cache_file:
    description:
      - File remembering sha256 values of local files and remote objects, so that a run
        without changes neither rehashes files nor reads every object's metadata. Entries are
        invalidated by any change of a file (inode, size, mtime, ctime) or object (ETag, size,
        modification time). Written with mode 0600. Deleting it only makes the next run slower.
    type: path
    default: ~/.cache/mutuapix/b2_sync.json
  use_cache:
    description:
      - Use O(cache_file). With V(false) every file is hashed and every object's metadata read.
    type: bool
    default: true
  lock_timeout:
    description:
      - With O(mode=push), seconds to wait while another push to the same endpoint, bucket and O(prefix)
        runs on this host (an overlapping AWX job, a long upload past the next scheduled run). Each push
        aborts the unfinished uploads of the keys it writes, so two at once would abort each other's; the
        second waits, then finds the files uploaded. The lock file lies beside O(cache_file).
    type: int
    default: 3600
seealso:
  - module: mutuapix.ops.mysql_backup
  - name: B2 S3-compatible API
    description: Backblaze's documentation of the S3-compatible API.
    link: https://www.backblaze.com/docs/cloud-storage-s3-compatible-api
"""

EXAMPLES = r"""
- name: Copy tonight's backups off-site, keep 14 daily and 8 weekly remote copies
  mutuapix.ops.b2_sync:
    src: /var/backups/mysql
    bucket: acme-db-backups
    region: us-west-004
    prefix: "prod/{{ inventory_hostname }}/"
    key_id: "{{ vault_b2_key_id }}"
    application_key: "{{ vault_b2_application_key }}"
    keep_daily: 14
    keep_weekly: 8

- name: Same, with credentials from the environment (AWX credential) and Object Lock
  mutuapix.ops.b2_sync:
    src: /var/backups/mysql
    bucket: acme-db-backups-locked
    region: eu-central-003
    prefix: prod/db1/
    object_lock_mode: governance
    object_lock_days: 30

- name: Pull the newest backup of the app database for a restore
  mutuapix.ops.b2_sync:
    mode: pull
    dest: /var/restore
    latest: true
    database: app
    bucket: acme-db-backups
    region: us-west-004
    prefix: prod/db1/
  register: pulled

- name: Alert when the newest off-site backup is older than 26 hours
  mutuapix.ops.b2_sync:
    mode: status
    database: [app]
    max_age_hours: 26
    bucket: acme-db-backups
    region: us-west-004
    prefix: prod/db1/
  register: offsite
  failed_when: not offsite.healthy
"""

RETURN = r"""
uploaded:
  description: File names uploaded (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [app-20260101T020000Z.sql.zst, app-20260101T020000Z.sql.zst.manifest.json]
upload_reasons:
  description: Why each file was uploaded (C(missing), C(size), C(content), C(no sha256 metadata)).
  returned: when O(mode=push)
  type: dict
  sample: {app-20260101T020000Z.sql.zst: missing}
objects:
  description: The objects written, with key, size, sha256 and version ID.
  returned: when O(mode=push) and something was uploaded
  type: list
  elements: dict
  sample: [{name: app-20260101T020000Z.sql.zst, key: prod/db1/app-20260101T020000Z.sql.zst,
            size: 1048576, sha256: 9f86d0..., version_id: 4_z27c88f1d182b150646ff0b16_f1004...}]
skipped:
  description: File names already present with the same size and sha256 (push), or already in O(dest) (pull).
  returned: always
  type: list
  elements: str
  sample: [app-20251231T020000Z.sql.zst]
not_uploaded_retention:
  description: Local files not uploaded because remote retention would delete them at once.
  returned: when O(mode=push)
  type: list
  elements: str
  sample: []
orphaned_manifests:
  description:
    - Local manifests not uploaded because their backup file is neither in O(src) nor remote
      (a remote manifest must mean a complete backup); a warning names them.
  returned: when O(mode=push)
  type: list
  elements: str
  sample: []
damaged:
  description:
    - Local backup files whose size or sha256 differs from their manifest (file name to
      reason). Neither they nor their manifests are uploaded, retention does not run, and the
      task fails.
  returned: when O(mode=push)
  type: dict
  sample: {}
conflicts:
  description:
    - Local files not uploaded because they differ from the remote file of the same name and
      nothing on the remote side vouches for them (see the description), with the reason (a data
      file damaged on disk whose manifest is gone, another backup bearing the name, or a local
      manifest that does not describe the remote data file). The remote copies stay, the other
      files are pushed, retention does not run, and the task fails.
  returned: when O(mode=push)
  type: dict
  sample: {app-20260101T020000Z.sql.zst: '4096 bytes with sha256 5e3b..., but the remote backup''s manifest says
            4096 bytes with sha256 9f86d0...'}
unsupported_names:
  description:
    - Files in O(src) matching O(include) but not pushed because their names are not valid UTF-8,
      which no S3 key can hold (undecodable bytes shown as C(\xNN)); a warning names them.
  returned: when O(mode=push)
  type: list
  elements: str
  sample: []
aborted_uploads:
  description:
    - Keys whose incomplete multipart uploads (left by an interrupted run) were aborted (in check
      mode, would be). Looked for on every push, also when nothing is uploaded.
  returned: when O(mode=push)
  type: list
  elements: str
  sample: [prod/db1/app-20260101T020000Z.sql.zst]
deleted:
  description: Object versions deleted by remote retention (in check mode, that would be).
  returned: always
  type: list
  elements: dict
  sample: [{key: prod/db1/app-20251201T020000Z.sql.zst, version_id: 4_z27c8...}]
deleted_orphaned_manifests:
  description:
    - Remote manifests that retention deleted (in check mode, would delete) because no version of
      their backup file is left under O(prefix). Their versions are listed in RV(deleted) too.
  returned: when O(mode=push)
  type: list
  elements: str
  sample: [app-20251201T020000Z.sql.zst.manifest.json]
hidden_backups:
  description:
    - Backup files that are hidden in the bucket (deleted by name, their bytes still stored and
      billed) while their manifests are current. Retention keeps such a manifest, as un-hiding the
      file restores the backup, and a warning names them; once no version of the file is left, the
      next push with retention deletes the manifest.
  returned: when O(mode=push)
  type: list
  elements: str
  sample: []
retained_locked:
  description:
    - Versions retention selected but could not delete because of Object Lock or a legal
      hold; the backup's other versions, of its data file and its manifest, are kept too,
      as the lock of every version is read before anything is deleted. Not an error.
    - A version whose deletion B2 refuses although it is not locked (an application key
      without C(deleteFiles)) fails the task instead.
  returned: always
  type: list
  elements: dict
  sample: [{key: prod/db1/app-20251201T020000Z.sql.zst, version_id: 4_z27c8..., mode: GOVERNANCE,
            retain_until: '2026-01-31T02:00:00+00:00'}]
downloaded:
  description: File names downloaded into O(dest) (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [app-20260101T020000Z.sql.zst, app-20260101T020000Z.sql.zst.manifest.json]
removed_partials:
  description:
    - Temporary files (C(.<name>.XXXXXXXX.part), full size) of downloads into O(dest) that were killed, removed
      before pulling. A running download holds a lock on its file, which is never removed.
  returned: when O(mode=pull)
  type: list
  elements: str
  sample: [/var/restore/.app-20260101T020000Z.sql.zst.k2j4h5g6.part]
name:
  description: The backup pulled.
  returned: when O(mode=pull)
  type: str
  sample: app-20260101T020000Z.sql.zst
path:
  description: Where the pulled backup is.
  returned: when O(mode=pull)
  type: str
  sample: /var/restore/app-20260101T020000Z.sql.zst
sha256:
  description: sha256 of the pulled backup, as recorded in its manifest and verified.
  returned: when O(mode=pull)
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
size:
  description: Size in bytes of the pulled backup.
  returned: when O(mode=pull)
  type: int
  sample: 1048576
bytes_transferred:
  description: Bytes uploaded and downloaded.
  returned: when O(mode=push) or O(mode=pull)
  type: int
  sample: 524288000
duration_s:
  description: Wall time of the transfer phase in seconds.
  returned: when O(mode=push) or O(mode=pull)
  type: float
  sample: 12.5
throughput_mb_s:
  description: RV(bytes_transferred) divided by RV(duration_s), in MB (10^6 bytes) per second.
  returned: when O(mode=push) or O(mode=pull)
  type: float
  sample: 41.9
backups:
  description:
    - Per database given in O(database), or without it per database and label (keyed
      C(<database>-<label>), plus C(database) and C(label) fields; when that key is also a
      database's own name, the labelled entry is keyed C(<database> (label <label>))), the
      newest complete backup and totals.
    - C(future) lists complete backups whose names are dated more than an hour ahead (a clock
      that was wrong when they were taken); they count in C(count) but never as C(newest).
  returned: when O(mode=status)
  type: dict
  sample:
    app:
      newest: app-20260101T020000Z.sql.zst
      newest_at: '2026-01-01T02:00:00+00:00'
      age_hours: 7.5
      count: 14
      incomplete: []
      future: []
      bytes: 7340032000
      healthy: true
unreadable_manifests:
  description:
    - Manifests the key was refused to read (no C(readFiles)); the backups they describe were
      counted by their file names alone, and a warning says so.
  returned: when O(mode=status)
  type: list
  elements: str
  sample: []
healthy:
  description: Every reported database has a complete backup no older than O(max_age_hours), and there is at least one.
  returned: when O(mode=status)
  type: bool
  sample: true
max_age_hours:
  description: The threshold used.
  returned: when O(mode=status)
  type: float
  sample: 26.0
"""

import contextlib
import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from typing import Any

from ansible_collections.mutuapix.ops.plugins.module_utils._b2sync import (
    DEFAULT_INCLUDE,
    MAX_PART_SIZE,
    HashCache,
    MiB,
    SyncConfig,
    SyncError,
    normalize_prefix,
    pull,
    push,
    status,
)
from ansible_collections.mutuapix.ops.plugins.module_utils._flock import wait_for_flock
from ansible_collections.mutuapix.ops.plugins.module_utils._retention import (
    retention_argument_spec,
    retention_params,
    retention_params_error,
)
from ansible_collections.mutuapix.ops.plugins.module_utils._s3 import CLIENT_ERRORS, B2Module

DEFAULT_CACHE_FILE = "~/.cache/mutuapix/b2_sync.json"


def argument_spec() -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mode": {"type": "str", "choices": ["push", "pull", "status"], "default": "push"},
        "src": {"type": "path"},
        "dest": {"type": "path"},
        "prefix": {"type": "str", "default": ""},
        "include": {"type": "list", "elements": "str", "default": list(DEFAULT_INCLUDE)},
        "exclude": {"type": "list", "elements": "str", "default": []},
        "part_size_mb": {"type": "int", "default": 100},
        "concurrency": {"type": "int", "default": 4},
        "verify": {"type": "str", "choices": ["head", "download"], "default": "head"},
        "object_lock_mode": {"type": "str", "choices": ["governance", "compliance"]},
        "object_lock_days": {"type": "int"},
        "name": {"type": "str"},
        "latest": {"type": "bool", "default": False},
        "database": {"type": "list", "elements": "str"},
        "label": {"type": "str"},
        "max_age_hours": {"type": "float", "default": 26},
        "cache_file": {"type": "path", "default": DEFAULT_CACHE_FILE},
        "use_cache": {"type": "bool", "default": True},
        "lock_timeout": {"type": "int", "default": 3600},
    }
    spec.update(retention_argument_spec())
    return spec


def validate(module: B2Module) -> None:
    p = module.params
    if not 5 <= p["part_size_mb"] <= MAX_PART_SIZE // MiB:
        module.fail_json(
            msg=f"part_size_mb must be between 5 (the S3 minimum part size) and {MAX_PART_SIZE // MiB} "
            f"(B2's largest part or single upload, 5 GB), got {p['part_size_mb']}"
        )
    if not 1 <= p["concurrency"] <= 64:
        module.fail_json(msg=f"concurrency must be between 1 and 64, got {p['concurrency']}")
    if p["object_lock_days"] is not None and p["object_lock_days"] < 1:
        module.fail_json(msg="object_lock_days must be 1 or more")
    if p["mode"] == "pull" and bool(p["name"]) == bool(p["latest"]):
        module.fail_json(msg="mode=pull needs either name or latest=true (not both)")
    if p["mode"] == "pull" and p["latest"] and len(p["database"] or []) != 1:
        module.fail_json(msg="mode=pull with latest=true needs exactly one database")
    if p["mode"] == "push" and not os.path.isdir(p["src"]):
        module.fail_json(msg=f"src {p['src']} is not a directory; it should be where mysql_backup writes backups")
    if p["mode"] == "pull" and not os.path.isdir(p["dest"]):
        module.fail_json(msg=f"dest {p['dest']} is not a directory; create it first (mode 0700)")
    if p["mode"] != "push" and any(v is not None for v in retention_params(p).values()):
        module.fail_json(msg="keep_* options apply to mode=push only")
    retention_error = retention_params_error(p)
    if retention_error:
        module.fail_json(msg=retention_error)


def build_config(module: B2Module) -> SyncConfig:
    p = module.params
    return SyncConfig(
        bucket=p["bucket"],
        prefix=normalize_prefix(p["prefix"]),
        part_size=p["part_size_mb"] * MiB,
        concurrency=p["concurrency"],
        include=p["include"],
        exclude=p["exclude"],
        verify=p["verify"],
        max_attempts=module.b2_settings.max_attempts,
        lock_mode=p["object_lock_mode"],
        lock_days=p["object_lock_days"],
        retention=retention_params(p),
        check_mode=module.check_mode,
    )


def open_cache(module: B2Module, config: SyncConfig) -> HashCache:
    path = module.params["cache_file"] if module.params["use_cache"] else None
    scope = f"{module.b2_settings.endpoint_url}/{config.bucket}"
    cache = HashCache(path, scope)
    if cache.warning:
        module.warn(cache.warning)
    return cache


def save_cache(module: B2Module, cache: HashCache) -> None:
    """Keep what this run learnt (also after a failure: hashes stay valid); never in check mode."""
    if not module.check_mode:
        warning = cache.save()
        if warning:
            module.warn(warning)


@contextlib.contextmanager
def push_lock(module: B2Module, config: SyncConfig) -> Iterator[None]:
    """One push at a time per endpoint, bucket and prefix on this host (none in check mode, which writes nothing).

    A push aborts the unfinished multipart uploads of the keys it is about to write (a killed run's);
    a second push started while the first uploads would abort the first's.
    """
    if module.check_mode or module.params["mode"] != "push":
        yield
        return
    scope = f"{module.b2_settings.endpoint_url}/{config.bucket}/{config.prefix}"
    directory = os.path.dirname(os.path.abspath(module.params["cache_file"]))
    path = os.path.join(directory, f".b2_sync-push-{hashlib.sha256(scope.encode()).hexdigest()[:16]}.lock")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        module.warn(
            f"no push lock ({path}: {exc.strerror}): a push to the same prefix started meanwhile could abort "
            "this push's uploads"
        )
        yield
        return
    try:
        if not wait_for_flock(fd, module.params["lock_timeout"], interval=0.5):
            module.fail_json(
                msg=f"another push to {config.bucket}/{config.prefix} is running on this host (lock {path} held for "
                f"more than lock_timeout={module.params['lock_timeout']}s); wait for it or raise lock_timeout"
            )
        yield
    finally:
        os.close(fd)  # releases the lock


def main() -> None:
    module = B2Module(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("mode", "push", ["src"]), ("mode", "pull", ["dest"])],
        # days without a mode would upload without any lock: refused, not ignored
        required_together=[("object_lock_mode", "object_lock_days")],
        mutually_exclusive=[("name", "latest")],
    )
    validate(module)
    config = build_config(module)
    with push_lock(module, config):
        run(module, config)


def run(module: B2Module, config: SyncConfig) -> None:
    cache = open_cache(module, config)  # read under the lock: another push's entries are kept
    client = module.client()
    p = module.params
    result: dict[str, Any] = {}
    try:
        if p["mode"] == "push":
            result = push(client, config, p["src"], cache, dt.datetime.now(dt.timezone.utc))
        elif p["mode"] == "pull":
            database = (p["database"] or [None])[0]
            latest_of = database if p["latest"] else None
            result = pull(client, config, p["dest"], p["name"], latest_of, p["label"], cache)
        else:
            result = status(client, config, p["database"], p["max_age_hours"], cache=cache)
    except SyncError as exc:
        save_cache(module, cache)
        if exc.cause is not None:
            module.fail_b2(exc.cause, str(exc))
        module.fail_json(msg=str(exc))
    except CLIENT_ERRORS as exc:  # a service error some path did not name: still no traceback
        save_cache(module, cache)
        module.fail_b2(exc, p["mode"])
    except OSError as exc:
        save_cache(module, cache)
        module.fail_json(msg=f"{p['mode']} failed on the local side: {exc}")
    save_cache(module, cache)
    report_findings(module, result)
    module.exit_json(**result)


def report_findings(module: B2Module, result: dict[str, Any]) -> None:
    """Warnings for what was left out, and a failure for a damaged local backup."""
    if result.get("orphaned_manifests"):
        module.warn(
            "not pushed, their backup file is neither in src nor remote (an interrupted local retention?): "
            + ", ".join(result["orphaned_manifests"])
        )
    if result.get("unsupported_names"):
        module.warn(
            "not pushed, their names are no UTF-8 (an S3 key cannot hold them; rename them to push them): "
            + ", ".join(result["unsupported_names"])
        )
    if result.get("unreadable_manifests"):
        module.warn(
            "the key may not read these manifests (readFiles), so their backups were counted by file name alone, "
            "which cannot tell database app's label archive from database app-archive: "
            + ", ".join(result["unreadable_manifests"])
        )
    future = [name for entry in (result.get("backups") or {}).values() for name in entry.get("future", [])]
    if future:
        module.warn(
            "dated in the future, so not counted as the newest (was a clock wrong when they were taken?): "
            + ", ".join(sorted(future))
        )
    if result.get("hidden_backups"):
        module.warn(
            "hidden in the bucket (deleted by name: B2 keeps and bills their bytes), so retention kept their "
            "manifests: un-hide a file to get its backup back, or delete its versions (or let a lifecycle rule "
            "delete hidden files) and the next push deletes the manifest: " + ", ".join(result["hidden_backups"])
        )
    failures = []
    if result.get("damaged"):
        details = "; ".join(f"{name}: {why}" for name, why in sorted(result["damaged"].items()))
        failures.append(
            f"local backups that do not match their manifests were not pushed: {details}. The file changed after "
            "mysql_backup wrote it (disk or copy error?): move it aside and take a new backup"
        )
    if result.get("conflicts"):
        details = "; ".join(f"{name}: {why}" for name, why in sorted(result["conflicts"].items()))
        failures.append(
            f"local files that differ from the remote backup of the same name were not pushed over it: {details}. "
            "A backup's name is never reused, so the local file was damaged on disk (with its manifest gone, "
            "nothing else could tell) or is another backup that bears the name (two hosts pushing to one "
            "prefix?): move it aside (mode=pull fetches the remote copy, if the local one is needed), or give "
            "each host its own prefix"
        )
    if failures:
        pushed = "would be pushed (check mode)" if module.check_mode else "were pushed"
        module.fail_json(
            msg=" ".join(failures) + f" The remote copies were left as they were, the other files {pushed}, and "
            "retention did not run.",
            **result,
        )


if __name__ == "__main__":
    main()
