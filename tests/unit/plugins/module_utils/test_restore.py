"""Unit tests of the restore engine's pure parts (no server): names, SQL rewriting, scheduler, file checks."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _dumpfile, _restore

CREATE = b"""DROP TABLE IF EXISTS `t`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
CREATE TABLE `t` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `user_id` bigint(20) unsigned NOT NULL,
  `email` varchar(255) NOT NULL,
  `status` varchar(20) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `t_email_unique` (`email`),
  KEY `t_user_id_index` (`user_id`),
  KEY `t_status_id` (`status`,`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
/*!40101 SET character_set_client = @saved_cs_client */;
"""


def test_split_secondary_keys_moves_keys_to_one_alter() -> None:
    create, alter = _restore.split_secondary_keys(CREATE)
    assert b"KEY `t_user_id_index`" not in create and b"UNIQUE KEY" not in create
    assert b"  KEY `t_status_id` (`status`,`id`)\n) ENGINE=InnoDB" in create  # trailing comma removed
    assert b"DROP TABLE IF EXISTS `t`;" in create and b"saved_cs_client */;\n" in create
    # The key holding the AUTO_INCREMENT column stays inline (MySQL requires it indexed).
    assert b"KEY `t_status_id`" in create
    assert alter == (
        b"ALTER TABLE `t` ADD UNIQUE KEY `t_email_unique` (`email`), ADD KEY `t_user_id_index` (`user_id`);\n"
    )


@pytest.mark.parametrize(
    "extra",
    [
        b"  CONSTRAINT `fk` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`),\n",
        b"  FULLTEXT KEY `ft` (`email`),\n",
    ],
)
def test_split_secondary_keys_leaves_foreign_keys_and_fulltext_alone(extra: bytes) -> None:
    sql = CREATE.replace(b"  PRIMARY KEY (`id`),\n", b"  PRIMARY KEY (`id`),\n" + extra)
    assert _restore.split_secondary_keys(sql) == (sql, None)


def test_split_secondary_keys_without_keys_or_create() -> None:
    plain = b"CREATE TABLE `m` (\n  `id` int NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n"
    assert _restore.split_secondary_keys(plain) == (plain, None)
    assert _restore.split_secondary_keys(b"-- nothing\n") == (b"-- nothing\n", None)


def test_strip_definers_all_forms() -> None:
    sql = (
        b"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER x */;;\n"
        b"/*!50013 DEFINER=`app`@`%` SQL SECURITY DEFINER */\n"
        b"CREATE DEFINER='o''k'@'10.0.0.%' PROCEDURE p() SELECT 1;\n"
        b"CREATE DEFINER=admin@localhost EVENT e ON SCHEDULE EVERY 1 DAY DO SELECT 1;\n"
    )
    out = _restore.strip_definers(sql)
    assert b"DEFINER=" not in out
    assert b"SQL SECURITY DEFINER" in out and b"TRIGGER x" in out and b"PROCEDURE p()" in out


QUALIFIED_TRIGGERS = (
    b"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER app.pay_audit BEFORE INSERT ON "
    b"app.payments FOR EACH ROW INSERT INTO app.audit VALUES (NEW.id) */;;\n"
    b"/*!50003 CREATE*/ /*!50003 trigger `app`.`pay``2` after update on `app` . `payments` for each row set @x = 1 */;;\n"
    b'CREATE TRIGGER IF NOT EXISTS "app"."p3" BEFORE DELETE ON "app"."payments" FOR EACH ROW SET @y = 1;\n'
    b"/*!50003 CREATE*/ /*!50003 TRIGGER plain BEFORE INSERT ON `payments` FOR EACH ROW SET NEW.a = 1 */;;\n"
)


def test_unqualify_triggers_creates_them_in_the_session_database() -> None:
    out = _restore.unqualify_triggers(QUALIFIED_TRIGGERS)
    assert out == (
        b"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER pay_audit BEFORE INSERT ON "
        b"payments FOR EACH ROW INSERT INTO app.audit VALUES (NEW.id) */;;\n"  # the body is left as written
        b"/*!50003 CREATE*/ /*!50003 trigger `pay``2` after update on `payments` for each row set @x = 1 */;;\n"
        b'CREATE TRIGGER IF NOT EXISTS "p3" BEFORE DELETE ON "payments" FOR EACH ROW SET @y = 1;\n'
        b"/*!50003 CREATE*/ /*!50003 TRIGGER plain BEFORE INSERT ON `payments` FOR EACH ROW SET NEW.a = 1 */;;\n"
    )
    assert _restore.unqualify_triggers(out) == out
    assert _dumpfile.trigger_names(QUALIFIED_TRIGGERS) == ["pay_audit", "pay`2", "p3", "plain"]


