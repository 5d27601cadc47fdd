# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The framed backup file and its manifest (see DESIGN.md, "The backup file").

A dump stream from ``mariadb-dump``/``mysqldump`` is cut at table boundaries (and big
tables at INSERT statement boundaries, every ``chunk_bytes``); each part is compressed as
its own zstd frame or gzip member. Concatenated frames/members are one valid stream, so
``zstdcat f | mariadb db`` restores the file with standard tools, while the manifest's
byte ranges let a restorer decompress table by table.

Offsets and lengths in the manifest are positions in the *compressed* stream; for an
``.age`` file that is the decrypted stream (age encrypts the compressed stream as a whole).

Per table the manifest records the exact row count and ``data_digest``, a digest of the
table's data region exactly as the dump program wrote it (from the ``-- Dumping data for
table`` comment through ``UNLOCK TABLES;``):

* compressed backups: ``xxh64-32:<c1>,<c2>,…`` (zstd) or ``crc32:<c1>,…`` (gzip), the
  checksums the compressor itself computed over each frame of the region and stored in the
  frame's trailer (zstd's content checksum is the low 32 bits of XXH64). They cost the
  backup nothing, decompression checks them, and ``frames[].checksum`` lists them per frame;
* uncompressed backups: ``sha256:<hex>`` of the region, computed while dumping.

