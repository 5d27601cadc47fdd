"""The shared retention rules and backup names (_retention.py), used by mysql_backup and b2_sync."""

from __future__ import annotations

import datetime as dt

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils._retention import (
    FUTURE_TOLERANCE,
    RETENTION_OPTIONS,
    BackupName,
    backup_file_name,
    manifest_confirms,
    parse_backup_name,
    retention_argument_spec,
    retention_params,
    retention_params_error,
    select_for_deletion,
    select_incomplete_for_deletion,
    validate_label,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def backups(database: str, times: list[dt.datetime], label: str | None = None) -> list[BackupName]:
    found = []
    for when in times:
        parsed = parse_backup_name(backup_file_name(database, when, label), database)
        assert parsed is not None
        found.append(parsed)
    return found


def names(items: list[BackupName]) -> set[str]:
    return {b.name for b in items}


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("compression", "encrypted", "suffix"),
    [("zstd", False, ".sql.zst"), ("gzip", False, ".sql.gz"), ("none", False, ".sql"), ("zst", True, ".sql.zst.age")],
)
def test_backup_file_name_and_parse_round_trip(compression, encrypted, suffix):
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    name = backup_file_name("app", when, "nightly", compression, encrypted)
    assert name == f"app-nightly-20260102T030405Z{suffix}"
    parsed = parse_backup_name(name, "app")
    assert parsed == BackupName(name, "app", "nightly", when, {"zst": "zstd"}.get(compression, compression), encrypted)
    assert parsed.manifest_name == name + ".manifest.json"
    assert parsed.group == ("app", "nightly")