def test_disable_events_only_changes_their_status() -> None:
    sql = (
        b"/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `purge` ON SCHEDULE EVERY 1 SECOND "
        b"STARTS '2026-01-01 00:00:00' ON COMPLETION NOT PRESERVE ENABLE DO DELETE FROM app.sessions "
        b"WHERE note = 'ON COMPLETION PRESERVE ENABLE' */ ;;\n"
        b"/*!50106 CREATE*/ /*!50106 EVENT `off` ON SCHEDULE AT '2030-01-01 00:00:00' ON COMPLETION PRESERVE "
        b"DISABLE ON SLAVE COMMENT 'ENABLE later' DO SELECT 1 */ ;;\n"
        b"/*!50106 CREATE*/ /*!50106 EVENT `we``ird` ON SCHEDULE EVERY 1 DAY ON COMPLETION PRESERVE DISABLE DO "
        b"SET @s = 'ENABLE' */ ;;\n"
        b"create event e3 on schedule every 2 hour on completion preserve enable comment 'x' do set @t = 1;\n"
    )
    out = _restore.disable_events(sql)
    assert out == (
        sql.replace(b"NOT PRESERVE ENABLE DO", b"NOT PRESERVE DISABLE DO").replace(
            b"preserve enable comment", b"preserve DISABLE comment"
        )
    )
    assert b"WHERE note = 'ON COMPLETION PRESERVE ENABLE'" in out and b"COMMENT 'ENABLE later'" in out
    assert _restore.disable_events(out) == out


def test_derived_names_fit_mysql_identifier_limit() -> None:
    stamp = "20261128T150000Z"
    long_db = "d" * 64
    for func in (_restore.scratch_name, _restore.shadow_name, _restore.old_name):
        name = func(long_db, stamp)
        assert len(name) <= 64 and name.endswith(stamp)
    assert _restore.scratch_name("app", stamp) == "_verify_app_20261128T150000Z"
    assert _restore.old_name("app", stamp) == "app_old_20261128T150000Z"
    assert len(_restore.lock_name("x" * 64)) <= 64
    assert _restore.lock_name("a") != _restore.lock_name("b")


def test_session_prelude_disables_binlog_unless_asked() -> None:
    assert _restore.session_prelude(b"HEADER;\n", False) == b"SET SESSION sql_log_bin=0;\nHEADER;\n"
    assert _restore.session_prelude(b"HEADER;\n", True) == b"HEADER;\n"


# --- the scheduler ------------------------------------------------------------------------------


def test_task_pool_respects_dependencies_and_runs_in_parallel() -> None:
    order: list[str] = []
    lock = threading.Lock()
    active = {"now": 0, "max": 0}

    def work(key: str) -> None:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.05)
        with lock:
            order.append(key)
            active["now"] -= 1

    tasks = [
        _restore.Task("schema", lambda: work("schema"), weight=100),
        _restore.Task("a", lambda: work("a"), {"schema"}, 5),
        _restore.Task("b", lambda: work("b"), {"schema"}, 9),
        _restore.Task("keys", lambda: work("keys"), {"a", "b"}),
    ]
    _restore.TaskPool(2, lambda: None).run(tasks)
    assert order[0] == "schema" and order[-1] == "keys" and set(order[1:3]) == {"a", "b"}
    assert active["max"] == 2


def test_task_pool_stops_on_the_first_error_and_cancels() -> None:
    ran: list[str] = []
    cancelled: list[bool] = []

    def boom() -> None:
        raise _restore.RestoreError("load failed")

    tasks = [
        _restore.Task("bad", boom, weight=10),
        _restore.Task("after", lambda: ran.append("after"), {"bad"}),
    ]
    with pytest.raises(_restore.RestoreError, match="load failed"):
        _restore.TaskPool(2, lambda: cancelled.append(True)).run(tasks)
    assert ran == [] and cancelled == [True]


