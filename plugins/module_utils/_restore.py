# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore engine of mysql_restore_verify: prove a backup restores, or restore it safely.

The steps, each a function or class a reader finds by name:

``find_backup`` / ``check_backup``
    pick the file and prove it is intact (sha256, every frame, the trailer, the manifest
    belongs to it, the age identity opens it) *before any database is touched*.
``cleanup_leftovers``
    drop scratch/shadow databases of killed runs and undo a cutover killed half-way.
``Restorer``
    parallel load into a scratch (verify) or shadow (restore) database: tables created
    without their secondary indexes, data frames spread over ``workers`` sessions of the
    ``mariadb`` client (tables without a primary key in one ordered stream), indexes added
    afterwards, then triggers, views, routines and events.
``verify_*``
    re-dump each restored table with the backup's dump options, digest it exactly like
    mysql_backup did and compare rows and digests with the manifest.
``cutover``
    one ``RENAME TABLE`` statement swaps all tables of the target with the verified shadow
    tables and moves the previous ones into ``<db>_old_<timestamp>``.

A scratch/shadow database carries a marker table and is guarded by a server named lock
held for the whole run, so a later run can tell a leftover of a killed run (lock free)
from a run still in progress (lock held).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.mutuapix.ops.plugins.module_utils import _dumpfile, _retention
from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import (
    MAX_IDENTIFIER_LENGTH,
    ConnectionParams,
    binlog_enabled,
    client_command,
    client_environment,
    client_option_file,
    program_errors,
    program_version,
    quote_identifier,
    start_program_version,
    validate_identifier,
)

try:
    import zstandard

    HAS_ZSTANDARD = True
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_ZSTANDARD = False

MARKER_TABLE = "__mutuapix_restore"
# Private directories holding the decrypted stream of an .age backup while a run uses it; the run
# holds an flock on WORKDIR_LOCK inside, so a later run can tell a killed run's directory.
WORKDIR_PREFIX = ".mutuapix-restore-"
WORKDIR_LOCK = "lock"
# A directory without its lock file yet belongs to a run between mkdtemp and the lock's rename, unless older.
WORKDIR_UNLOCKED_GRACE_S = 300
JOURNAL_TABLE = "__mutuapix_cutover"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TS = r"\d{8}T\d{6}Z"
# Compressed bytes read per step: small enough that one decompressed step stays a few MB per worker.
READ_BLOCK = 256 * 1024
REDUMP_BLOCK = 1024 * 1024
# Options of the verification re-dump on top of the backup's own: only the data regions.
VERIFY_DUMP_EXTRA = ["--no-create-info", "--skip-triggers", "--skip-routines", "--skip-events"]
# Backup dump options that do not change the data region but need privileges or a binlog.
_SKIP_REDUMP_OPTIONS = ("--master-data", "--dump-slave", "--gtid", "--apply-slave-statements", "--include-master")
_DEFINER = re.compile(
    rb"DEFINER\s*=\s*(?:`(?:[^`]|``)*`|'(?:[^'\\]|\\.)*'|[^\s@*]+)@(?:`(?:[^`]|``)*`|'(?:[^'\\]|\\.)*'|[^\s*]+)"
)
# An event's status in SHOW CREATE EVENT (and so in the dump): its header, up to ENABLE, comes before
# DO and its body (never crossed); the schedule between holds only literal timestamps.
_EVENT_ENABLED = re.compile(
    rb"(?is)(\bEVENT\s+(?:`(?:[^`]|``)+`|[^\s`]+)\s+ON\s+SCHEDULE\s(?:(?!\bDO\b).)*?\bON\s+COMPLETION\s+(?:NOT\s+)?PRESERVE\s+)"
    rb"ENABLE\b"
)
_KEY_LINE = re.compile(rb"^  (?:UNIQUE )?KEY `(?:[^`]|``)+` \(.*\)(?: USING \w+)?(?: COMMENT '.*')?,?$")
_AUTO_INC_COLUMN = re.compile(rb"^  (`(?:[^`]|``)+`) [^\n]* AUTO_INCREMENT[ ,]", re.M)
# How the client reports a statement reading a table that does not exist (a view's base table).
_MISSING_TABLE = re.compile(r"ERROR 1146 \(42S02\)[^:]*: Table '(?:[^'.]*\.)?([^']+)' doesn't exist")
# How often a re-dump refused with error 1412 (the table's indexes were added under its snapshot) is tried.
REDUMP_ATTEMPTS = 5
# Error 1412 as mariadb-dump ("Error 1412: Table definition has changed") and mysqldump ("... (1412)") report it.
_DEFINITION_CHANGED = re.compile(r"Error:? 1412\b|\(1412\)|Table definition has changed")
# The state of a sequence in its dump: DO SETVAL(`name`, <next value>, <is used>).
_SETVAL = re.compile(rb"\nDO SETVAL\((?:`(?:[^`]|``)+`), (-?\d+), [01]\);")
_BACKTICKED = re.compile(rb"`((?:[^`]|``)+)`")
# A foreign key's parent in SHOW CREATE TABLE: `t`, or `db`.`t` when it is in another database.
_REFERENCES = re.compile(rb"\) REFERENCES (`(?:[^`]|``)+`)(\.`(?:[^`]|``)+`)? \(")


class RestoreError(Exception):
    """A restore step failed; the message says what, where and what to do."""

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.details = details


def utc_stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


def derived_name(prefix: str, database: str, suffix: str) -> str:
    """``<prefix><database><suffix>`` cut to MySQL's identifier limit (the database part shrinks)."""
    room = MAX_IDENTIFIER_LENGTH - len(prefix) - len(suffix)
    return f"{prefix}{database[:room]}{suffix}"


def scratch_name(database: str, stamp: str) -> str:
    return derived_name("_verify_", database, f"_{stamp}")


def kept_name(database: str, stamp: str) -> str:
    """Default name of a scratch kept with keep_scratch: outside every pattern cleanup_leftovers drops."""
    return derived_name("_kept_", database, f"_{stamp}")


# Names cleanup_leftovers may drop (by name) when a run of the database they derive from finds them.
_CLEANED_NAME = re.compile(rf"(?:_verify_|_restore_).*_{_TS}|.*_old_{_TS}")


def shadow_name(database: str, stamp: str) -> str:
    return derived_name("_restore_", database, f"_{stamp}")


def old_name(database: str, stamp: str) -> str:
    return derived_name("", database, f"_old_{stamp}")


def lock_name(schema: str) -> str:
    """Server named lock guarding a scratch/shadow schema (names are limited to 64 characters)."""
    return "mutuapix.restore." + hashlib.sha1(schema.encode("utf-8")).hexdigest()[:40]  # noqa: S324 - a name


# --- choosing and checking the backup file ------------------------------------------------------


def find_backup(backup_dir: str, database: str, warn: Callable[[str], None] | None = None) -> str:
    """Newest backup of ``database`` in ``backup_dir`` whose manifest loads and names it.

    Newer backups passed over (an unreadable manifest, or one naming another file) are reported
    through ``warn``: the run then uses an older backup than the operator may expect.
    """
    try:
        names = set(os.listdir(backup_dir))
    except FileNotFoundError as exc:
        raise RestoreError(f"backup_dir {backup_dir} does not exist") from exc
    except OSError as exc:
        raise RestoreError(f"cannot list backup_dir {backup_dir}: {exc.strerror}") from exc
    candidates = []
    for name in names:
        parsed = _retention.parse_backup_name(name, database)
        if parsed and parsed.manifest_name in names:
            candidates.append(parsed)
    candidates.sort(key=lambda b: (b.timestamp, b.name), reverse=True)
    skipped = []
    for backup in candidates:
        path = os.path.join(backup_dir, backup.name)
        try:
            manifest = _dumpfile.load_manifest(path + _retention.MANIFEST_SUFFIX)
        except _dumpfile.DumpFileError as exc:
            skipped.append(str(exc))
            continue
        if manifest.get("file") == backup.name and manifest.get("database") == database:
            if skipped and warn is not None:
                warn(
                    f"using {backup.name}, not a newer backup of {database!r} in {backup_dir}: skipped "
                    f"{'; '.join(skipped)}. Repair or remove the newer file(s), or pass src to choose one"
                )
            return path
        skipped.append(f"{backup.name}: its manifest describes another file or database")
    hint = f" (skipped: {'; '.join(skipped)})" if skipped else ""
    raise RestoreError(
        f"no backup of database {database!r} with a valid manifest in {backup_dir}{hint}; "
        f"expected files named {database}-YYYYMMDDTHHMMSSZ.sql.zst with a .manifest.json beside them"
    )