def test_backup_file_name_converts_to_utc():
    when = dt.datetime(2026, 1, 2, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    assert backup_file_name("app", when) == "app-20260102T060000Z.sql.zst"


def test_database_and_label_with_dashes():
    name = "my-app-pre-deploy-20260102T030405Z.sql.gz"
    as_db = parse_backup_name(name, "my-app")
    assert as_db is not None and as_db.label == "pre-deploy"
    whole = parse_backup_name(name, "my-app-pre-deploy")
    assert whole is not None and whole.label is None
    assert as_db.ambiguous and whole.ambiguous  # only the manifest tells whose it is
    plain = parse_backup_name("app-20260102T030405Z.sql.gz", "app")
    assert plain is not None and not plain.ambiguous


def test_the_manifest_decides_an_ambiguous_name():
    backup = parse_backup_name("app-archive-20260102T030405Z.sql.zst", "app")
    assert backup is not None
    assert manifest_confirms(backup, {"database": "app"})
    assert not manifest_confirms(backup, {"database": "app-archive"})
    assert manifest_confirms(backup, {"format_version": 1})  # no database field: the name decides
    assert not manifest_confirms(backup, None) and not manifest_confirms(backup, [])  # unreadable


@pytest.mark.parametrize(
    "name",
    [
        "app-20260102T030405Z.sql.zst.manifest.json",  # a manifest is not a backup
        "other-20260102T030405Z.sql.zst",  # another database
        "application-20260102T030405Z.sql.zst",  # prefix of a longer database name
        "app-20261302T030405Z.sql.zst",  # month 13
        "app-20260102T030405.sql.zst",  # no Z
        "app-20260102T030405Z.sql.xz",  # unknown compression
        "app-20260102T030405Z.sql.zst.tmp",
        "app-.bad-20260102T030405Z.sql.zst",  # label starting with '.'
        "app-20260102T030405Z.dump",
    ],
)
def test_names_that_are_not_backups_of_app(name):
    assert parse_backup_name(name, "app") is None


def test_validate_label():
    assert validate_label("pre-deploy_1.2") == "pre-deploy_1.2"
    for bad in (".hidden", "", "has space", "x" * 65, "semi;colon"):
        with pytest.raises(ValueError, match="label"):
            validate_label(bad)


def test_retention_argument_spec_and_params():
    spec = retention_argument_spec()
    assert set(spec) == set(RETENTION_OPTIONS)
    assert all(v == {"type": "int"} for v in spec.values())
    assert retention_params({"keep_last": 3, "other": 1}) == dict.fromkeys(RETENTION_OPTIONS, None) | {"keep_last": 3}


# ----------------------------------------------------------------------------- rules


def test_no_rule_deletes_nothing():
    items = backups("app", [NOW - dt.timedelta(days=d) for d in range(10)])
    keep, delete = select_for_deletion(items, now=NOW)
    assert delete == [] and len(keep) == 10
    assert keep[0].timestamp == NOW  # newest first


def test_newest_is_always_kept_even_with_zero_rules():
    items = backups("app", [NOW - dt.timedelta(days=d) for d in range(3)])
    keep, delete = select_for_deletion(items, now=NOW, keep_last=0, keep_days=0)
    assert [b.timestamp for b in keep] == [NOW]
    assert len(delete) == 2
    assert delete[0].timestamp < delete[1].timestamp  # oldest first


def test_keep_last_per_group_so_labels_do_not_push_out_nightlies():
    nightly = backups("app", [NOW - dt.timedelta(days=d) for d in range(5)])
    predeploy = backups("app", [NOW - dt.timedelta(hours=h) for h in range(1, 8)], label="predeploy")
    other_db = backups("crm", [NOW - dt.timedelta(days=d) for d in range(4)])
    keep, delete = select_for_deletion(nightly + predeploy + other_db, now=NOW, keep_last=2)
    assert names(keep) == names(nightly[:2] + predeploy[:2] + other_db[:2])
    assert names(delete) == names(nightly[2:] + predeploy[2:] + other_db[2:])


@pytest.mark.parametrize(("rule", "kept"), [("keep_last", 1), ("keep_daily", 1), ("keep_days", 2)])
def test_a_backup_dated_in_the_future_is_kept_and_takes_no_part(rule, kept):
    """A clock that was a year ahead once: that backup must not push out the one just taken."""
    real = backups("app", [NOW - dt.timedelta(days=d) for d in range(3)])
    future = backups("app", [NOW + dt.timedelta(days=365)])
    keep, delete = select_for_deletion(real + future, now=NOW, **{rule: 1})
    assert names(keep) == names(future + real[:kept]) and names(delete) == names(real[kept:])
    # within the tolerance (clocks a little apart) a backup counts as usual
    soon = backups("app", [NOW + FUTURE_TOLERANCE - dt.timedelta(minutes=1)])
    keep, delete = select_for_deletion(real + soon, now=NOW, keep_last=1)
    assert names(keep) == names(soon) and names(delete) == names(real)


def test_retention_params_error():
    assert retention_params_error({"keep_last": 0, "keep_days": None}) is None
    assert retention_params_error({"keep_weekly": -1}) == "keep_weekly must be 0 or more, got -1"


def test_keep_days_cutoff_is_inclusive():
    items = backups("app", [NOW - dt.timedelta(days=d) for d in (0, 1, 2, 3)])
    keep, delete = select_for_deletion(items, now=NOW, keep_days=2)
    assert names(keep) == names(items[:3])
    assert names(delete) == names(items[3:])


def test_keep_daily_takes_the_newest_of_each_day():
    times = [NOW - dt.timedelta(hours=h) for h in (0, 2, 24, 26, 48, 50, 72)]
    items = backups("app", times)
    keep = select_for_deletion(items, now=NOW, keep_daily=3)[0]
    assert names(keep) == names([items[0], items[2], items[4]])


def test_keep_weekly_and_monthly_buckets():
    times = [NOW - dt.timedelta(days=d) for d in range(0, 120, 3)]
    items = backups("app", times)
    keep_w = select_for_deletion(items, now=NOW, keep_weekly=4)[0]
    weeks = {b.timestamp.isocalendar()[:2] for b in keep_w}
    assert len(keep_w) == 4 == len(weeks)
    keep_m = select_for_deletion(items, now=NOW, keep_monthly=3)[0]
    assert {(b.timestamp.year, b.timestamp.month) for b in keep_m} == {(2026, 3), (2026, 2), (2026, 1)}
    # each kept backup is the newest of its month
    for kept in keep_m:
        same_month = [
            b for b in items if (b.timestamp.year, b.timestamp.month) == (kept.timestamp.year, kept.timestamp.month)
        ]
        assert kept.timestamp == max(b.timestamp for b in same_month)


def test_rules_are_a_union():
    times = [NOW - dt.timedelta(days=d) for d in range(0, 60)]
    items = backups("app", times)
    keep, delete = select_for_deletion(items, now=NOW, keep_last=3, keep_monthly=2)
    months = {(2026, 3), (2026, 2)}
    newest_of_month = {
        max((b for b in items if (b.timestamp.year, b.timestamp.month) == m), key=lambda b: b.timestamp).name
        for m in months
    }
    assert names(keep) == names(items[:3]) | newest_of_month
    assert len(keep) + len(delete) == 60


def test_negative_counts_are_refused():
    with pytest.raises(ValueError, match="0 or more"):
        select_for_deletion([], keep_last=-1)


def test_incomplete_backups_never_count_and_go_only_when_the_rules_would_delete_them():
    complete = backups("app", [NOW - dt.timedelta(days=d) for d in (1, 2, 3)])
    newer, between, older = backups("app", [NOW, NOW - dt.timedelta(hours=36), NOW - dt.timedelta(days=5)])
    incomplete = [newer, between, older]
    assert select_incomplete_for_deletion(complete, incomplete, now=NOW) == []  # no rule, nothing
    doomed = select_incomplete_for_deletion(complete, incomplete, now=NOW, keep_last=1)
    assert names(doomed) == names([between, older])  # the newer one may still get its manifest
    assert names(select_incomplete_for_deletion(complete, incomplete, now=NOW, keep_days=2)) == names([older])
    assert select_incomplete_for_deletion([], [older], now=NOW, keep_last=0) == []  # alone: the newest
