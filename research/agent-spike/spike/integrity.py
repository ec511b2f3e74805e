"""Integrity watchdog checks for a VFP table (spike).  Read-only; opens nothing for write.

check_table(path, sample=100) -> list of problems ([] = healthy):
  * header sanity: version byte, record length = 1 + sum(field lengths), header length;
  * header record count vs file size: size must be header_len + n*rec_len (+1 for the 0x1A
    EOF byte).  Smaller = truncated; larger = bytes past the count (an append killed
    before its header update, reference E7a, or a stale count);
  * every delete flag is ' ' or '*';
  * memo pointers lie inside the FPT;
  * CDX present when the header says so, non-empty, parseable; per tag the number of
    leaf entries equals the records that pass its filter (all records, deleted too);
  * sampled index lookups: for `sample` records (always including the last 10, where a
    stale index shows first) compute the key and SEEK it; the record must be found.
    sample=None checks every record.
"""
from __future__ import annotations

import os
import random
import struct

from dbflib.cdx import _compile_tag  # private dbflib API: key/filter evaluator (VFP semantics)
from dbflib.reader import DbfTableData

from . import vfpcodec as vc
from .cdxseek import CdxFile


def check_table(path: str, sample: int | None = 100, seed: int = 0) -> list[str]:
    problems: list[str] = []
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        if size < 32:
            return [f"HEADER file is {size} bytes"]
        h = vc.read_header(fh)
        if h.version not in (0x30, 0x31, 0x32):
            problems.append(f"HEADER version byte {h.version:#04x} is not VFP")
        want_rec_len = 1 + sum(f.length for f in h.fields)
        if h.rec_len != want_rec_len:
            problems.append(f"HEADER record length {h.rec_len} != 1 + sum(fields) {want_rec_len}")
        if h.header_len < 32 + 32 * len(h.fields) + 1:
            problems.append(f"HEADER header length {h.header_len} too small for {len(h.fields)} fields")
        expected = h.header_len + h.reccount * h.rec_len
        if size < expected:
            problems.append(f"SIZE truncated: header says {h.reccount} records = {expected} bytes, file has {size}")
        elif size > expected + 1:
            extra = size - expected - 1
            problems.append(f"SIZE {extra} bytes past the header count ({h.reccount} records; "
                            f"{extra / h.rec_len:.2f} records' worth): killed append or stale count")
        elif size == expected + 1:
            fh.seek(expected)
            if fh.read(1) != vc.EOF:
                problems.append("SIZE one byte past the records that is not the 0x1A EOF marker")
        n = min(h.reccount, max(0, (size - h.header_len) // h.rec_len))
        fh.seek(h.header_len)
        data = fh.read(n * h.rec_len)
    bad = [i + 1 for i in range(n) if data[i * h.rec_len] not in (0x20, 0x2A)]
    if bad:
        problems.append(f"RECORD delete flag not ' '/'*' in records {bad[:5]}{'…' if len(bad) > 5 else ''}")

    memo_fields = [f for f in h.fields if f.type == "M"]
    if memo_fields:
        mp = vc.memo_path(path)
        if not mp:
            problems.append("MEMO table has memo fields but no FPT")
        else:
            with open(mp, "rb") as m:
                nxt, _, bs = struct.unpack(">IHH", m.read(8))
            for i in range(n):
                for f in memo_fields:
                    blk = struct.unpack_from("<i", data, i * h.rec_len + f.offset)[0]
                    if blk < 0 or (blk and blk >= nxt):
                        problems.append(f"MEMO record {i + 1} {f.name} points at block {blk} >= next free {nxt}")

    if h.table_flags & 0x01:
        base = os.path.splitext(path)[0]
        cdx = next((c for c in (base + ".CDX", base + ".cdx") if os.path.exists(c)), None)
        if cdx is None:
            problems.append("CDX structural index flagged in the header but missing")
        elif os.path.getsize(cdx) < 1024:
            problems.append(f"CDX is {os.path.getsize(cdx)} bytes (unreadable)")
        elif not problems or all(not p.startswith(("SIZE", "HEADER")) for p in problems):
            problems += _check_cdx(path, cdx, h, sample, seed)
    return problems


def _check_cdx(path, cdx_path, h, sample, seed):
    out = []
    try:
        cdx = CdxFile(cdx_path)
    except Exception as exc:  # noqa: BLE001
        return [f"CDX unreadable: {type(exc).__name__}: {exc}"]
    try:
        table = DbfTableData(path)
        for tag, off in cdx.tags.items():
            info = cdx.tag_info(tag)
            slots: dict = {}
            spec = {"key": info["key"], **({"filter": info["filter"]} if info["filter"] else {})}
            ctag, _ = _compile_tag(tag, spec, table.fields, slots)
            conv = [table.field_converter(name) for name in slots]

            def row_key(recno):
                base = h.header_len + (recno - 1) * h.rec_len
                R = [c(table.data, base) for c in conv]
                if ctag.filter_func is not None and not ctag.filter_func(R):
                    return None
                return ctag.encode(ctag.key_func(R))

            n = h.reccount
            entries = _count_entries(cdx, off, info["keylen"])
            if ctag.filter_func is None:
                if entries != n:
                    out.append(f"CDX tag {tag}: {entries} entries for {n} records (stale index)")
            if sample is None:
                recnos = range(1, n + 1)
            else:
                rnd = random.Random(seed)
                recnos = sorted(set(rnd.sample(range(1, n + 1), min(sample, n))) | set(range(max(1, n - 9), n + 1)))
            missing = []
            for r in recnos:
                key = row_key(r)
                if key is not None and ctag.key_length and info["keylen"] == len(key):
                    if r not in cdx.seek(tag, key, pad=ctag.pad_byte):
                        missing.append(r)
            if missing:
                out.append(f"CDX tag {tag}: SEEK misses records {missing[:5]}{'…' if len(missing) > 5 else ''}")
    except Exception as exc:  # noqa: BLE001
        out.append(f"CDX check failed: {type(exc).__name__}: {exc}")
    finally:
        cdx.close()
    return out


def _count_entries(cdx: CdxFile, header_off: int, keylen: int) -> int:
    """Sum the key counts of the leaf chain (reads 4 bytes per leaf page)."""
    mm = cdx.mm
    node, = struct.unpack_from("<i", mm, header_off)
    while not struct.unpack_from("<H", mm, node)[0] & 2:
        node = struct.unpack_from(">I", mm, node + 12 + keylen + 4)[0]
    total = 0
    while True:
        _, count, _, right = struct.unpack_from("<HHii", mm, node)
        total += count
        if right == -1:
            return total
        node = right
