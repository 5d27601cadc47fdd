"""The CPU cost per GB of what mysql_backup does to each byte of a dump, method against method.

mysql_backup's own work beside the dump program is: finding statement ends and counting
row lines (the parser), compressing, and hashing the file. On a two-core machine every
CPU-second of it competes with the server and the dump program, so this bench measures
each piece on a real dump of the bench database, held in memory and cut into the 1 MiB
blocks the module reads, and compares the method the module uses with its alternatives:

  newline count   bytes.count(b"\\n")  vs  count_newlines (replace in 64 KiB pieces)
                  vs replace on whole 1 MiB blocks (page faults: see the system time)
  parse           DumpParser alone (statement ends + row counts), no compression; and the
                  same with bytes.count for the row lines
  compression     zstd level 1  vs  the module's default (level 1 with a 128 KiB window)
                  vs zstd level 3  vs  zlib level 6 (gzip -6), with the compressed size

Each measurement is the best of --repeat runs, user + system CPU of this process.

Usage: bench/bench_parse.py [--size-mb 1100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zstandard
from _common import bench_server, module_dump_options, option_file, save

from ansible_collections.mutuapix.ops.plugins.module_utils import _dumpfile

BLOCK = 1024 * 1024


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def best_of(repeat: int, func) -> tuple[float, object]:
    best, result = None, None
    for _round in range(repeat):
        start = cpu()
        result = func()
        spent = cpu() - start
        best = spent if best is None else min(best, spent)
    return best, result


def compress_frames(blocks: list[bytearray], params: zstandard.ZstdCompressionParameters) -> int:
    cctx = zstandard.ZstdCompressor(compression_params=params)
    size = 0
    for i in range(0, len(blocks), 32):  # 32 MiB frames, as the module's default chunk_size
        cobj = cctx.compressobj()
        for block in blocks[i : i + 32]:
            size += len(cobj.compress(block))
        size += len(cobj.flush())
    return size


def gzip_frames(blocks: list[bytearray]) -> int:
    size = 0
    for i in range(0, len(blocks), 32):
        cobj = zlib.compressobj(6, zlib.DEFLATED, 31)
        for block in blocks[i : i + 32]:
            size += len(cobj.compress(block))
        size += len(cobj.flush())
    return size


def parse(blocks: list[bytearray]) -> int:
    # Output discarded as if compressed: the frames' checksums stand for the data digests, so
    # the parser hashes nothing, as on the module's backup path.
    parser = _dumpfile.DumpParser(_dumpfile.NullFrameWriter("xxh64-32"), _dumpfile.DEFAULT_CHUNK_BYTES, digest=False)
    if parser.digest:
        raise SystemExit("bench: the parser would hash every data region; this bench measures the backup path")
    for block in blocks:
        parser.feed(block)
    parser.finish()
    return sum(obj.rows for obj in parser.tables().values())


def parse_with_bytes_count(blocks: list[bytearray]) -> int:
    module_count = _dumpfile.count_newlines
    _dumpfile.count_newlines = lambda data, start=0, end=None: data.count(b"\n", start, end)
    try:
        return parse(blocks)
    finally:
        _dumpfile.count_newlines = module_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1100, help="approximate plain dump size of the database")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = bench_server(args.size_mb)
    try:
        dump = subprocess.run(
            ["mariadb-dump", f"--defaults-file={option_file(server)}", *module_dump_options(server), "bench"],
            stdout=subprocess.PIPE,
            check=True,
        ).stdout
    finally:
        server.stop()
    blocks = [bytearray(dump[i : i + BLOCK]) for i in range(0, len(dump), BLOCK)]
    gb = len(dump) / 1e9
    expected_lines = dump.count(b"\n")
    del dump
    print(f"bench: dump of {gb * 1000:.0f} MB in {len(blocks)} blocks of 1 MiB; CPU-s per GB, best of {args.repeat}")

    def whole_block_replace() -> int:
        return sum(len(b) - len(b.replace(b"\n", b"")) for b in blocks)

    measures = {
        "newline count: bytes.count": lambda: sum(b.count(b"\n") for b in blocks),
        "newline count: count_newlines (module)": lambda: sum(_dumpfile.count_newlines(b) for b in blocks),
        "newline count: replace on whole blocks": whole_block_replace,
        "parse: DumpParser, no compression (module)": lambda: parse(blocks),
        "parse: the same counting with bytes.count": lambda: parse_with_bytes_count(blocks),
        "zstd level 1": lambda: compress_frames(blocks, _dumpfile.zstd_parameters(1)),
        "zstd default: tuned level 1 (module)": lambda: compress_frames(blocks, _dumpfile.zstd_parameters(None)),
        "zstd level 3": lambda: compress_frames(blocks, _dumpfile.zstd_parameters(3)),
        "gzip -6 (zlib)": lambda: gzip_frames(blocks),
    }
    results = {}
    for name, func in measures.items():
        seconds, value = best_of(args.repeat, func)
        if name.startswith("newline") and value != expected_lines:
            raise SystemExit(f"{name} counted {value} line breaks, bytes.count {expected_lines}")
        results[name] = {"cpu_s_per_gb": round(seconds / gb, 3), "value": value}
        extra = f"{value / 1e6 / gb:8.1f} MB/GB" if name.startswith(("zstd", "gzip")) else f"{value:>14,}"
        print(f"  {name:44} {seconds / gb:6.3f} CPU-s/GB  {extra}", flush=True)

    def ratio(a: str, b: str) -> float:
        return round(results[a]["cpu_s_per_gb"] / results[b]["cpu_s_per_gb"], 2)

    summary = {
        "count_vs_count_newlines": ratio("newline count: bytes.count", "newline count: count_newlines (module)"),
        "zstd1_vs_default": ratio("zstd level 1", "zstd default: tuned level 1 (module)"),
        "default_size_vs_zstd1": round(
            results["zstd default: tuned level 1 (module)"]["value"] / results["zstd level 1"]["value"], 3
        ),
        "default_size_vs_gzip6": round(
            results["zstd default: tuned level 1 (module)"]["value"] / results["gzip -6 (zlib)"]["value"], 3
        ),
    }
    print(summary)
    path = save("parse", {"size_mb": args.size_mb, "dump_bytes": int(gb * 1e9), "results": results, **summary})
    print(f"bench: results written to {path}")


if __name__ == "__main__":
    main()