def load_identities(identity: str | None) -> list[bytes]:
    """age identities from a key (``AGE-SECRET-KEY-1…``) or the path of an identity file."""
    if not identity:
        return []
    from ansible_collections.mutuapix.ops.plugins.module_utils._age import AgeError, parse_identities  # noqa: PLC0415

    text = identity
    # The key itself, or an identity file's content as age-keygen writes it (comments first, several
    # keys): no path holds a key or a line break.
    if "AGE-SECRET-KEY-" not in identity.upper() and "\n" not in identity:
        try:
            with open(os.path.expanduser(identity), encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise RestoreError(f"cannot read the age identity file {identity}: {exc.strerror}") from exc
    try:
        return parse_identities(text)
    except AgeError as exc:
        raise RestoreError(f"identity: {exc}") from exc


@dataclass
class CheckedBackup:
    """A backup file proven intact; ``stream_path`` is the compressed stream to read frames from."""

    path: str
    manifest: dict[str, Any]
    stream_path: str
    frames: int
    uncompressed: int
    workdir: str | None = None
    workdir_lock: int | None = None
    # The decompressed stream parsed as mysql_backup parsed the dump: rows and data digests per table.
    contents: _dumpfile.DumpParser | None = None
    # Per table, the checksums in the trailers of its data frames (data_head, data, data_tail).
    frame_checksums: dict[str, list[str | None]] = field(default_factory=dict)
    # Whether the check hashed every table's data region (content verification needs it).
    content_digests: bool = True
    # (the backup's, this host's) dump program releases when they differ: the data regions were
    # also digested without their line layout, which content verification then compares.
    versions_differ: tuple[str, str] | None = None

    def layout_digest(self, table: str) -> str | None:
        """``layout-sha256:<hex>`` of the table's data region without its line layout."""
        obj = self.contents.objects.get(table) if self.contents is not None else None
        return obj.layout_data_digest() if obj is not None else None

    def data_digest(self, table: str) -> str | None:
        """``sha256:<hex>`` of the table's data region as stored in the file."""
        if not self.content_digests:
            raise RestoreError("internal error: content verification of a backup checked without data digests")
        obj = self.contents.objects.get(table) if self.contents is not None else None
        return obj.data_digest() if obj is not None else None

    def close(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        if self.workdir_lock is not None:
            os.close(self.workdir_lock)
            self.workdir_lock = None


def check_backup(
    path: str,
    identities: list[bytes],
    tmp_dir: str | None = None,
    content_digests: bool = True,
    local_dump_version: str = "",
) -> CheckedBackup:
    """Prove the file intact before anything is touched; raises RestoreError saying what is wrong.

    ``content_digests``: also SHA-256 every table's data region, which content verification
    compares re-dumps with. Without it (``verify: rows``) a compressed file's data is proven
    by its frame checksums alone, which saves about 0.5 CPU-s per GB; a manifest holding
    ``sha256:`` data digests (uncompressed files, older backups) is hashed either way.
    ``local_dump_version``: this host's ``mariadb-dump --version``; when the backup's differs,
    the data regions are also digested without their line layout (``CheckedBackup.versions_differ``).
    """
    if not os.path.isfile(path):
        raise RestoreError(f"backup file {path} does not exist (or is not a regular file)")
    manifest_path = path + _retention.MANIFEST_SUFFIX
    try:
        manifest = _dumpfile.load_manifest(manifest_path)
    except _dumpfile.DumpFileError as exc:
        raise RestoreError(
            f"{exc}; a backup is only restorable with the manifest mysql_backup wrote beside it"
        ) from exc
    name = os.path.basename(path)
    if manifest.get("file") != name:
        raise RestoreError(
            f"manifest {manifest_path} belongs to {manifest.get('file')!r}, not to {name}: "
            "it was copied or renamed from another backup; use the manifest written with this file"
        )
    _refuse_own_table_names(manifest, path)
    size = os.path.getsize(path)
    if size != manifest.get("size"):
        raise RestoreError(
            f"{path} is {size} bytes but its manifest says {manifest.get('size')}: the file is truncated or "
            "was replaced; fetch the backup again (e.g. b2_sync pull) or use an older one"
        )
    # The file's SHA-256 is computed beside the frame check (both mostly release the GIL); a
    # mismatch is reported first, as it is the more fundamental error.
    sha: dict[str, Any] = {}
    hasher = threading.Thread(target=_sha256_into, args=(path, sha), daemon=True)
    hasher.start()
    checked: CheckedBackup | None = None
    try:
        try:
            checked = _open_stream(path, manifest, identities, tmp_dir)
            checked.content_digests = content_digests
            checked.versions_differ = _versions_differ(manifest, local_dump_version) if content_digests else None
            _check_frames(checked)
        finally:
            hasher.join()
        _raise_on_sha_mismatch(path, manifest, sha)
    except BaseException as exc:
        if checked is not None:
            checked.close()
        # A manifest edited by hand or by another tool: a key or value missing or of another type.
        malformed = isinstance(exc, (KeyError, TypeError, AttributeError, ValueError))
        if isinstance(exc, RestoreError) or malformed:
            _raise_on_sha_mismatch(path, manifest, sha)
        if malformed:
            raise RestoreError(
                f"manifest {manifest_path} is malformed ({type(exc).__name__}: {exc}): it is not what mysql_backup "
                "wrote; use the manifest written with this file, or an older backup"
            ) from exc
        raise
    return checked


def _definition_changed(exc: RestoreError) -> bool:
    """Whether a failed re-dump was refused with error 1412 (see ``Restorer._redump``)."""
    return bool(_DEFINITION_CHANGED.search(str(exc.details.get("stderr") or "")))


def _refuse_own_table_names(manifest: dict[str, Any], path: str) -> None:
    """A backup holding a table named like the module's marker or cutover journal cannot be
    restored by it (the restored table would take the place of the marker); said up front,
    before the file is read, instead of an unrelated SQL error half way."""
    tables = manifest.get("tables")
    for own in (MARKER_TABLE, JOURNAL_TABLE) if isinstance(tables, dict) else ():
        if own in tables:
            raise RestoreError(
                f"{path} holds a table named {own}, the name mysql_restore_verify gives its own "
                f"{'marker' if own == MARKER_TABLE else 'cutover journal'} table: rename that table in the "
                "database (it is not the module's) and take a new backup, or restore this one by hand "
                "(zstdcat FILE | mariadb DB)"
            )


def _sha256_into(path: str, out: dict[str, Any]) -> None:
    try:
        out["sha256"] = _dumpfile.file_sha256(path)
    except OSError as exc:
        out["error"] = exc


def _raise_on_sha_mismatch(path: str, manifest: dict[str, Any], sha: dict[str, Any]) -> None:
    if "error" in sha:
        raise RestoreError(f"cannot read {path}: {sha['error']}")
    if sha.get("sha256") != manifest.get("sha256"):
        raise RestoreError(
            f"{path} does not match its manifest (sha256 {sha.get('sha256')} != {manifest.get('sha256')}): the file "
            "is corrupt or was modified; fetch the backup again or use an older one"
        )


def _open_stream(path: str, manifest: dict[str, Any], identities: list[bytes], tmp_dir: str | None) -> CheckedBackup:
    encrypted = bool(manifest.get("encryption"))
    if encrypted != path.endswith(".age"):
        raise RestoreError(f"{path}: the file name and the manifest disagree on whether it is encrypted")
    if not encrypted:
        return CheckedBackup(path, manifest, path, 0, 0)
    if not identities:
        raise RestoreError(f"{path} is age-encrypted: give the age identity (identity option) that decrypts it")
    workdir, lock = _private_workdir(tmp_dir or os.path.dirname(path))
    checked = CheckedBackup(path, manifest, os.path.join(workdir, "stream"), 0, 0, workdir, workdir_lock=lock)
    try:
        _decrypt_to(path, checked.stream_path, identities)
    except BaseException:
        checked.close()
        raise
    return checked


def _private_workdir(preferred: str) -> tuple[str, int]:
    """A new 0700 directory (beside the backup, else in the temporary directory) and its held lock."""
    for base in (preferred, None):
        try:
            path = tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=base)
        except OSError:
            continue
        # The lock file appears under its name already locked: created aside, locked, then
        # renamed. A run cleaning up meanwhile sees no lock file and a fresh directory (in use).
        pending = os.path.join(path, WORKDIR_LOCK + ".new")
        try:
            fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else holds it
            os.rename(pending, os.path.join(path, WORKDIR_LOCK))
        except OSError:
            os.close(fd)
            shutil.rmtree(path, ignore_errors=True)
            continue
        return path, fd
    raise RestoreError("cannot create a private temporary directory for the decrypted stream")


def _workdir_in_use(path: str) -> bool:
    try:
        fd = os.open(os.path.join(path, WORKDIR_LOCK), os.O_RDONLY)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            return time.time() - os.stat(path).st_mtime < WORKDIR_UNLOCKED_GRACE_S
        return False
    except OSError:
        return True  # not ours to judge (another account's directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True  # its run holds the lock
    finally:
        os.close(fd)
    return False


def remove_stale_workdirs(bases: Iterable[str]) -> list[str]:
    """Remove the private directories (decrypted streams, plaintext) of runs that were killed.

    A run removes its own on the way out, but not when it is killed; its lock is then free.
    """
    removed = []
    for base in dict.fromkeys(bases):
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in sorted(names):
            path = os.path.join(base, name)
            if not name.startswith(WORKDIR_PREFIX) or os.path.islink(path) or not os.path.isdir(path):
                continue
            if _workdir_in_use(path):
                continue
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                removed.append(path)
    return removed


def _decrypt_to(path: str, dest: str, identities: list[bytes]) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        try:
            for block in _dumpfile.open_compressed_stream(path, identities):
                out.write(block)
        except _dumpfile.DumpFileError as exc:
            raise RestoreError(f"cannot decrypt: {exc}") from exc
        except OSError as exc:
            raise RestoreError(f"cannot write the decrypted stream to {dest}: {exc.strerror}") from exc


def _check_frames(checked: CheckedBackup) -> None:
    """Every frame decompresses completely to its recorded size, the frames tile the stream, the trailer is there.

    The same checks as ``_dumpfile.iter_frames``, but streamed in READ_BLOCK steps so a 32 MB
    frame is never held whole: the module's memory stays far below its 200 MB budget. The
    decompressed stream is parsed again as mysql_backup parsed the dump: each table's rows
    must be the manifest's, and the SHA-256 of its data region is what verification
    compares a re-dump with (``CheckedBackup.data_digest``).
    """
    manifest = checked.manifest
    sections = manifest.get("sections") or {}
    if "header" not in sections or "footer" not in sections:
        raise RestoreError(f"{checked.path}: the manifest has no header/footer section; it is not a complete backup")
    damaged = "the backup is damaged: fetch it again or use an older one"
    recorded_sha256 = any(
        str(obj.get("data_digest") or "").startswith("sha256:") for obj in (manifest.get("tables") or {}).values()
    )
    if checked.content_digests or recorded_sha256:
        checked.content_digests = True
        contents = _dumpfile.DumpParser(
            _dumpfile.NullFrameWriter(), digest=True, layout_digest=checked.versions_differ is not None
        )
    else:
        # The frame checksums, checked below, stand for the data digests: nothing is hashed.
        algorithm = _dumpfile.checksum_algorithm(manifest.get("compression"))
        contents = _dumpfile.DumpParser(_dumpfile.NullFrameWriter(algorithm), digest=False)
    try:
        _check_all_frames(checked, contents, damaged)
        contents.finish()
    except _dumpfile.DumpFileError as exc:
        contents.abort()
        raise RestoreError(f"{checked.path}: cannot parse the dump inside: {exc}; {damaged}") from exc
    except BaseException:
        contents.abort()
        raise
    expected = manifest.get("uncompressed_size")
    if expected is not None and expected != checked.uncompressed:
        raise RestoreError(f"{checked.path}: decompresses to {checked.uncompressed} bytes, manifest says {expected}")
    checked.contents = contents
    found = contents.tables()
    for name, obj in (manifest.get("tables") or {}).items():
        if obj.get("kind") == "table":
            problem = _table_entry_problem(checked, found.get(name), obj)
            if problem:
                raise RestoreError(
                    f"{checked.path}: table {name!r} {problem}: the manifest does not belong to this file; {damaged}"
                )


def _versions_differ(manifest: dict[str, Any], local_version: str) -> tuple[str, str] | None:
    """(the backup's, this host's) dump program release when both are known, MariaDB's, and differ.

    Releases lay rows out differently (MariaDB 10.5: an INSERT on one line; 10.11: a row per line),
    so a re-dump matches the file's bytes only without the line layout.
    """
    dump = manifest.get("dump") or {}
    backup_version = " ".join(str(dump.get("version") or "").split())
    local_version = " ".join(local_version.split())
    if dump.get("dialect") != "mariadb" or not backup_version or not local_version or backup_version == local_version:
        return None
    return backup_version, local_version


def _table_entry_problem(checked: CheckedBackup, found: _dumpfile.DumpObject | None, obj: dict[str, Any]) -> str:
    """How the manifest's rows and data digest of one table differ from the file ("" when they do not)."""
    if found is None:
        return "is in the manifest but not in the file"
    if found.rows != obj.get("rows"):
        return f"holds {found.rows} rows in the file but {obj.get('rows')} in the manifest"
    recorded = obj.get("data_digest")
    if recorded is None:
        return ""
    if str(recorded).startswith("sha256:"):
        actual = found.data_digest()
    else:
        algorithm = _dumpfile.checksum_algorithm(checked.manifest.get("compression"))
        actual = _dumpfile.frames_digest(algorithm, checked.frame_checksums.get(found.name, []))
    return "" if actual == recorded else f"has data digest {actual} in the file but {recorded} in the manifest"


def _check_all_frames(checked: CheckedBackup, contents: _dumpfile.DumpParser, damaged: str) -> None:
    manifest = checked.manifest
    position = 0
    with open(checked.stream_path, "rb") as handle:
        for frame in _dumpfile.all_frames(manifest):
            label = f"{frame['part']} of {frame['object']}" if frame.get("object") else frame["part"]
            where = f"{checked.path}: frame at offset {frame['offset']} ({label})"
            if frame["offset"] != position:
                raise RestoreError(
                    f"{checked.path}: manifest frames do not tile the file at offset {position}; {damaged}"
                )
            size, tail, checksum = _check_one_frame(
                handle, frame, manifest["compression"], where, damaged, contents.feed
            )
            holds = contents.current_object
            if holds != frame.get("object"):
                # A restore loads each table from the frames the manifest gives it: frames of another
                # table would create and fill that one instead, found only after loading everything.
                held = f"table or view {holds!r}" if holds is not None else "no table (a database-wide section)"
                raise RestoreError(
                    f"{where} holds {held} in the file: the manifest does not say where its tables are "
                    f"(frames moved, or the manifest edited); {damaged}"
                )
            if frame.get("object") is not None and frame["part"] in _dumpfile.DATA_PARTS:
                checked.frame_checksums.setdefault(frame["object"], []).append(checksum)
            if size != frame["size"]:
                raise RestoreError(
                    f"{where} decompresses to {size} bytes, the manifest says {frame['size']}; {damaged}"
                )
            if frame.get("object") is None and frame["part"] == "footer" and _dumpfile._COMPLETED not in tail:
                raise RestoreError(f"{checked.path}: the dump trailer '-- Dump completed' is missing: the dump was cut")
            position += frame["length"]
            checked.frames += 1
            checked.uncompressed += size
        if handle.read(1):
            raise RestoreError(f"{checked.path} has bytes after the last frame the manifest knows; {damaged}")


def _check_one_frame(
    handle: Any,
    frame: dict[str, Any],
    compression: str,
    where: str,
    damaged: str,
    sink: Callable[[bytes], None] | None = None,
) -> tuple[int, bytes, str | None]:
    """Decompress one frame from the current position; returns (size, its last bytes, its checksum).

    Decompression checks the frame's own checksum (zstd's XXH64, gzip's CRC-32); the checksum
    the manifest recorded for the frame must be the one in its trailer. ``sink`` gets the
    decompressed bytes.
    """
    dobj = _frame_decompressor(compression)
    left = frame["length"]
    size = 0
    tail = b""
    raw_tail = b""
    try:
        while left > 0:
            raw = handle.read(min(READ_BLOCK, left))
            if not raw:
                raise RestoreError(f"{where} is truncated: the file ends inside it; {damaged}")
            left -= len(raw)
            raw_tail = (raw_tail + raw[-8:])[-8:]
            out = dobj.decompress(raw) if dobj is not None else raw
            size += len(out)
            tail = (tail + out[-256:])[-256:]
            if sink is not None and out:
                sink(out)
        if dobj is not None and not _dumpfile.frame_complete(dobj):
            raise RestoreError(f"{where} is corrupt: the frame is truncated or has trailing bytes; {damaged}")
    except (RestoreError, _dumpfile.DumpFileError):
        raise
    except Exception as exc:  # zstd.ZstdError, zlib.error: the frame does not decompress
        raise RestoreError(f"{where} is corrupt: {exc}; {damaged}") from exc
    checksum = _dumpfile.frame_checksum(compression, raw_tail)
    recorded = frame.get("checksum")
    if recorded is not None and recorded != checksum:
        raise RestoreError(
            f"{where}: its checksum {checksum} is not the {recorded} the manifest recorded: "
            f"the manifest does not belong to this file; {damaged}"
        )
    return size, tail, checksum


def _frame_decompressor(compression: str) -> Any:
    if compression == "zstd":
        if not HAS_ZSTANDARD:
            raise RestoreError("the zstandard Python library is required to read zstd backups")
        return zstandard.ZstdDecompressor().decompressobj()
    if compression == "gzip":
        return zlib.decompressobj(31)
    if compression == "none":
        return None
    raise RestoreError(f"unknown compression {compression!r} in the manifest")


# --- reading frames ----------------------------------------------------------------------------


def read_frame(stream_path: str, frame: dict[str, Any], compression: str) -> Iterator[bytes]:
    """Decompressed bytes of one frame, streamed (memory stays at a block or two)."""
    dobj = _frame_decompressor(compression)
    with open(stream_path, "rb") as handle:
        handle.seek(frame["offset"])
        left = frame["length"]
        while left > 0:
            raw = handle.read(min(READ_BLOCK, left))
            if not raw:
                raise RestoreError(f"{stream_path}: unexpected end of file in frame at offset {frame['offset']}")
            left -= len(raw)
            out = dobj.decompress(raw) if dobj is not None else raw
            if out:
                yield out
        if dobj is not None and compression == "gzip":
            tail = dobj.flush()
            if tail:
                yield tail


def unqualify_triggers(sql: bytes) -> bytes:
    """Drop the schema qualifiers of trigger names and their tables in ``sql``.

    SHOW CREATE TRIGGER (and so the dump) keeps a trigger as it was written, e.g.
    ``CREATE TRIGGER app.t_audit BEFORE INSERT ON app.t``: run as is in a scratch, shadow or
    other target database, it would create the trigger on ``app.t``, the live table. Unqualified,
    it is created on the table of the session's database, which is the one being restored.
    """
    return _dumpfile.TRIGGER_HEADER.sub(lambda m: m.group(1) + m.group(3) + m.group(4) + m.group(6), sql)


def disable_events(sql: bytes) -> bytes:
    """Create the events of ``sql`` disabled.

    A scratch copy is for checking, not for running the production's jobs: with the event
    scheduler on (MySQL 8's default), an enabled event would run there, and one whose body names
    its schema (``DELETE FROM app.sessions``) would change the live database.
    """
    return _EVENT_ENABLED.sub(lambda m: m.group(1) + b"DISABLE", sql)


def strip_definers(sql: bytes) -> bytes:
    """Remove ``DEFINER=user@host`` clauses so objects are created as the restoring account."""
    return _DEFINER.sub(b"", sql)


def split_secondary_keys(schema_sql: bytes) -> tuple[bytes, bytes | None]:
    """Split a CREATE TABLE into (CREATE without secondary KEY/UNIQUE KEY lines, ALTER … ADD them).

    Tables with foreign keys, FULLTEXT/SPATIAL indexes or partitions are left alone, and so is
    any key holding the AUTO_INCREMENT column (MySQL requires that column to be indexed).
    """
    start = schema_sql.find(b"CREATE TABLE ")
    end = schema_sql.find(b"\n) ", start)
    if start < 0 or end < 0:
        return schema_sql, None
    body = schema_sql[start:end]
    if b"\n  CONSTRAINT " in body or b"FULLTEXT " in body or b"SPATIAL " in body or b"PARTITION " in schema_sql[end:]:
        return schema_sql, None
    name_end = body.find(b" (\n")
    if name_end < 0:
        return schema_sql, None
    table = body[len(b"CREATE TABLE ") : name_end]
    auto = _AUTO_INC_COLUMN.search(body)
    lines = body[name_end + 3 :].split(b"\n")
    kept: list[bytes] = []
    moved: list[bytes] = []
    for line in lines:
        if _KEY_LINE.match(line) and not (auto and auto.group(1) in line[line.find(b"(") :]):
            moved.append(line.strip().rstrip(b","))
        else:
            kept.append(line)
    if not moved or not kept:
        return schema_sql, None
    kept[-1] = kept[-1].rstrip(b",")
    create = schema_sql[:start] + body[: name_end + 3] + b"\n".join(kept) + schema_sql[end:]
    alter = b"ALTER TABLE " + table + b" " + b", ".join(b"ADD " + m for m in moved) + b";\n"
    return create, alter


# --- client sessions ---------------------------------------------------------------------------


class ClientRunner:
    """Runs SQL through the ``mariadb``/``mysql`` client, one process per task, credentials in a file."""

    def __init__(
        self, program: str, option_file: str, prelude: bytes, conn_params: ConnectionParams | None = None
    ) -> None:
        self.program = program
        self.option_file = option_file
        self.conn_params = conn_params
        self.prelude = prelude
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self.cancelled = False
        self.last_end = 0.0

    def run(self, database: str, chunks: Iterable[bytes], what: str) -> int:
        """Feed ``chunks`` to a client session on ``database``; returns bytes sent."""
        cmd = [
            *client_command(self.program, self.option_file, self.conn_params),
            "--max-allowed-packet=1073741824",
            f"--database={database}",
        ]
        sent = 0
        with tempfile.TemporaryFile() as errfile:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=errfile,
                env=client_environment(self.option_file),
            )
            with self._lock:
                if self.cancelled:
                    proc.kill()
                self._procs.add(proc)
            if proc.stdin is None:  # pragma: no cover - stdin=PIPE always gives one
                raise RestoreError(f"could not open a pipe to {self.program}")
            try:
                try:
                    proc.stdin.write(self.prelude)
                    for chunk in chunks:
                        proc.stdin.write(chunk)
                        sent += len(chunk)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass  # the client stopped reading: its exit code and stderr say why
                rc = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                with self._lock:
                    self._procs.discard(proc)
                    self.last_end = max(self.last_end, time.monotonic())
            if rc != 0:
                stderr = program_errors(errfile)
                raise RestoreError(
                    f"{os.path.basename(self.program)} failed (exit code {rc}) while restoring {what} into "
                    f"{database!r}: {stderr or 'no error output'}",
                    rc=rc,
                    stderr=stderr,
                )
        return sent

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for proc in self._procs:
                with contextlib.suppress(OSError):
                    proc.kill()


