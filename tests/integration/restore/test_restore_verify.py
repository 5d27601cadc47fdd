"""mysql_restore_verify against the real test MariaDB, with real backups made by mysql_backup."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.restore.helpers import (
    copy_backup,
    frame_sql_file,
    make_backup,
    mariadb_client,
    read_manifest,
    schemas,
    table_checksums,
    write_manifest,
)
from tests.support import datagen
from tests.support.mariadb import MariaDB, temporary_server
from tests.support.runner import MODULE_PYTHON, ROOT, run_module, run_playbook

MODULE = "mysql_restore_verify"


def verify(login: dict[str, Any], **args: Any) -> Any:
    return run_module(MODULE, dict(login, **args))


def drop_schemas_of(mariadb: MariaDB, name: str) -> None:
    for schema in schemas(mariadb):
        if schema.startswith((name, f"_restore_{name}")):
            mariadb.execute(f"DROP DATABASE IF EXISTS `{schema}`")


def data_frames(manifest: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [f for f in manifest["tables"][table]["frames"] if f["part"] == "data"]


# --- verify mode: the good path ------------------------------------------------------------------


def test_verify_proves_every_table_and_drops_the_scratch(mariadb: MariaDB, login: dict[str, Any], backup: str) -> None:
    before = schemas(mariadb)
    result = verify(login, src=backup, workers=2)
    assert not result.failed, result.get("msg")
    assert result["verified"] is True and result["changed"] is False
    manifest = read_manifest(backup)
    expected = {n: t["rows"] for n, t in manifest["tables"].items() if t["kind"] == "table"}
    assert {n: t["rows_restored"] for n, t in result["tables"].items()} == expected
    assert all(t["digest_ok"] is True for t in result["tables"].values())
    assert len(data_frames(manifest, "transactions")) > 2  # several frames loaded in parallel
    assert result["database"].startswith("_verify_rsrc_")
    assert result["bytes"] > 0 and result["mismatches"] == []
    assert schemas(mariadb) == before


def test_home_my_cnf_does_not_replace_the_modules_account_for_the_clients(
    mariadb: MariaDB, login: dict[str, Any], backup: str, tmp_path: Path
) -> None:
    """The client and dump programs connect as the module does, whatever the user's ~/.my.cnf says."""
    home = tmp_path / "home"
    home.mkdir()
    # another account, a stale password and a dead socket: read after an extra option file, they won
    my_cnf = home / ".my.cnf"
    my_cnf.write_text("[client]\nuser=admin\npassword=stale-admin-pw\nsocket=/nonexistent/mysqld.sock\n")
    my_cnf.chmod(0o600)
    result = run_module(MODULE, dict(login, src=backup), env={"HOME": str(home)})
    assert not result.failed, result.get("msg")
    assert result["verified"] is True and result["mismatches"] == []


def test_backup_dir_takes_the_newest_backup_with_a_valid_manifest(
    login: dict[str, Any], backup: str, tmp_path: Path
) -> None:
    older = copy_backup(backup, tmp_path)
    newer_name = os.path.basename(backup).replace("rsrc-", "rsrc-").replace("2026", "2099", 1)
    os.rename(older, tmp_path / newer_name)  # a newer name, but its manifest names the old file
    os.rename(older + ".manifest.json", str(tmp_path / newer_name) + ".manifest.json")
    copy_backup(backup, tmp_path)
    result = verify(login, backup_dir=str(tmp_path), database="rsrc", verify="rows")
    assert not result.failed, result.get("msg")
    assert result["src"] == str(tmp_path / os.path.basename(backup))


def test_check_mode_checks_the_file_and_creates_nothing(mariadb: MariaDB, login: dict[str, Any], backup: str) -> None:
    before = schemas(mariadb)
    result = run_module(MODULE, dict(login, src=backup), check=True)
    assert not result.failed, result.get("msg")
    assert result["verified"] is False and result["changed"] is False
    assert result["tables"]["users"]["rows_expected"] == read_manifest(backup)["tables"]["users"]["rows"]
    assert schemas(mariadb) == before


def test_keep_scratch_keeps_a_clean_copy(mariadb: MariaDB, login: dict[str, Any], backup: str) -> None:
    result = verify(login, src=backup, scratch_database="kept_copy", keep_scratch=True, verify="rows")
    try:
        assert not result.failed, result.get("msg")
        assert result["changed"] is True
        tables = {r[0] for r in mariadb.execute("SHOW FULL TABLES FROM kept_copy")}
        assert "users" in tables and "user_balances" in tables and "__mutuapix_restore" not in tables
        assert (
            mariadb.execute("SELECT COUNT(*) FROM kept_copy.users")[0][0] == result["tables"]["users"]["rows_expected"]
        )
    finally:
        mariadb.execute("DROP DATABASE IF EXISTS kept_copy")


