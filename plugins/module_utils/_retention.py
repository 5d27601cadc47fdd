# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup names and grandfather-father-son retention, shared by mysql_backup and b2_sync.

A backup is ``<database>[-<label>]-<YYYYmmddTHHMMSSZ>.sql.<zst|gz>[.age]`` (or ``.sql``
without compression) with ``<file>.manifest.json`` beside it. Retention only ever looks at
names of that shape for one database, groups them by label, and never selects the newest
backup of a group for deletion. A name alone can be ambiguous when one database's name is
another's plus ``-<something>``; the manifest, which names its database, then decides.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST_SUFFIX = ".manifest.json"
# database and label may contain '-', so the timestamp anchors the parse from the right.
_NAME_RE = re.compile(r"^(?P<stem>.+)-(?P<ts>\d{8}T\d{6}Z)\.sql(?P<compression>\.zst|\.gz)?(?P<encrypted>\.age)?$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

RETENTION_OPTIONS = ("keep_last", "keep_days", "keep_daily", "keep_weekly", "keep_monthly")
# A name dated further ahead than this was made by a clock that was wrong: see select_for_deletion.
FUTURE_TOLERANCE = dt.timedelta(hours=1)


def retention_argument_spec() -> dict[str, Any]:
    """The retention options, identical for local (mysql_backup) and remote (b2_sync) copies."""
    return {name: {"type": "int"} for name in RETENTION_OPTIONS}


def validate_label(label: str) -> str:
    if not _LABEL_RE.match(label):
        raise ValueError(
            f"label {label!r} may only contain letters, digits, '.', '_' and '-' (at most 64, not starting with '.')"
        )
    return label


def backup_file_name(
    database: str, when: dt.datetime, label: str | None = None, compression: str = "zst", encrypted: bool = False
) -> str:
    """The file name mysql_backup writes for a backup taken at ``when`` (UTC)."""
    stem = database if not label else f"{database}-{label}"
    suffix = {"zstd": ".zst", "zst": ".zst", "gzip": ".gz", "gz": ".gz", "none": ""}[compression]
    name = f"{stem}-{when.astimezone(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)}.sql{suffix}"
    return name + (".age" if encrypted else "")


@dataclass(frozen=True)
class BackupName:
    name: str
    database: str
    label: str | None
    timestamp: dt.datetime
    compression: str
    encrypted: bool

    @property
    def manifest_name(self) -> str:
        return self.name + MANIFEST_SUFFIX

    @property
    def group(self) -> tuple[str, str | None]:
        return (self.database, self.label)

    @property
    def ambiguous(self) -> bool:
        """Whether the name could also be another database's: its stem splits at more than one '-'.

        ``app-archive-<ts>`` is database ``app`` with label ``archive``, or database
        ``app-archive``; only the manifest, which names its database, tells.
        """
        return self.label is not None or "-" in self.database


def manifest_confirms(backup: BackupName, manifest: Any) -> bool:
    """Whether the manifest beside ``backup`` names the database its file name was parsed for.

    A manifest without a ``database`` field (not written by mysql_backup) leaves the name as
    the only evidence; one that is no JSON object confirms nothing.
    """
    if not isinstance(manifest, dict):
        return False
    owner = manifest.get("database")
    return owner is None or owner == backup.database


def parse_backup_name(name: str, database: str) -> BackupName | None:
    """Parse a backup file name of ``database``; None when it is not one of ours."""
    match = _NAME_RE.match(name)
    if not match:
        return None
    stem = match.group("stem")
    if stem == database:
        label = None
    elif stem.startswith(database + "-") and _LABEL_RE.match(stem[len(database) + 1 :]):
        label = stem[len(database) + 1 :]
    else:
        return None
    try:
        when = dt.datetime.strptime(match.group("ts"), TIMESTAMP_FORMAT).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    compression = {".zst": "zstd", ".gz": "gzip", None: "none"}[match.group("compression")]
    return BackupName(name, database, label, when, compression, bool(match.group("encrypted")))


def _bucket_keep(backups: list[BackupName], count: int, key: Any) -> set[str]:
    """Newest backup of each of the ``count`` most recent periods that have a backup."""
    keep: set[str] = set()
    seen: set[Any] = set()
    for backup in backups:  # newest first
        period = key(backup.timestamp)
        if period in seen:
            continue
        if len(seen) >= count:
            break
        seen.add(period)
        keep.add(backup.name)
    return keep


def select_for_deletion(
    backups: list[BackupName],
    now: dt.datetime | None = None,
    keep_last: int | None = None,
    keep_days: int | None = None,
    keep_daily: int | None = None,
    keep_weekly: int | None = None,
    keep_monthly: int | None = None,
) -> tuple[list[BackupName], list[BackupName]]:
    """Split backups into (keep, delete) under grandfather-father-son rules.

    A backup is kept when any rule keeps it. With no rule set nothing is deleted. The newest
    backup of each (database, label) group is always kept, whatever the rules say. A backup
    whose name is dated more than ``FUTURE_TOLERANCE`` after ``now`` is kept and ignored by the
    rules (it is neither the newest nor one of the last ``keep_last``).
    Rules apply per group, so ``pre-deploy-*`` backups never push out the nightly ones.
    """
    rules = (keep_last, keep_days, keep_daily, keep_weekly, keep_monthly)
    for value in rules:
        if value is not None and value < 0:
            raise ValueError("retention counts must be 0 or more")
    if all(v is None for v in rules):
        return sorted(backups, key=lambda b: b.timestamp, reverse=True), []
    now = now or dt.datetime.now(dt.timezone.utc)
    groups: dict[tuple[str, str | None], list[BackupName]] = {}
    # A backup dated in the future (a host clock that was wrong once) is kept and does not take
    # part: counted as the newest, it would push out the backup just taken, for up to a year.
    keep: list[BackupName] = future_backups(backups, now)
    for backup in backups:
        if backup not in keep:
            groups.setdefault(backup.group, []).append(backup)
    delete: list[BackupName] = []
    for members in groups.values():
        members.sort(key=lambda b: (b.timestamp, b.name), reverse=True)
        kept = {members[0].name}  # never the newest
        if keep_last:
            kept.update(b.name for b in members[:keep_last])
        if keep_days is not None:
            cutoff = now - dt.timedelta(days=keep_days)
            kept.update(b.name for b in members if b.timestamp >= cutoff)
        if keep_daily:
            kept |= _bucket_keep(members, keep_daily, lambda t: t.date())
        if keep_weekly:
            kept |= _bucket_keep(members, keep_weekly, lambda t: t.isocalendar()[:2])
        if keep_monthly:
            kept |= _bucket_keep(members, keep_monthly, lambda t: (t.year, t.month))
        for backup in members:
            (keep if backup.name in kept else delete).append(backup)
    keep.sort(key=lambda b: b.timestamp, reverse=True)
    delete.sort(key=lambda b: b.timestamp)
    return keep, delete


def select_incomplete_for_deletion(
    complete: list[BackupName],
    incomplete: list[BackupName],
    now: dt.datetime | None = None,
    **rules: int | None,
) -> list[BackupName]:
    """The incomplete backups (data without a manifest) that retention may delete.

    They never count towards the rules: an incomplete backup must not push a complete one out.
    One is deleted only when the rules, applied to the complete backups and it, would delete
    it. As the newest backup of a group is always kept, an incomplete backup newer than every
    complete one of its group (its manifest may still be on its way) is never deleted.
    """
    doomed = []
    for candidate in incomplete:
        _keep, delete = select_for_deletion([*complete, candidate], now=now, **rules)
        if any(b.name == candidate.name for b in delete):
            doomed.append(candidate)
    return doomed


def future_backups(backups: list[BackupName], now: dt.datetime) -> list[BackupName]:
    """The backups whose names are dated after ``now`` (beyond ``FUTURE_TOLERANCE``)."""
    return [b for b in backups if b.timestamp > now + FUTURE_TOLERANCE]


def retention_params(params: dict[str, Any]) -> dict[str, int | None]:
    return {name: params.get(name) for name in RETENTION_OPTIONS}


def retention_params_error(params: dict[str, Any]) -> str | None:
    """Why the module's keep_* options are invalid, or None."""
    for name in RETENTION_OPTIONS:
        if params.get(name) is not None and params[name] < 0:
            return f"{name} must be 0 or more, got {params[name]}"
    return None
