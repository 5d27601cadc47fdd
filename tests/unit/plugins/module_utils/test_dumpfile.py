"""The framed file format: both dump dialects, exact row counts, frames that tile the file."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import zlib
from pathlib import Path

import pytest
import zstandard

from ansible_collections.mutuapix.ops.plugins.module_utils import _age, _dumpfile

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"

MARIADB_DUMP = b"""/*M!999999\\- enable the sandbox mode */
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
--
-- Host: localhost    Database: t1
-- ------------------------------------------------------
-- Server version\t10.11.19-MariaDB

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;

--
-- Table structure for table `a``b`
--

DROP TABLE IF EXISTS `a``b`;
CREATE TABLE `a``b` (
  `id` int(11) NOT NULL,
  `s` text DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

--
-- Dumping data for table `a``b`
--

LOCK TABLES `a``b` WRITE;
/*!40000 ALTER TABLE `a``b` DISABLE KEYS */;
INSERT INTO `a``b` VALUES
(1,'x\\ny\\'),(z\\\\'),
(2,NULL),
(3,'\xf0\x9f\x98\x80 INSERT INTO `a` VALUES (9);');
INSERT INTO `a``b` VALUES
(4,'-- Table structure for table `x`'),
(5,'\\0');
/*!40000 ALTER TABLE `a``b` ENABLE KEYS */;
UNLOCK TABLES;
/*!50003 SET @saved_cs_client      = @@character_set_client */ ;
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 trigger tr before insert on `a``b` for each row set new.s='x' */;;
DELIMITER ;

--
-- Table structure for table `np`
--

DROP TABLE IF EXISTS `np`;
CREATE TABLE `np` (
  `x` int(11) DEFAULT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

--
-- Dumping data for table `np`
--

LOCK TABLES `np` WRITE;
/*!40000 ALTER TABLE `np` DISABLE KEYS */;
/*!40000 ALTER TABLE `np` ENABLE KEYS */;
UNLOCK TABLES;

--
-- Dumping routines for database 't1'
--
DELIMITER ;;
CREATE DEFINER=`root`@`localhost` PROCEDURE `p`()
select 1
;;
DELIMITER ;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;

-- Dump completed
"""


def frame(
    data: bytes,
    compression: str = "zstd",
    chunk: int = 1 << 20,
    block: int = 1 << 20,
    recipients=None,
    digest: bool = True,
):
    out = io.BytesIO()
    writer = _dumpfile.FrameWriter(out, compression, None, threads=0, encrypt_to=recipients)
    parser = _dumpfile.DumpParser(writer, chunk, digest=digest)
    for i in range(0, len(data), block):
        parser.feed(data[i : i + block])
    parser.finish()
    sha, size = writer.close()
    manifest = {
        "format": _dumpfile.FORMAT_NAME,
        "format_version": 1,
        "compression": compression,
        "sections": parser.sections,
        "tables": parser.manifest_objects(),
        "sha256": sha,
        "size": size,
    }
    return out.getvalue(), parser, manifest


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_mariadb_dialect_rows_names_and_roundtrip(block):
    blob, parser, _manifest = frame(MARIADB_DUMP, block=block)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(blob)  # first frame is valid
    assert subprocess.run(["zstdcat"], input=blob, capture_output=True, check=True).stdout == MARIADB_DUMP
    tables = parser.tables()
    assert {n: t.rows for n, t in tables.items()} == {"a`b": 5, "np": 0}
    assert parser.completed and parser.dialect == "mariadb"
    assert tables["a`b"].triggers == ["tr"]
    assert tables["a`b"].primary_key and not tables["np"].primary_key
    assert parser.routines == ["procedure p"]


# A table dumped without its data (exclude_table_data, --no-data): its triggers follow its structure.
STRUCTURE_ONLY_WITH_TRIGGER = b"""
--
-- Table structure for table `sessions`
--

DROP TABLE IF EXISTS `sessions`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `sessions` (
  `id` int(11) NOT NULL,
  `s` text DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
/*!40101 SET character_set_client = @saved_cs_client */;
/*!50003 SET @saved_cs_client      = @@character_set_client */ ;
/*!50003 SET @saved_cs_results     = @@character_set_results */ ;
/*!50003 SET character_set_client  = utf8mb4 */ ;
/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;
/*!50003 SET sql_mode              = 'STRICT_TRANS_TABLES' */ ;
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER sessions_bi BEFORE INSERT ON sessions FOR EACH ROW SET NEW.s = 'x'
*/;;
DELIMITER ;
/*!50003 SET sql_mode              = @saved_sql_mode */ ;
/*!50003 SET character_set_client  = @saved_cs_client */ ;
/*!50003 SET character_set_results = @saved_cs_results */ ;
"""


@pytest.mark.parametrize("block", [1, 64, 1 << 20])
def test_triggers_of_a_table_dumped_without_its_data_get_their_frame(block):
    dump = MARIADB_DUMP.replace(
        b"\n--\n-- Table structure for table `np`",
        STRUCTURE_ONLY_WITH_TRIGGER + b"\n--\n-- Table structure for table `np`",
    )
    blob, parser, manifest = frame(dump, block=block)
    sessions = parser.tables()["sessions"]
    assert sessions.triggers == ["sessions_bi"] and sessions.rows == 0 and sessions.primary_key
    assert [f.part for f in sessions.frames] == ["schema", "triggers"]
    text = {
        f["part"]: zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress(blob[f["offset"] : f["offset"] + f["length"]])
        for f in manifest["tables"]["sessions"]["frames"]
    }
    assert text["schema"].endswith(b"/*!40101 SET character_set_client = @saved_cs_client */;\n")
    assert text["triggers"].startswith(b"/*!50003 SET @saved_cs_client ") and b"TRIGGER sessions_bi" in text["triggers"]
    assert b"TRIGGER" not in text["schema"]
    # the tables around it are unchanged
    assert {n: t.rows for n, t in parser.tables().items()} == {"a`b": 5, "sessions": 0, "np": 0}
    assert parser.tables()["a`b"].triggers == ["tr"] and parser.tables()["np"].triggers == []


def test_digest_independent_of_feeding_and_chunking():
    digests = set()
    for chunk in (1, 50, 1 << 20):
        for block in (3, 1 << 20):
            _blob, parser, _manifest = frame(MARIADB_DUMP, chunk=chunk, block=block)
            digests.add(parser.tables()["a`b"].digest.hexdigest())
    assert len(digests) == 1


def test_zstd_frame_checksum_is_the_low_half_of_xxh64():
    # XXH64 test vectors: "" -> ef46db3751d8e999, "a" -> d24ec4f1a98c6e5b
    writer = _dumpfile.FrameWriter(io.BytesIO(), "zstd")
    sums = []
    for content in (b"", b"a"):
        writer.begin()
        writer.write(content)
        sums.append(writer.end()[2])
    assert sums == ["51d8e999", "a98c6e5b"]


def test_gzip_frame_checksum_is_the_members_crc32():
    writer = _dumpfile.FrameWriter(io.BytesIO(), "gzip")
    writer.begin()
    writer.write(MARIADB_DUMP)
    assert writer.end()[2] == f"{zlib.crc32(MARIADB_DUMP):08x}"
    assert _dumpfile.FrameWriter(io.BytesIO(), "none").end()[2] is None


@pytest.mark.parametrize("compression,algorithm", [("zstd", "xxh64-32"), ("gzip", "crc32")])
def test_data_digest_from_frame_checksums_costs_no_hashing(compression, algorithm):
    blob, parser, manifest = frame(MARIADB_DUMP, compression, chunk=10, digest=False)
    assert all(t.digest is None for t in parser.tables().values())
    entry = manifest["tables"]["a`b"]
    data_frames = [f for f in entry["frames"] if f["part"] in _dumpfile.DATA_PARTS]
    assert [f["part"] for f in data_frames] == ["data_head", "data", "data", "data_tail"]
    assert entry["data_digest"] == f"{algorithm}:" + ",".join(f["checksum"] for f in data_frames)
    # every checksum is the one in the trailer of that frame of the file
    for f in data_frames:
        raw = blob[f["offset"] : f["offset"] + f["length"]]
        assert _dumpfile.frame_checksum(compression, raw[-8:]) == f["checksum"]
    # one byte of data changed: another digest
    other = frame(MARIADB_DUMP.replace(b"(2,NULL)", b"(2,'')"), compression, chunk=10, digest=False)[2]
    assert other["tables"]["a`b"]["data_digest"] != entry["data_digest"]
    assert other["tables"]["np"]["data_digest"] == manifest["tables"]["np"]["data_digest"]


@pytest.mark.parametrize("compression", ["zstd", "none"])
@pytest.mark.parametrize("block", [7, 64, 4096])
def test_feeding_one_reused_bytearray_gives_the_same_file(compression, block):
    """mysql_backup reads into reused buffers: the parser (and its digest thread) keeps copies only."""
    expected_blob, _parser, expected = frame(MARIADB_DUMP, compression, chunk=10, block=block, digest=False)
    out = io.BytesIO()
    writer = _dumpfile.FrameWriter(out, compression)
    parser = _dumpfile.DumpParser(writer, 10, digest=False)
    buf = bytearray(block)
    for i in range(0, len(MARIADB_DUMP), block):
        piece = MARIADB_DUMP[i : i + block]
        if len(piece) < block:
            parser.feed(piece)
            continue
        buf[:] = piece
        parser.feed(buf)
        buf[:] = b"\xff" * block  # anything the parser kept a view of changes now
    parser.finish()
    writer.close()
    assert out.getvalue() == expected_blob
    assert parser.manifest_objects() == expected["tables"]


def test_uncompressed_backups_keep_a_sha256_data_digest():
    manifest = frame(MARIADB_DUMP, "none", digest=False)[2]
    hashed = frame(MARIADB_DUMP, "zstd", digest=True)[1]
    assert manifest["tables"]["a`b"]["data_digest"] == "sha256:" + hashed.tables()["a`b"].digest.hexdigest()


@pytest.mark.parametrize("block", [5, 333, 1 << 20])
def test_rows_with_many_semicolons_in_values(block):
    """Values full of ';' (and ';' before escaped line breaks) neither end a statement nor slow the scan."""
    rows = [f"({i},'{';' * (i % 150)}x;\\n;\\r;')" for i in range(1, 400)]
    body = b"INSERT INTO `np` VALUES\n" + ",\n".join(rows).encode() + b";\n"
    body += b"INSERT INTO `np` VALUES\n(400,';;;;;;;;');\n"
    data = MARIADB_DUMP.replace(
        b"/*!40000 ALTER TABLE `np` DISABLE KEYS */;\n",
        b"/*!40000 ALTER TABLE `np` DISABLE KEYS */;\n" + body,
    )
    _blob, parser, _manifest = frame(data, chunk=2000, block=block)
    assert parser.tables()["np"].rows == 400
    assert parser.tables()["a`b"].rows == 5


def test_digest_changes_with_one_byte_of_data():
    p1 = frame(MARIADB_DUMP)[1]
    p2 = frame(MARIADB_DUMP.replace(b"(2,NULL)", b"(2,'')"))[1]
    assert p1.tables()["a`b"].digest.hexdigest() != p2.tables()["a`b"].digest.hexdigest()
    assert p1.tables()["np"].digest.hexdigest() == p2.tables()["np"].digest.hexdigest()


def test_small_chunks_cut_at_insert_boundaries():
    manifest = frame(MARIADB_DUMP, chunk=10)[2]
    data_frames = [f for f in manifest["tables"]["a`b"]["frames"] if f["part"] == "data"]
    assert len(data_frames) == 2
    assert [f["rows"] for f in data_frames] == [3, 2]
    parts = [f["part"] for f in manifest["tables"]["a`b"]["frames"]]
    assert parts == ["schema", "data_head", "data", "data", "data_tail", "triggers"]


def test_mysql8_dialect_many_rows_per_line():
    data = (FIXTURES / "mysql80_dump.sql").read_bytes()
    for block in (5, 1 << 20):
        parser = frame(data, chunk=200, block=block)[1]
        assert parser.dialect == "mysql"
        assert {n: t.rows for n, t in parser.tables().items()} == {"audit_logs": 60, "transactions": 120, "users": 40}
        assert parser.objects["user_balances"].kind == "view"
        assert parser.objects["transactions"].triggers == ["transactions_before_insert"]
        assert not parser.objects["audit_logs"].primary_key
        assert parser.completed


@pytest.mark.parametrize("block", [1, 7, 1 << 20])
def test_mariadb_11_wraps_data_in_autocommit_and_the_triggers_frame_starts_after_it(block):
    """mariadb-dump 11.8 (Debian 13), a real dump: "SET AUTOCOMMIT=@OLD_AUTOCOMMIT;" after "COMMIT;"
    belongs to the data region; in the triggers frame it failed the restore (a new session: NULL)."""
    data = (FIXTURES / "mariadb118_dump.sql").read_bytes()
    blob, parser, manifest = frame(data, block=block)
    assert {n: t.rows for n, t in parser.tables().items()} == {"t": 2, "u": 1}
    assert parser.objects["t"].triggers == ["trg"] and parser.completed
    parts = {}
    dctx = zstandard.ZstdDecompressor()
    for f in manifest["tables"]["t"]["frames"]:
        parts[f["part"]] = dctx.decompressobj().decompress(blob[f["offset"] : f["offset"] + f["length"]])
    assert parts["data_tail"].endswith(b"COMMIT;\nSET AUTOCOMMIT=@OLD_AUTOCOMMIT;\n"), parts["data_tail"]
    assert parts["triggers"].startswith(b"/*!50003 SET @saved_cs_client"), parts["triggers"]
    assert b"AUTOCOMMIT" not in parts["triggers"]


def test_layout_digest_leaves_out_the_lines_around_the_rows():
    """10.11 and 11.8 write the same rows with other lines around them (autocommit)."""
    data = (FIXTURES / "mariadb118_dump.sql").read_bytes()
    older = data.replace(b"SET @OLD_AUTOCOMMIT=@@AUTOCOMMIT, @@AUTOCOMMIT=0;\n", b"").replace(
        b"COMMIT;\nSET AUTOCOMMIT=@OLD_AUTOCOMMIT;\n", b""
    )
    assert older != data
    new, old = _layout_digests(data, 1 << 20), _layout_digests(older, 1 << 20)
    assert new["t"][0] != old["t"][0] and new["t"][1] == old["t"][1]


@pytest.mark.parametrize(
    ("line", "rows"),
    [
        (b"INSERT INTO `t` VALUES (1,'a'),(2,'b');", 2),
        (b"INSERT INTO `t` VALUES (1,'),('),(2,'\\'),(');", 2),
        (b"INSERT INTO `t` VALUES (1,'it''s),(');", 1),
        (b"INSERT INTO `t` VALUES (1,0x2C28),(2,NULL),(3,'\\\\'),(4,'x');", 4),
        (b"INSERT INTO `t` VALUES", 0),
    ],
)
def test_count_inline_rows_is_string_aware(line, rows):
    assert _dumpfile.count_inline_rows(line) == rows


def test_missing_trailer_is_reported():
    parser = frame(MARIADB_DUMP.replace(b"-- Dump completed\n", b""))[1]
    assert not parser.completed


def test_gzip_members_concatenate(tmp_path):
    blob, _parser, manifest = frame(MARIADB_DUMP, "gzip")
    assert gzip.decompress(blob) == MARIADB_DUMP
    path = tmp_path / "x.sql.gz"
    path.write_bytes(blob)
    assert b"".join(p for _frame, p in _dumpfile.iter_frames(str(path), manifest)) == MARIADB_DUMP


def test_iter_frames_detects_bit_flip_and_truncation(tmp_path):
    blob, _parser, manifest = frame(MARIADB_DUMP, chunk=10)
    path = tmp_path / "x.sql.zst"
    frames = _dumpfile.all_frames(manifest)
    middle = frames[len(frames) // 2]
    flipped = bytearray(blob)
    flipped[middle["offset"] + middle["length"] // 2] ^= 0x40
    path.write_bytes(bytes(flipped))
    with pytest.raises(_dumpfile.DumpFileError, match="corrupt|wrong size"):
        list(_dumpfile.iter_frames(str(path), manifest))
    path.write_bytes(blob[: len(blob) - 5])
    with pytest.raises(_dumpfile.DumpFileError, match="truncated|corrupt"):
        list(_dumpfile.iter_frames(str(path), manifest))
    path.write_bytes(blob + b"junk")
    with pytest.raises(_dumpfile.DumpFileError, match="after the last frame"):
        list(_dumpfile.iter_frames(str(path), manifest))


def test_encrypted_frames_decrypt_with_identity(tmp_path):
    identity, recipient = _age.generate_identity()
    blob, _parser, manifest = frame(MARIADB_DUMP, recipients=[recipient])
    path = tmp_path / "x.sql.zst.age"
    path.write_bytes(blob)
    plain = b"".join(p for _frame, p in _dumpfile.iter_frames(str(path), manifest, _age.parse_identities(identity)))
    assert plain == MARIADB_DUMP
    other_identity = _age.generate_identity()[0]
    with pytest.raises(_dumpfile.DumpFileError, match="no identity matches"):
        list(_dumpfile.iter_frames(str(path), manifest, _age.parse_identities(other_identity)))
    with pytest.raises(_dumpfile.DumpFileError, match="age identity is required"):
        list(_dumpfile.iter_frames(str(path), manifest))


def test_manifest_loader_rejects_foreign_json(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(_dumpfile.DumpFileError, match="not a mutuapix.ops backup manifest"):
        _dumpfile.load_manifest(str(path))
    path.write_text("{not json")
    with pytest.raises(_dumpfile.DumpFileError, match="not readable JSON"):
        _dumpfile.load_manifest(str(path))
    with pytest.raises(_dumpfile.DumpFileError, match="does not exist"):
        _dumpfile.load_manifest(str(tmp_path / "absent.json"))
    for version in (None, "two", [1]):  # a hand-edited manifest: a clear error, never a traceback
        path.write_text(json.dumps({"format": _dumpfile.FORMAT_NAME, "format_version": version}))
        with pytest.raises(_dumpfile.DumpFileError, match="not a number"):
            _dumpfile.load_manifest(str(path))


def test_write_json_atomic_mode(tmp_path):
    path = tmp_path / "a.json"
    _dumpfile.write_json_atomic(str(path), {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 200_003])
def test_count_newlines_matches_bytes_count(size):
    # lines of varied length, crossing the 64 KiB pieces at every offset of interest
    data = b"".join(b"(%d,'%s')\n" % (i, b"x" * (i % 97)) for i in range(size // 40 + 2))[:size]
    for start, end in ((0, None), (1, size - 1), (65535, 65537), (size // 3, size // 2)):
        stop = size if end is None else max(0, end)
        want = data.count(b"\n", start, stop)
        assert _dumpfile.count_newlines(data, start, end) == want
        assert _dumpfile.count_newlines(bytearray(data), start, end) == want
    assert _dumpfile.count_newlines(b"\n" * size) == size


def test_default_zstd_setting_is_the_tuned_one_and_levels_are_zstds():
    data = b"".join(b"(%d,'row %d'),\n" % (i, i * 7) for i in range(50_000))
    tuned = zstandard.ZstdCompressor(compression_params=_dumpfile.zstd_parameters(None)).compress(data)
    params = zstandard.get_frame_parameters(tuned)
    assert params.window_size == 1 << _dumpfile.ZSTD_DEFAULT_TUNING["window_log"]
    assert params.has_checksum
    assert zstandard.ZstdDecompressor().decompress(tuned) == data
    # an explicit level is zstd's own level, with the frame checksum
    explicit = zstandard.ZstdCompressor(compression_params=_dumpfile.zstd_parameters(3)).compress(data)
    assert zstandard.get_frame_parameters(explicit).has_checksum
    assert explicit == zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)


def _with_snapshot_position(dump: bytes) -> bytes:
    """MARIADB_DUMP as ``mariadb-dump --master-data=2 --gtid`` writes it."""
    header_end = dump.index(b"\n--\n-- Table structure")
    position = (
        b"\n-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n"
        b"\n-- CHANGE MASTER TO MASTER_LOG_FILE='mariadb-bin.000004', MASTER_LOG_POS=1847;\n"
    )
    footer = dump.index(b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;")
    deferred = (
        b"\n-- The deferred gtid setting for slave corresponding to the master-data CHANGE-MASTER follows\n"
        b"\n-- Preferably use GTID to start replication from GTID position:\n"
        b"\n-- SET GLOBAL gtid_slave_pos='0-1-9';\n"
    )
    return dump[:header_end] + position + dump[header_end:footer] + deferred + dump[footer:]


def test_snapshot_position_and_its_deferred_gtid_leave_the_tables_alone():
    _blob, plain, _manifest = frame(MARIADB_DUMP)
    _blob, parser, _manifest = frame(_with_snapshot_position(MARIADB_DUMP), block=64)
    assert parser.binlog == {"file": "mariadb-bin.000004", "position": 1847, "exact": True, "gtid": "0-1-9"}
    assert plain.binlog == {}
    # the GTID block is part of the footer: every table, trigger and routine frame is unchanged
    strip = ("offset",)
    for name, obj in plain.manifest_objects().items():
        other = parser.manifest_objects()[name]
        assert [{k: v for k, v in f.items() if k not in strip} for f in obj["frames"]] == [
            {k: v for k, v in f.items() if k not in strip} for f in other["frames"]
        ], name
    assert parser.routines == plain.routines and parser.completed


def test_mysql_source_data_position_is_read():
    dump = MARIADB_DUMP.replace(
        b"/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;\n",
        b"/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;\n\n"
        b"SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5';\n\n"
        b"-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000002', SOURCE_LOG_POS=157;\n",
    )
    _blob, parser, _manifest = frame(dump)
    assert parser.binlog == {
        "file": "binlog.000002",
        "position": 157,
        "exact": True,
        "gtid": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
    }


def _one_line_layout(dump: bytes) -> bytes:
    """MariaDB 10.5's layout of the same dump: each INSERT on one line (as its mariadb-dump writes)."""
    return dump.replace(b" VALUES\n(", b" VALUES (").replace(b"),\n(", b"),(")


def _layout_digests(data: bytes, block: int) -> dict[str, tuple[str | None, str | None]]:
    parser = _dumpfile.DumpParser(_dumpfile.NullFrameWriter(), 64, layout_digest=True)
    for i in range(0, len(data), block):
        parser.feed(data[i : i + block])
    parser.finish()
    return {name: (obj.data_digest(), obj.layout_data_digest()) for name, obj in parser.tables().items()}


def test_layout_normalizer_output_does_not_depend_on_the_pieces():
    text = b"INSERT INTO `t` VALUES (1,'a VALUES (b'),\n(2,' VALUES\n'),(3, VALUES (x);\nINSERT INTO `t` VALUES\n(4);\n"
    whole = _dumpfile.LayoutNormalizer()
    expected = whole.feed(text) + whole.pending()
    assert b"\n" not in expected and b" VALUES (" not in expected
    for size in (1, 2, 3, 5, 8, 9, 10, 17):
        normalizer = _dumpfile.LayoutNormalizer()
        out = b"".join(normalizer.feed(text[i : i + size]) for i in range(0, len(text), size))
        assert out + normalizer.pending() == expected, size


@pytest.mark.parametrize("block", [1, 7, 1 << 20])
def test_layout_digest_is_the_same_for_both_releases_layouts(block):
    """10.11's row per line and 10.5's INSERT per line: other raw digests, the same layout digest;
    a value string holding " VALUES (" is normalized alike on both sides."""
    old = _one_line_layout(MARIADB_DUMP)
    assert old != MARIADB_DUMP and b"VALUES (1,'x" in old
    new_digests, old_digests = _layout_digests(MARIADB_DUMP, block), _layout_digests(old, block)
    assert new_digests["a`b"][0] != old_digests["a`b"][0]
    assert new_digests["a`b"][1] == old_digests["a`b"][1]
    assert new_digests["a`b"][1].startswith("layout-sha256:")
    assert new_digests == _layout_digests(MARIADB_DUMP, 1 << 20)  # the pieces do not matter


def test_layout_digest_still_sees_a_changed_value():
    changed = _one_line_layout(MARIADB_DUMP).replace(b"(2,NULL)", b"(2,'')")
    assert _layout_digests(changed, 1 << 20)["a`b"][1] != _layout_digests(MARIADB_DUMP, 1 << 20)["a`b"][1]


def test_no_layout_digest_unless_asked():
    parser = _dumpfile.DumpParser(_dumpfile.NullFrameWriter(), 64)
    parser.feed(MARIADB_DUMP)
    parser.finish()
    assert parser.tables()["a`b"].layout_data_digest() is None


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_the_longest_insert_statement_of_each_table_is_measured_across_blocks(block):
    """What a restore compares with the server's max_allowed_packet, however the stream is cut."""
    big = b"(1,0x" + b"ab" * 500 + b"),\n(2,0x00);\n"
    small = b"(3,0x01),\n(4,0x02);\n"
    data = (
        b"--\n-- Table structure for table `t`\n--\n\nCREATE TABLE `t` (`id` int, PRIMARY KEY (`id`));\n"
        b"--\n-- Dumping data for table `t`\n--\n\nLOCK TABLES `t` WRITE;\n"
        b"INSERT INTO `t` VALUES\n" + small + b"INSERT INTO `t` VALUES\n" + big + b"INSERT INTO `t` VALUES (5,0x03);\n"
        b"UNLOCK TABLES;\n"
        b"--\n-- Table structure for table `u`\n--\n\nCREATE TABLE `u` (`id` int);\n"
        b"--\n-- Dumping data for table `u`\n--\n\nLOCK TABLES `u` WRITE;\n"
        b"INSERT INTO `u` VALUES (1),(2);\nUNLOCK TABLES;\n"
        b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n-- Dump completed\n"
    )
    parser = _dumpfile.parse_stream((data[i : i + block] for i in range(0, len(data), block)), chunk_bytes=100)
    assert parser.objects["t"].rows == 5
    assert parser.objects["t"].longest_statement == len(b"INSERT INTO `t` VALUES\n" + big)
    assert parser.objects["u"].longest_statement == len(b"INSERT INTO `u` VALUES (1),(2);\n")
