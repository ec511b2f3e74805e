"""An independent check of a CDX: Perl's XBase::cdx (Debian `libdbd-xbase-perl`) walks a
tag, sharing no code with dbflib or the agent's own CDX reader.

`cdx_keys(dbf_path, tag)` -> [(key bytes, recno)] in index order. XBase reads an
expression tag (`CUSTNO+INVNO`) only when told the key type, so `C` is passed (the
groundwork's Q1 note). Keys come back hex-encoded, so leading spaces survive; XBase
may trim trailing spaces, so compare keys with `.rstrip(b" ")`.

When perl or XBase is missing the calling test is skipped with the reason, unless
`REQUIRE_XBASE=1` (CI installs the package), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SCRIPT = r"""
use strict; use warnings; use XBase; use XBase::Index;
my ($dbfname, $cdx, $tag, $type) = @ARGV;
my $dbf = XBase->new(name => $dbfname, ignorememo => 1) or die XBase->errstr;
my %o = (tag => $tag, dbf => $dbf, type => $type);
my $idx = XBase::Index->new($cdx, %o) or die XBase::Index->errstr;
$idx->prepare_select;
while (my ($key, $rec) = $idx->fetch) { print unpack("H*", $key), " ", $rec, "\n"; }
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_XBASE") == "1":
        pytest.fail(f"REQUIRE_XBASE=1 but {reason}")
    pytest.skip(reason)


def xbase_available() -> bool:
    if shutil.which("perl") is None:
        return False
    probe = subprocess.run(
        ["perl", "-MXBase", "-MXBase::Index", "-e", "1"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def cdx_keys(
    dbf_path: str, tag: str, cdx_path: str | None = None
) -> list[tuple[bytes, int]]:
    if shutil.which("perl") is None:
        _unavailable("perl is not installed (the independent CDX reader)")
    if not xbase_available():
        _unavailable("Perl XBase is not installed (apt-get install libdbd-xbase-perl)")
    cdx_path = cdx_path or os.path.splitext(dbf_path)[0] + ".CDX"
    done = subprocess.run(
        ["perl", "-e", SCRIPT, dbf_path, cdx_path, tag.upper(), "C"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"XBase::cdx could not read {cdx_path} tag {tag}: {done.stderr}"
        )
    out = []
    for line in done.stdout.splitlines():
        key_hex, _, recno = line.partition(" ")
        out.append((bytes.fromhex(key_hex), int(recno)))
    return out


def _raw_records(dbf_path: str) -> tuple[dict[str, tuple[str, int, int]], list[bytes]]:
    """Field layout and raw records, parsed here (not with the agent's codec)."""
    with open(dbf_path, "rb") as fh:
        data = fh.read()
    count = int.from_bytes(data[4:8], "little")
    header_len = int.from_bytes(data[8:10], "little")
    rec_len = int.from_bytes(data[10:12], "little")
    fields, pos, offset = {}, 32, 1
    while data[pos] != 0x0D:
        name = data[pos : pos + 11].split(b"\0")[0].decode("ascii").upper()
        fields[name] = (chr(data[pos + 11]), offset, data[pos + 16])
        offset += data[pos + 16]
        pos += 32
    records = [
        data[header_len + i * rec_len : header_len + (i + 1) * rec_len]
        for i in range(count)
    ]
    return fields, records


def table_keys(dbf_path: str, key_expr: str) -> list[tuple[bytes, int]]:
    """The (key, recno) every record should have in a tag, computed from the raw DBF
    bytes for the expressions the layouts use: FIELD, UPPER(FIELD), DTOS(FIELD),
    joined with `+`. Deleted records included (VFP indexes them)."""
    fields, records = _raw_records(dbf_path)
    parts = []
    for part in key_expr.upper().split("+"):
        part = part.strip()
        func = ""
        if "(" in part:
            func, _, inner = part.partition("(")
            part = inner.rstrip(")").strip()
        if func not in ("", "UPPER", "DTOS"):
            raise ValueError(f"cdxcheck cannot evaluate {key_expr!r}")
        parts.append((func, fields[part]))
    out = []
    for recno, rec in enumerate(records, 1):
        key = b""
        for func, (_kind, offset, width) in parts:
            raw = rec[offset : offset + width]
            key += (
                raw.decode("cp1252").upper().encode("cp1252")
                if func == "UPPER"
                else raw
            )
        out.append((key, recno))
    return out


def index_problems(dbf_path: str, tag: str, key_expr: str) -> list[str]:
    """Differences between the tag as Perl XBase::cdx reads it and the keys the raw
    records call for ([] = the index finds every row, and only those)."""
    indexed = sorted((k.rstrip(b" "), r) for k, r in cdx_keys(dbf_path, tag))
    wanted = sorted((k.rstrip(b" "), r) for k, r in table_keys(dbf_path, key_expr))
    if indexed == wanted:
        return []
    missing = sorted(set(wanted) - set(indexed))[:5]
    extra = sorted(set(indexed) - set(wanted))[:5]
    return [
        f"{os.path.basename(dbf_path)} tag {tag}: missing {missing}, unexpected {extra}"
    ]