def test_task_pool_rejects_unknown_dependencies_and_cycles() -> None:
    with pytest.raises(ValueError, match="unknown"):
        _restore.TaskPool(1, lambda: None).run([_restore.Task("a", lambda: None, {"zzz"})])
    cycle = [_restore.Task("a", lambda: None, {"b"}), _restore.Task("b", lambda: None, {"a"})]
    with pytest.raises(RuntimeError, match="cycle"):
        _restore.TaskPool(2, lambda: None).run(cycle)


# --- choosing and checking files (no server needed) ----------------------------------------------


def _framed_backup(directory: Path, name: str = "app-20261128T031500Z.sql.zst", digest: bool = True) -> str:
    sql = (
        b"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n--\n/*!40101 SET NAMES utf8mb4 */;\n\n"
        b"--\n-- Table structure for table `t`\n--\n\nDROP TABLE IF EXISTS `t`;\nCREATE TABLE `t` (\n"
        b"  `id` int NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n\n"
        b"--\n-- Dumping data for table `t`\n--\n\nLOCK TABLES `t` WRITE;\n"
        b"/*!40000 ALTER TABLE `t` DISABLE KEYS */;\nINSERT INTO `t` VALUES\n(1),\n(2);\n"
        b"/*!40000 ALTER TABLE `t` ENABLE KEYS */;\nUNLOCK TABLES;\n"
        b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n\n-- Dump completed on 2026-11-28  3:15:01\n"
    )
    path = directory / name
    raw = io.BytesIO()
    writer = _dumpfile.FrameWriter(raw, "zstd")
    parser = _dumpfile.DumpParser(writer, 16, digest=digest)
    parser.feed(sql)
    parser.finish()
    sha, size = writer.close()
    path.write_bytes(raw.getvalue())
    manifest = {
        "format": _dumpfile.FORMAT_NAME,
        "format_version": 1,
        "database": "app",
        "compression": "zstd",
        "encryption": None,
        "file": name,
        "size": size,
        "sha256": sha,
        "uncompressed_size": writer.uncompressed,
        "dump": {"dialect": parser.dialect, "options": _dumpfile.DUMP_OPTIONS},
        "sections": parser.sections,
        "tables": parser.manifest_objects(),
    }
    Path(str(path) + ".manifest.json").write_text(json.dumps(manifest))
    return str(path)


def test_check_backup_accepts_a_good_file(tmp_path: Path) -> None:
    checked = _restore.check_backup(_framed_backup(tmp_path), [])
    assert checked.frames >= 5 and checked.manifest["tables"]["t"]["rows"] == 2
    assert checked.uncompressed == checked.manifest["uncompressed_size"]
    frame = checked.manifest["tables"]["t"]["frames"][0]
    assert b"CREATE TABLE" in b"".join(_restore.read_frame(checked.stream_path, frame, "zstd"))