Dumping a restored table again with the same program and options yields the same bytes, so
``mysql_restore_verify`` compares the SHA-256 of the re-dump with the SHA-256 of the region
decompressed from the backup file (whose frames are checked against these checksums and
whose bytes are pinned by the file's own SHA-256). The region depends on row order; InnoDB
returns rows in primary-key order, and tables without a primary key must be restored in one
stream (``primary_key: false`` in the manifest says which).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

try:
    import zstandard

    HAS_ZSTANDARD = True
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_ZSTANDARD = False

FORMAT_NAME = "mutuapix-framed-sql"
FORMAT_VERSION = 1
DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024
READ_BLOCK = 4 * 1024 * 1024

# Options a backup dumps with (the utf8mb4 set; a manifest that names none was written with them);
# the manifest records them.
DUMP_OPTIONS = [
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--skip-dump-date",
    "--default-character-set=utf8mb4",
    "--no-tablespaces",
    # The programs' compiled-in limit (24M) ends the dump of any longer row ("Lost connection to server
    # during query"); 1G is their maximum and the server's own limit stays in force. Only a limit: the
    # buffer grows with the longest row. The verification re-dump reads it back from the manifest.
    "--max-allowed-packet=1073741824",
]
# On MariaDB, when every character column of the database is utf8 (``_backup.binary_session_safe``),
# the session's character set is binary instead: the server sends every value as stored, and the
# dump program escapes strings byte by byte instead of character by character in utf8mb4, which
# cuts its CPU, the backup's critical path, by about 30% (bench/bench_backup.py). With results in
# binary, --hex-blob would write every text column as hex too, so binary columns are escaped like
# text: the file holds their raw bytes, and the dump's SET NAMES binary loads them back exactly. Not
# on MySQL (its native JSON type refuses a binary string), nor with a column in another character
# set (the dump's CREATE TABLE sets only character_set_client around the statement, so in a binary
# session a non-ASCII DEFAULT or ENUM value of a latin1 column would come back as mojibake), nor
# with an INET6 or UUID column (its text form, loaded as a binary string, would be read as packed).
BINARY_DUMP_OPTIONS = [
    "--default-character-set=binary" if option.startswith("--default-character-set=") else option
    for option in DUMP_OPTIONS
    if option != "--hex-blob"
]


def dump_options(binary: bool) -> list[str]:
    """The options a backup dumps with: in the binary character set (``binary``) or in utf8mb4."""
    return list(BINARY_DUMP_OPTIONS if binary else DUMP_OPTIONS)


# Dump options extra_dump_args may not set, by their full long name, and when: "off" (turned
# off: --skip-X, --disable-X, --X=0), "on" (turned on) or "any" (given at all). They would break
# the framing, the row counts, the digests or the consistency guarantee (--replace,
# --insert-ignore and --delayed-insert write statements the parser does not count rows in;
# --compatible=ansi quotes names with " so no table marker matches), the credential handling,
# or delete data (--delete-master-logs purges the binary logs a point-in-time recovery replays).
FORBIDDEN_DUMP_OPTIONS = {
    "single-transaction": "off",
    "comments": "off",
    "opt": "off",
    "add-locks": "off",
    "disable-keys": "off",
    "compact": "on",
    "xml": "on",
    "databases": "on",
    "all-databases": "on",
    "lock-all-tables": "on",
    "dump-date": "on",
    "replace": "on",
    "insert-ignore": "on",
    "delayed-insert": "on",
    "delete-master-logs": "on",
    "delete-source-logs": "on",
    "tab": "any",
    "result-file": "any",
    "compatible": "any",
    "default-character-set": "any",
    "defaults-file": "any",
    "defaults-extra-file": "any",
    "defaults-group-suffix": "any",
    "no-defaults": "any",
    "print-defaults": "any",
    "login-path": "any",
    "no-login-paths": "any",
    "password": "any",
    "password1": "any",  # MySQL 8.0.27+ multifactor authentication
    "password2": "any",
    "password3": "any",
    "user": "any",
    "host": "any",
    "socket": "any",
    "port": "any",
}

_MARKERS = [
    (re.compile(rb"^-- Table structure for table `((?:[^`]|``)+)`$"), "table"),
    # MariaDB 10.3+ dumps each SEQUENCE first (CREATE SEQUENCE, then DO SETVAL with its next value).
    (re.compile(rb"^-- Sequence structure for `((?:[^`]|``)+)`$"), "sequence"),
    (re.compile(rb"^-- Dumping data for table `((?:[^`]|``)+)`$"), "data"),
    (re.compile(rb"^-- Temporary (?:table|view) structure for view `((?:[^`]|``)+)`$"), "view_stub"),
    (re.compile(rb"^-- Final view structure for view `((?:[^`]|``)+)`$"), "view_final"),
    (re.compile(rb"^-- Dumping events for database '(.*)'$"), "events"),
    (re.compile(rb"^-- Dumping routines for database '(.*)'$"), "routines"),
]
_FOOTER_LINES = (
    b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;",
    b"/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;",
    # mariadb-dump --master-data --gtid writes the snapshot's GTID after the last object.
    b"-- The deferred gtid setting",
)
_COMPLETED = b"-- Dump completed"
# What a data region may end with after its rows. MariaDB 11.x (e.g. 11.8, Debian 13) wraps
# every table's data in "SET @OLD_AUTOCOMMIT=@@AUTOCOMMIT, @@AUTOCOMMIT=0;" … "COMMIT;" and
# "SET AUTOCOMMIT=@OLD_AUTOCOMMIT;"; older programs write "commit;" with --no-autocommit.
_DATA_TAIL_LINES = (
    b"/*!40000 ALTER TABLE",
    b"UNLOCK TABLES",
    b"commit;",
    b"COMMIT;",
    b"SET AUTOCOMMIT=@OLD_AUTOCOMMIT;",
)
# The first lines of a table's trigger block (both dump programs save the session settings first).
# After a data section any other line starts it; a table dumped without its data
# (exclude_table_data, --no-data) goes from its structure straight to its triggers.
_TRIGGERS_START = (b"/*!50003 SET @saved_cs_client ", b"DELIMITER ;;")
_TEXT_PARTS = ("header", "schema", "triggers", "events", "routines", "footer")
# The end of an INSERT statement inside a run of rows (values never hold a raw line break).
_STATEMENT_END = re.compile(rb";\n")
_QUOTED = re.compile(rb"'(?:[^'\\]|\\.|'')*'", re.S)
_IDENT = rb"(?:`(?:[^`]|``)+`|\"(?:[^\"]|\"\")+\"|[^\s.`\"(]+)"
# The head of a CREATE TRIGGER as SHOW CREATE TRIGGER keeps it, i.e. as it was written: the trigger
# name and its table may be schema-qualified (groups: keyword, schema, name, timing, schema, table).
TRIGGER_HEADER = re.compile(
    rb"(?i)(\btrigger\s+(?:if\s+not\s+exists\s+)?)(?:(" + _IDENT + rb")\s*\.\s*)?(" + _IDENT + rb")"
    rb"(\s+(?:before|after)\s+(?:insert|update|delete)\s+on\s+)(?:(" + _IDENT + rb")\s*\.\s*)?(" + _IDENT + rb")"
)
_ROUTINE_NAME = re.compile(
    rb"(?i)^CREATE\s+(?:DEFINER=\S+\s+)?(?:AGGREGATE\s+)?(PROCEDURE|FUNCTION)\s+(`(?:[^`]|``)+`|[^\s(]+)", re.M
)
_EVENT_NAME = re.compile(rb"(?i)\bEVENT\s+(`(?:[^`]|``)+`|[^\s]+)\s+ON\s+SCHEDULE")
_CHANGE_MASTER = re.compile(
    rb"CHANGE (?:MASTER TO MASTER|REPLICATION SOURCE TO SOURCE)_LOG_FILE='([^']+)', (?:MASTER|SOURCE)_LOG_POS=(\d+)"
)
# MySQL 8 writes GTID_PURGED=/*!80000 '+'*/ '<set>'.
_GTID_POS = re.compile(rb"(?:gtid_slave_pos|GTID_PURGED)\s*=\s*(?:/\*!\d+ '\+'\*/\s*)?'([^']*)'", re.I)


class DumpFileError(Exception):
    """The dump stream or the backup file is not what it should be."""


def _unquote(name: bytes) -> str:
    text = name.decode("utf-8", "surrogateescape")
    for quote in ("`", '"'):
        if len(text) > 1 and text.startswith(quote) and text.endswith(quote):
            return text[1:-1].replace(quote * 2, quote)
    return text


def trigger_names(sql: bytes) -> list[str]:
    """Names of the triggers created by ``sql``, without the schema they may be qualified with."""
    return [_unquote(m.group(3)) for m in TRIGGER_HEADER.finditer(sql)]


def _next_insert(segment: bytes, pos: int, end: int | None = None) -> int:
    idx = segment.find(b"\nINSERT INTO ", pos, end)
    return idx + 1 if idx >= 0 else -1


def _statement_end(data: bytes, start: int, end: int) -> int:
    """The position after the next ``;\n`` in ``data[start:end]``, or -1.

    ``find`` of one byte is a ``memchr``: several times faster than a regular expression
    on rows with few semicolons in their values. Values full of semicolons fall back to
    the regular expression after a few misses, so no input makes this slow.
    """
    misses = 0
    i = data.find(b";", start, end)
    while i >= 0:
        if data.startswith(b"\n", i + 1, end):
            return i + 2
        misses += 1
        if misses > 64:
            match = _STATEMENT_END.search(data, i + 1, end)
            return match.end() if match else -1
        i = data.find(b";", i + 1, end)
    return -1


_COUNT_PIECE = 64 * 1024


def count_newlines(data: bytes | bytearray, start: int = 0, end: int | None = None) -> int:
    """Line breaks in ``data[start:end]``, the same as ``data.count(b"\\n", start, end)``.

    CPython's ``count`` of one byte compares byte by byte; deleting the byte with
    ``replace`` finds each one with ``memchr`` (vectorised) and copies the runs in between:
    2.8 times less CPU on dump rows (about 200 bytes per line); the whole parser needs
    0.28 instead of 0.45 CPU-s per GB dumped (``bench/bench_parse.py``). Pieces of 64 KiB
    keep each copy below the size at which the C allocator maps and unmaps fresh pages
    (whole 1 MB blocks cost more system time in page faults than ``count`` itself).
    """
    if end is None:
        end = len(data)
    lines = 0
    for i in range(start, end, _COUNT_PIECE):
        piece = data[i : min(i + _COUNT_PIECE, end)]
        lines += len(piece) - len(piece.replace(b"\n", b""))
    return lines


def count_inline_rows(line: bytes) -> int:
    """Rows in one ``INSERT INTO … VALUES (…),(…);`` line (MySQL dialect), string-aware."""
    values = line.find(b" VALUES ")
    if values < 0:
        values = line.find(b" VALUES(")
    if values < 0:
        return 0
    body = _QUOTED.sub(b"''", line[values + 7 :])
    return body.count(b"),(") + 1 if b"(" in body else 0


# --- output side: frames ----------------------------------------------------------------------


class _CountingSink:
    """Writes to the real file through a SHA-256 of the final bytes."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        if data:
            self.raw.write(data)
            self.sha256.update(data)
            self.size += len(data)
        return len(data)


# The checksum each compression stores in a frame's trailer, and how to read it from the
# frame's last bytes: zstd's content checksum (low 32 bits of XXH64, little-endian) and
# gzip's CRC-32 (little-endian, followed by the 4-byte length).
FRAME_CHECKSUMS = {"zstd": ("xxh64-32", 4), "gzip": ("crc32", 8)}


def checksum_algorithm(compression: str | None) -> str | None:
    """The name of the checksum frames of this compression carry (None: they carry none)."""
    spec = FRAME_CHECKSUMS.get(compression or "")
    return spec[0] if spec else None


def frames_digest(algorithm: str | None, checksums: list[str | None]) -> str | None:
    """A table's ``data_digest`` made of its data frames' checksums, in stream order."""
    if not algorithm or not checksums:
        return None
    return f"{algorithm}:{','.join(c or '' for c in checksums)}"


def frame_checksum(compression: str, frame_tail: bytes) -> str | None:
    """The checksum stored at the end of one compressed frame (hex), or None without one."""
    spec = FRAME_CHECKSUMS.get(compression)
    if spec is None or len(frame_tail) < spec[1]:
        return None
    start = len(frame_tail) - spec[1]
    return f"{int.from_bytes(frame_tail[start : start + 4], 'little'):08x}"


# The default zstd setting: level 1's fast strategy with a 128 KiB window and 4096-entry hash
# and chain tables, which stay in the core's cache. On dumps it measured 12% less CPU than
# zstd's level 1 for a file 2% larger (bench/bench_parse.py). Spelled out in full, so it does
# not change with the zstd library's level tables; any zstd decompresses it, with less memory.
ZSTD_DEFAULT_TUNING = {
    "window_log": 17,
    "chain_log": 12,
    "hash_log": 12,
    "search_log": 1,
    "min_match": 6,
    "target_length": 0,
}


def zstd_parameters(level: int | None, threads: int = 0) -> Any:
    """zstd parameters: ``level`` as zstd defines it, or the tuned default above when None."""
    if level is None:
        return zstandard.ZstdCompressionParameters(
            strategy=zstandard.STRATEGY_FAST, threads=threads, write_checksum=True, **ZSTD_DEFAULT_TUNING
        )
    return zstandard.ZstdCompressionParameters.from_level(level, threads=threads, write_checksum=True)


class FrameWriter:
    """Compresses each part as an independent frame; tracks offsets in the compressed stream.

    ``end()`` also returns the checksum the compressor wrote into the frame's trailer, so
    a digest of the data needs no second pass over the uncompressed bytes.
    """

    def __init__(
        self,
        raw: BinaryIO,
        compression: str = "zstd",
        level: int | None = None,
        threads: int = 0,
        encrypt_to: list[str] | None = None,
    ) -> None:
        self.file_sink = _CountingSink(raw)
        self._age: Any = None
        if encrypt_to:
            from ansible_collections.mutuapix.ops.plugins.module_utils._age import AgeWriter  # noqa: PLC0415

            self._age = AgeWriter(self.file_sink, encrypt_to)
            self._out: Any = self._age
        else:
            self._out = self.file_sink
        self.compression = compression
        self.level = level
        self.position = 0  # in the compressed stream
        self.uncompressed = 0
        self._frame_start = 0
        self._tail = b""  # the current frame's last compressed bytes
        self._cobj: Any = None
        if compression == "zstd":
            if not HAS_ZSTANDARD:
                raise DumpFileError("the zstandard Python library is required for zstd compression")
            # Frame checksums: a damaged frame fails to decompress instead of loading wrong rows.
            self._cctx = zstandard.ZstdCompressor(compression_params=zstd_parameters(level, threads))
        elif compression not in ("gzip", "none"):
            raise DumpFileError(f"unknown compression {compression!r}")

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self.position += len(data)
            self._tail = (self._tail + data[-8:])[-8:]

    @property
    def checksum_algorithm(self) -> str | None:
        return checksum_algorithm(self.compression)

    def begin(self) -> None:
        self._frame_start = self.position
        self._tail = b""
        if self.compression == "zstd":
            self._cobj = self._cctx.compressobj()
        elif self.compression == "gzip":
            self._cobj = zlib.compressobj(6 if self.level is None else self.level, zlib.DEFLATED, 31)

    def write(self, data: bytes) -> None:
        self.uncompressed += len(data)
        if self._cobj is None:
            self._emit(data)
        else:
            self._emit(self._cobj.compress(data))

    def end(self) -> tuple[int, int, str | None]:
        """Close the frame: (offset, length, checksum from its trailer or None)."""
        if self._cobj is not None:
            self._emit(self._cobj.flush())
            self._cobj = None
        return self._frame_start, self.position - self._frame_start, frame_checksum(self.compression, self._tail)

    def close(self) -> tuple[str, int]:
        """Finish the file; returns (sha256 hex of the file's bytes, file size)."""
        if self._age is not None:
            self._age.close()
        return self.file_sink.sha256.hexdigest(), self.file_sink.size


class NullFrameWriter:
    """Discards output; used to digest a dump without writing it (verification re-dumps).

    ``checksum_algorithm`` names the frame checksums that stand for the data digests of the
    stream being parsed (a backup file checked frame by frame): with one, a parser made with
    ``digest=False`` hashes nothing. None (the default): the parser hashes each data region.
    """

    position = 0
    uncompressed = 0

    def __init__(self, checksum_algorithm: str | None = None) -> None:
        self.checksum_algorithm = checksum_algorithm

    def begin(self) -> None:
        return None

    def write(self, data: bytes) -> None:
        self.uncompressed += len(data)

    def end(self) -> tuple[int, int, str | None]:
        return 0, 0, None


# --- input side: the dump parser ----------------------------------------------------------------


class DigestWorker:
    """Runs the per-table SHA-256 updates in a thread of its own, in order.

    ``hashlib`` releases the GIL while it hashes, so digesting one chunk overlaps with
    parsing and compressing the next; the bounded queue keeps memory flat.
    """

    def __init__(self, depth: int = 16) -> None:
        self._queue: queue.Queue[tuple[Any, Any] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="table-digest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    item[0].update(item[1])
                except BaseException as exc:  # noqa: BLE001 - re-raised by close()
                    self._error = exc

    def update(self, digest: Any, data: Any) -> None:
        self._queue.put((digest, data))

    def close(self) -> None:
        """Wait for every queued update; call before reading any digest."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise DumpFileError(f"digest worker failed: {self._error}")


@dataclass
class Frame:
    part: str
    offset: int = 0
    length: int = 0
    size: int = 0  # uncompressed bytes
    rows: int = 0
    checksum: str | None = None  # from the frame's trailer (see FRAME_CHECKSUMS)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"part": self.part, "offset": self.offset, "length": self.length, "size": self.size}
        if self.part == "data":
            out["rows"] = self.rows
        if self.checksum is not None:
            out["checksum"] = self.checksum
        return out


DATA_PARTS = ("data_head", "data", "data_tail")


class LayoutNormalizer:
    """A data region's bytes without their line layout, so that releases of the dump program that
    put rows on lines differently give the same bytes: MariaDB 10.5 writes an INSERT on one line
    (``VALUES (1,…),(2,…);``), 10.11 a row per line (``VALUES\\n(1,…),\\n(2,…);``).

    A dump never has a raw line break inside a value (it writes ``\\n``), so every one is layout
    and goes; ``" VALUES ("`` becomes ``" VALUES("``. Fed in any pieces, the output is the same.
    Only the INSERT statements are fed: the lines around them differ between releases too
    (11.x adds ``SET @OLD_AUTOCOMMIT=…`` and ``COMMIT;``).
    """

    _FROM = b" VALUES ("
    _TO = b" VALUES("

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes | memoryview) -> bytes:
        text = (self._held + bytes(data).replace(b"\n", b"")).replace(self._FROM, self._TO)
        # An occurrence can only be cut at the end: hold back what could be its beginning.
        keep = len(self._FROM) - 1
        self._held = text[-keep:]
        return text[:-keep]

    def pending(self) -> bytes:
        """What a digest of everything fed so far still needs after ``feed``'s outputs."""
        return self._held


@dataclass
class DumpObject:
    name: str
    kind: str  # table | view
    frames: list[Frame] = field(default_factory=list)
    rows: int = 0
    primary_key: bool = False
    # A MariaDB SEQUENCE: a table with no data region, its state in its structure part's DO SETVAL.
    sequence: bool = False
    triggers: list[str] = field(default_factory=list)
    digest: Any = None
    checksum_algorithm: str | None = None
    # SHA-256 of the data region through a LayoutNormalizer (DumpParser's layout_digest).
    layout_digest: Any = None
    normalizer: LayoutNormalizer | None = None
    # Bytes of the longest INSERT statement of the data region: a restore sends each statement as
    # one packet, which the server refuses above its max_allowed_packet.
    longest_statement: int = 0

    def layout_data_digest(self) -> str | None:
        """``layout-sha256:<hex>`` of the data region without its line layout, or None."""
        if self.layout_digest is None or self.normalizer is None:
            return None
        digest = self.layout_digest.copy()
        digest.update(self.normalizer.pending())
        return "layout-sha256:" + digest.hexdigest()

    def data_digest(self) -> str | None:
        """``sha256:<hex>`` when digested while parsing, else the data frames' checksums."""
        if self.digest is not None:
            return "sha256:" + self.digest.hexdigest()
        return frames_digest(self.checksum_algorithm, [f.checksum for f in self.frames if f.part in DATA_PARTS])

    def to_dict(self) -> dict[str, Any]:
        frames = [f for f in self.frames if f.part != "view_stub"] or self.frames
        start = min(f.offset for f in frames) if frames else 0
        end = max(f.offset + f.length for f in frames) if frames else 0
        out: dict[str, Any] = {"kind": self.kind, "offset": start, "length": end - start}
        if self.kind == "table":
            out["rows"] = self.rows
            out["data_digest"] = self.data_digest()
            out["primary_key"] = self.primary_key
            out["triggers"] = self.triggers
            if self.sequence:
                out["sequence"] = True
        out["frames"] = [f.to_dict() for f in self.frames]
        return out


class DumpParser:
    """Feed it the dump's bytes; it cuts frames, counts rows and digests data regions.

    ``digest``: SHA-256 each table's data region while parsing. Off, the data digest is the
    frames' own checksums (free with zstd and gzip); verification re-dumps are digested.
    """

    def __init__(
        self,
        writer: FrameWriter | NullFrameWriter,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        threaded: bool = True,
        digest: bool = True,
        layout_digest: bool = False,
    ) -> None:
        self.writer = writer
        self.digest = digest or writer.checksum_algorithm is None or layout_digest
        # Also digest each data region without its line layout (LayoutNormalizer): what a backup
        # written by another release of the dump program is compared by.
        self.layout_digest = layout_digest
        self._digester = DigestWorker() if threaded and self.digest else None
        self.chunk_bytes = max(1, chunk_bytes)
        self.objects: dict[str, DumpObject] = {}
        self.order: list[str] = []
        self.sections: dict[str, dict[str, Any]] = {}
        self.dialect = "unknown"
        self.program_line = ""
        self.completed = False
        self.binlog: dict[str, Any] = {}
        self.routines: list[str] = []
        self.events: list[str] = []
        self._pending = b""
        self._held = b""  # a "--" line that may open a marker
        self._state = "header"
        self._current: DumpObject | None = None
        self._statement = 0  # bytes of the INSERT statement in progress seen in earlier blocks
        self._frame: Frame | None = None
        self._frame_owner: DumpObject | None = None
        self._section_text: list[bytes] | None = None
        self._schema_text: list[bytes] = []
        self._begin_frame("header", None)

    # frames

    def _begin_frame(self, part: str, owner: DumpObject | None) -> None:
        self._end_frame()
        # Small parts are kept whole to read object names from; data parts never are.
        self._section_text = [] if part in _TEXT_PARTS else None
        self._frame = Frame(part)
        self._frame_owner = owner
        self.writer.begin()

    def _end_frame(self) -> None:
        if self._frame is None:
            return
        offset, length, checksum = self.writer.end()
        frame = self._frame
        frame.offset, frame.length, frame.checksum = offset, length, checksum
        self._frame = None
        if self._frame_owner is not None:
            self._frame_owner.frames.append(frame)
        else:
            self.sections[frame.part] = frame.to_dict()
        self._flush_section_text(frame.part)

    def _flush_section_text(self, part: str) -> None:
        text = b"".join(self._section_text or [])
        if part == "triggers" and self._frame_owner is not None:
            self._frame_owner.triggers = trigger_names(text)
        elif part == "routines":
            self.routines = [f"{kind.decode().lower()} {_unquote(name)}" for kind, name in _ROUTINE_NAME.findall(text)]
        elif part == "events":
            self.events = [_unquote(m) for m in _EVENT_NAME.findall(text)]
        elif part == "header":
            self._parse_header(text)
        elif part == "footer":
            gtid = _GTID_POS.search(text)
            if gtid:
                self.binlog["gtid"] = gtid.group(1).decode()
                self.binlog.setdefault("exact", True)
        elif part == "schema" and self._frame_owner is not None:
            self._frame_owner.primary_key = b"\n  PRIMARY KEY (" in text

    def _parse_header(self, text: bytes) -> None:
        first = text.split(b"\n", 3)
        for line in first[:3]:
            if line.startswith(b"-- MariaDB dump"):
                self.dialect = "mariadb"
                self.program_line = line[3:].decode("utf-8", "replace")
            elif line.startswith(b"-- MySQL dump"):
                self.dialect = "mysql"
                self.program_line = line[3:].decode("utf-8", "replace")
        match = _CHANGE_MASTER.search(text)
        if match:
            self.binlog = {"file": match.group(1).decode(), "position": int(match.group(2)), "exact": True}
        gtid = _GTID_POS.search(text)
        if gtid:
            self.binlog["gtid"] = gtid.group(1).decode()

    def _write(self, data: bytes | memoryview) -> None:
        frame = self._frame
        if frame is None:
            raise DumpFileError("internal error: data outside a frame")
        frame.size += len(data)
        self.writer.write(data)
        if self._section_text is not None:
            self._section_text.append(data)

    def _object(self, name: str, kind: str) -> DumpObject:
        obj = self.objects.get(name)
        if obj is None:
            obj = DumpObject(name, kind)
            self.objects[name] = obj
            self.order.append(name)
        return obj

    def _data_write(self, data: bytes | memoryview, rows: bool = False) -> None:
        """Bytes of a table's data region: written and digested (``rows``: its INSERT statements)."""
        self._write(data)
        cur = self._current
        if cur is None:
            raise DumpFileError("internal error: table data outside a table section")
        if cur.digest is None:
            return
        if self._digester is not None:
            # The digest thread reads it later: a view of a reused buffer must be copied.
            if not isinstance(data, bytes) and not (isinstance(data, memoryview) and data.readonly):
                data = bytes(data)
            self._digester.update(cur.digest, data)
        else:
            cur.digest.update(data)
        if rows and cur.layout_digest is not None and cur.normalizer is not None:
            normalized = cur.normalizer.feed(data)
            if self._digester is not None:
                self._digester.update(cur.layout_digest, normalized)
            else:
                cur.layout_digest.update(normalized)

    # the state machine

    def feed(self, block: bytes | bytearray) -> None:
        """Parse a block of the stream; a line split across blocks waits for its end.

        Nothing of ``block`` is kept after this returns (copies are), so a caller may reuse
        a ``bytearray`` for the next block.
        """
        if not block:
            return
        start = 0
        if self._pending:
            nl = block.find(b"\n")
            if nl < 0:
                self._pending += block
                return
            head = self._pending + block[: nl + 1]
            self._pending = b""
            self._process(head, 0, len(head))
            start = nl + 1
        cut = block.rfind(b"\n") + 1
        if cut > start:
            self._process(block, start, cut)
        self._pending = block[max(cut, start) :]

    def _start_section(self, kind: str, name: str) -> None:
        if kind in ("table", "sequence"):
            self._current = self._object(name, "table")
            self._current.sequence = kind == "sequence"
            self._state = "schema"
            self._begin_frame("schema", self._current)
        elif kind == "data":
            self._current = self._object(name, "table")
            if self.digest:
                self._current.digest = hashlib.sha256()
            else:
                self._current.checksum_algorithm = self.writer.checksum_algorithm
            if self.layout_digest:
                self._current.layout_digest = hashlib.sha256()
                self._current.normalizer = LayoutNormalizer()
            self._state = "data_head"
            self._begin_frame("data_head", self._current)
        elif kind in ("view_stub", "view_final"):
            self._current = self._object(name, "view")
            self._state = kind
            self._begin_frame(kind, self._current)
        else:  # events, routines
            self._current = None
            self._state = kind
            self._begin_frame(kind, None)

    def _marker(self, line: bytes) -> tuple[str, str] | None:
        stripped = line.rstrip(b"\n")
        for regex, kind in _MARKERS:
            match = regex.match(stripped)
            if match:
                return kind, _unquote(b"`" + match.group(1) + b"`") if kind not in ("events", "routines") else ""
        return None

    def _process(self, data: bytes, pos: int, end: int) -> None:
        while pos < end:
            if self._state == "rows":
                pos = self._rows(data, pos, end)
                continue
            nl = data.index(b"\n", pos, end)
            self._line(data[pos : nl + 1])
            pos = nl + 1

    def _line(self, line: bytes) -> None:
        if self._held:
            held, self._held = self._held, b""
            marker = self._marker(line) if line.startswith(b"-- ") else None
            if marker:
                self._start_section(*marker)
                self._write(held)
                self._write(line)
                return
            self._route(held)
        if line == b"--\n" and self._state not in ("data_head", "footer"):
            self._held = line
            return
        if line.startswith(b"-- ") and self._state in ("data_head", "data_tail"):
            marker = self._marker(line)
            if marker:
                self._start_section(*marker)
                self._write(line)
                return
        self._route(line)

    def _route(self, line: bytes) -> None:
        state = self._state
        if state == "data_head":
            if line.startswith(b"INSERT INTO "):
                self._state = "rows"
                self._begin_frame("data", self._current)
                self._rows(line, 0, len(line))
                return
            if line.startswith(b"UNLOCK TABLES") or (
                line.startswith(b"/*!40000 ALTER TABLE") and b" ENABLE KEYS " in line
            ):
                self._state = "data_tail"
                self._begin_frame("data_tail", self._current)
            self._data_write(line)
            return
        if state == "data_tail":
            if line.startswith(_DATA_TAIL_LINES):
                self._data_write(line)
                return
            self._state = "triggers"
            self._begin_frame("triggers", self._current)
        elif state == "schema" and line.startswith(_TRIGGERS_START):
            self._state = "triggers"
            self._begin_frame("triggers", self._current)
        if state != "footer" and line.startswith(_FOOTER_LINES):
            self._state = "footer"
            self._current = None
            self._begin_frame("footer", None)
        if line.startswith(_COMPLETED):
            self.completed = True
        self._write(line)

    def _rows(self, data: bytes, pos: int, end: int) -> int:
        """Consume row lines (and INSERT lines) from ``pos``; returns where they stop.

        Dump programs escape line breaks inside values, so every ``;\n`` in a run of rows
        ends an INSERT statement: the run goes on while the next line starts another
        INSERT. Only statement ends are visited (one per ~1 MB in MariaDB's layout, one per
        line in MySQL's), and rows are counted as lines minus INSERT lines plus the rows
        written on INSERT lines (MySQL's many-rows-per-line layout).
        """
        cur = self._current
        if cur is None or self._frame is None:
            raise DumpFileError("internal error: rows outside a table's data section")
        stop = end
        inline_rows = 0
        inserts = 0
        start = pos
        if data[pos : pos + 1] != b"(" and not data.startswith(b"INSERT INTO ", pos):
            stop = pos
        else:
            segment = pos  # where the part of the current statement in this block starts
            while True:
                if data.startswith(b"INSERT INTO ", start):
                    inserts += 1
                    self._statement, segment = 0, start
                    nl = data.index(b"\n", start, end)
                    if not data.endswith(b" VALUES", start, nl):
                        inline_rows += count_inline_rows(data[start:nl])
                start = _statement_end(data, start, end)
                if start < 0:
                    self._statement += end - segment
                    break
                cur.longest_statement = max(cur.longest_statement, self._statement + start - segment)
                self._statement, segment = 0, start
                if start >= end:
                    break
                if not data.startswith(b"INSERT INTO ", start):
                    stop = start
                    break
        if stop > pos:
            rows = count_newlines(data, pos, stop) - inserts + inline_rows
            cur.rows += rows
            self._rows_out(data, pos, stop, rows)
        if stop < end:
            self._state = "data_tail"
            self._begin_frame("data_tail", cur)
        return stop

    def _rows_out(self, data: bytes, pos: int, stop: int, rows: int) -> None:
        """Write row lines, cutting a new data frame at an INSERT boundary every chunk_bytes."""
        view = memoryview(data)
        while True:
            frame = self._frame
            if frame is None:
                raise DumpFileError("internal error: rows outside a frame")
            room = self.chunk_bytes - frame.size
            cut = -1
            if stop - pos > room:
                cut = data.find(b"\nINSERT INTO ", pos + max(0, room - 1), stop) + 1
            if cut <= 0:
                frame.rows += rows
                self._data_write(view[pos:stop], rows=True)
                return
            head_rows = self._count_rows(data, pos, cut)
            frame.rows += head_rows
            self._data_write(view[pos:cut], rows=True)
            self._begin_frame("data", self._current)
            pos, rows = cut, rows - head_rows

    @staticmethod
    def _count_rows(data: bytes, pos: int, end: int) -> int:
        """Rows in a run of row and INSERT lines (row lines minus INSERT lines plus inline rows)."""
        rows = count_newlines(data, pos, end)
        start = pos if data.startswith(b"INSERT INTO ", pos) else _next_insert(data, pos, end)
        while start >= 0:
            nl = data.index(b"\n", start, end)
            rows -= 1
            if not data.endswith(b" VALUES", start, nl):
                rows += count_inline_rows(data[start:nl])
            start = _next_insert(data, nl, end)
        return rows

    def finish(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            self._route(held)
        if self._pending:
            tail, self._pending = self._pending, b""
            if self._state == "rows":
                self._state = "data_tail"
                self._begin_frame("data_tail", self._current)
            self._route(tail)
        self._end_frame()
        if self._digester is not None:
            self._digester.close()

    def abort(self) -> None:
        """Stop the digest thread of a parse that will not be finished."""
        if self._digester is not None:
            with contextlib.suppress(DumpFileError):
                self._digester.close()

    # results

    @property
    def current_object(self) -> str | None:
        """The table or view whose part of the dump was parsed last (None in a database-wide section)."""
        return self._current.name if self._current is not None else None

    def tables(self) -> dict[str, DumpObject]:
        return {n: o for n, o in self.objects.items() if o.kind == "table"}

    def manifest_objects(self) -> dict[str, Any]:
        return {name: self.objects[name].to_dict() for name in self.order}


def parse_stream(blocks: Iterable[bytes], chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> DumpParser:
    """Digest a dump stream without writing it: row counts and data digests per table."""
    parser = DumpParser(NullFrameWriter(), chunk_bytes)
    for block in blocks:
        parser.feed(block)
    parser.finish()
    return parser


# --- reading a backup file back -----------------------------------------------------------------


def load_manifest(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError as exc:
        raise DumpFileError(f"manifest {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise DumpFileError(f"manifest {path} is not readable JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise DumpFileError(f"{path} is not a mutuapix.ops backup manifest")
    try:
        version = int(manifest.get("format_version", 0))
    except (TypeError, ValueError) as exc:
        raise DumpFileError(f"{path} has format_version {manifest.get('format_version')!r}, not a number") from exc
    if version > FORMAT_VERSION:
        raise DumpFileError(
            f"{path} has format_version {manifest.get('format_version')}; this collection reads up to {FORMAT_VERSION}"
        )
    return manifest


def file_sha256(path: str, block: int = 8 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(block)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)


def frame_complete(obj: Any) -> bool:
    """Whether a zstd or zlib decompression object has read exactly one whole frame/member.

    zstandard before 0.18 (Ubuntu 22.04 ships 0.17) has neither ``eof`` nor ``unused_data``:
    there a decompression object refuses any further call once its frame has ended, which
    tells the end; bytes after the end are dropped unseen (the frame ranges of the manifest
    and the file's SHA-256 still cover them).
    """
    eof = getattr(obj, "eof", None)
    if eof is not None:
        return bool(eof) and not obj.unused_data
    try:
        obj.decompress(b"")
    except zstandard.ZstdError:
        return True
    return False


def decompressor(compression: str) -> Callable[[bytes], bytes]:
    """A function decompressing exactly one complete frame/member."""
    if compression == "zstd":
        if not HAS_ZSTANDARD:
            raise DumpFileError("the zstandard Python library is required to read zstd backups")
        dctx = zstandard.ZstdDecompressor()

        def _zstd(data: bytes) -> bytes:
            obj = dctx.decompressobj()
            out = obj.decompress(data)
            if not frame_complete(obj):
                raise DumpFileError("zstd frame is truncated or has trailing bytes")
            return out

        return _zstd
    if compression == "gzip":

        def _gzip(data: bytes) -> bytes:
            obj = zlib.decompressobj(31)
            out = obj.decompress(data)
            if not frame_complete(obj):
                raise DumpFileError("gzip member is truncated or has trailing bytes")
            return out

        return _gzip
    if compression == "none":
        return lambda data: data
    raise DumpFileError(f"unknown compression {compression!r}")


def open_compressed_stream(path: str, identities: list[bytes] | None = None) -> Iterator[bytes]:
    """The compressed stream of a backup file (decrypted when it is an .age file)."""
    with open(path, "rb") as handle:
        if path.endswith(".age"):
            from ansible_collections.mutuapix.ops.plugins.module_utils._age import (  # noqa: PLC0415
                AgeError,
                decrypt_stream,
            )

            if not identities:
                raise DumpFileError(f"{path} is encrypted: an age identity is required")
            try:
                yield from decrypt_stream(handle, identities)
            except AgeError as exc:
                raise DumpFileError(f"{path}: {exc}") from exc
            return
        while True:
            block = handle.read(READ_BLOCK)
            if not block:
                return
            yield block


def all_frames(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every frame of the file in stream order, each with ``object`` (None for sections)."""
    frames: list[dict[str, Any]] = []
    for key in ("header", "events", "routines", "footer"):
        section = manifest.get("sections", {}).get(key)
        if section:
            frames.append(dict(section, object=None))
    for name, obj in manifest.get("tables", {}).items():
        for frame in obj.get("frames", []):
            frames.append(dict(frame, object=name))
    frames.sort(key=lambda f: f["offset"])
    return frames


def iter_frames(
    path: str, manifest: dict[str, Any], identities: list[bytes] | None = None
) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Yield (frame, decompressed bytes) for every frame, checking the file as it goes.

    Raises DumpFileError when a frame does not decompress, when the frames do not tile the
    stream exactly, or when the stream is shorter or longer than the manifest says.
    """
    frames = all_frames(manifest)
    decompress = decompressor(manifest["compression"])
    stream = open_compressed_stream(path, identities)
    buf = bytearray()
    position = 0
    for frame in frames:
        if frame["offset"] != position:
            raise DumpFileError(f"manifest frames do not tile the file at offset {position}")
        need = frame["length"]
        while len(buf) < need:
            try:
                block = next(stream)
            except StopIteration as exc:
                raise DumpFileError(f"{path} is truncated: frame at offset {frame['offset']} is incomplete") from exc
            buf += block
        raw = bytes(buf[:need])
        del buf[:need]
        position += need
        try:
            plain = decompress(raw)
        except (DumpFileError, zlib.error) as exc:
            raise DumpFileError(
                f"{path}: frame at offset {frame['offset']} ({_frame_label(frame)}) is corrupt: {exc}"
            ) from exc
        except Exception as exc:
            raise DumpFileError(
                f"{path}: frame at offset {frame['offset']} ({_frame_label(frame)}) is corrupt: {exc}"
            ) from exc
        if len(plain) != frame["size"]:
            raise DumpFileError(f"{path}: frame at offset {frame['offset']} decompresses to the wrong size")
        yield frame, plain
    if buf or next(stream, None):
        raise DumpFileError(f"{path} has bytes after the last frame the manifest knows")


def _frame_label(frame: dict[str, Any]) -> str:
    return f"{frame['part']} of {frame['object']}" if frame.get("object") else frame["part"]


def write_json_atomic(path: str, data: dict[str, Any], mode: int = 0o600) -> None:
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.partial-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