def session_prelude(header: bytes, write_binlog: bool) -> bytes:
    """What every client session runs first: binlog off (unless asked), then the dump's header."""
    prefix = b"" if write_binlog else b"SET SESSION sql_log_bin=0;\n"
    return prefix + header


# --- the task scheduler --------------------------------------------------------------------------


@dataclass
class Task:
    key: str
    run: Callable[[], None]
    deps: set[str] = field(default_factory=set)
    weight: int = 0


class TaskPool:
    """Runs tasks on ``workers`` threads as their dependencies complete, heaviest first.

    The first failure stops scheduling, cancels running client sessions and is re-raised.
    """

    def __init__(self, workers: int, on_cancel: Callable[[], None]) -> None:
        self.workers = max(1, workers)
        self.on_cancel = on_cancel

    def run(self, tasks: list[Task]) -> None:
        pending = {t.key: t for t in tasks}
        done: set[str] = set()
        running: set[str] = set()
        errors: list[BaseException] = []
        cond = threading.Condition()
        for task in tasks:
            unknown = task.deps - pending.keys()
            if unknown:
                raise ValueError(f"task {task.key} depends on unknown tasks {sorted(unknown)}")

        def next_task() -> Task | None:
            ready = [t for t in pending.values() if t.deps <= done]
            if not ready:
                return None
            task = max(ready, key=lambda t: t.weight)
            del pending[task.key]
            running.add(task.key)
            return task

        def worker() -> None:
            while True:
                with cond:
                    task = None
                    while not errors and pending:
                        task = next_task()
                        if task is not None or not running:
                            break
                        cond.wait()
                    if task is None:
                        if pending and not errors and not running:
                            errors.append(RuntimeError("task dependencies form a cycle"))
                        cond.notify_all()
                        return
                try:
                    task.run()
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    with cond:
                        errors.append(exc)
                        running.discard(task.key)
                        cond.notify_all()
                    self.on_cancel()
                    return
                with cond:
                    running.discard(task.key)
                    done.add(task.key)
                    cond.notify_all()

        threads = [threading.Thread(target=worker, daemon=True) for _i in range(min(self.workers, len(tasks)) or 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]


# --- server-side helpers ----------------------------------------------------------------------


def query(connection: Any, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def schema_exists(connection: Any, name: str) -> bool:
    return bool(query(connection, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,)))


def schema_objects(connection: Any, name: str) -> dict[str, str]:
    """Tables and views of a schema: name -> 'table' | 'view' (our marker/journal tables excluded)."""
    rows = query(
        connection,
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (name,),
    )
    return {r[0]: "view" if r[1] == "VIEW" else "table" for r in rows if r[0] not in (MARKER_TABLE, JOURNAL_TABLE)}


def disable_binlog(connection: Any, write_binlog: bool) -> None:
    """``SET SESSION sql_log_bin=0`` or a clear message when the account may not."""
    if write_binlog:
        return
    try:
        query(connection, "SET SESSION sql_log_bin=0")
    except Exception as exc:
        raise RestoreError(
            f"the account may not SET sql_log_bin=0 ({exc}); a verification restore must not replicate to replicas. "
            "Grant it BINLOG ADMIN (MariaDB 10.5+) or SUPER / SYSTEM_VARIABLES_ADMIN (MySQL), or set "
            "write_binlog: true if replicating the restore is what you want"
        ) from exc


@contextlib.contextmanager
def schema_guard(connection: Any, schema: str) -> Iterator[None]:
    """Hold the named lock that marks ``schema`` as in use by this run."""
    got = query(connection, "SELECT GET_LOCK(%s, 0)", (lock_name(schema),))[0][0]
    if got != 1:
        raise RestoreError(f"another run is using database {schema!r} (its lock is held); wait for it to finish")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            query(connection, "SELECT RELEASE_LOCK(%s)", (lock_name(schema),))


def create_work_schema(connection: Any, schema: str, source: str, role: str) -> None:
    """Create the scratch/shadow database with its marker table (what a later cleanup looks for)."""
    quoted = quote_identifier(schema)
    try:
        query(connection, f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    except Exception as exc:
        code = _error_code(exc)
        if code == 1007:
            raise RestoreError(f"database {schema!r} already exists; choose another scratch_database") from exc
        if code in (1044, 1045, 1227):
            raise RestoreError(
                f"the account may not create database {schema!r} ({exc}); it needs CREATE, DROP, INSERT, "
                "ALTER, INDEX, CREATE VIEW, TRIGGER, CREATE ROUTINE, EVENT on the scratch databases (see the docs)"
            ) from exc
        raise RestoreError(f"cannot create database {schema!r}: {exc}") from exc
    query(
        connection,
        f"CREATE TABLE {quoted}.{quote_identifier(MARKER_TABLE)} (source varchar(64) NOT NULL, role varchar(16) "
        "NOT NULL, created_at datetime NOT NULL) ENGINE=InnoDB",
    )
    query(
        connection,
        f"INSERT INTO {quoted}.{quote_identifier(MARKER_TABLE)} VALUES (%s, %s, UTC_TIMESTAMP())",
        (source, role),
    )


def drop_schema(connection: Any, schema: str) -> None:
    query(connection, f"DROP DATABASE IF EXISTS {quote_identifier(schema)}")


# --- leftovers of killed runs -----------------------------------------------------------------


def name_pattern(namer: Callable[[str, str], str], database: str) -> str:
    """A regex matching the names ``namer`` gives ``database`` at any timestamp (it always ends the name)."""
    sample = namer(database, "00000000T000000Z")
    return re.escape(sample[: -len("00000000T000000Z")]) + _TS


def _leftover_candidates(connection: Any, database: str) -> list[tuple[str, str]]:
    """(schema, role) of work schemas for ``database``: marker table, or a default name."""
    rows = query(
        connection,
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_NAME IN (%s, %s)",
        (MARKER_TABLE, JOURNAL_TABLE),
    )
    old_pattern = name_pattern(old_name, database)
    found: dict[str, str] = {}
    for schema, table in rows:
        if table == MARKER_TABLE:
            marker = query(
                connection,
                f"SELECT source, role FROM {quote_identifier(schema)}.{quote_identifier(MARKER_TABLE)} LIMIT 1",
            )
            if marker and marker[0][0] == database:
                found[schema] = marker[0][1]
        elif re.fullmatch(old_pattern, schema):
            found.setdefault(schema, "old")
    work_pattern = f"{name_pattern(scratch_name, database)}|{name_pattern(shadow_name, database)}"
    for (schema,) in query(connection, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA"):
        if schema in found:
            continue
        if re.fullmatch(work_pattern, schema):
            found[schema] = "verify" if schema.startswith("_verify_") else "restore"
        elif re.fullmatch(old_pattern, schema) and not schema_objects(connection, schema):
            found[schema] = "old"  # created by a cutover killed before it wrote its journal
    return sorted(found.items())


def cleanup_leftovers(
    connection: Any, client: Callable[[str, list[bytes], str], Any], database: str, warnings: list[str]
) -> list[str]:
    """Drop work schemas of killed runs (lock free) and undo a cutover killed before its RENAME."""
    cleaned: list[str] = []
    for schema, role in _leftover_candidates(connection, database):
        if query(connection, "SELECT IS_FREE_LOCK(%s)", (lock_name(schema),))[0][0] != 1:
            continue  # a run in progress
        if role == "old":
            if _finish_interrupted_cutover(connection, client, schema, warnings):
                cleaned.append(schema)
            continue
        drop_schema(connection, schema)
        cleaned.append(schema)
    return cleaned


def _finish_interrupted_cutover(
    connection: Any, client: Callable[[str, list[bytes], str], Any], schema: str, warnings: list[str]
) -> bool:
    """An old schema whose journal has no 'done' row belongs to a cutover that was killed."""
    journal = []
    if query(
        connection,
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (schema, JOURNAL_TABLE),
    ):
        journal = query(
            connection, f"SELECT phase, target, body FROM {quote_identifier(schema)}.{JOURNAL_TABLE} ORDER BY id"
        )
    phases = {row[0] for row in journal}
    if "done" in phases:
        return False
    if not journal:
        # Killed before anything was journaled, so before anything of the target was changed.
        if schema_objects(connection, schema):
            return False
        drop_schema(connection, schema)
        return True
    target = journal[0][1]
    if "renamed" not in phases:
        # The RENAME never happened: the target still has its tables; put back what we dropped. Only
        # triggers and views are dropped before it (routines and events after), and a journaled
        # routine may not even be readable SQL (journals of earlier releases).
        for phase, _target, body in journal:
            if phase in ("undo:TRIGGER", "undo:VIEW"):
                try:
                    client(
                        target,
                        [_undo_body(phase, body)],
                        f"the dropped {phase[5:].lower()} (undoing an interrupted cutover)",
                    )
                except RestoreError as exc:
                    if "already exists" not in str(exc):
                        raise
        if not schema_objects(connection, schema):
            drop_schema(connection, schema)
        return True
    warnings.append(
        f"a restore of {target!r} was interrupted after its cutover (journal in {schema!r}): the target has the "
        "restored tables but some of their triggers, views, routines or events may be missing; restore again "
        f"to recreate them. The previous tables stay in {schema!r} (now under keep_old)"
    )
    query(
        connection,
        f"INSERT INTO {quote_identifier(schema)}.{JOURNAL_TABLE} (phase, target, body) VALUES ('done', %s, '')",
        (target,),
    )
    return True


def old_schemas(connection: Any, database: str) -> list[str]:
    """Completed ``<db>_old_<ts>`` schemas of ``database``, oldest first.

    The name is cut to fit 64 characters, so databases sharing a long prefix share the name pattern:
    the journal's target says whose copy it is.
    """
    pattern = name_pattern(old_name, database)
    names = sorted(
        r[0]
        for r in query(connection, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        if re.fullmatch(pattern, r[0])
    )
    done = []
    for name in names:
        with contextlib.suppress(Exception):
            if query(
                connection,
                f"SELECT 1 FROM {quote_identifier(name)}.{JOURNAL_TABLE} WHERE phase = 'done' AND target = %s",
                (database,),
            ):
                done.append(name)
    return done


# --- restore into a scratch / shadow database ------------------------------------------------


@dataclass
class RestoreOptions:
    workers: int = 2
    strip_definers: bool = False
    write_binlog: bool = False
    verify: str = "content"  # rows | content
    tables: list[str] | None = None
    with_events: bool = True
    with_routines: bool = True


@dataclass
class TableResult:
    rows_expected: int
    rows_restored: int | None = None
    digest_ok: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rows_expected": self.rows_expected, "rows_restored": self.rows_restored, "digest_ok": self.digest_ok}


def selected_objects(manifest: dict[str, Any], tables: list[str] | None) -> dict[str, dict[str, Any]]:
    objects = manifest.get("tables") or {}
    if not tables:
        return dict(objects)
    unknown = [t for t in tables if t not in objects]
    if unknown:
        raise RestoreError(
            f"tables not in this backup: {', '.join(unknown)}; it has {', '.join(sorted(objects)) or 'no tables'}"
        )
    return {name: objects[name] for name in objects if name in tables}


class Restorer:
    """Loads a checked backup into ``schema`` and verifies it against the manifest."""

    def __init__(
        self,
        conn_params: ConnectionParams,
        client_program: str,
        dump_program: str,
        backup: CheckedBackup,
        options: RestoreOptions,
    ) -> None:
        self.conn_params = conn_params
        self.client_program = client_program
        self.dump_program = dump_program
        self.backup = backup
        self.manifest = backup.manifest
        self.options = options
        self.compression = self.manifest["compression"]
        self.objects = selected_objects(self.manifest, options.tables)
        self.bytes = 0
        self.results: dict[str, TableResult] = {}
        self.mismatches: list[str] = []
        self.warnings: list[str] = []
        self.restore_s = 0.0
        self.verify_s = 0.0
        self._lock = threading.Lock()
        self._header = b"".join(read_frame(backup.stream_path, self.manifest["sections"]["header"], self.compression))
        self.runner: ClientRunner | None = None

    # pieces of SQL

    def _frames(self, name: str, parts: tuple[str, ...]) -> list[dict[str, Any]]:
        return [f for f in self.objects[name].get("frames", []) if f["part"] in parts]

    def _ddl(self, frames: list[dict[str, Any]]) -> bytes:
        text = b"".join(b"".join(read_frame(self.backup.stream_path, f, self.compression)) for f in frames)
        source = str(self.manifest.get("database") or "")
        if source and b"ALTER DATABASE" in text:
            # mariadb-dump names the source database here; unnamed, it applies to the session's one.
            text = text.replace(
                b"ALTER DATABASE " + quote_identifier(source).encode("utf-8") + b" ", b"ALTER DATABASE "
            )
        return strip_definers(text) if self.options.strip_definers else text

    def _section(self, key: str) -> bytes:
        section = (self.manifest.get("sections") or {}).get(key)
        return self._ddl([section]) if section else b""

    def _stream(self, frames: list[dict[str, Any]]) -> Iterator[bytes]:
        for frame in frames:
            for block in read_frame(self.backup.stream_path, frame, self.compression):
                with self._lock:
                    self.bytes += len(block)
                yield block

    def trigger_sql(self, name: str) -> bytes:
        return unqualify_triggers(self._ddl(self._frames(name, ("triggers",))))

    def trigger_names(self, name: str) -> set[str]:
        """The triggers of table ``name`` in the backup, read from the file itself (older manifests
        recorded a schema-qualified trigger under its schema's name)."""
        return set(_dumpfile.trigger_names(self.trigger_sql(name)))

    def _create_views(self, schema: str, views: bytes) -> None:
        try:
            self.active_runner().run(schema, [views], "the views")
        except RestoreError as exc:
            missing = _MISSING_TABLE.search(str(exc.details.get("stderr") or ""))
            if not (self.options.tables and missing):
                raise
            names = sorted(n for n, o in self.objects.items() if o.get("kind") == "view")
            read = sorted(self._read_by_views() - set(self.objects)) or [missing.group(1)]
            raise RestoreError(
                f"the views in tables ({', '.join(names)}) read {missing.group(1)!r}, which is not in tables: a "
                "selective restore creates a view from the tables restored with it, so add the tables it reads "
                f"(here: {', '.join(read)}), or restore the view by hand. Nothing was changed in the target",
                **exc.details,
            ) from exc

    def _read_by_views(self) -> set[str]:
        """Objects of the backup that the selected views' definitions name (for the message above)."""
        views = [n for n, o in self.objects.items() if o.get("kind") == "view"]
        text = self._ddl([f for n in views for f in self._frames(n, ("view_final",))])
        known = set(self.manifest.get("tables") or {})
        return {
            n for n in (_dumpfile._unquote(b"`" + m.group(1) + b"`") for m in _BACKTICKED.finditer(text)) if n in known
        }

    def referenced_tables(self, name: str) -> set[str]:
        """Tables of the same database that the foreign keys of table ``name`` reference, per the backup."""
        ddl = self._ddl(self._frames(name, ("schema",)))
        return {_dumpfile._unquote(m.group(1)) for m in _REFERENCES.finditer(ddl) if not m.group(2)}

    def view_sql(self) -> bytes:
        views = [n for n, o in self.objects.items() if o.get("kind") == "view"]
        stubs = [f for n in views for f in self._frames(n, ("view_stub",))]
        finals = [f for n in views for f in self._frames(n, ("view_final",))]
        return self._ddl(stubs) + self._ddl(finals)

    def routines_sql(self) -> bytes:
        return self._section("routines") if self.options.with_routines else b""

    def events_sql(self) -> bytes:
        return self._section("events")

    # the plan

    def _tasks(self, schema: str, with_triggers: bool, with_views: bool) -> list[Task]:
        runner = self.active_runner()
        tasks: list[Task] = []
        schema_keys: list[str] = []
        for name, obj in self.objects.items():
            if obj.get("kind") != "table":
                continue
            create, alter = split_secondary_keys(self._ddl(self._frames(name, ("schema",))))
            label = f"table {name!r}"
            schema_keys.append(f"schema:{name}")
            tasks.append(
                Task(f"schema:{name}", _bind(runner.run, schema, [create], f"the structure of {label}"), weight=1 << 40)
            )
            data = self._frames(name, ("data",))
            size = sum(f["size"] for f in data)
            data_keys = []
            if obj.get("primary_key"):
                groups = [[f] for f in data]
            else:
                groups = [data] if data else []
            for i, group in enumerate(groups):
                key = f"data:{name}:{i}"
                data_keys.append(key)
                tasks.append(
                    Task(
                        key,
                        _bind_stream(runner.run, schema, self._stream, group, f"the data of {label}"),
                        {f"schema:{name}"},
                        sum(f["size"] for f in group),
                    )
                )
            after_data = {f"schema:{name}", *data_keys}
            loaded = set(after_data)
            if alter:
                tasks.append(
                    Task(
                        f"keys:{name}",
                        _bind(runner.run, schema, [alter], f"the indexes of {label}"),
                        after_data,
                        size // 4,
                    )
                )
                after_data = after_data | {f"keys:{name}"}
            if with_triggers and self._frames(name, ("triggers",)):
                tasks.append(
                    Task(
                        f"triggers:{name}",
                        _bind(runner.run, schema, [self.trigger_sql(name)], f"the triggers of {label}"),
                        after_data,
                    )
                )
            tasks.append(
                # Verification needs the rows, not the secondary indexes: it re-dumps while they are built.
                Task(f"verify:{name}", _bind_call(self._verify_table, schema, name, obj), loaded, size // 2)
            )
        if with_views:
            views = self.view_sql()
            if views:
                tasks.append(Task("views", _bind_call(self._create_views, schema, views), set(schema_keys)))
        routines = self.routines_sql()
        if routines.strip():
            tasks.append(Task("routines", _bind(runner.run, schema, [routines], "the routines")))
        return tasks

    def active_runner(self) -> ClientRunner:
        if self.runner is None:
            raise RestoreError("internal error: the Restorer is used outside its 'with' block")
        return self.runner

    def __enter__(self) -> Restorer:
        self._stack = contextlib.ExitStack()
        option_file = self._stack.enter_context(client_option_file(self.conn_params))
        self.runner = ClientRunner(
            self.client_program,
            option_file,
            session_prelude(self._header, self.options.write_binlog),
            self.conn_params,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.runner is not None:
            self.runner.cancel()
        self._stack.close()

    def restore(self, schema: str, with_triggers: bool = True, with_views: bool = True) -> None:
        """Load and verify; fills ``results`` and ``mismatches``. Raises RestoreError on load errors."""
        runner = self.active_runner()
        started = time.monotonic()
        self._prepare_verify()
        tasks = self._tasks(schema, with_triggers, with_views)
        TaskPool(self.options.workers, runner.cancel).run(tasks)
        events = self.events_sql() if self.options.with_events else b""
        if events.strip():
            # Only verify loads events here (a restore creates them as they were, at the swap): disabled,
            # and after the data is verified.
            runner.run(schema, [disable_events(events)], "the events (disabled)")
        # Wall time until the last load session ended (verification overlaps it and is summed apart).
        self.restore_s = max(runner.last_end, started) - started

    # verification

    def _prepare_verify(self) -> None:
        dialect = (self.manifest.get("dump") or {}).get("dialect")
        self._digest = self.options.verify == "content" and dialect == "mariadb"
        if self.options.verify == "content" and not self._digest:
            self.warnings.append(
                f"the backup was written by {self.manifest.get('dump', {}).get('program', 'an unknown program')} "
                f"({dialect or 'unknown'} dialect), whose line layout {os.path.basename(self.dump_program)} cannot "
                "reproduce: tables were verified by exact row counts only, not by content digest"
            )
        options = list((self.manifest.get("dump") or {}).get("options") or _dumpfile.DUMP_OPTIONS)
        self._dump_options = [o for o in options if not o.startswith(_SKIP_REDUMP_OPTIONS)]
        # Another release of the dump program wrote the backup: compared without the line layout.
        self._versions_differ = self.backup.versions_differ if self._digest else None

    def _verify_table(self, schema: str, name: str, obj: dict[str, Any]) -> None:
        started = time.monotonic()
        expected = int(obj.get("rows", 0))
        result = TableResult(expected)
        has_data = any(f["part"] == "data_head" for f in obj.get("frames", []))
        if obj.get("sequence"):
            # A sequence has no rows to count (it reads as one row): its next value is what the backup holds.
            problem = self._sequence_problem(schema, name)
            with self._lock:
                self.results[name] = TableResult(expected, rows_restored=expected)
                if problem:
                    self.mismatches.append(f"sequence {name}: {problem}")
                self.verify_s += time.monotonic() - started
            return
        if self._digest and has_data:
            parsed = self._redump(schema, name, layout=self._versions_differ is not None)
            table = parsed.tables().get(name)
            result.rows_restored = table.rows if table else 0
            if self._versions_differ is not None:
                got = table.layout_data_digest() if table else None
                result.digest_ok = got is not None and got == self.backup.layout_digest(name)
            else:
                got = "sha256:" + (table.digest.hexdigest() if table and table.digest else "")
                # The data region as stored in the file, digested by check_backup (which also proved
                # the manifest's digest, frame checksums and the file's SHA-256 to match the file).
                result.digest_ok = got == self.backup.data_digest(name)
        else:
            result.rows_restored = self._count(schema, name)
        problems = []
        if result.rows_restored != expected:
            problems.append(f"{result.rows_restored} rows restored, {expected} in the backup")
        if result.digest_ok is False:
            problems.append("content digest differs from the backup's")
            if self._versions_differ is not None:
                problems.append(
                    f"compared without line breaks, as the backup was written by {self._versions_differ[0]!r} and "
                    f"this host has {self._versions_differ[1]!r}; if these releases also write values differently, "
                    "verify: rows compares row counts only"
                )
        with self._lock:
            self.results[name] = result
            if problems:
                self.mismatches.append(f"table {name}: {'; '.join(problems)}")
            self.verify_s += time.monotonic() - started

    def _sequence_problem(self, schema: str, name: str) -> str:
        """How the restored sequence ``name`` differs from the backup's ("" when it does not)."""
        from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import connect  # noqa: PLC0415

        match = _SETVAL.search(self._ddl(self._frames(name, ("schema",))))
        connection = connect(self.conn_params)
        try:
            kind = query(
                connection,
                "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (schema, name),
            )
            if not kind or kind[0][0] != "SEQUENCE":
                return "not restored as a sequence"
            if match is None:
                return ""
            restored = int(
                query(
                    connection,
                    f"SELECT next_not_cached_value FROM {quote_identifier(schema)}.{quote_identifier(name)}",
                )[0][0]
            )
        finally:
            connection.close()
        expected = int(match.group(1))
        return "" if restored == expected else f"next value {restored} restored, {expected} in the backup"

    def _count(self, schema: str, name: str) -> int:
        from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import connect  # noqa: PLC0415

        connection = connect(self.conn_params)
        try:
            return int(
                query(connection, f"SELECT COUNT(*) FROM {quote_identifier(schema)}.{quote_identifier(name)}")[0][0]
            )
        finally:
            connection.close()

    def _redump(self, schema: str, name: str, layout: bool = False) -> _dumpfile.DumpParser:
        """Re-dump table ``name`` of ``schema`` through a parser (which returns its digests).

        The re-dump runs while the table's secondary indexes are added (``_tasks``). When that
        ALTER commits after the dump program opened its snapshot and before it read the table,
        the server refuses the read with error 1412 ("Table definition has changed, please retry
        transaction"): the data is complete, so the re-dump is retried, as the server asks.
        """
        for attempt in range(1, REDUMP_ATTEMPTS):
            try:
                return self._redump_once(schema, name, layout)
            except RestoreError as exc:
                if self.active_runner().cancelled or not _definition_changed(exc):
                    raise
                time.sleep(0.05 * attempt)
        return self._redump_once(schema, name, layout)  # the last attempt: its error is the task's

    def _redump_once(self, schema: str, name: str, layout: bool) -> _dumpfile.DumpParser:
        runner = self.active_runner()
        cmd = [
            *client_command(self.dump_program, runner.option_file, self.conn_params),
            *self._dump_options,
            *VERIFY_DUMP_EXTRA,
            "--",
            schema,
            name,
        ]
        parser = _dumpfile.DumpParser(_dumpfile.NullFrameWriter(), layout_digest=layout)
        with tempfile.TemporaryFile() as errfile:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=errfile,
                stdin=subprocess.DEVNULL,
                env=client_environment(runner.option_file),
            )
            if proc.stdout is None:  # pragma: no cover - stdout=PIPE always gives one
                raise RestoreError(f"could not read from {self.dump_program}")
            try:
                while True:
                    block = proc.stdout.read(REDUMP_BLOCK)
                    if not block:
                        break
                    parser.feed(block)
            finally:
                proc.stdout.close()
                if proc.poll() is None and runner.cancelled:
                    proc.kill()
            rc = proc.wait()
            if rc != 0:
                stderr = program_errors(errfile)
                raise RestoreError(
                    f"{os.path.basename(self.dump_program)} failed (exit code {rc}) re-dumping {schema}.{name} "
                    f"for verification: {stderr or 'no error output'}",
                    rc=rc,
                    stderr=stderr,
                )
        parser.finish()
        return parser

    def verify_objects(self, connection: Any, schema: str, with_views: bool, with_routines: bool) -> None:
        """Views, triggers, routines and events in ``schema`` against the manifest."""
        have = schema_objects(connection, schema)
        for name, obj in self.objects.items():
            kind = obj.get("kind")
            if kind == "view" and not with_views:
                continue
            if have.get(name) != kind:
                self.mismatches.append(f"{kind} {name}: missing after the restore")
        triggers = query(
            connection,
            "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            (schema,),
        )
        by_table: dict[str, set[str]] = {}
        for table, trigger in triggers:
            by_table.setdefault(table, set()).add(trigger)
        for name, obj in self.objects.items():
            if obj.get("kind") != "table":
                continue
            expected = self.trigger_names(name)
            if expected != by_table.get(name, set()):
                restored = sorted(by_table.get(name, set()))
                self.mismatches.append(f"table {name}: triggers {restored} restored, {sorted(expected)} in the backup")
        if not with_routines:
            return
        routines = {
            f"{r[0].lower()} {r[1]}"
            for r in query(
                connection,
                "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
                (schema,),
            )
        }
        if routines != set(self.manifest.get("routines") or []):
            self.mismatches.append(
                f"routines {sorted(routines)} restored, {sorted(self.manifest.get('routines') or [])} in the backup"
            )
        events = {
            r[0]
            for r in query(
                connection, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (schema,)
            )
        }
        if self.options.with_events and events != set(self.manifest.get("events") or []):
            self.mismatches.append(
                f"events {sorted(events)} restored, {sorted(self.manifest.get('events') or [])} in the backup"
            )


def _bind(
    run: Callable[[str, Iterable[bytes], str], int], schema: str, chunks: list[bytes], what: str
) -> Callable[[], None]:
    def task() -> None:
        run(schema, chunks, what)

    return task


def _bind_stream(
    run: Callable[[str, Iterable[bytes], str], int],
    schema: str,
    stream: Callable[[list[dict[str, Any]]], Iterator[bytes]],
    frames: list[dict[str, Any]],
    what: str,
) -> Callable[[], None]:
    def task() -> None:
        for attempt in range(LOCK_CONFLICT_RETRIES + 1):
            try:
                run(schema, in_transaction(stream(frames)), what)
                return
            except RestoreError as exc:
                if attempt >= LOCK_CONFLICT_RETRIES or not is_lock_conflict(exc):
                    raise
                time.sleep(0.2 * (attempt + 1))

    return task


# Sessions loading chunks of one table at once can deadlock inside InnoDB (error 1213) or time
# out on a lock (1205). Each data task runs as one transaction, which InnoDB rolls back whole on
# such an error, so running the task again cannot duplicate rows.
LOCK_CONFLICT_RETRIES = 3
_LOCK_CONFLICT_ERRORS = ("ERROR 1213 ", "ERROR 1205 ")


def in_transaction(chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield b"START TRANSACTION;\n"
    yield from chunks
    yield b"\nCOMMIT;\n"


def is_lock_conflict(exc: RestoreError) -> bool:
    stderr = str(exc.details.get("stderr") or "")
    return any(code in stderr for code in _LOCK_CONFLICT_ERRORS)


def _bind_call(func: Callable[..., None], *args: Any) -> Callable[[], None]:
    def task() -> None:
        func(*args)

    return task


# --- the cutover ------------------------------------------------------------------------------


def table_triggers(connection: Any, schema: str, table: str) -> list[str]:
    rows = query(
        connection,
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s",
        (schema, table),
    )
    return [r[0] for r in rows]


def outside_references(connection: Any, schema: str, tables: Iterable[str]) -> list[str]:
    """Foreign keys of other tables that reference ``tables`` of ``schema``, as ``db.table.fk -> table``.

    "Other" is any table that is not one of ``tables`` of ``schema``. Moving a referenced table into
    another schema (RENAME TABLE) takes such foreign keys with it: they would point at the moved
    copy, and dropping that copy later fails (error 1451).
    """
    moved = set(tables)
    rows = query(
        connection,
        "SELECT DISTINCT TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME "
        "FROM information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_SCHEMA = %s",
        (schema,),
    )
    return sorted(
        f"{db}.{table}.{fk} -> {ref}"
        for db, table, fk, ref in rows
        if ref in moved and not (db == schema and table in moved)
    )


def refuse_parents_left_out(restorer: Restorer, target: str) -> None:
    """Refuse a selective restore of a table whose foreign keys reference a table left out of it.

    The restored table is created in the shadow database, so its foreign keys would reference the
    shadow's (absent) parent table, still after the RENAME into the target: every insert would fail.
    """
    tables = {n for n, o in restorer.objects.items() if o.get("kind") == "table"}
    missing = sorted(f"{n} -> {ref}" for n in tables for ref in restorer.referenced_tables(n) - tables)
    if missing:
        raise RestoreError(
            f"tables of this restore have foreign keys to tables it leaves out ({'; '.join(missing[:10])}): restored "
            f"alone, they would reference a table that is not in {target!r}. Nothing was changed. Add the "
            "referenced tables to tables (or restore the whole database)"
        )


def refuse_outside_references(connection: Any, target: str, moved: list[str]) -> None:
    """Refuse a swap that would leave other tables' foreign keys pointing at the previous copy."""
    found = outside_references(connection, target, moved)
    if found:
        raise RestoreError(
            f"tables outside this restore reference tables it replaces in {target!r} ({'; '.join(found[:10])}): "
            "after the swap their foreign keys would point at the previous copy in "
            f"{old_name(target, '<timestamp>')}, not at the restored table. Nothing was changed. Add the "
            "referencing tables to tables (or restore the whole database)"
        )


def _undo_sql(connection: Any, kind: str, schema: str, name: str, strip: bool) -> str | None:
    """Client input recreating an object of ``schema`` as it is now (bodies may contain ';').

    A trigger, routine or event runs with the sql_mode it was created with, so that is set first:
    the session's (the dump header's non-strict one) would otherwise be stored with it. ``strip``
    (strip_definers): without its DEFINER, so the account that drops it may create it again.
    None when the account may not read the definition (another definer's routine).
    """
    row = query(connection, f"SHOW CREATE {kind} {quote_identifier(schema)}.{quote_identifier(name)}")[0]
    index = {"TRIGGER": 2, "VIEW": 1, "PROCEDURE": 2, "FUNCTION": 2, "EVENT": 3}[kind]
    if row[index] is None:
        return None
    create = str(row[index])
    if strip:
        create = strip_definers(create.encode("utf-8")).decode("utf-8")
    mode = "" if kind == "VIEW" else "SET SESSION sql_mode = '" + str(row[1]).replace("'", "''") + "';\n"
    return f"{mode}DELIMITER ;;\n{create} ;;\nDELIMITER ;\n"


def _undo_body(phase: str, body: Any) -> bytes:
    """A journaled undo statement as client input.

    A trigger's text is kept as written, possibly naming its schema: unqualified, it is recreated
    in the database the client session runs on (the target, or the old schema after the RENAME).
    """
    text = body.encode("utf-8") if isinstance(body, str) else body
    return unqualify_triggers(text) if phase == "undo:TRIGGER" else text


@dataclass
class CutoverResult:
    cutover_ms: float
    warnings: list[str] = field(default_factory=list)
    # Tables and views of the target that were replaced (moved or dropped) at the swap itself.
    replaced: list[str] = field(default_factory=list)
    # Whether the old schema holds anything of the target: tables, or journaled definitions.
    keeps_anything: bool = False


def cutover(
    connection: Any,
    restorer: Restorer,
    shadow: str,
    target: str,
    old: str,
    full: bool,
    checked: set[str] | None = None,
    lock_wait_timeout: int = 30,
) -> CutoverResult:
    """Swap the shadow tables into ``target`` with one RENAME TABLE; previous ones go to ``old``.

    Triggers cannot cross schemas in a RENAME (error 1435), so they are dropped first and
    recreated after; what is dropped from the target is journaled in ``old`` first, so a run
    killed before the RENAME is undone by the next run.

    A swap that fails before its RENAME (a lock wait beyond ``lock_wait_timeout`` seconds, typically)
    puts the dropped triggers back at once and raises: the target is as it was.

    ``checked``: when given, the only tables and views of the target this run may replace (what
    was there when ``force`` was checked); finding others now, e.g. written by the application
    while the shadow loaded, refuses the swap before anything is changed.
    """
    runner = restorer.active_runner()
    q_target, q_shadow, q_old = quote_identifier(target), quote_identifier(shadow), quote_identifier(old)
    tables = [n for n, o in restorer.objects.items() if o.get("kind") == "table"]
    current = schema_objects(connection, target)
    # Whatever of the target has the name of something restored goes, whatever its kind: a table
    # named like a restored view moves to ``old`` with the other tables.
    old_tables = [n for n, k in current.items() if k == "table" and (full or n in restorer.objects)]
    old_views = [n for n, k in current.items() if k == "view" and (full or n in restorer.objects)]
    # A view named like a restored table (a migration renamed the table and left a view under its old
    # name) would make the RENAME fail (1050): it is dropped in the window, before the RENAME.
    colliding_views = sorted(set(old_views) & set(tables))
    appeared = sorted(set(old_tables + old_views) - checked) if checked is not None else []
    if appeared:
        raise RestoreError(
            f"{', '.join(appeared)} appeared in {target!r} while the backup was being restored (not there when "
            "the run checked the target, and force is false), so nothing was swapped: the target is as it was. "
            "Check what writes to it and run again; with force: true they are replaced too (and kept in "
            f"{old_name(target, '<timestamp>')})"
        )
    refuse_outside_references(connection, target, old_tables)
    # Exactly the triggers journaled are dropped: one created meanwhile makes the RENAME fail (1435), undone.
    dropped_triggers = [t for name in old_tables for t in table_triggers(connection, target, name)]
    removed = [("TRIGGER", t) for t in dropped_triggers] + [("VIEW", n) for n in old_views]
    if full:
        removed += query(
            connection,
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
            (target,),
        )
        removed += [
            ("EVENT", e)
            for (e,) in query(
                connection, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (target,)
            )
        ]
    journal: list[tuple[str, str]] = []
    warnings: list[str] = []
    for kind, name in removed:
        undo = _undo_sql(connection, kind, target, name, restorer.options.strip_definers)
        if undo is None:
            warnings.append(
                f"the account may not read the definition of {kind.lower()} {name!r} of {target!r} (another "
                "account's routine needs SELECT on mysql.proc, or SHOW_ROUTINE on MySQL): it is replaced without a "
                f"copy in {old!r}"
            )
        else:
            journal.append((f"undo:{kind}", undo))

    query(connection, f"CREATE DATABASE {q_old} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    query(
        connection,
        f"CREATE TABLE {q_old}.{JOURNAL_TABLE} (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "phase varchar(16) NOT NULL, target varchar(64) NOT NULL, body longtext NOT NULL) ENGINE=InnoDB",
    )
    query(connection, f"INSERT INTO {q_old}.{JOURNAL_TABLE} (phase, target, body) VALUES ('begin', %s, '')", (target,))
    for phase, body in journal:
        query(
            connection,
            f"INSERT INTO {q_old}.{JOURNAL_TABLE} (phase, target, body) VALUES (%s, %s, %s)",
            (phase, target, body),
        )

    # Everything the target gets after the RENAME, prepared beforehand and sent in one client session.
    recreate = b"".join(restorer.trigger_sql(n) for n in tables) + restorer.view_sql()
    if full:
        recreate += restorer.routines_sql() + restorer.events_sql()
    started = time.monotonic()
    # Everything from here to the end changes the target; the window is what cutover_ms reports.
    # Behind an open transaction on one of its tables, DROP TRIGGER and RENAME wait for its metadata
    # lock (up to a day by default) while the target's triggers are gone: wait briefly, then undo.
    query(connection, f"SET SESSION lock_wait_timeout = {int(lock_wait_timeout)}")
    failed: Exception | None = None
    try:
        for name in tables:
            for trigger in table_triggers(connection, shadow, name):
                query(connection, f"DROP TRIGGER {q_shadow}.{quote_identifier(trigger)}")
        for trigger in dropped_triggers:
            query(connection, f"DROP TRIGGER {q_target}.{quote_identifier(trigger)}")
        for name in colliding_views:  # journaled above: a failed swap puts them back
            query(connection, f"DROP VIEW {q_target}.{quote_identifier(name)}")
        pairs = [f"{q_target}.{quote_identifier(n)} TO {q_old}.{quote_identifier(n)}" for n in old_tables]
        pairs += [f"{q_shadow}.{quote_identifier(n)} TO {q_target}.{quote_identifier(n)}" for n in tables]
        if pairs:
            query(connection, "RENAME TABLE " + ", ".join(pairs))
    except Exception as exc:  # noqa: BLE001 - undone and reported below
        failed = exc
    with contextlib.suppress(Exception):
        query(connection, "SET SESSION lock_wait_timeout = DEFAULT")
    if failed is not None:
        _undo_failed_swap(connection, runner.run, target, old, failed, lock_wait_timeout)
    try:
        query(
            connection,
            f"INSERT INTO {q_old}.{JOURNAL_TABLE} (phase, target, body) VALUES ('renamed', %s, '')",
            (target,),
        )
        for name in old_views:
            if name not in colliding_views:  # that name is a restored table now
                query(connection, f"DROP VIEW IF EXISTS {q_target}.{quote_identifier(name)}")
        if full:
            for rtype, rname in query(
                connection,
                "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
                (target,),
            ):
                query(connection, f"DROP {rtype} {q_target}.{quote_identifier(rname)}")
            for (ename,) in query(
                connection, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (target,)
            ):
                query(connection, f"DROP EVENT {q_target}.{quote_identifier(ename)}")
        if recreate.strip():
            runner.run(target, [recreate], "the triggers, views, routines and events")
    except Exception as exc:
        raise RestoreError(
            f"the restored tables are in {target!r} (previous ones in {old!r}), but recreating its triggers, views, "
            f"routines or events failed: {exc}. Fix the cause and restore again (the next run finishes this one)"
        ) from exc
    cutover_ms = (time.monotonic() - started) * 1000
    # The previous tables' triggers, recreated beside them so the old schema is complete.
    for phase, body in journal:
        if phase == "undo:TRIGGER":
            try:
                runner.run(old, [_undo_body(phase, body)], "a previous trigger")
            except RestoreError as exc:
                warnings.append(f"could not recreate a previous trigger in {old}: {exc}")
    query(connection, f"INSERT INTO {q_old}.{JOURNAL_TABLE} (phase, target, body) VALUES ('done', %s, '')", (target,))
    return CutoverResult(cutover_ms, warnings, sorted(old_tables + old_views), bool(old_tables or journal))


def _undo_failed_swap(
    connection: Any,
    client: Callable[[str, list[bytes], str], Any],
    target: str,
    old: str,
    error: Exception,
    lock_wait_timeout: int,
) -> None:
    """The swap failed before its RENAME took effect: put back what it dropped (triggers, views), then raise.

    The sessions that put them back wait for locks no longer than the swap did: the transaction
    that held the swap up may still hold a table, and the server's default wait is a day.
    """
    bound = f"SET SESSION lock_wait_timeout = {int(lock_wait_timeout)};\n".encode()

    def bounded_client(database: str, chunks: list[bytes], what: str) -> Any:
        return client(database, [bound, *chunks], what)

    try:
        _finish_interrupted_cutover(connection, bounded_client, old, [])
    except Exception as exc:  # noqa: BLE001 - reported together with the swap's own error
        raise RestoreError(
            f"the swap into {target!r} failed before any table was moved ({error}), and putting back the triggers "
            f"and views it had dropped failed too ({exc}): {target!r} may lack some of them. Run this restore (or "
            f"a verify of the same database) again as soon as possible: it puts them back from the journal in {old!r}"
        ) from error
    if _error_code(error) in (1205, 1213):
        advice = (
            f"A transaction held one of its tables longer than lock_wait_timeout ({lock_wait_timeout} s): let it "
            "finish (maintenance mode) and run again"
        )
    else:
        advice = "Fix what the server reported and run again"
    raise RestoreError(
        f"the swap into {target!r} failed before any table was moved: {error}. The triggers it had dropped are "
        f"back, and any view it had dropped, so the target is as it was. {advice}"
    ) from error


def _error_code(exc: Exception) -> int | None:
    """The server's error number of a PyMySQL error (1205: lock wait timeout), else None."""
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


def apply_keep_old(connection: Any, database: str, keep_old: int, warnings: list[str]) -> list[str]:
    """Drop completed ``<db>_old_<ts>`` schemas beyond the ``keep_old`` newest; returns the dropped ones.

    A schema that cannot be dropped is kept, with a warning: the restore itself is done.
    """
    schemas = old_schemas(connection, database)
    dropped = []
    for name in schemas[: max(0, len(schemas) - keep_old)]:
        tables = [n for n, k in schema_objects(connection, name).items() if k == "table"]
        # Checked first: DROP DATABASE would drop the journal, then fail on the referenced table (1451).
        referenced = outside_references(connection, name, tables)
        if referenced:
            warnings.append(
                f"kept {name!r} (beyond keep_old): other tables' foreign keys reference its tables "
                f"({'; '.join(referenced[:10])}); re-point or drop those foreign keys, then drop it"
            )
            continue
        try:
            drop_schema(connection, name)
        except Exception as exc:  # noqa: BLE001 - reported; the restore itself is done
            warnings.append(f"could not drop {name!r} (beyond keep_old): {exc}; drop it by hand when possible")
            continue
        dropped.append(name)
    return dropped


def validate_names(*names: str | None) -> None:
    for name in names:
        if name:
            validate_identifier(name, "database name")


# --- the whole run ------------------------------------------------------------------------------


@dataclass
class Request:
    """What the module was asked to do (already validated for types)."""

    src: str | None
    backup_dir: str | None
    database: str | None
    mode: str = "verify"
    target_database: str | None = None
    force: bool = False
    scratch_database: str | None = None
    keep_scratch: bool = False
    keep_old: int = 1
    verify: str = "content"
    tables: list[str] | None = None
    workers: int = 2
    identity: str | None = None
    strip_definers: bool = False
    write_binlog: bool = False
    lock_wait_timeout: int = 30


def resolve_source(request: Request, warn: Callable[[str], None] | None = None) -> str:
    if request.src:
        return request.src
    if not request.backup_dir or not request.database:
        raise RestoreError("give src (a backup file), or backup_dir and database (the newest backup is used)")
    return find_backup(request.backup_dir, request.database, warn)


def run(
    request: Request,
    conn_params: ConnectionParams,
    client_program: str,
    dump_program: str,
    check_mode: bool,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """The whole module run; returns the result dict or raises RestoreError."""
    from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import MySQLError, connect  # noqa: PLC0415

    started = time.monotonic()
    validate_names(request.database, request.target_database, request.scratch_database)
    src = resolve_source(request, warn)
    identities = load_identities(request.identity)
    stale = remove_stale_workdirs([os.path.dirname(os.path.abspath(src)), tempfile.gettempdir()])
    content = request.verify == "content"
    local_version = program_version(start_program_version(dump_program)) if content else ""
    backup = check_backup(src, identities, content_digests=content, local_dump_version=local_version)
    try:
        manifest = backup.manifest
        source_db = str(manifest.get("database") or request.database or "")
        objects = selected_objects(manifest, request.tables)
        result: dict[str, Any] = {
            "changed": False,
            "mode": request.mode,
            "src": src,
            "backup_database": source_db,
            "verified": False,
            "tables": {},
            "mismatches": [],
            "cleaned_up": stale,
            "bytes": 0,
            "restore_s": 0.0,
            "verify_s": 0.0,
        }
        try:
            connection = connect(conn_params)
        except MySQLError as exc:
            raise RestoreError(str(exc)) from exc
        try:
            disable_binlog(connection, request.write_binlog)
            stamp = utc_stamp()
            if request.database and request.src and request.database != source_db:
                raise RestoreError(
                    f"{src} is a backup of database {source_db!r}, not of {request.database!r}; "
                    "check src or leave database unset"
                )
            refuse_statements_over_max_allowed_packet(connection, backup, objects, conn_params.describe())
            if request.mode == "verify":
                _run_verify(
                    request, result, connection, conn_params, client_program, dump_program, backup, stamp, check_mode
                )
            else:
                _run_restore(
                    request,
                    result,
                    connection,
                    conn_params,
                    client_program,
                    dump_program,
                    backup,
                    stamp,
                    check_mode,
                    warn,
                )
        except RestoreError:
            raise
        except Exception as exc:
            # The server went away or refused a statement mid-run: say where, never a traceback.
            if "cutover_ms" in result:
                previous = (
                    f"previous tables in {result['old_database']!r}"
                    if result.get("old_database")
                    else "it replaced nothing"
                )
                raise RestoreError(
                    f"{src} was restored into {result.get('database')!r} (verified, swapped in; {previous}), "
                    f"but cleaning up afterwards failed on the server "
                    f"({conn_params.describe()}): {exc}. The restore stands; the next run cleans up",
                    **{k: result[k] for k in ("tables", "mismatches", "cleaned_up", "old_database") if k in result},
                ) from exc
            raise RestoreError(
                f"{request.mode} of {src} failed on the server ({conn_params.describe()}): {exc}; nothing was "
                "swapped into the target. Check the server, then run again (leftovers are cleaned up then)",
                **{k: result[k] for k in ("tables", "mismatches", "cleaned_up") if k in result},
            ) from exc
        finally:
            connection.close()
        if check_mode:
            result["tables"] = {
                n: {"rows_expected": o.get("rows", 0)} for n, o in objects.items() if o.get("kind") == "table"
            }
        result["duration_s"] = round(time.monotonic() - started, 3)
        return result
    finally:
        backup.close()


def refuse_statements_over_max_allowed_packet(
    connection: Any, backup: CheckedBackup, objects: dict[str, dict[str, Any]], server: str
) -> None:
    """Refuse, before anything is loaded, a table with an INSERT longer than the server accepts.

    The client sends each statement as one packet; the server drops the session on a longer one
    ("MySQL server has gone away"), which used to surface after every table before it was loaded.
    A row of a few MB of binary data is a longer statement (escaped bytes, or twice as long in hex
    with ``--hex-blob``). The global value is the one the client sessions start with; raising it
    is left to the DBA (it applies to every new session of the server and is lost on restart
    unless it is also in the server's configuration).
    """
    if backup.contents is None:
        return
    limit = int(query(connection, "SELECT @@GLOBAL.max_allowed_packet")[0][0])
    too_long = []
    for name in objects:
        found = backup.contents.objects.get(name)
        # The packet holds the statement without its ';\n' plus a command byte.
        if found is not None and found.longest_statement - 1 > limit:
            too_long.append((found.longest_statement, name))
    if not too_long:
        return
    too_long.sort(reverse=True)
    needed = -(-too_long[0][0] // (1024 * 1024)) * 1024 * 1024  # whole MiB, as a server option takes it
    names = ", ".join(f"{name!r} ({size} bytes)" for size, name in too_long)
    raise RestoreError(
        f"the backup holds INSERT statements longer than the max_allowed_packet of {server} "
        f"({limit} bytes), which refuses them: table {names}. Raise it to at least {needed} "
        f"({needed // (1024 * 1024)}M): SET GLOBAL max_allowed_packet={needed}; (SUPER or "
        f"SYSTEM_VARIABLES_ADMIN; new sessions get it) and max_allowed_packet={needed // (1024 * 1024)}M under "
        "[mysqld] in the server's configuration to keep it after a restart, then run again. Nothing was loaded",
        max_allowed_packet=limit,
        max_allowed_packet_needed=needed,
    )


def _restorer(
    request: Request,
    conn_params: ConnectionParams,
    client_program: str,
    dump_program: str,
    backup: CheckedBackup,
    with_events: bool,
) -> Restorer:
    options = RestoreOptions(
        workers=request.workers,
        strip_definers=request.strip_definers,
        write_binlog=request.write_binlog,
        verify=request.verify,
        tables=request.tables,
        with_events=with_events and not request.tables,
        with_routines=not request.tables,
    )
    return Restorer(conn_params, client_program, dump_program, backup, options)


def _load_and_verify(restorer: Restorer, connection: Any, schema: str, result: dict[str, Any]) -> None:
    try:
        restorer.restore(schema)
        restorer.verify_objects(connection, schema, True, restorer.options.with_routines)
    finally:
        result["tables"] = {n: r.to_dict() for n, r in sorted(restorer.results.items())}
        result["bytes"] = restorer.bytes
        result["restore_s"] = round(restorer.restore_s, 3)
        result["verify_s"] = round(restorer.verify_s, 3)
        result["mismatches"] = sorted(restorer.mismatches)
        result.setdefault("warnings_", []).extend(restorer.warnings)


def _client_for_cleanup(conn_params: ConnectionParams, client_program: str, write_binlog: bool) -> Callable[..., Any]:
    def client(database: str, chunks: list[bytes], what: str) -> int:
        with client_option_file(conn_params) as option_file:
            return ClientRunner(client_program, option_file, session_prelude(b"", write_binlog), conn_params).run(
                database, chunks, what
            )

    return client


def _drop_work_schema(connection: Any, schema: str, result: dict[str, Any]) -> None:
    try:
        drop_schema(connection, schema)
    except Exception as exc:  # noqa: BLE001 - reported, and the next run cleans it up
        result.setdefault("warnings_", []).append(
            f"could not drop {schema!r} ({exc}); the next run of this module for the same database drops it"
        )


def _run_verify(
    request: Request,
    result: dict[str, Any],
    connection: Any,
    conn_params: ConnectionParams,
    client_program: str,
    dump_program: str,
    backup: CheckedBackup,
    stamp: str,
    check_mode: bool,
) -> None:
    source_db = result["backup_database"]
    chosen = request.scratch_database
    if request.keep_scratch and chosen and _CLEANED_NAME.fullmatch(chosen):
        raise RestoreError(
            f"scratch_database {chosen!r} looks like the scratch, shadow or old copy of a killed run "
            "(_verify_<db>_<timestamp>, _restore_<db>_<timestamp>, <db>_old_<timestamp>), which a later run drops: "
            "with keep_scratch, give another name or leave scratch_database unset (the copy is then kept as "
            f"{kept_name(source_db, '<timestamp>')})"
        )
    if not check_mode:
        # First, so that a run killed earlier in this very second, whose scratch has the name this run
        # would take, does not make it fail with "already exists".
        result["cleaned_up"] += cleanup_leftovers(
            connection,
            _client_for_cleanup(conn_params, client_program, request.write_binlog),
            source_db,
            result.setdefault("warnings_", []),
        )

    def default_scratch(at: str) -> str:
        # A kept scratch loses its marker table, so only its name tells it apart: it must not look like
        # a leftover, which the next verify or restore of the database would drop.
        return kept_name(source_db, at) if request.keep_scratch else scratch_name(source_db, at)

    scratch = request.scratch_database or default_scratch(stamp)
    for _attempt in range(3):
        if request.scratch_database or not schema_exists(connection, scratch):
            break
        # a run in progress started in the same second: the next second's name is free
        time.sleep(1.01 - time.time() % 1.0)
        scratch = default_scratch(utc_stamp())
    result["database"] = scratch
    if schema_exists(connection, scratch):
        raise RestoreError(
            f"scratch database {scratch!r} already exists; give another scratch_database (it must not exist: "
            "this module drops it afterwards)"
        )
    if check_mode:
        return
    restorer = _restorer(request, conn_params, client_program, dump_program, backup, with_events=True)
    with schema_guard(connection, scratch), restorer:
        create_work_schema(connection, scratch, source_db, "verify")
        try:
            _load_and_verify(restorer, connection, scratch, result)
        except BaseException:
            if not request.keep_scratch:
                _drop_work_schema(connection, scratch, result)
            raise
        if request.keep_scratch:
            result["changed"] = True
            query(connection, f"DROP TABLE IF EXISTS {quote_identifier(scratch)}.{quote_identifier(MARKER_TABLE)}")
        else:
            _drop_work_schema(connection, scratch, result)
    result["verified"] = not result["mismatches"]


def _run_restore(
    request: Request,
    result: dict[str, Any],
    connection: Any,
    conn_params: ConnectionParams,
    client_program: str,
    dump_program: str,
    backup: CheckedBackup,
    stamp: str,
    check_mode: bool,
    warn: Callable[[str], None],
) -> None:
    source_db = result["backup_database"]
    target = request.target_database or source_db
    full = not request.tables
    result["database"] = target
    existing = schema_objects(connection, target) if schema_exists(connection, target) else {}
    replaced = sorted(existing if full else [n for n in existing if n in (request.tables or [])])
    if replaced and not request.force:
        raise RestoreError(
            f"target database {target!r} is not empty ({len(replaced)} of its tables/views would be replaced: "
            f"{', '.join(replaced[:10])}{' …' if len(replaced) > 10 else ''}); set force: true to replace them "
            f"(the previous ones are kept in {old_name(target, '<timestamp>')})"
        )
    shadow = shadow_name(target, stamp)
    old = old_name(target, stamp)
    result.update(
        {"changed": True, "replaced": replaced, "old_database": old if replaced else None, "shadow_database": shadow}
    )
    # Without force only an empty target may be restored into: whatever appears in it meanwhile is refused.
    checked = None if request.force else set(replaced)
    # Checked again at the swap; here so that a refused restore fails before loading anything.
    refuse_outside_references(connection, target, [n for n in replaced if existing[n] == "table"])
    restorer = _restorer(request, conn_params, client_program, dump_program, backup, with_events=False)
    if not full:
        refuse_parents_left_out(restorer, target)
    if check_mode:
        return
    if not request.write_binlog:
        with contextlib.suppress(Exception):
            if binlog_enabled(connection):
                warn(
                    "write_binlog is false: this restore is not written to the binary log, so replicas do not "
                    "receive it; re-seed them from this server or restore with write_binlog: true"
                )
    result["cleaned_up"] += cleanup_leftovers(
        connection,
        _client_for_cleanup(conn_params, client_program, request.write_binlog),
        target,
        result.setdefault("warnings_", []),
    )
    with schema_guard(connection, shadow), restorer:
        create_work_schema(connection, shadow, target, "restore")
        try:
            _load_and_verify(restorer, connection, shadow, result)
            if result["mismatches"]:
                raise RestoreError(
                    f"the restored copy of {target!r} does not match the backup, the target was not touched: "
                    + "; ".join(result["mismatches"]),
                    **{k: v for k, v in result.items() if k in ("tables", "mismatches")},
                )
            if not schema_exists(connection, target):
                query(
                    connection,
                    f"CREATE DATABASE {quote_identifier(target)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                )
            with schema_guard(connection, old):
                outcome = cutover(connection, restorer, shadow, target, old, full, checked, request.lock_wait_timeout)
            # What the swap itself found and replaced, which may be more than at the check (with force).
            result["replaced"] = outcome.replaced
            result["old_database"] = old if outcome.keeps_anything else None
            result["cutover_ms"] = round(outcome.cutover_ms, 1)
            result.setdefault("warnings_", []).extend(outcome.warnings)
        finally:
            _drop_work_schema(connection, shadow, result)
    if not outcome.keeps_anything:
        drop_schema(connection, old)
    result["old_dropped"] = apply_keep_old(connection, target, request.keep_old, result.setdefault("warnings_", []))
    result["verified"] = True