def test_check_backup_without_trailer(tmp_path: Path) -> None:
    path = _framed_backup(tmp_path)
    manifest = json.loads(Path(path + ".manifest.json").read_text())
    del manifest["sections"]["footer"]
    Path(path + ".manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(_restore.RestoreError, match="header/footer"):
        _restore.check_backup(path, [])


def test_check_backup_wrong_size_and_sha(tmp_path: Path) -> None:
    path = _framed_backup(tmp_path)
    with open(path, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(_restore.RestoreError, match="truncated or was replaced"):
        _restore.check_backup(path, [])
    data = Path(path).read_bytes()[:-1]
    Path(path).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(_restore.RestoreError, match="does not match its manifest"):
        _restore.check_backup(path, [])


def test_check_backup_resigned_corruption_is_found_in_the_frames(tmp_path: Path) -> None:
    path = _framed_backup(tmp_path)
    manifest = json.loads(Path(path + ".manifest.json").read_text())
    frame = next(f for f in manifest["tables"]["t"]["frames"] if f["part"] == "data")
    data = bytearray(Path(path).read_bytes())
    data[frame["offset"]] ^= 0x40  # the frame's magic number: zstd frames carry no checksum of their own
    Path(path).write_bytes(bytes(data))
    manifest["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    Path(path + ".manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(_restore.RestoreError, match="corrupt|wrong size"):
        _restore.check_backup(path, [])


@pytest.mark.parametrize("digest", [False, True])
def test_check_backup_digests_the_data_as_stored(tmp_path: Path, digest: bool) -> None:
    """Frame-checksum or SHA-256 manifests: check_backup yields the SHA-256 of each table's data region."""
    path = _framed_backup(tmp_path, digest=digest)
    recorded = json.loads(Path(path + ".manifest.json").read_text())["tables"]["t"]["data_digest"]
    assert recorded.startswith("sha256:" if digest else "xxh64-32:")
    checked = _restore.check_backup(path, [])
    sha = hashlib.sha256(b"--\n\nLOCK TABLES `t` WRITE;\n/*!40000 ALTER TABLE `t` DISABLE KEYS */;\n")
    sha.update(b"INSERT INTO `t` VALUES\n(1),\n(2);\n/*!40000 ALTER TABLE `t` ENABLE KEYS */;\nUNLOCK TABLES;\n")
    assert checked.data_digest("t") == "sha256:" + sha.hexdigest()
    assert len(checked.frame_checksums["t"]) == 3


@pytest.mark.parametrize(
    "tamper,message",
    [
        (lambda m: m["tables"]["t"].update(rows=3), "holds 2 rows in the file but 3 in the manifest"),
        (lambda m: m["tables"]["t"].update(data_digest="xxh64-32:00000000"), "has data digest xxh64-32:"),
        (lambda m: m["tables"]["t"]["frames"][-1].update(checksum="00000000"), "is not the 00000000 the manifest"),
        (
            lambda m: m["tables"].update(ghost={"kind": "table", "rows": 0, "frames": []}),
            "'ghost' is in the manifest but not in the file",
        ),
    ],
)
@pytest.mark.parametrize("content_digests", [True, False])
def test_check_backup_refuses_a_manifest_of_other_content(
    tmp_path: Path, tamper, message: str, content_digests: bool
) -> None:
    path = _framed_backup(tmp_path, digest=False)
    manifest = json.loads(Path(path + ".manifest.json").read_text())
    tamper(manifest)
    Path(path + ".manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(_restore.RestoreError, match="does not belong to this file") as err:
        _restore.check_backup(path, [], content_digests=content_digests)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.pop("compression"),
        lambda m: m["sections"]["header"].pop("offset"),
        lambda m: m.update(tables=[]),
        lambda m: m["tables"]["t"]["frames"][0].update(offset="0"),
    ],
    ids=["no compression", "frame without offset", "tables a list", "offset a string"],
)
def test_check_backup_refuses_a_malformed_manifest_clearly(tmp_path: Path, tamper) -> None:
    """A manifest edited by hand fails the task with a message, never a traceback."""
    path = _framed_backup(tmp_path)
    manifest = json.loads(Path(path + ".manifest.json").read_text())
    tamper(manifest)
    Path(path + ".manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(_restore.RestoreError, match=r"manifest .* is malformed \(\w+Error: "):
        _restore.check_backup(path, [])


def test_check_backup_for_row_verification_hashes_nothing_it_does_not_need(tmp_path: Path) -> None:
    # frame-checksum manifest: the frames prove the data, no table region is hashed
    checked = _restore.check_backup(_framed_backup(tmp_path, digest=False), [], content_digests=False)
    assert checked.content_digests is False
    assert checked.contents.objects["t"].digest is None and checked.contents.objects["t"].rows == 2
    with pytest.raises(_restore.RestoreError, match="internal error"):
        checked.data_digest("t")  # never a silent mismatch in content verification
    # a manifest with sha256: digests (older backups, uncompressed files) is checked by hashing anyway
    old = _framed_backup(tmp_path, "app-20261101T031500Z.sql.zst", digest=True)
    checked = _restore.check_backup(old, [], content_digests=False)
    assert checked.content_digests is True
    assert (
        checked.data_digest("t") == json.loads(Path(old + ".manifest.json").read_text())["tables"]["t"]["data_digest"]
    )
    manifest = json.loads(Path(old + ".manifest.json").read_text())
    manifest["tables"]["t"]["data_digest"] = "sha256:" + "0" * 64
    Path(old + ".manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(_restore.RestoreError, match="has data digest sha256:"):
        _restore.check_backup(old, [], content_digests=False)


def test_remove_stale_workdirs_only_removes_those_of_dead_runs(tmp_path: Path) -> None:
    live, live_lock = _restore._private_workdir(str(tmp_path))
    dead, dead_lock = _restore._private_workdir(str(tmp_path))
    for workdir in (live, dead):
        Path(workdir, "stream").write_bytes(b"decrypted")
        assert os.stat(workdir).st_mode & 0o777 == 0o700
    os.close(dead_lock)  # what the kernel does when the run is killed
    starting = tmp_path / ".mutuapix-restore-starting"  # between mkdtemp and its lock file
    starting.mkdir()
    unlocked = tmp_path / ".mutuapix-restore-unlocked"  # killed right there, long ago
    unlocked.mkdir()
    os.utime(unlocked, (time.time() - 3600, time.time() - 3600))
    (tmp_path / ".mutuapix-restore-file").write_text("not a directory")
    try:
        removed = _restore.remove_stale_workdirs([str(tmp_path), str(tmp_path), str(tmp_path / "missing")])
        assert removed == sorted([dead, str(unlocked)])  # in name order; mkdtemp's names are random
        assert sorted(os.listdir(tmp_path)) == sorted(
            [os.path.basename(live), ".mutuapix-restore-starting", ".mutuapix-restore-file"]
        )
    finally:
        os.close(live_lock)


def test_a_new_workdir_is_never_seen_unlocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another run cleaning up while this one creates its directory must leave it alone."""
    removed_meanwhile: list[str] = []
    real_flock = fcntl.flock

    def flock_after_a_cleanup(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:  # this run is about to lock; another cleans up first
            removed_meanwhile.extend(_restore.remove_stale_workdirs([str(tmp_path)]))
        real_flock(fd, operation)

    monkeypatch.setattr(_restore.fcntl, "flock", flock_after_a_cleanup)
    workdir, lock = _restore._private_workdir(str(tmp_path))
    try:
        assert removed_meanwhile == []
        assert os.listdir(workdir) == [_restore.WORKDIR_LOCK]
        monkeypatch.setattr(_restore.fcntl, "flock", real_flock)
        assert _restore.remove_stale_workdirs([str(tmp_path)]) == []
    finally:
        os.close(lock)
    assert _restore.remove_stale_workdirs([str(tmp_path)]) == [workdir]


def test_find_backup_picks_the_newest_valid_one(tmp_path: Path) -> None:
    old = _framed_backup(tmp_path, "app-20261101T031500Z.sql.zst")
    new = _framed_backup(tmp_path, "app-20261128T031500Z.sql.zst")
    (tmp_path / "app-20261130T031500Z.sql.zst").write_bytes(b"no manifest: an interrupted copy")
    (tmp_path / "other-20261130T031500Z.sql.zst").write_bytes(b"")
    assert _restore.find_backup(str(tmp_path), "app") == new
    Path(new + ".manifest.json").write_text("{}")
    assert _restore.find_backup(str(tmp_path), "app") == old
    warnings: list[str] = []
    assert _restore.find_backup(str(tmp_path), "app", warnings.append) == old
    [warning] = warnings  # the newer one passed over is named, not skipped silently
    assert warning.startswith(f"using {os.path.basename(old)}, not a newer backup of 'app'")
    assert os.path.basename(new) in warning
    with pytest.raises(_restore.RestoreError, match="no backup of database 'nope'"):
        _restore.find_backup(str(tmp_path), "nope")
    with pytest.raises(_restore.RestoreError, match="does not exist"):
        _restore.find_backup(str(tmp_path / "missing"), "app")


def test_load_identities(tmp_path: Path) -> None:
    from ansible_collections.mutuapix.ops.plugins.module_utils._age import generate_identity

    identity, _recipient = generate_identity()
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# created: now\n{identity}\n")
    os.chmod(key_file, 0o600)
    assert _restore.load_identities(identity) == _restore.load_identities(str(key_file))
    assert _restore.load_identities(None) == []
    with pytest.raises(_restore.RestoreError, match="cannot read the age identity file"):
        _restore.load_identities(str(tmp_path / "missing.txt"))
    (tmp_path / "bad.txt").write_text("not a key\n")
    with pytest.raises(_restore.RestoreError, match="identity"):
        _restore.load_identities(str(tmp_path / "bad.txt"))


@pytest.mark.skipif(shutil.which("age-keygen") is None, reason="age CLI missing: scripts/bootstrap.sh installs it")
def test_identities_given_as_file_content_several_keys_comments_and_crlf(tmp_path: Path) -> None:
    """An identity file's content pasted into a variable (age-keygen's comments first) is the keys, not a path.

    It used to be read as a file name: "cannot read the age identity file <the key>". With a key that
    does not match among several, comments, blank lines and CRLF, each matching key decrypts a
    backup encrypted to several recipients (age -r X -r Y), as the age CLI does with each key file.
    """
    from ansible_collections.mutuapix.ops.plugins.module_utils._age import decrypt_stream

    keys = []
    for name in ("one", "two", "stranger"):
        subprocess.run(["age-keygen", "-o", str(tmp_path / name)], check=True, capture_output=True)
        keys.append((tmp_path / name).read_text())
    recipients = [line.split(": ")[1] for text in keys[:2] for line in text.splitlines() if "public key" in line]
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(70_000))
    encrypted = tmp_path / "x.age"
    subprocess.run(["age", "-r", recipients[0], "-r", recipients[1], "-o", str(encrypted), str(plain)], check=True)
    secret = [next(line for line in text.splitlines() if line.startswith("AGE-SECRET-KEY-")) for text in keys]
    for own in secret[:2]:
        content = f"# keys\r\n\r\n{secret[2]}\r\n   \r\n# the one that opens it\r\n{own}\r\n"
        with open(encrypted, "rb") as handle:
            assert b"".join(decrypt_stream(handle, _restore.load_identities(content))) == plain.read_bytes()
    for text in keys[:2]:  # age-keygen's file content, as a vault would hold it
        assert len(_restore.load_identities(text)) == 1
        with open(encrypted, "rb") as handle:
            assert b"".join(decrypt_stream(handle, _restore.load_identities(text))) == plain.read_bytes()
    with pytest.raises(_restore.RestoreError, match="identity"):
        _restore.load_identities("# only a comment\n")


def test_selected_objects() -> None:
    manifest = {"tables": {"a": {"kind": "table"}, "b": {"kind": "table"}, "v": {"kind": "view"}}}
    assert list(_restore.selected_objects(manifest, None)) == ["a", "b", "v"]
    assert list(_restore.selected_objects(manifest, ["v", "a"])) == ["a", "v"]
    with pytest.raises(_restore.RestoreError, match="tables not in this backup: x"):
        _restore.selected_objects(manifest, ["x"])


def test_check_backup_trailing_bytes_and_missing_trailer(tmp_path: Path) -> None:
    path = _framed_backup(tmp_path)
    manifest = json.loads(Path(path + ".manifest.json").read_text())
    with open(path, "ab") as handle:
        handle.write(b"\x00" * 10)
    data = Path(path).read_bytes()
    manifest.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    Path(path + ".manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(_restore.RestoreError, match="bytes after the last frame"):
        _restore.check_backup(path, [])

    (tmp_path / "cut").mkdir()
    cut = _framed_backup(tmp_path / "cut")
    cut_manifest = json.loads(Path(cut + ".manifest.json").read_text())
    footer = cut_manifest["sections"]["footer"]
    # Re-frame the footer without its trailer line, as a dump killed at the very end would be.
    raw = Path(cut).read_bytes()
    import zstandard

    plain = zstandard.ZstdDecompressor().decompressobj().decompress(raw[footer["offset"] :])
    new_footer = zstandard.ZstdCompressor().compress(plain.replace(b"-- Dump completed", b"-- Dump"))
    data = raw[: footer["offset"]] + new_footer
    Path(cut).write_bytes(data)
    footer.update(length=len(new_footer), size=len(plain) - len(b" completed"))
    footer.pop("checksum")  # the new frame has none
    cut_manifest.update(
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        uncompressed_size=cut_manifest["uncompressed_size"] - len(b" completed"),
    )
    Path(cut + ".manifest.json").write_text(json.dumps(cut_manifest))
    with pytest.raises(_restore.RestoreError, match="trailer"):
        _restore.check_backup(cut, [])


def test_name_patterns_match_only_their_database() -> None:
    import re

    stamp = "20261128T150000Z"
    for database in ("app", "XYZ", "a.b", "d" * 64):
        for namer in (_restore.scratch_name, _restore.shadow_name, _restore.old_name):
            pattern = _restore.name_pattern(namer, database)
            assert re.fullmatch(pattern, namer(database, stamp))
            assert not re.fullmatch(pattern, namer(database + "x", stamp)) or len(database) == 64
            assert not re.fullmatch(pattern, namer(database, "latest"))
    assert not re.fullmatch(_restore.name_pattern(_restore.old_name, "app"), "app2_old_20261128T150000Z")


def test_data_task_retries_a_deadlocked_transaction_and_only_that():
    """A deadlock (1213) rolls the whole frame back; the task runs it again, once more."""
    from ansible_collections.mutuapix.ops.plugins.module_utils import _restore as restore_utils

    calls: list[bytes] = []

    def run(schema, chunks, what):
        calls.append(b"".join(chunks))
        if len(calls) == 1:
            raise restore_utils.RestoreError("failed", stderr="ERROR 1213 (40001) at line 20: Deadlock found")
        return 0

    task = restore_utils._bind_stream(run, "s", lambda frames: iter([b"INSERT 1;\n", b"INSERT 2;\n"]), [{}], "t")
    task()
    assert len(calls) == 2
    assert calls[0] == calls[1] == b"START TRANSACTION;\nINSERT 1;\nINSERT 2;\n\nCOMMIT;\n"

    def fails_otherwise(schema, chunks, what):
        list(chunks)
        raise restore_utils.RestoreError("failed", stderr="ERROR 1062 (23000): Duplicate entry")

    task = restore_utils._bind_stream(fails_otherwise, "s", lambda frames: iter([b"x"]), [{}], "t")
    with pytest.raises(restore_utils.RestoreError) as excinfo:
        task()
    assert "Duplicate" in excinfo.value.details["stderr"]


@pytest.mark.parametrize(
    ("stderr", "retried"),
    [
        (
            "mariadb-dump: Error 1412: Table definition has changed, please retry transaction when dumping table `t` at row: 0",
            True,
        ),
        ("mysqldump: Error: 1412 Table definition has changed, please retry transaction", True),
        (
            "mysqldump: Couldn't execute 'SELECT ...': Table definition has changed, please retry transaction (1412)",
            True,
        ),
        ("mariadb-dump: Error 1146: Table 'x.t' doesn't exist when dumping table `t` at row: 0", False),
        ("mariadb-dump: Got error: 2013: Lost connection to server during query", False),
        ("", False),
    ],
)
def test_only_a_redump_refused_with_error_1412_is_retried(stderr, retried):
    assert _restore._definition_changed(_restore.RestoreError("failed", stderr=stderr)) is retried


def test_a_client_error_quoting_megabytes_of_rows_is_cut_in_the_message(tmp_path):
    """The client's error goes into the message, the result and the job log: not the rows it quotes."""
    secret_rows = "0x" + "ab" * 1_500_000  # a hex row of 1.5 MB, as an error quoting the statement shows it
    client = tmp_path / "mariadb"
    client.write_text(
        "#!/bin/sh\ncat > /dev/null\n"
        f"echo 'ERROR 1153 (08S01) at line 3: statement INSERT INTO `t` VALUES ({secret_rows})' >&2\n"
        'i=0; while [ $i -lt 2000 ]; do echo "warning line $i: some detail of it" >&2; i=$((i+1)); done\n'
        "echo 'ERROR 2006 (HY000): the last line' >&2\nexit 1\n"
    )
    client.chmod(0o755)
    option_file = tmp_path / "client.cnf"
    option_file.write_text("[client]\n")
    runner = _restore.ClientRunner(str(client), str(option_file), b"")
    with pytest.raises(_restore.RestoreError) as excinfo:
        runner.run("db", [b"INSERT INTO `t` VALUES (1);\n"], "table t")
    message, stderr = str(excinfo.value), excinfo.value.details["stderr"]
    for text in (message, stderr):
        assert len(text) < 20_000
        assert "ERROR 1153 (08S01) at line 3: statement INSERT INTO `t` VALUES (0xabab" in text
        first = f"ERROR 1153 (08S01) at line 3: statement INSERT INTO `t` VALUES ({secret_rows})"
        assert f"[... {len(first) - 2000} more characters left out]" in text  # the first error, cut
        assert "lines of error output left out ...]" in text
        assert text.endswith("ERROR 2006 (HY000): the last line")  # the last line kept


def test_program_errors_leaves_short_output_as_it_is(tmp_path):
    from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import program_errors

    with open(tmp_path / "err", "w+b") as handle:
        assert program_errors(handle) == ""
        handle.write(b"  mariadb-dump: Got error: 1045: Access denied\nsecond line \xff\n\n")
        assert program_errors(handle) == "mariadb-dump: Got error: 1045: Access denied\nsecond line \ufffd"
