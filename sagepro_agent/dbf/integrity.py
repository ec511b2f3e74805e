"""The integrity watchdog's check of one Visual FoxPro table. Read-only.

`check_table(path, layout_tags=None, sample=100)` returns a list of findings (empty =
healthy). Each finding starts with what it concerns (HEADER, SIZE, RECORD, MEMO, CDX)
so a repair tool can tell an index problem from a data problem:

- HEADER: version byte, record length = 1 + sum of field widths, header length;
- SIZE: the header's record count against the file size (`header_len + n * rec_len`,
  plus the 0x1A EOF byte). Smaller = truncated; larger = bytes past the count (an
  append killed before its header update, or a count that went down);
- RECORD: every delete flag is ' ' or '*';
- MEMO: memo pointers lie inside the FPT;
- CDX: present when the header says so, readable, the expected tags with the expected
  key expressions (`layout_tags`), one entry per record that passes the tag's filter
  (deleted records too, as VFP indexes them), and sampled SEEKs: for `sample` records
  (always including the last 10, where a stale index shows first) the key is computed
  with dbflib's FoxPro expression compiler and looked up through the B-tree; the
  record must be found. `sample=None` checks every record.

Usable on a site copy: `python -m sagepro_agent check <folder>` (see `main`).
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
from collections.abc import Iterable, Sequence

from sagepro_agent.dbf import codec
from sagepro_agent.dbf.cdx import CdxError, CdxFile


def _fmt_list(items: list[int]) -> str:
    return f"{items[:5]}{'...' if len(items) > 5 else ''}"


def check_table(
    path: str,
    layout_tags: Iterable[tuple[str, str]] | dict[str, str] | None = None,
    sample: int | None = 100,
    *,
    seed: int = 0,
) -> list[str]:
    """Findings for one table (see the module docstring); [] when healthy.

    `layout_tags` are the tags the table must have, as `{TAG: key expression}` or
    pairs; None checks whatever tags the CDX holds."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return [f"FILE {name} cannot be read: {exc.strerror}"]
    if size < 32:
        return [f"HEADER file is {size} bytes"]
    problems: list[str] = []
    try:
        with open(path, "rb") as fh:
            h = codec.read_header(fh)
            if h.version not in (0x30, 0x31, 0x32):
                problems.append(
                    f"HEADER version byte {h.version:#04x} is not Visual FoxPro"
                )
            want_rec_len = 1 + sum(f.length for f in h.fields)
            if h.rec_len != want_rec_len:
                problems.append(
                    f"HEADER record length {h.rec_len} != 1 + sum of field widths {want_rec_len}"
                )
            if h.header_len < 32 + 32 * len(h.fields) + 1:
                problems.append(
                    f"HEADER header length {h.header_len} is too small for {len(h.fields)} fields"
                )
            expected = h.expected_size()
            if size < expected:
                problems.append(
                    f"SIZE truncated: the header says {h.reccount} records = {expected} bytes,"
                    f" the file has {size}"
                )
            elif size > expected + 1:
                extra = size - expected - 1
                problems.append(
                    f"SIZE {extra} bytes past the header count ({h.reccount} records;"
                    f" {extra / h.rec_len:.2f} records' worth): an append killed before its"
                    " header update, or a record count that went down"
                )
            elif size == expected + 1:
                fh.seek(expected)
                if fh.read(1) != codec.EOF:
                    problems.append(
                        "SIZE one byte past the records that is not the 0x1A EOF marker"
                    )
            n = min(h.reccount, max(0, (size - h.header_len) // max(h.rec_len, 1)))
            fh.seek(h.header_len)
            data = fh.read(n * h.rec_len)
    except (OSError, codec.NotADbfError) as exc:
        return problems + [f"HEADER unreadable: {exc}"]
    if any(p.startswith("HEADER") for p in problems):
        return problems

    bad = [i + 1 for i in range(n) if data[i * h.rec_len] not in (0x20, 0x2A)]
    if bad:
        problems.append(
            f"RECORD delete flag not ' ' or '*' in records {_fmt_list(bad)}"
        )

    memo_fields = [f for f in h.fields if f.type == "M"]
    if memo_fields:
        problems += _check_memo(path, h, data, n, memo_fields)

    cdx = codec.cdx_path(path)
    if layout_tags is not None:
        wanted = dict(
            layout_tags.items() if isinstance(layout_tags, dict) else layout_tags
        )
    else:
        wanted = None
    if h.table_flags & 0x01 or wanted:
        if cdx is None:
            problems.append(
                "CDX structural index missing (the header or the layout says it has one)"
            )
        elif os.path.getsize(cdx) < 1024:
            problems.append(f"CDX is {os.path.getsize(cdx)} bytes: empty or truncated")
        elif not any(p.startswith("SIZE truncated") for p in problems):
            problems += _check_cdx(path, cdx, h, wanted, sample, seed)
    return problems


def _check_memo(path, h, data, n, memo_fields) -> list[str]:
    mp = codec.memo_path(path)
    if not mp:
        return ["MEMO the table has memo fields but no FPT file"]
    with open(mp, "rb") as m:
        head = m.read(8)
    if len(head) < 8:
        return ["MEMO the FPT header is truncated"]
    nxt, _, _bs = struct.unpack(">IHH", head)
    out = []
    for i in range(n):
        for f in memo_fields:
            blk = struct.unpack_from("<i", data, i * h.rec_len + f.offset)[0]
            if blk < 0 or (blk and blk >= nxt):
                out.append(
                    f"MEMO record {i + 1} {f.name} points at block {blk} >= next free {nxt}"
                )
    return out


def _check_cdx(path, cdx_path, h, wanted, sample, seed) -> list[str]:
    # dbflib private API: the FoxPro key/filter compiler with VFP semantics. dbflib is
    # pinned to 1.1 and tests/agent/test_dbf_tools.py covers this use.
    from dbflib.cdx import _compile_tag
    from dbflib.reader import DbfTableData

    out: list[str] = []
    try:
        cdx = CdxFile(cdx_path)
    except (CdxError, OSError, struct.error) as exc:
        return [f"CDX unreadable: {exc}"]
    try:
        if wanted is not None:
            for tag, key in wanted.items():
                if tag.upper() not in cdx.tags:
                    out.append(f"CDX tag {tag.upper()} missing (expected key {key})")
                else:
                    have = cdx.tag_info(tag).key
                    if have.replace(" ", "").upper() != key.replace(" ", "").upper():
                        out.append(
                            f"CDX tag {tag.upper()} has key {have}, expected {key}"
                        )
        table = DbfTableData(path)
        n = h.reccount
        for tag in cdx.tags:
            info = cdx.tag_info(tag)
            slots: dict = {}
            spec = {"key": info.key, **({"filter": info.filter} if info.filter else {})}
            try:
                ctag, _ = _compile_tag(tag, spec, table.fields, slots)
            except Exception as exc:  # noqa: BLE001 (any compiler refusal is a finding)
                out.append(
                    f"CDX tag {tag}: key {info.key!r} cannot be evaluated here ({exc})"
                )
                continue
            conv = [table.field_converter(name) for name in slots]

            def row_key(recno: int, ctag=ctag, conv=conv) -> bytes | None:
                base = h.header_len + (recno - 1) * h.rec_len
                values = [c(table.data, base) for c in conv]
                if ctag.filter_func is not None and not ctag.filter_func(values):
                    return None
                return ctag.encode(ctag.key_func(values))

            entries = cdx.count_entries(tag)
            if ctag.filter_func is None:
                expected = n
            else:
                expected = sum(1 for r in range(1, n + 1) if row_key(r) is not None)
            if entries != expected:
                out.append(
                    f"CDX tag {tag}: {entries} entries for {expected} records (stale index)"
                )
            if sample is None:
                recnos: Iterable[int] = range(1, n + 1)
            else:
                rnd = random.Random(seed)
                picked = set(rnd.sample(range(1, n + 1), min(sample, n)))
                recnos = sorted(picked | set(range(max(1, n - 9), n + 1)))
            missing = []
            for r in recnos:
                key = row_key(r)
                if key is None or info.keylen != len(key):
                    continue
                if r not in cdx.seek(tag, key, pad=ctag.pad_byte):
                    missing.append(r)
            if missing:
                out.append(f"CDX tag {tag}: SEEK misses records {_fmt_list(missing)}")
    except (CdxError, struct.error, IndexError) as exc:
        out.append(f"CDX unreadable: {exc}")
    finally:
        cdx.close()
    return out


def dbf_files(folder: str) -> list[str]:
    """Every .DBF in a folder (any case), sorted by name."""
    return sorted(
        os.path.join(folder, n)
        for n in os.listdir(folder)
        if n.lower().endswith(".dbf")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`check <folder> [--table NAME ...] [--full | --sample N]`: exit 0 when every table
    is healthy, 1 when any has findings, 2 when the folder cannot be read."""
    parser = argparse.ArgumentParser(
        prog="sagepro_agent check",
        description="Check FoxPro tables read-only: record count against file size, "
        "delete flags, memo pointers, index tags and sampled index lookups.",
    )
    parser.add_argument("folder")
    parser.add_argument(
        "--table", action="append", help="only this table (e.g. ARMAST01)"
    )
    parser.add_argument(
        "--full", action="store_true", help="look every record up in every tag"
    )
    parser.add_argument("--sample", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        paths = dbf_files(args.folder)
    except OSError as exc:
        sys.stderr.write(f"cannot read {args.folder}: {exc.strerror}\n")
        return 2
    if args.table:
        want = {t.upper() for t in args.table}
        paths = [
            p for p in paths if os.path.splitext(os.path.basename(p))[0].upper() in want
        ]
    failed = 0
    for path in paths:
        findings = check_table(path, sample=None if args.full else args.sample)
        name = os.path.basename(path)
        if findings:
            failed += 1
            _say(f"{name}: {len(findings)} problem(s)")
            for finding in findings:
                _say(f"  {finding}")
        else:
            _say(f"{name}: OK")
    _say(f"{len(paths)} table(s) checked, {failed} with problems")
    return 1 if failed else 0


def _say(text: str) -> None:
    """Command-line output (the CLI prints; nothing else here does)."""
    sys.stdout.write(f"{text}\n")