def test_verify_creates_events_disabled_and_a_restore_as_they_were(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """A scratch copy must not run the production's jobs (this one writes to the live schema by name)."""
    mariadb.execute("CREATE DATABASE ev_src")
    try:
        mariadb.execute("CREATE TABLE ev_src.hits (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME)")
        mariadb.execute("INSERT INTO ev_src.hits (at) VALUES (NOW())")
        mariadb.execute(
            "CREATE EVENT ev_src.tick ON SCHEDULE EVERY 1 DAY STARTS '2031-01-01 00:00:00' "
            "ON COMPLETION PRESERVE ENABLE DO INSERT INTO ev_src.hits (at) VALUES (NOW())"
        )
        path = make_backup(mariadb, "ev_src", tmp_path)
        kept = verify(login, src=path, scratch_database="ev_scratch", keep_scratch=True, verify="rows")
        assert not kept.failed, kept.get("msg")
        status = "SELECT EVENT_SCHEMA, STATUS FROM information_schema.EVENTS WHERE EVENT_NAME = 'tick' ORDER BY 1"
        assert mariadb.execute(status) == [("ev_scratch", "DISABLED"), ("ev_src", "ENABLED")]
        restored = verify(login, src=path, mode="restore", target_database="ev_dst", verify="rows")
        assert not restored.failed, restored.get("msg")
        assert mariadb.execute(status) == [("ev_dst", "ENABLED"), ("ev_scratch", "DISABLED"), ("ev_src", "ENABLED")]
    finally:
        for name in ("ev_src", "ev_scratch", "ev_dst"):
            mariadb.execute(f"DROP DATABASE IF EXISTS {name}")


def test_a_server_error_after_the_swap_says_what_stands(
    mariadb: MariaDB, login: dict[str, Any], backup: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process against the real server, the connection "lost" in the cleanup after a swap."""
    import pymysql

    from ansible_collections.mutuapix.ops.plugins.module_utils import _mysql, _restore

    def lost(*_args: Any, **_kwargs: Any) -> list[str]:
        raise pymysql.err.OperationalError(2013, "Lost connection to server during query")

    monkeypatch.setattr(_restore, "apply_keep_old", lost)
    params = _mysql.ConnectionParams(dict(login))
    programs = (_mysql.find_program(_mysql.CLIENT_PROGRAMS), _mysql.find_program(_mysql.DUMP_PROGRAMS))
    expected = {n: t["rows"] for n, t in read_manifest(backup)["tables"].items() if t["kind"] == "table"}
    try:
        for force, previous in ((False, "it replaced nothing"), (True, "previous tables in 'after_swap_old_")):
            request = _restore.Request(
                src=backup, backup_dir=None, database=None, mode="restore", target_database="after_swap", force=force
            )
            with pytest.raises(_restore.RestoreError) as failure:
                _restore.run(request, params, *programs, check_mode=False, warn=lambda _message: None)
            message = str(failure.value)
            assert "was restored into 'after_swap' (verified, swapped in; " + previous in message, message
            assert "Lost connection to server during query'). The restore stands" in message
            assert "None" not in message
            for table, rows in expected.items():
                assert mariadb.execute(f"SELECT COUNT(*) FROM after_swap.`{table}`") == [(rows,)]
    finally:
        drop_schemas_of(mariadb, "after_swap")


def test_gzip_and_age_encrypted_backup(mariadb: MariaDB, login: dict[str, Any], source_db: str, tmp_path: Path) -> None:
    from ansible_collections.mutuapix.ops.plugins.module_utils._age import generate_identity

    identity, recipient = generate_identity()
    path = make_backup(mariadb, source_db, tmp_path, compression="gzip", encrypt_recipients=[recipient])
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# test key\n{identity}\n")
    result = verify(login, src=path, identity=str(key_file))
    assert not result.failed, result.get("msg")
    assert result["verified"] and all(t["digest_ok"] for t in result["tables"].values())
    assert identity not in json.dumps(result)
    result = verify(login, src=path, identity=identity, verify="rows")  # the key itself works too
    assert not result.failed, result.get("msg")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".mutuapix-restore-")]  # decrypted stream removed

    before = schemas(mariadb)
    other, _recipient = generate_identity()
    wrong = verify(login, src=path, identity=other)
    assert wrong.failed and "wrong or missing age identity" in wrong["msg"]
    assert other not in json.dumps(wrong)
    missing = verify(login, src=path)
    assert missing.failed and "age-encrypted" in missing["msg"] and "identity" in missing["msg"]
    assert schemas(mariadb) == before


def test_the_decrypted_stream_of_a_killed_run_is_removed_by_the_next(
    mariadb: MariaDB, login: dict[str, Any], source_db: str, tmp_path: Path
) -> None:
    """A run killed while it holds the decrypted (plaintext) stream beside the backup cannot remove it:
    the next run does, and leaves alone the one of a run still in progress."""
    from ansible_collections.mutuapix.ops.plugins.module_utils._age import generate_identity

    identity, recipient = generate_identity()
    path = make_backup(mariadb, source_db, tmp_path, encrypt_recipients=[recipient])

    def workdirs() -> list[str]:
        return sorted(str(tmp_path / d) for d in os.listdir(tmp_path) if d.startswith(".mutuapix-restore-"))

    def kill_when_decrypted(proc: Any) -> None:
        def watch() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if [d for d in workdirs() if os.path.exists(f"{d}/stream") and os.path.getsize(f"{d}/stream") > 0]:
                    os.kill(proc.pid, signal.SIGKILL)
                    return
                time.sleep(0.005)

        threading.Thread(target=watch, daemon=True).start()

    killed = run_module(MODULE, dict(login, src=path, identity=identity, verify="rows"), popen_hook=kill_when_decrypted)
    assert killed.rc == -signal.SIGKILL, killed
    left = workdirs()
    assert len(left) == 1 and os.path.getsize(os.path.join(left[0], "stream")) > 0
    from ansible_collections.mutuapix.ops.plugins.module_utils._restore import _private_workdir

    busy, busy_lock = _private_workdir(str(tmp_path))  # a run in progress
    try:
        again = verify(login, src=path, identity=identity, verify="rows")
        assert not again.failed, again.get("msg")
        assert left[0] in again["cleaned_up"]
        assert workdirs() == [busy]
    finally:
        os.close(busy_lock)
    for schema in schemas(mariadb):
        if schema.startswith("_verify_rsrc_"):
            mariadb.execute(f"DROP DATABASE `{schema}`")


def test_a_scratch_left_by_a_run_killed_in_the_same_second_does_not_block_the_next(
    mariadb: MariaDB, login: dict[str, Any], source_db: str, tmp_path: Path
) -> None:
    """Scratch names carry the second: a run killed just before left the very name the next one takes.

    It used to fail with "already exists" (the check came before the cleanup of killed runs' leftovers).
    """
    from ansible_collections.mutuapix.ops.plugins.module_utils import _restore

    path = make_backup(mariadb, source_db, tmp_path)
    start = time.time()
    leftovers = [
        _restore.scratch_name(source_db, _restore.utc_stamp(dt.datetime.fromtimestamp(start + s, dt.timezone.utc)))
        for s in range(0, 8)
    ]
    connection = mariadb.connect()
    try:
        for name in leftovers:  # as killed runs leave them: a marker table, no lock held
            _restore.create_work_schema(connection, name, source_db, "verify")
    finally:
        connection.close()
    result = verify(login, src=path, verify="rows")
    assert time.time() - start < 8, "the run must start within the seconds the leftovers cover"
    assert not result.failed, result.get("msg")
    assert result["verified"] and set(leftovers) <= set(result["cleaned_up"]), result["cleaned_up"]
    assert not [s for s in schemas(mariadb) if s.startswith(f"_verify_{source_db}_")]


# --- the file is checked before anything is touched -----------------------------------------------


def _assert_untouched_failure(mariadb: MariaDB, result: Any, before: set[str], *words: str) -> None:
    assert result.failed, result
    assert "Traceback" not in result.get("msg", "") and "Traceback" not in result.stderr
    for word in words:
        assert word in result["msg"], result["msg"]
    assert schemas(mariadb) == before


def test_bit_flip_in_a_middle_frame(mariadb: MariaDB, login: dict[str, Any], backup: str, tmp_path: Path) -> None:
    path = copy_backup(backup, tmp_path)
    manifest = read_manifest(path)
    frames = data_frames(manifest, "transactions")
    middle = frames[len(frames) // 2]
    data = bytearray(Path(path).read_bytes())
    data[middle["offset"] + middle["length"] // 2] ^= 0x10
    Path(path).write_bytes(bytes(data))
    before = schemas(mariadb)
    _assert_untouched_failure(mariadb, verify(login, src=path, mode="restore", force=True), before, "sha256")
    # Even with the manifest re-signed to the damaged file, the frame check (or, when the flipped bit
    # still decompresses, the content verification) finds it and names the table.
    write_manifest(path, manifest, resign=True)
    _assert_untouched_failure(mariadb, verify(login, src=path), before, "transactions")


def test_truncated_file(mariadb: MariaDB, login: dict[str, Any], backup: str, tmp_path: Path) -> None:
    path = copy_backup(backup, tmp_path)
    manifest = read_manifest(path)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) * 2 // 3])
    before = schemas(mariadb)
    _assert_untouched_failure(mariadb, verify(login, src=path), before, "truncated")
    write_manifest(path, manifest, resign=True)
    _assert_untouched_failure(mariadb, verify(login, src=path), before, "truncated")


def test_frames_attributed_to_another_table_are_refused_before_anything_is_loaded(
    mariadb: MariaDB, login: dict[str, Any], backup: str, tmp_path: Path
) -> None:
    """The manifest gives table A the frames (and frame checksums) of table B and B those of A, re-signed.

    Every frame still decompresses and tiles the file, and each table's rows and checksums match
    by name, but a restore would load B's SQL as A's: refused up front, naming the frame.
    """
    path = copy_backup(backup, tmp_path)
    manifest = read_manifest(path)
    first, second = "audit_logs", "cache"
    tables = manifest["tables"]
    for key in ("frames", "data_digest"):
        tables[first][key], tables[second][key] = tables[second][key], tables[first][key]
    write_manifest(path, manifest, resign=True)
    before = schemas(mariadb)
    for check in (True, False):
        result = run_module(MODULE, dict(login, src=path), check=check)
        assert result.failed, result
        assert "holds table or view 'audit_logs'" in result["msg"] and "of cache" in result["msg"], result["msg"]
        assert schemas(mariadb) == before


def test_foreign_manifest(mariadb: MariaDB, login: dict[str, Any], backup: str, tmp_path: Path) -> None:
    path = copy_backup(backup, tmp_path)
    other = str(tmp_path / "rsrc-20200101T000000Z.sql.zst")
    os.rename(path, other)
    os.rename(path + ".manifest.json", other + ".manifest.json")
    before = schemas(mariadb)
    _assert_untouched_failure(mariadb, verify(login, src=other), before, "belongs to")


def test_missing_file_and_empty_backup_dir(mariadb: MariaDB, login: dict[str, Any], tmp_path: Path) -> None:
    before = schemas(mariadb)
    _assert_untouched_failure(mariadb, verify(login, src=str(tmp_path / "nope.sql.zst")), before, "does not exist")
    _assert_untouched_failure(mariadb, verify(login, backup_dir=str(tmp_path), database="rsrc"), before, "no backup")
    both = verify(login, src="/x.sql.zst", backup_dir=str(tmp_path), database="rsrc")
    assert both.failed and "mutually exclusive" in both["msg"]


def test_manifest_without_its_file_content(
    mariadb: MariaDB, login: dict[str, Any], backup: str, tmp_path: Path
) -> None:
    path = copy_backup(backup, tmp_path)
    Path(path + ".manifest.json").write_text("{not json")
    before = schemas(mariadb)
    _assert_untouched_failure(mariadb, verify(login, src=path), before, "not readable JSON")


# --- verification finds differences ----------------------------------------------------------------


@pytest.mark.parametrize("digest", ["frame checksums", "sha256"])
def test_content_difference_is_found_and_named(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path, digest: str
) -> None:
    """The restored table does not re-dump to the bytes in the file (the server stores `007` as `7`):
    same row count, found by content and named, for both kinds of manifest digest."""
    mariadb.execute("CREATE DATABASE norm_src")
    try:
        mariadb.execute("CREATE TABLE norm_src.t (id INT PRIMARY KEY, n INT)")
        mariadb.execute("INSERT INTO norm_src.t VALUES (1, 7), (2, 8)")
        original = make_backup(mariadb, "norm_src", tmp_path / "original")
    finally:
        mariadb.execute("DROP DATABASE IF EXISTS norm_src")
    sql = subprocess.run(["zstdcat", original], capture_output=True, check=True).stdout
    assert sql.count(b"(1,7),") == 1
    edited = tmp_path / "edited.sql"
    edited.write_bytes(sql.replace(b"(1,7),", b"(1,007),"))
    path = frame_sql_file(str(edited), tmp_path / "framed", "norm_src", digest=digest == "sha256")
    assert read_manifest(path)["tables"]["t"]["data_digest"].startswith("sha256:" if digest == "sha256" else "xxh64")
    before = schemas(mariadb)
    result = verify(login, src=path)
    assert result.failed
    assert "table t: content digest differs" in result["msg"]
    assert result["tables"]["t"] == {"rows_expected": 2, "rows_restored": 2, "digest_ok": False}
    assert result["verified"] is False
    assert schemas(mariadb) == before  # the scratch database is dropped on failure too
    rows_only = verify(login, src=path, verify="rows")
    assert not rows_only.failed and rows_only["verified"] is True


# MariaDB 10.5's mariadb-dump (Debian 11) writes an extended INSERT on one line, 10.11 a row per line,
# cutting statements at the same rows (checked against the real 10.5.29 in a Debian 11 chroot). This
# stand-in reshapes the local dump so and reports 10.5's version.
OLD_RELEASE_DUMP = """#!/bin/bash
set -o pipefail
if [ "$1" = --version ]; then
  echo 'mariadb-dump  Ver 10.19 Distrib 10.5.23-MariaDB, for debian-linux-gnu (x86_64)'; exit 0
fi
{real} "$@" | {reshape}
"""


@pytest.mark.parametrize("layout", ["one line per statement", "the same layout"])
def test_a_backup_written_by_another_release_is_compared_without_its_line_layout(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path, layout: str
) -> None:
    """A backup from a host with another release of the dump program (a disaster-recovery host, an
    upgraded client) lays rows out differently: its content is still compared, without the line
    breaks, and a good backup is not reported as different (that would refuse a good restore); a
    real difference still is."""
    real = subprocess.run(["sh", "-c", "command -v mariadb-dump"], capture_output=True, text=True, check=True)
    reshape = "perl -0777 -pe 's/ VALUES\\n\\(/ VALUES (/g; s/\\),\\n\\(/),(/g'"
    fake = tmp_path / "bin" / "mariadb-dump"
    fake.parent.mkdir()
    fake.write_text(
        OLD_RELEASE_DUMP.format(real=real.stdout.strip(), reshape=reshape if layout.startswith("one") else "cat")
    )
    fake.chmod(0o755)
    mariadb.execute("CREATE DATABASE layout_src")
    try:
        mariadb.execute("CREATE TABLE layout_src.t (id INT PRIMARY KEY, n INT, s VARCHAR(200), b VARBINARY(16))")
        mariadb.execute(
            "INSERT INTO layout_src.t SELECT seq, seq % 100, CONCAT('row ', seq, ' it''s, (a), \\n'),"
            " UNHEX('00FF0A') FROM seq_1_to_3000",
            database="layout_src",
        )
        made = run_module(
            "mysql_backup",
            dict(
                mariadb.login,
                database="layout_src",
                dest=str(tmp_path / "old"),
                chunk_size="64K",
                extra_dump_args=["--net-buffer-length=16384"],
            ),
            env={"PATH": f"{fake.parent}:{os.environ['PATH']}"},
        )
        assert not made.failed, made.get("msg")
    finally:
        mariadb.execute("DROP DATABASE IF EXISTS layout_src")
    sql = subprocess.run(["zstdcat", made["path"]], capture_output=True, check=True).stdout
    assert sql.count(b"INSERT INTO `t` VALUES") > 1  # several statements, cut where each release cuts
    if layout == "one line per statement":
        assert b"),\n(" not in sql
    assert read_manifest(made["path"])["dump"]["version"].startswith("mariadb-dump  Ver 10.19 Distrib 10.5.23")
    assert made["tables"] == {"t": 3000}
    result = verify(login, src=made["path"])
    assert not result.failed, result.get("msg")
    assert result["verified"] is True and result["mismatches"] == []
    assert result["tables"]["t"] == {"rows_expected": 3000, "rows_restored": 3000, "digest_ok": True}

    # The same release's layout with a value the server stores otherwise (`007` is `7`): still found.
    assert sql.count(b"(7,7,'") == 1
    edited = tmp_path / "edited.sql"
    edited.write_bytes(sql.replace(b"(7,7,'", b"(7,007,'"))
    version = read_manifest(made["path"])["dump"]["version"]
    path = frame_sql_file(str(edited), tmp_path / "framed", "layout_src", version=version)
    different = verify(login, src=path)
    assert different.failed
    assert different["tables"]["t"] == {"rows_expected": 3000, "rows_restored": 3000, "digest_ok": False}
    assert "table t: content digest differs from the backup's; compared without line breaks" in different["msg"]
    assert "10.5.23-MariaDB" in different["msg"] and "verify: rows" in different["msg"]


@pytest.mark.parametrize(
    "field,message",
    [("rows", "holds 3 rows in the file but 4 in the manifest"), ("data_digest", "has data digest xxh64-32:")],
)
def test_manifest_of_other_content_is_refused_before_anything_is_touched(
    mariadb: MariaDB, login: dict[str, Any], source_db: str, backup: str, tmp_path: Path, field: str, message: str
) -> None:
    """A manifest whose rows or digest are another backup's (same file name, size, sha256): refused."""
    mariadb.execute("CREATE DATABASE tamper_src")
    try:
        mariadb.execute(f"CREATE TABLE tamper_src.migrations LIKE {source_db}.migrations")
        mariadb.execute(f"INSERT INTO tamper_src.migrations SELECT * FROM {source_db}.migrations")
        mariadb.execute("UPDATE tamper_src.migrations SET migration = 'other' WHERE id = 2")
        mariadb.execute("INSERT INTO tamper_src.migrations (migration, batch) VALUES ('extra', 9)")
        changed = make_backup(mariadb, "tamper_src", tmp_path / "changed")
    finally:
        mariadb.execute("DROP DATABASE IF EXISTS tamper_src")
    path = copy_backup(backup, tmp_path / "copy")
    manifest = read_manifest(path)
    manifest["tables"]["migrations"][field] = read_manifest(changed)["tables"]["migrations"][field]
    write_manifest(path, manifest)
    before = schemas(mariadb)
    result = verify(login, src=path)
    assert result.failed
    assert "table 'migrations'" in result["msg"] and message in result["msg"], result["msg"]
    assert "does not belong to this file" in result["msg"]
    assert schemas(mariadb) == before


def test_mysql8_dump_fixture(mariadb: MariaDB, login: dict[str, Any], tmp_path: Path) -> None:
    path = frame_sql_file(str(ROOT / "tests" / "fixtures" / "mysql80_dump.sql"), tmp_path, "app")
    manifest = read_manifest(path)
    assert manifest["dump"]["dialect"] == "mysql"
    result = verify(login, src=path, strip_definers=True)
    assert not result.failed, result.get("msg")
    assert result["verified"] is True
    assert all(t["digest_ok"] is None for t in result["tables"].values())
    assert {n: t["rows_restored"] for n, t in result["tables"].items()} == {
        n: t["rows"] for n, t in manifest["tables"].items() if t["kind"] == "table"
    }
    assert result["tables"]["users"]["rows_restored"] > 10
    assert any("row counts only" in w for w in result.get("warnings", [])) or "row counts only" in json.dumps(result)


# --- restore mode ---------------------------------------------------------------------------------


@pytest.fixture
def live_db(mariadb: MariaDB, tmp_path: Path) -> Any:
    """A database, its backup, then changes made after the backup (what a rollback must undo)."""
    name = "live_app"
    datagen.create_database(mariadb, name, 200_000)
    path = make_backup(mariadb, name, tmp_path / "b")
    reference = table_checksums(mariadb, name)
    mariadb.execute(f"DELETE FROM {name}.transactions WHERE id % 2 = 0")
    mariadb.execute(f"UPDATE {name}.users SET name = 'changed'")
    mariadb.execute(f"CREATE TABLE {name}.migration_leftover (id int PRIMARY KEY)")
    changed = table_checksums(mariadb, name)
    yield name, path, reference, changed
    for schema in schemas(mariadb):
        if schema.startswith(name):
            mariadb.execute(f"DROP DATABASE IF EXISTS `{schema}`")


def test_restore_needs_force_on_a_non_empty_target(mariadb: MariaDB, login: dict[str, Any], live_db: Any) -> None:
    name, path, _reference, changed = live_db
    before = schemas(mariadb)
    result = verify(login, src=path, mode="restore")
    assert result.failed and "not empty" in result["msg"] and "force" in result["msg"]
    assert schemas(mariadb) == before and table_checksums(mariadb, name) == changed


def test_restore_cuts_over_atomically_and_keeps_the_old_tables(
    mariadb: MariaDB, login: dict[str, Any], live_db: Any
) -> None:
    name, path, reference, changed = live_db
    result = verify(login, src=path, mode="restore", force=True, workers=2)
    assert not result.failed, result.get("msg")
    assert result["changed"] and result["verified"] and result["cutover_ms"] > 0
    assert table_checksums(mariadb, name) == reference  # leftover table gone, data back, trigger + view back
    old = result["old_database"]
    assert old.startswith(f"{name}_old_")
    old_state = table_checksums(mariadb, old)
    old_state.pop("__mutuapix_cutover")
    assert old_state == changed | {"__views": []}
    routines = mariadb.execute(
        "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s", (name,)
    )
    events = mariadb.execute("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (name,))
    assert routines == [("user_total",)] and events == [("purge_sessions",)]
    assert not [s for s in schemas(mariadb) if s.startswith("_restore_")]
    # The restored structure is the original one, secondary indexes included.
    create = mariadb.execute(f"SHOW CREATE TABLE {name}.transactions")[0][1]
    assert "KEY `transactions_status_created_at_index` (`status`,`created_at`)" in create
    # A second restore with keep_old=0 drops every previous copy.
    time.sleep(1.1)  # a new timestamp for the old schema
    again = verify(login, src=path, mode="restore", force=True, keep_old=0)
    assert not again.failed, again.get("msg")
    assert old in again["old_dropped"]
    assert not [s for s in schemas(mariadb) if s.startswith(f"{name}_old_")]


def test_restore_into_a_new_database_and_check_mode(mariadb: MariaDB, login: dict[str, Any], live_db: Any) -> None:
    name, path, reference, _changed = live_db
    target = f"{name}_copy"
    planned = run_module(MODULE, dict(login, src=path, mode="restore", target_database=target), check=True)
    assert not planned.failed and planned["changed"] and planned["replaced"] == []
    assert target not in schemas(mariadb)
    result = verify(login, src=path, mode="restore", target_database=target)
    assert not result.failed, result.get("msg")
    assert result["old_database"] is None
    assert table_checksums(mariadb, target) == reference
    assert not [s for s in schemas(mariadb) if s.startswith(f"{target}_old_")]


def test_selective_restore_of_a_view_needs_the_tables_it_reads(
    mariadb: MariaDB, login: dict[str, Any], live_db: Any
) -> None:
    """A view alone cannot be created in the shadow/scratch database (its tables are not there): refused,
    naming the tables to add, target untouched; with them it is restored."""
    name, path, reference, changed = live_db
    mariadb.execute(f"DROP VIEW {name}.user_balances")
    dropped = table_checksums(mariadb, name)
    before = schemas(mariadb)
    for mode in ("restore", "verify"):
        result = verify(login, src=path, mode=mode, tables=["user_balances"], force=True, verify="rows")
        assert result.failed, result
        assert "the views in tables (user_balances) read 'users', which is not in tables" in result["msg"]
        assert "(here: transactions, users)" in result["msg"] and "Nothing was changed" in result["msg"]
        assert table_checksums(mariadb, name) == dropped and schemas(mariadb) == before
    result = verify(
        login, src=path, mode="restore", tables=["user_balances", "users", "transactions"], force=True, verify="rows"
    )
    assert not result.failed, result.get("msg")
    now = table_checksums(mariadb, name)
    assert now["__views"] == ["user_balances"] and now["users"] == reference["users"]
    assert now["migration_leftover"] == changed["migration_leftover"]


def test_tables_written_into_the_target_during_the_restore_are_never_dropped(
    mariadb: MariaDB, login: dict[str, Any], backup: str
) -> None:
    """An empty target (no force needed) gets a table while the shadow loads: without force the swap is
    refused and the table stays; with force it is replaced and kept in the old schema, never dropped."""
    target = "race_target"
    mariadb.execute(f"CREATE DATABASE {target}")

    def write_meanwhile(_proc: Any) -> None:
        # One statement: the swap may come between a CREATE and an INSERT.
        mariadb.execute(
            f"CREATE TABLE {target}.orders_written_meanwhile (id int PRIMARY KEY)"
            " SELECT 1 AS id UNION ALL SELECT 2 UNION ALL SELECT 3"
        )

    try:
        hook = _act_when_shadow_loads(mariadb, write_meanwhile, "_restore_race_target_")
        refused = run_module(
            MODULE, dict(login, src=backup, mode="restore", target_database=target, verify="rows"), popen_hook=hook
        )
        assert refused.failed and "orders_written_meanwhile appeared in 'race_target'" in refused["msg"]
        assert "nothing was swapped" in refused["msg"]
        assert schema_objects_of(mariadb, target) == ["orders_written_meanwhile"]
        assert mariadb.execute(f"SELECT COUNT(*) FROM {target}.orders_written_meanwhile") == [(3,)]
        assert sorted(s for s in schemas(mariadb) if "race_target" in s) == [target]

        mariadb.execute(f"DROP TABLE {target}.orders_written_meanwhile")
        hook = _act_when_shadow_loads(mariadb, write_meanwhile, "_restore_race_target_")
        forced = run_module(
            MODULE,
            dict(login, src=backup, mode="restore", target_database=target, verify="rows", force=True),
            popen_hook=hook,
        )
        assert not forced.failed, forced.get("msg")
        assert forced["replaced"] == ["orders_written_meanwhile"]
        old = forced["old_database"]
        assert old and old.startswith("race_target_old_")
        assert mariadb.execute(f"SELECT COUNT(*) FROM {old}.orders_written_meanwhile") == [(3,)]
        assert "users" in schema_objects_of(mariadb, target)
    finally:
        for schema in schemas(mariadb):
            if "race_target" in schema:
                mariadb.execute(f"DROP DATABASE IF EXISTS `{schema}`")


def schema_objects_of(server: MariaDB, database: str) -> list[str]:
    return sorted(r[0] for r in server.execute(f"SHOW TABLES FROM `{database}`"))


def test_selective_restore(mariadb: MariaDB, login: dict[str, Any], live_db: Any) -> None:
    name, path, reference, changed = live_db
    result = verify(login, src=path, mode="restore", tables=["transactions"], force=True)
    assert not result.failed, result.get("msg")
    assert list(result["tables"]) == ["transactions"] and result["replaced"] == ["transactions"]
    now = table_checksums(mariadb, name)
    assert now["transactions"] == reference["transactions"]
    assert now["users"] == changed["users"] and "migration_leftover" in now  # others untouched
    assert now["__triggers"] == ["transactions_before_insert"]
    unknown = verify(login, src=path, mode="restore", tables=["nope"], force=True)
    assert unknown.failed and "tables not in this backup: nope" in unknown["msg"]


def _triggers(server: MariaDB, database: str) -> list[tuple[str, str]]:
    return server.execute(
        "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
        "ORDER BY TRIGGER_NAME",
        (database,),
    )


def test_schema_qualified_triggers_are_created_where_the_restore_runs(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """SHOW CREATE TRIGGER keeps `CREATE TRIGGER db.t ... ON db.tbl` as written: verify mode must create it
    in its scratch database (not on the live table), a restore into another database in that database."""
    name, copy = "qual_app", "qual_app_copy"
    mariadb.execute(f"CREATE DATABASE {name}")
    try:
        mariadb.execute(f"CREATE TABLE {name}.payments (id int PRIMARY KEY, amount int, audited int DEFAULT 0)")
        mariadb.execute(
            f"CREATE TRIGGER {name}.payments_audit BEFORE INSERT ON {name}.payments FOR EACH ROW SET NEW.audited = 1"
        )
        mariadb.execute(
            f"CREATE TRIGGER `{name}`.`payments_touch` BEFORE UPDATE ON `{name}`.`payments` "
            "FOR EACH ROW SET NEW.audited = 2"
        )
        mariadb.execute(f"INSERT INTO {name}.payments (id, amount) VALUES (1, 10), (2, 20)")
        path = make_backup(mariadb, name, tmp_path)
        assert read_manifest(path)["tables"]["payments"]["triggers"] == ["payments_audit", "payments_touch"]
        live = _triggers(mariadb, name)
        assert len(live) == 2

        result = verify(login, src=path, verify="rows")
        assert not result.failed, result.get("msg")
        assert _triggers(mariadb, name) == live
        # A migration drops a trigger from the live database: verifying the backup does not bring it back.
        mariadb.execute(f"DROP TRIGGER {name}.payments_audit")
        result = verify(login, src=path, verify="rows")
        assert not result.failed, result.get("msg")
        assert _triggers(mariadb, name) == live[1:]

        restored = verify(login, src=path, mode="restore", target_database=copy, verify="rows")
        assert not restored.failed, restored.get("msg")
        assert _triggers(mariadb, copy) == live
        assert _triggers(mariadb, name) == live[1:]
        mariadb.execute(f"INSERT INTO {copy}.payments (id, amount) VALUES (3, 30)")
        assert mariadb.execute(f"SELECT audited FROM {copy}.payments WHERE id = 3") == [(1,)]
        # Restoring in place: the live database's previous (qualified) trigger is recreated beside its
        # previous table, not on the restored one.
        again = verify(login, src=path, mode="restore", verify="rows", force=True)
        assert not again.failed, again.get("msg")
        assert "previous trigger" not in json.dumps(again.get("warnings")), again.get("warnings")
        assert _triggers(mariadb, name) == live and _triggers(mariadb, again["old_database"]) == live[1:]
    finally:
        for schema in schemas(mariadb):
            if schema.startswith((name, f"_verify_{name}", f"_restore_{name}")):
                mariadb.execute(f"DROP DATABASE IF EXISTS `{schema}`")


def _foreign_keys(server: MariaDB, database: str) -> list[tuple[str, str, str]]:
    return server.execute(
        "SELECT DISTINCT TABLE_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME FROM "
        "information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s AND REFERENCED_TABLE_NAME IS NOT NULL",
        (database,),
    )


def test_selective_restore_of_a_referenced_table(mariadb: MariaDB, login: dict[str, Any], tmp_path: Path) -> None:
    """RENAME TABLE takes the foreign keys referencing a table along: restoring users alone would leave the live
    transactions referencing <db>_old_<ts>.users. Refused before anything is loaded; with the referencing table
    in the selection the keys reference the restored table."""
    name = "fk_app"
    mariadb.execute(f"CREATE DATABASE {name}")
    try:
        mariadb.execute(f"CREATE TABLE {name}.users (id int PRIMARY KEY, email varchar(50))")
        mariadb.execute(
            f"CREATE TABLE {name}.transactions (id int PRIMARY KEY, user_id int NOT NULL, "
            "CONSTRAINT transactions_user_id_foreign FOREIGN KEY (user_id) REFERENCES users (id))"
        )
        mariadb.execute(f"INSERT INTO {name}.users VALUES (1, 'a'), (2, 'b')")
        mariadb.execute(f"INSERT INTO {name}.transactions VALUES (1, 1)")
        path = make_backup(mariadb, name, tmp_path)
        mariadb.execute(f"UPDATE {name}.users SET email = 'broken'")
        before = table_checksums(mariadb, name)

        for check in (True, False):
            refused = run_module(
                MODULE, dict(login, src=path, mode="restore", tables=["users"], force=True, verify="rows"), check=check
            )
            assert refused.failed, refused
            assert "fk_app.transactions.transactions_user_id_foreign -> users" in refused["msg"]
            assert "Add the referencing tables to tables" in refused["msg"]
        # The other way round: transactions restored alone would reference the shadow database's users.
        child = verify(login, src=path, mode="restore", tables=["transactions"], force=True, verify="rows")
        assert child.failed and "foreign keys to tables it leaves out (transactions -> users)" in child["msg"]
        assert table_checksums(mariadb, name) == before
        assert _foreign_keys(mariadb, name) == [("transactions", name, "users")]
        assert sorted(s for s in schemas(mariadb) if name in s) == [name]

        both = verify(login, src=path, mode="restore", tables=["users", "transactions"], force=True, verify="rows")
        assert not both.failed, both.get("msg")
        assert _foreign_keys(mariadb, name) == [("transactions", name, "users")]
        assert mariadb.execute(f"SELECT email FROM {name}.users ORDER BY id") == [("a",), ("b",)]
        mariadb.execute(f"INSERT INTO {name}.users VALUES (3, 'new')")
        mariadb.execute(f"INSERT INTO {name}.transactions VALUES (2, 3)")
    finally:
        drop_schemas_of(mariadb, name)


def test_keep_old_keeps_an_old_copy_that_live_tables_reference(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """An old copy a live foreign key references (left by a selective restore before that was refused) cannot
    be dropped (1451): the restore succeeds, the copy is kept with its journal, and a warning says why."""
    name = "fk_prune"
    legacy = f"{name}_old_20261128T000000Z"
    conn = mariadb.connect()
    try:
        mariadb.execute(f"CREATE DATABASE {name}")
        mariadb.execute(f"CREATE TABLE {name}.users (id int PRIMARY KEY, email varchar(50))")
        mariadb.execute(f"CREATE TABLE {name}.transactions (id int PRIMARY KEY, user_id int NOT NULL)")
        mariadb.execute(f"INSERT INTO {name}.users VALUES (1, 'a'), (2, 'b')")
        mariadb.execute(f"INSERT INTO {name}.transactions VALUES (1, 1)")
        path = make_backup(mariadb, name, tmp_path)
        mariadb.execute(f"CREATE DATABASE {legacy}")
        mariadb.execute(f"CREATE TABLE {legacy}.users LIKE {name}.users")
        mariadb.execute(f"INSERT INTO {legacy}.users SELECT * FROM {name}.users")
        mariadb.execute(
            f"CREATE TABLE {legacy}.__mutuapix_cutover (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            "phase varchar(16) NOT NULL, target varchar(64) NOT NULL, body longtext NOT NULL)"
        )
        mariadb.execute(
            f"INSERT INTO {legacy}.__mutuapix_cutover (phase, target, body) VALUES ('done', %s, '')", (name,)
        )
        mariadb.execute(
            f"ALTER TABLE {name}.transactions ADD CONSTRAINT tx_user FOREIGN KEY (user_id) REFERENCES {legacy}.users (id)"
        )
        result = verify(login, src=path, mode="restore", tables=["users"], force=True, verify="rows", keep_old=0)
        assert not result.failed, result.get("msg")
        assert result["old_dropped"] == [result["old_database"]]
        warnings = json.dumps(result.get("warnings"))
        assert f"kept '{legacy}' (beyond keep_old)" in warnings and "tx_user" in warnings, warnings
        assert mariadb.execute(f"SELECT COUNT(*) FROM {legacy}.__mutuapix_cutover") == [(1,)]
        assert sorted(s for s in schemas(mariadb) if s.startswith(name)) == [name, legacy]
    finally:
        with conn.cursor() as cur:
            cur.execute("SET SESSION foreign_key_checks = 0")
            for schema in schemas(mariadb):
                if schema.startswith((name, f"_restore_{name}")):
                    cur.execute(f"DROP DATABASE IF EXISTS `{schema}`")
        conn.close()


def test_keep_old_prunes_only_its_own_database_when_long_names_share_a_prefix(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """<db>_old_<ts> keeps only the first 43 characters of a long name: two databases sharing them share the
    name pattern, and keep_old of one must not drop the other's previous tables."""
    prefix = "p" * 43
    first, second = f"{prefix}_first", f"{prefix}_second"
    try:
        paths = {}
        for db in (first, second):
            mariadb.execute(f"CREATE DATABASE {db}")
            mariadb.execute(f"CREATE TABLE {db}.orders (id int PRIMARY KEY)")
            mariadb.execute(f"INSERT INTO {db}.orders VALUES (1)")
            paths[db] = make_backup(mariadb, db, tmp_path / db[-6:])
        kept = verify(login, src=paths[first], mode="restore", force=True, verify="rows", keep_old=1)
        assert not kept.failed, kept.get("msg")
        time.sleep(1.1)  # another timestamp for the second old schema
        pruned = verify(login, src=paths[second], mode="restore", force=True, verify="rows", keep_old=0)
        assert not pruned.failed, pruned.get("msg")
        assert pruned["old_dropped"] == [pruned["old_database"]]
        assert kept["old_database"] in schemas(mariadb)
        assert mariadb.execute(f"SELECT COUNT(*) FROM `{kept['old_database']}`.orders") == [(1,)]
    finally:
        for schema in schemas(mariadb):
            if schema.startswith(prefix):
                mariadb.execute(f"DROP DATABASE IF EXISTS `{schema}`")


# --- killed mid-restore -----------------------------------------------------------------------------


def _act_when_shadow_loads(server: MariaDB, action: Any, prefix: str = "_restore_") -> Any:
    def hook(proc: Any) -> None:
        def watch() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    found = [r for r in server.execute("SHOW DATABASES") if r[0].startswith(prefix)]
                    rows = server.execute(
                        "SELECT COALESCE(SUM(TABLE_ROWS), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE %s",
                        (prefix.replace("_", "\\_") + "%",),
                    )
                except Exception:  # noqa: BLE001 - the server may be going away
                    found, rows = [], [(0,)]
                if found and rows[0][0] > 0:
                    action(proc)
                    return
                time.sleep(0.01)

        threading.Thread(target=watch, daemon=True).start()

    return hook


def _option_files_for(login: dict[str, Any]) -> list[str]:
    """The credentials files in the temporary directory that name this server's socket."""
    found = []
    for name in os.listdir(tempfile.gettempdir()):
        path = os.path.join(tempfile.gettempdir(), name)
        with contextlib.suppress(OSError):
            if name.startswith(".mutuapix-client-") and str(login["login_unix_socket"]) in Path(path).read_text():
                found.append(path)
    return found


def test_module_killed_mid_restore_leaves_the_target_and_next_run_cleans_up(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    name = "kill_app"
    datagen.create_database(mariadb, name, 6_000_000)
    try:
        path = make_backup(mariadb, name, tmp_path, chunk_size="256K")
        mariadb.execute(f"UPDATE {name}.users SET name = 'after backup' WHERE id < 10")
        before = table_checksums(mariadb, name)
        hook = _act_when_shadow_loads(mariadb, lambda proc: os.kill(proc.pid, signal.SIGKILL))
        before_kill = set(_option_files_for(login))
        killed = run_module(MODULE, dict(login, src=path, mode="restore", force=True), popen_hook=hook)
        assert killed.rc == -signal.SIGKILL, killed
        left_credentials = set(_option_files_for(login)) - before_kill
        assert left_credentials  # a killed run cannot remove its file holding the password
        time.sleep(0.5)  # the orphaned client sessions notice their closed stdin
        leftovers = [s for s in schemas(mariadb) if s.startswith("_restore_kill_app_")]
        assert leftovers
        assert table_checksums(mariadb, name) == before
        again = verify(login, src=path, verify="rows")
        assert not again.failed, again.get("msg")
        assert set(leftovers) <= set(again["cleaned_up"])
        assert not [s for s in schemas(mariadb) if s.startswith("_restore_kill_app_")]
        assert not [p for p in left_credentials if os.path.exists(p)]  # the next run removed it
    finally:
        for schema in schemas(mariadb):
            if schema.startswith((name, "_restore_kill_app_")):
                mariadb.execute(f"DROP DATABASE IF EXISTS `{schema}`")


def test_server_killed_mid_restore(private_server: MariaDB, tmp_path: Path) -> None:
    server = private_server
    name = "crash_app"
    datagen.create_database(server, name, 6_000_000)
    path = make_backup(server, name, tmp_path, chunk_size="256K")
    server.execute(f"UPDATE {name}.users SET name = 'after backup' WHERE id < 10")
    before = table_checksums(server, name)
    hook = _act_when_shadow_loads(server, lambda proc: server.kill())
    result = run_module(MODULE, dict(server.login, src=path, mode="restore", force=True), popen_hook=hook)
    assert result.failed and "Traceback" not in result["msg"]
    assert "crash_app" in result["msg"] or "restor" in result["msg"]
    server.start()
    assert table_checksums(server, name) == before
    assert [s for s in schemas(server) if s.startswith("_restore_crash_app_")]
    again = run_module(MODULE, dict(server.login, src=path, mode="restore", force=True, keep_old=0))
    assert not again.failed, again.get("msg")
    assert again["cleaned_up"] and not [s for s in schemas(server) if s.startswith("_restore_")]
    after = table_checksums(server, name)
    assert after != before and server.execute(f"SELECT name FROM {name}.users WHERE id = 1")[0][0] != "after backup"


def test_interrupted_cutover_is_undone_by_the_next_run(mariadb: MariaDB, login: dict[str, Any], live_db: Any) -> None:
    """A run killed after dropping the target's triggers but before its RENAME: the next run puts them back."""
    name, path, _reference, changed = live_db
    create = mariadb.execute(f"SHOW CREATE TRIGGER {name}.transactions_before_insert")[0][2]
    old = f"{name}_old_20261128T000000Z"
    mariadb.execute(f"CREATE DATABASE {old}")
    mariadb.execute(
        f"CREATE TABLE {old}.__mutuapix_cutover (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, phase varchar(16) NOT NULL,"
        " target varchar(64) NOT NULL, body longtext NOT NULL)"
    )
    mariadb.execute(f"INSERT INTO {old}.__mutuapix_cutover (phase, target, body) VALUES ('begin', %s, '')", (name,))
    mariadb.execute(
        f"INSERT INTO {old}.__mutuapix_cutover (phase, target, body) VALUES ('undo:TRIGGER', %s, %s)",
        (name, f"DELIMITER ;;\n{create} ;;\nDELIMITER ;\n"),
    )
    mariadb.execute(f"DROP TRIGGER {name}.transactions_before_insert")
    result = verify(login, src=path, verify="rows")
    assert not result.failed, result.get("msg")
    assert old in result["cleaned_up"]
    assert old not in schemas(mariadb)
    assert table_checksums(mariadb, name) == changed


TRIGGER_MODES = "SELECT TRIGGER_NAME, SQL_MODE, DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"


def held_swap(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path, name: str, held: str, **args: Any
) -> tuple[Any, float, str]:
    """Restore ``name`` (payments with a trigger, ledger, a procedure) while a transaction holds table ``held``.

    Returns the result, the seconds it took and the backup's path; the target's checksums must
    not have changed (checked here), nor its trigger's sql_mode and definer.
    """
    mariadb.execute(f"CREATE DATABASE {name}")
    mariadb.execute(f"CREATE TABLE {name}.payments (id int PRIMARY KEY, amount int, audited int DEFAULT 0)")
    with mariadb.connect(name) as strict, strict.cursor() as cur:
        # created as a Laravel connection does it (strict), not in the server's default mode
        cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE'")
        cur.execute("CREATE TRIGGER payments_audit BEFORE INSERT ON payments FOR EACH ROW SET NEW.audited = 1")
    mariadb.execute(f"CREATE TABLE {name}.ledger (id int PRIMARY KEY)")
    mariadb.execute(f"CREATE PROCEDURE {name}.ledger_total() SELECT COUNT(*) FROM ledger")
    mariadb.execute(f"INSERT INTO {name}.payments (id, amount) VALUES (1, 10), (2, 20)")
    path = make_backup(mariadb, name, tmp_path)
    mariadb.execute(f"INSERT INTO {name}.payments (id, amount) VALUES (3, 30)")
    before = table_checksums(mariadb, name)
    modes = mariadb.execute(TRIGGER_MODES, (name,))
    holder = mariadb.connect()
    try:
        with holder.cursor() as cur:
            cur.execute("START TRANSACTION")
            cur.execute(f"SELECT COUNT(*) FROM {name}.{held}")
        started = time.monotonic()
        result = verify(login, src=path, mode="restore", force=True, verify="rows", lock_wait_timeout=2, **args)
        took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert table_checksums(mariadb, name) == before
    if not args.get("strip_definers"):
        assert mariadb.execute(TRIGGER_MODES, (name,)) == modes
    return result, took, path


def test_a_swap_held_up_on_the_triggered_table_fails_within_its_lock_wait_timeout(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """The transaction holds the very table whose trigger the swap drops: no session waits a day for it."""
    try:
        result, took, _path = held_swap(mariadb, login, tmp_path, "locked_trg", "payments")
        assert result.failed and "failed before any table was moved" in result["msg"], result.get("msg")
        assert took < 60
        mariadb.execute("INSERT INTO locked_trg.payments (id, amount) VALUES (4, 40)")
        assert mariadb.execute("SELECT audited FROM locked_trg.payments WHERE id = 4") == [(1,)]
    finally:
        drop_schemas_of(mariadb, "locked_trg")


def test_a_swap_that_cannot_get_its_locks_puts_the_triggers_back_at_once(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """An application transaction holds a table of the target: the RENAME times out after lock_wait_timeout
    and the triggers dropped just before it are back before the task fails, not at some later run."""
    name = "locked_app"
    try:
        result, took, path = held_swap(mariadb, login, tmp_path, name, "ledger")
        assert result.failed and "failed before any table was moved" in result["msg"], result.get("msg")
        assert "Lock wait timeout" in result["msg"] and "lock_wait_timeout (2 s)" in result["msg"]
        assert "triggers it had dropped are back" in result["msg"]
        assert took < 60
        assert sorted(s for s in schemas(mariadb) if name in s) == [name]  # no old schema, no shadow left
        mariadb.execute(f"INSERT INTO {name}.payments (id, amount) VALUES (4, 40)")
        assert mariadb.execute(f"SELECT audited FROM {name}.payments WHERE id = 4") == [(1,)]

        again = verify(login, src=path, mode="restore", force=True, verify="rows", lock_wait_timeout=2)
        assert not again.failed, again.get("msg")
        assert mariadb.execute(f"SELECT id FROM {name}.payments ORDER BY id") == [(1,), (2,)]
    finally:
        drop_schemas_of(mariadb, name)


@pytest.mark.parametrize("strip", [True, False], ids=["strip_definers", "SET USER"])
def test_a_least_privilege_swap_that_cannot_get_its_locks_puts_the_triggers_back(
    mariadb: MariaDB, tmp_path: Path, strip: bool
) -> None:
    """The documented restore account puts the target's trigger back after a lock wait, though another
    account defined it (strip_definers: then as its own) and a procedure it may not read; the next run works."""
    name = "locked_lp"
    mariadb.execute("CREATE USER IF NOT EXISTS 'lp_restorer'@'localhost' IDENTIFIED BY 'lp-Restorer-Pass-1'")
    for pattern in ("\\_restore\\_%", name, f"{name}\\_old\\_%"):
        mariadb.execute(
            "GRANT CREATE, DROP, SELECT, INSERT, ALTER, INDEX, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE,"
            f" ALTER ROUTINE, EVENT, LOCK TABLES ON `{pattern}`.* TO 'lp_restorer'@'localhost'"
        )
    mariadb.execute(f"GRANT BINLOG ADMIN{'' if strip else ', SET USER'} ON *.* TO 'lp_restorer'@'localhost'")
    trust = mariadb.execute("SELECT @@GLOBAL.log_bin_trust_function_creators")[0][0]
    mariadb.execute("SET GLOBAL log_bin_trust_function_creators = 1")
    account = dict(mariadb.login, login_user="lp_restorer", login_password="lp-Restorer-Pass-1")
    try:
        result, _took, path = held_swap(mariadb, account, tmp_path, name, "ledger", strip_definers=strip)
        assert result.failed and "triggers it had dropped are back" in result["msg"], result.get("msg")
        definer = "lp_restorer@localhost" if strip else "root@localhost"
        assert mariadb.execute(TRIGGER_MODES, (name,)) == [
            ("payments_audit", "STRICT_ALL_TABLES,NO_ZERO_DATE", definer)
        ]
        again = verify(account, src=path, mode="restore", force=True, verify="rows", strip_definers=strip)
        assert not again.failed, again.get("msg")
        assert "'ledger_total' of 'locked_lp' (another account's routine" in json.dumps(again.get("warnings")), again
        assert mariadb.execute(f"SELECT id FROM {name}.payments ORDER BY id") == [(1,), (2,)]
    finally:
        mariadb.execute(f"SET GLOBAL log_bin_trust_function_creators = {int(trust)}")
        mariadb.execute("DROP USER IF EXISTS 'lp_restorer'@'localhost'")
        drop_schemas_of(mariadb, name)


def test_a_run_in_progress_is_not_cleaned_up(mariadb: MariaDB, login: dict[str, Any], backup: str) -> None:
    from ansible_collections.mutuapix.ops.plugins.module_utils._restore import lock_name

    busy = "_verify_rsrc_20261128T000000Z"
    mariadb.execute(f"CREATE DATABASE {busy}")
    holder = mariadb.connect()
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(busy),))
        result = verify(login, src=backup, verify="rows")
        assert not result.failed and busy not in result["cleaned_up"] and busy in schemas(mariadb)
        holder.close()
        result = verify(login, src=backup, verify="rows")
        assert busy in result["cleaned_up"] and busy not in schemas(mariadb)
    finally:
        if holder.open:
            holder.close()
        mariadb.execute(f"DROP DATABASE IF EXISTS {busy}")


# --- bad inputs and privileges --------------------------------------------------------------------------


def test_scratch_database_that_exists(mariadb: MariaDB, login: dict[str, Any], backup: str) -> None:
    mariadb.execute("CREATE DATABASE IF NOT EXISTS taken_scratch")
    try:
        result = verify(login, src=backup, scratch_database="taken_scratch")
        assert result.failed and "already exists" in result["msg"]
        assert mariadb.execute("SHOW DATABASES LIKE 'taken\\_scratch'")
    finally:
        mariadb.execute("DROP DATABASE IF EXISTS taken_scratch")


def test_account_lacking_privileges(mariadb: MariaDB, backup: str) -> None:
    mariadb.execute("CREATE USER IF NOT EXISTS 'weak'@'localhost' IDENTIFIED BY 'weak-Pass-123'")
    mariadb.execute("GRANT SELECT ON rsrc.* TO 'weak'@'localhost'")
    try:
        weak = dict(mariadb.login, login_user="weak", login_password="weak-Pass-123")
        before = schemas(mariadb)
        result = verify(weak, src=backup)
        assert result.failed and "sql_log_bin" in result["msg"] and "BINLOG ADMIN" in result["msg"]
        result = verify(weak, src=backup, write_binlog=True)
        assert result.failed and "may not create database" in result["msg"]
        assert schemas(mariadb) == before
    finally:
        mariadb.execute("DROP USER IF EXISTS 'weak'@'localhost'")


def test_database_must_match_the_backup(login: dict[str, Any], backup: str) -> None:
    result = verify(login, src=backup, database="other")
    assert result.failed and "not of 'other'" in result["msg"]


def test_restore_account_with_definer_stripping(mariadb: MariaDB, backup: str) -> None:
    """A non-SUPER account restores views/triggers/routines once definers are stripped."""
    mariadb.execute("CREATE USER IF NOT EXISTS 'restorer'@'localhost' IDENTIFIED BY 'restorer-Pass-1'")
    mariadb.execute(
        "GRANT CREATE, DROP, SELECT, INSERT, ALTER, INDEX, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE,"
        " ALTER ROUTINE, EVENT, LOCK TABLES ON `\\_verify\\_%`.* TO 'restorer'@'localhost'"
    )
    mariadb.execute("GRANT BINLOG ADMIN ON *.* TO 'restorer'@'localhost'")
    # With the binary log on, a non-SUPER account may create triggers/routines only with this (see the docs).
    trust = mariadb.execute("SELECT @@GLOBAL.log_bin_trust_function_creators")[0][0]
    mariadb.execute("SET GLOBAL log_bin_trust_function_creators = 1")
    try:
        account = dict(mariadb.login, login_user="restorer", login_password="restorer-Pass-1")
        denied = verify(account, src=backup, verify="rows")
        assert denied.failed and "SUPER" in denied["msg"] and "transactions" in denied["msg"]
        result = verify(account, src=backup, verify="rows", strip_definers=True)
        assert not result.failed, result.get("msg")
        assert result["verified"]
    finally:
        mariadb.execute(f"SET GLOBAL log_bin_trust_function_creators = {int(trust)}")
        mariadb.execute("DROP USER IF EXISTS 'restorer'@'localhost'")
        for schema in schemas(mariadb):
            if schema.startswith("_verify_rsrc_"):
                mariadb.execute(f"DROP DATABASE `{schema}`")


def test_bad_sql_fails_clearly_and_drops_the_scratch(
    mariadb: MariaDB, login: dict[str, Any], source_db: str, tmp_path: Path
) -> None:
    """A frame the server rejects (valid file, bad SQL) names the table and the server's message."""
    sql = tmp_path / "bad.sql"
    text = (ROOT / "tests" / "fixtures" / "mysql80_dump.sql").read_text()
    sql.write_text(text.replace("INSERT INTO `users` VALUES", "INSERT INTO `users` VALUE_S", 1))
    path = frame_sql_file(str(sql), tmp_path / "b", "app")
    before = schemas(mariadb)
    result = verify(login, src=path, strip_definers=True)
    assert result.failed and "users" in result["msg"] and "syntax" in result["msg"]
    assert schemas(mariadb) == before
    mariadb_client(mariadb, "SELECT 1")


# --- playbooks ------------------------------------------------------------------------------------------


def _playbook_env(mariadb: MariaDB, tmp_path: Path) -> tuple[Path, Path]:
    inventory = tmp_path / "inventory.yml"
    local = {"ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON}
    # db1 in the playbooks' default group; web1, outside it, is never a target
    groups = {"databases": {"hosts": {"db1": local}}, "app": {"hosts": {"web1": {"ansible_connection": "local"}}}}
    inventory.write_text(yaml.safe_dump({"all": {"children": groups}}))
    cnf = tmp_path / "client.cnf"
    cnf.write_text(f'[client]\nuser=root\npassword="{mariadb.ROOT_PASSWORD}"\n')
    cnf.chmod(0o600)
    return inventory, cnf


def test_verify_playbook(mariadb: MariaDB, backup: str, tmp_path: Path) -> None:
    inventory, cnf = _playbook_env(mariadb, tmp_path)
    extra = {
        "verify_database": "rsrc",
        "verify_backup_dir": os.path.dirname(backup),
        "verify_login_unix_socket": mariadb.socket,
        "verify_config_file": str(cnf),
    }
    proc = run_playbook(ROOT / "playbooks" / "verify.yml", inventory, extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "restores:" in proc.stdout and "tables verified" in proc.stdout


def test_restore_playbook_requires_confirmation(mariadb: MariaDB, live_db: Any, tmp_path: Path) -> None:
    name, path, reference, changed = live_db
    inventory, cnf = _playbook_env(mariadb, tmp_path)
    extra = {
        "restore_database": name,
        "restore_src": path,
        "restore_login_unix_socket": mariadb.socket,
        "restore_config_file": str(cnf),
    }
    refused = run_playbook(ROOT / "playbooks" / "restore.yml", inventory, extra)
    assert refused.returncode != 0 and "restore_confirm" in refused.stdout
    assert table_checksums(mariadb, name) == changed
    wrong = run_playbook(ROOT / "playbooks" / "restore.yml", inventory, dict(extra, restore_confirm="other"))
    assert wrong.returncode != 0 and table_checksums(mariadb, name) == changed
    done = run_playbook(ROOT / "playbooks" / "restore.yml", inventory, dict(extra, restore_confirm=name))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert table_checksums(mariadb, name) == reference
    assert "web1" not in done.stdout.split("PLAY RECAP")[1]


def test_restore_playbook_runs_on_one_named_server(mariadb: MariaDB, live_db: Any, tmp_path: Path) -> None:
    """One confirmation names a database, not servers: a run over several is refused unless asked for; a
    pattern that matches no host fails instead of restoring nothing."""
    name, path, reference, changed = live_db
    inventory, cnf = _playbook_env(mariadb, tmp_path)
    host = {"ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"databases": {"hosts": {"db1": host, "db2": host}}}}}))
    extra = {
        "restore_database": name,
        "restore_confirm": name,
        "restore_src": path,
        "restore_login_unix_socket": mariadb.socket,
        "restore_config_file": str(cnf),
    }
    both = run_playbook(ROOT / "playbooks" / "restore.yml", inventory, extra)
    assert both.returncode != 0
    assert f"This would restore {name} on 2 servers (db1, db2)" in both.stdout, both.stdout[-3000:]
    assert table_checksums(mariadb, name) == changed
    nothing = run_playbook(ROOT / "playbooks" / "restore.yml", inventory, dict(extra, restore_hosts="db9"))
    assert nothing.returncode != 0 and "No host matched 'db9': nothing was restored" in nothing.stdout
    nothing = run_playbook(ROOT / "playbooks" / "verify.yml", inventory, {"verify_hosts": "dbs", "verify_src": path})
    assert nothing.returncode != 0 and "No host matched 'dbs': nothing was verified" in nothing.stdout
    one = run_playbook(ROOT / "playbooks" / "restore.yml", inventory, extra, args=["--limit", "db2"])
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-2000:]
    assert "db1" not in one.stdout.split("PLAY RECAP")[1]
    assert table_checksums(mariadb, name) == reference


def test_restore_playbook_replaces_only_the_confirmed_database(mariadb: MariaDB, tmp_path: Path) -> None:
    """restore_src of another database than the confirmed one: refused, nothing touched. The target is
    always the confirmed name, never the database named by the file's manifest."""
    prod, staging = "pb_prod", "pb_staging"
    try:
        for db in (prod, staging):
            mariadb.execute(f"CREATE DATABASE {db}")
            mariadb.execute(f"CREATE TABLE {db}.orders (id int PRIMARY KEY)")
            mariadb.execute(f"INSERT INTO {db}.orders VALUES (1)")
        mariadb.execute(f"INSERT INTO {prod}.orders VALUES (10)")
        path = make_backup(mariadb, prod, tmp_path / "b")
        mariadb.execute(f"INSERT INTO {prod}.orders VALUES (2), (3)")
        before = {db: table_checksums(mariadb, db) for db in (prod, staging)}
        inventory, cnf = _playbook_env(mariadb, tmp_path)
        extra = {
            "restore_database": staging,
            "restore_confirm": staging,
            "restore_src": path,  # production's backup
            "restore_login_unix_socket": mariadb.socket,
            "restore_config_file": str(cnf),
        }
        refused = run_playbook(ROOT / "playbooks" / "restore.yml", inventory, extra)
        assert refused.returncode != 0
        assert f"is a backup of database '{prod}', not of '{staging}'" in refused.stdout, refused.stdout[-3000:]
        assert {db: table_checksums(mariadb, db) for db in (prod, staging)} == before
        assert sorted(s for s in schemas(mariadb) if s.startswith("pb_")) == [prod, staging]

        # Restoring production's backup into staging on purpose: the confirmed target is the one replaced.
        copied = run_playbook(
            ROOT / "playbooks" / "restore.yml",
            inventory,
            dict(extra, restore_database=prod, restore_target_database=staging),
        )
        assert copied.returncode == 0, copied.stdout[-3000:] + copied.stderr[-2000:]
        assert f"{staging} restored from {path}" in copied.stdout
        assert table_checksums(mariadb, prod) == before[prod]
        assert mariadb.execute(f"SELECT id FROM {staging}.orders ORDER BY id") == [(1,), (10,)]
        missing = run_playbook(
            ROOT / "playbooks" / "restore.yml",
            inventory,
            {k: v for k, v in extra.items() if k != "restore_database"},
        )
        assert missing.returncode != 0 and "restore_database" in missing.stdout
    finally:
        for schema in schemas(mariadb):
            if schema.startswith("pb_"):
                mariadb.execute(f"DROP DATABASE IF EXISTS `{schema}`")


# --- review findings: views named like restored tables, kept scratches, check-mode reports --------


def _view_over_renamed_table(mariadb: MariaDB, name: str) -> None:
    """What a common migration does: rename a table, leave a compatibility view under the old name."""
    mariadb.execute(f"RENAME TABLE {name}.ledger TO {name}.ledger_v2")
    mariadb.execute(f"CREATE VIEW {name}.ledger AS SELECT * FROM {name}.ledger_v2")


def test_a_view_named_like_a_restored_table_is_replaced_by_it(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """The target's view `ledger` collided with the backup's table `ledger` at the RENAME (1050), and the
    message blamed a lock wait: a rollback after such a migration could never succeed."""
    name = "view_named_app"
    try:
        mariadb.execute(f"CREATE DATABASE {name}")
        mariadb.execute(f"CREATE TABLE {name}.ledger (id int PRIMARY KEY)")
        mariadb.execute(f"INSERT INTO {name}.ledger VALUES (1), (2)")
        path = make_backup(mariadb, name, tmp_path)
        reference = table_checksums(mariadb, name)
        _view_over_renamed_table(mariadb, name)

        result = verify(login, src=path, mode="restore", force=True, verify="rows")

        assert not result.failed, result.get("msg")
        assert table_checksums(mariadb, name) == reference  # `ledger` is the table again, no view left
        assert sorted(result["replaced"]) == ["ledger", "ledger_v2"]
        journal = mariadb.execute(f"SELECT phase, body FROM {result['old_database']}.__mutuapix_cutover")
        assert any(phase == "undo:VIEW" and "ledger_v2" in body for phase, body in journal)
    finally:
        drop_schemas_of(mariadb, name)


def test_a_swap_that_fails_after_dropping_a_colliding_view_puts_it_back(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """The view is dropped in the window before the RENAME; a RENAME that then times out brings it back."""
    name = "view_locked_app"
    try:
        mariadb.execute(f"CREATE DATABASE {name}")
        mariadb.execute(f"CREATE TABLE {name}.ledger (id int PRIMARY KEY)")
        mariadb.execute(f"CREATE TABLE {name}.payments (id int PRIMARY KEY)")
        path = make_backup(mariadb, name, tmp_path)
        _view_over_renamed_table(mariadb, name)
        before = table_checksums(mariadb, name)
        holder = mariadb.connect()
        try:
            with holder.cursor() as cur:
                cur.execute("START TRANSACTION")
                cur.execute(f"SELECT COUNT(*) FROM {name}.payments")
            result = verify(login, src=path, mode="restore", force=True, verify="rows", lock_wait_timeout=2)
        finally:
            holder.rollback()
            holder.close()
        assert result.failed and "failed before any table was moved" in result["msg"], result.get("msg")
        assert "lock_wait_timeout (2 s)" in result["msg"]
        assert table_checksums(mariadb, name) == before  # the view `ledger` is back
        assert mariadb.execute(f"SELECT COUNT(*) FROM {name}.ledger") == [(0,)]
    finally:
        drop_schemas_of(mariadb, name)


def test_a_swap_failing_for_another_reason_does_not_blame_a_lock_wait(mariadb: MariaDB) -> None:
    """Only error 1205 (lock wait timeout) or 1213 (deadlock) is explained by lock_wait_timeout."""
    import pymysql

    from ansible_collections.mutuapix.ops.plugins.module_utils import _restore

    old = "swap_msg_old_20261128T000000Z"
    connection = mariadb.connect()
    try:
        for error, lock_hint in (
            (pymysql.err.OperationalError(1050, "Table 'jobs' already exists"), False),
            (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), True),
        ):
            mariadb.execute(f"CREATE DATABASE {old}")
            mariadb.execute(
                f"CREATE TABLE {old}.__mutuapix_cutover (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                "phase varchar(16) NOT NULL, target varchar(64) NOT NULL, body longtext NOT NULL)"
            )
            mariadb.execute(f"INSERT INTO {old}.__mutuapix_cutover (phase, target, body) VALUES ('begin', 'x', '')")
            with pytest.raises(_restore.RestoreError) as raised:
                _restore._undo_failed_swap(connection, lambda *_a: 0, "x", old, error, 7)
            message = str(raised.value)
            assert "the target is as it was" in message
            assert ("lock_wait_timeout (7 s)" in message) is lock_hint, message
            assert old not in schemas(mariadb)  # nothing journaled but 'begin': the old schema goes
    finally:
        connection.close()
        mariadb.execute(f"DROP DATABASE IF EXISTS {old}")


def test_a_kept_scratch_survives_the_next_verify(mariadb: MariaDB, login: dict[str, Any], backup: str) -> None:
    """keep_scratch dropped the marker table but left the `_verify_<db>_<ts>` name the next run drops by."""
    first = verify(login, src=backup, keep_scratch=True, verify="rows")
    kept = first.get("database")
    try:
        assert not first.failed, first.get("msg")
        assert kept.startswith("_kept_rsrc_"), kept
        time.sleep(1.1)  # another timestamp for the next scratch
        second = verify(login, src=backup, verify="rows")
        assert not second.failed, second.get("msg")
        assert kept not in second["cleaned_up"] and kept in schemas(mariadb)
        refused = verify(
            login, src=backup, keep_scratch=True, scratch_database="_verify_rsrc_20261128T000000Z", verify="rows"
        )
        assert refused.failed and "which a later run drops" in refused["msg"], refused.get("msg")
        assert "_verify_rsrc_20261128T000000Z" not in schemas(mariadb)
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS `{kept}`")


def test_backup_dir_warns_about_a_newer_backup_it_skips(
    mariadb: MariaDB, login: dict[str, Any], backup: str, tmp_path: Path
) -> None:
    older = copy_backup(backup, tmp_path / "dir")
    stamp = os.path.basename(older)[len("rsrc-") : len("rsrc-") + 16]
    newer = older.replace(stamp, "20991231T235959Z")  # a newer copy whose manifest cannot be read
    Path(newer).write_bytes(Path(older).read_bytes())
    Path(newer + ".manifest.json").write_text("{not json")
    result = run_module(MODULE, dict(login, backup_dir=str(tmp_path / "dir"), database="rsrc"), check=True)
    assert not result.failed, result.get("msg")
    assert result["src"] == older
    warnings = json.dumps(result.get("warnings", []))
    assert f"using {os.path.basename(older)}, not a newer backup" in warnings, warnings
    assert f"skipped manifest {newer}.manifest.json is not readable" in warnings, warnings


def test_playbooks_report_check_mode_honestly(mariadb: MariaDB, backup: str, live_db: Any, tmp_path: Path) -> None:
    """restore.yml --check failed on a missing cutover_ms; verify.yml --check said 'N tables verified'."""
    name, path, _reference, changed = live_db
    inventory, cnf = _playbook_env(mariadb, tmp_path)
    restore = run_playbook(
        ROOT / "playbooks" / "restore.yml",
        inventory,
        {
            "restore_database": name,
            "restore_confirm": name,
            "restore_src": path,
            "restore_login_unix_socket": mariadb.socket,
            "restore_config_file": str(cnf),
        },
        args=["--check"],
    )
    assert restore.returncode == 0, restore.stdout[-3000:] + restore.stderr[-2000:]
    assert f"Check mode: {path} is intact; restoring it would replace" in restore.stdout, restore.stdout[-2000:]
    assert table_checksums(mariadb, name) == changed
    check = run_playbook(
        ROOT / "playbooks" / "verify.yml",
        inventory,
        {
            "verify_database": "rsrc",
            "verify_backup_dir": os.path.dirname(backup),
            "verify_login_unix_socket": mariadb.socket,
            "verify_config_file": str(cnf),
        },
        args=["--check"],
    )
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert "tables verified" not in check.stdout
    assert "Check mode: " in check.stdout and "nothing was restored" in check.stdout, check.stdout[-2000:]


def test_a_mariadb_sequence_is_backed_up_verified_and_restored_with_its_next_value(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """mariadb-dump writes a SEQUENCE before the tables under its own comment: it was left in the header,
    which every load session replays, so verify and restore failed with 'Table ... already exists'."""
    name = "seq_app"
    drop_schemas_of(mariadb, name)
    mariadb.execute(f"CREATE DATABASE {name}")
    try:
        mariadb_client(
            mariadb,
            "CREATE SEQUENCE invoice_no START WITH 1000 CACHE 10;"
            "CREATE TABLE invoices (id INT PRIMARY KEY, no BIGINT NOT NULL, KEY (no));"
            "INSERT INTO invoices VALUES (1, NEXTVAL(invoice_no)), (2, NEXTVAL(invoice_no));"
            "CREATE TABLE invoice_lines (id INT PRIMARY KEY, invoice INT, KEY (invoice));"
            "INSERT INTO invoice_lines VALUES (1, 1), (2, 1), (3, 2);",
            name,
        )
        path = make_backup(mariadb, name, tmp_path / "b")
        entry = read_manifest(path)["tables"]["invoice_no"]
        assert entry["kind"] == "table" and entry["sequence"] is True and entry["rows"] == 0
        header = read_manifest(path)["sections"]["header"]
        assert header["size"] < 2000  # the sequence is not in the header any more

        result = verify(login, src=path, workers=2)
        assert not result.failed, result.get("msg")
        assert result["verified"] is True and result["tables"]["invoices"]["rows_restored"] == 2

        restored = verify(login, src=path, mode="restore", target_database=f"{name}_copy", workers=2)
        assert not restored.failed, restored.get("msg")
        assert mariadb.execute(f"SELECT NEXTVAL({name}_copy.invoice_no)")[0][0] == 1010
        assert table_checksums(mariadb, f"{name}_copy") == table_checksums(mariadb, name)
    finally:
        drop_schemas_of(mariadb, name)


def test_a_table_named_like_the_modules_own_marker_is_refused_up_front(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """A table named __mutuapix_restore took the place of the scratch database's marker table: verify
    and restore failed half way with "Unknown column 'source'", which did not say why."""
    name = "own_names"
    drop_schemas_of(mariadb, name)
    mariadb.execute(f"CREATE DATABASE {name}")
    try:
        mariadb_client(
            mariadb,
            "CREATE TABLE __mutuapix_restore (id INT PRIMARY KEY); INSERT INTO __mutuapix_restore VALUES (1);",
            name,
        )
        path = make_backup(mariadb, name, tmp_path / "b")
        for args in ({}, {"mode": "restore", "target_database": f"{name}_copy"}):
            result = verify(login, src=path, **args)
            assert result.failed
            assert "holds a table named __mutuapix_restore" in result["msg"], result["msg"]
            assert "rename that table" in result["msg"]
        assert not mariadb.execute("SHOW DATABASES LIKE 'own\\_names\\_copy'")
    finally:
        drop_schemas_of(mariadb, name)


def test_a_redump_refused_because_the_indexes_were_added_under_its_snapshot_is_retried(
    mariadb: MariaDB, login: dict[str, Any], tmp_path: Path
) -> None:
    """The verification re-dumps a table while its secondary indexes are added. When that ALTER commits
    after the re-dump opened its snapshot, the server refuses the read with error 1412 ("please retry
    transaction"): verify failed for nothing (seen about once in six runs on small tables). The dump
    program here answers the first re-dumps as the server then does; a refusal that never ends, and any
    other error, still fail the verify with the dump program's message."""
    name = "redump_retry"
    drop_schemas_of(mariadb, name)
    mariadb.execute(f"CREATE DATABASE {name}")
    real = shutil.which("mariadb-dump")
    refusal = "mariadb-dump: Error 1412: Table definition has changed, please retry transaction when dumping table t"
    other = "mariadb-dump: Error 1146: Table 'x.t' doesn't exist when dumping table t"

    def verify_with(message: str, refusals: int) -> tuple[Any, int]:
        """Verify with a dump program whose first ``refusals`` re-dumps fail with ``message``; (result, re-dumps)."""
        run_dir = Path(tempfile.mkdtemp(dir=tmp_path))
        calls = run_dir / "calls"
        wrapper = run_dir / "mariadb-dump"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'[ "$1" = --version ] && exec {real} "$@"\n'
            f"echo >> {calls}\n"
            f'if [ "$(wc -l < {calls})" -le {refusals} ]; then echo "{message}" >&2; exit 2; fi\n'
            f'exec {real} "$@"\n'
        )
        wrapper.chmod(0o755)
        result = run_module(MODULE, dict(login, src=path), env={"PATH": f"{run_dir}{os.pathsep}{os.environ['PATH']}"})
        return result, len(calls.read_text().splitlines()) if calls.exists() else 0

    try:
        mariadb_client(
            mariadb, "CREATE TABLE t (id INT PRIMARY KEY, v INT, KEY (v)); INSERT INTO t VALUES (1, 1), (2, 2);", name
        )
        path = make_backup(mariadb, name, tmp_path / "b")
        result, redumps = verify_with(refusal, 1)
        assert redumps == 2, "the wrapper was not used"
        assert not result.failed, result.get("msg")
        assert result["verified"] is True and result["tables"]["t"]["rows_restored"] == 2

        never_ends, redumps = verify_with(refusal, 99)
        assert never_ends.failed and redumps == 5  # REDUMP_ATTEMPTS, then the server's message
        assert "re-dumping" in never_ends["msg"] and "Error 1412: Table definition has changed" in never_ends["msg"]

        not_retried, redumps = verify_with(other, 99)
        assert not_retried.failed and redumps == 1
        assert "Error 1146" in not_retried["msg"]
    finally:
        drop_schemas_of(mariadb, name)


def test_a_statement_longer_than_the_servers_max_allowed_packet_is_refused_before_anything_is_loaded(
    tmp_path: Path,
) -> None:
    """A 1.2 MB attachment is an INSERT over 1.2 MB (escaped bytes): a server at max_allowed_packet=1M refuses it.

    The dump side runs with --max-allowed-packet=1G, so the backup works; the restore names the
    table, the size needed and how to raise it, in check mode too, before it loads any table.
    """
    with temporary_server("mutuapix-restore-packet-") as server:
        server.execute("CREATE DATABASE pkt")
        server.execute("CREATE TABLE pkt.attachments (id INT PRIMARY KEY, body LONGBLOB)")
        server.execute("CREATE TABLE pkt.notes (id INT PRIMARY KEY, body TEXT)")
        server.execute("INSERT INTO pkt.attachments VALUES (1, %s), (2, 'small')", (os.urandom(1_200_000),))
        server.execute("INSERT INTO pkt.notes VALUES (1, 'a'), (2, 'b')")
        path = make_backup(server, "pkt", tmp_path / "b")
        server.execute("SET GLOBAL max_allowed_packet = 1048576")
        before = schemas(server)
        for check in (True, False):
            result = run_module(MODULE, dict(server.login, src=path), check=check)
            assert result.failed, result
            assert "'attachments'" in result["msg"] and "'notes'" not in result["msg"], result["msg"]
            assert "SET GLOBAL max_allowed_packet=2097152" in result["msg"], result["msg"]
            assert result["max_allowed_packet"] == 1048576 and result["max_allowed_packet_needed"] == 2097152
            assert schemas(server) == before
        server.execute("SET GLOBAL max_allowed_packet = 4194304")
        result = run_module(MODULE, dict(server.login, src=path))
        assert not result.failed, result.get("msg")
        assert result["tables"]["attachments"]["digest_ok"]
