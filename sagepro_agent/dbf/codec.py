"""Raw Visual FoxPro DBF/FPT record codec.

Works on the bytes on disk, so the fixture store can patch a record in place (dbflib
only appends) and the read-only tools can decode any table. Nothing is trimmed and
nothing is rounded silently: C values keep every leading space (a right-justified key
`"     10045"` stays as it is), money is quantised ROUND_HALF_UP to the field's
decimals, floats are refused, and a value that does not fit its field raises.

Values follow `sagepro_agent.store.base` (C -> str as stored, N/F/Y -> Decimal, D ->
date or None, T -> naive UTC datetime or None, L -> bool, I -> int, M -> str).
"""

from __future__ import annotations

import datetime
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, BinaryIO

ENCODING = "cp1252"  # Sage Pro's tables: Windows-1252 (code page mark 0x03)
EOF = b"\x1a"
JULIAN_OFFSET = 1721425  # date.toordinal() + this = Julian day number (VFP T fields)


def encodable(text: str) -> bool:
    """Whether a character field can hold `text` (every character in the code page)."""
    try:
        text.encode(ENCODING)
    except UnicodeEncodeError:
        return False
    return True


class FieldOverflow(ValueError):
    """A value does not fit its field (too long, too many digits)."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    offset: int  # within the record; byte 0 is the delete flag
    length: int
    decimals: int
    flags: int = 0


@dataclass(frozen=True)
class Header:
    version: int
    reccount: int
    header_len: int
    rec_len: int
    table_flags: int
    codepage: int
    updated: tuple[int, int, int]  # YY, MM, DD as stored
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        wanted = name.upper()
        for f in self.fields:
            if f.name == wanted:
                return f
        raise KeyError(f"no field {wanted} in this table")

    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def record_pos(self, recno: int) -> int:
        return self.header_len + (recno - 1) * self.rec_len

    def expected_size(self) -> int:
        """Header plus every record, without the trailing 0x1A EOF byte."""
        return self.header_len + self.reccount * self.rec_len


class NotADbfError(ValueError):
    """The file is not a readable DBF header."""


def read_header(fh: BinaryIO) -> Header:
    fh.seek(0)
    head = fh.read(32)
    if len(head) < 32:
        raise NotADbfError(f"header is {len(head)} bytes, not 32")
    reccount, header_len, rec_len = struct.unpack_from("<IHH", head, 4)
    if header_len < 33:
        raise NotADbfError(f"header length {header_len} is too small")
    rest = fh.read(header_len - 32)
    fields: list[Field] = []
    pos, off = 0, 1
    while pos + 32 <= len(rest) and rest[pos] != 0x0D:
        d = rest[pos : pos + 32]
        name = d[:11].split(b"\0")[0].decode("ascii", "replace").upper()
        fields.append(Field(name, chr(d[11]), off, d[16], d[17], d[18]))
        off += d[16]
        pos += 32
    return Header(
        version=head[0],
        reccount=reccount,
        header_len=header_len,
        rec_len=rec_len,
        table_flags=head[28],
        codepage=head[29],
        updated=(head[1], head[2], head[3]),
        fields=tuple(fields),
    )


def read_header_path(path: str) -> Header:
    with open(path, "rb") as fh:
        return read_header(fh)


def quantize(value: Any, places: int) -> Decimal:
    """Decimal rounded ROUND_HALF_UP to `places`; floats are refused."""
    if isinstance(value, float):
        raise TypeError("floats never reach the ledger: pass a Decimal, int or str")
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    return number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def encode(
    f: Field, value: Any, memo_writer: Callable[[bytes], int] | None = None
) -> bytes:
    """The field's bytes for `value` (None = the blank value of the type)."""
    t, w = f.type, f.length
    if t in "CV":
        if value is None:
            return b" " * w
        if not isinstance(value, str):
            raise TypeError(f"{f.name} C({w}) takes a str, not {type(value).__name__}")
        try:
            raw = value.encode(ENCODING)
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{f.name}: {value!r} has characters outside {ENCODING}"
            ) from exc
        if len(raw) > w:
            raise FieldOverflow(f"{f.name} C({w}): {value!r} is {len(raw)} bytes")
        return raw.ljust(w, b" ")  # pad on the right only: leading spaces are kept
    if t in "NF":
        if value is None:
            return b" " * w
        q = quantize(value, f.decimals)
        text = f"{q:.{f.decimals}f}"
        if len(text) > w:
            raise FieldOverflow(f"{f.name} N({w},{f.decimals}): {value!r} does not fit")
        return text.rjust(w).encode("ascii")
    if t == "Y":
        q = quantize(0 if value is None else value, 4)
        return struct.pack("<q", int(q.scaleb(4)))
    if t == "D":
        if value is None:
            return b" " * 8
        if not isinstance(value, datetime.date):
            raise TypeError(f"{f.name} D takes a date, not {type(value).__name__}")
        return f"{value.year:04d}{value.month:02d}{value.day:02d}".encode("ascii")
    if t == "T":
        if value is None:
            return bytes(8)
        if not isinstance(value, datetime.datetime):
            raise TypeError(f"{f.name} T takes a datetime, not {type(value).__name__}")
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        ms = (
            (value.hour * 60 + value.minute) * 60 + value.second
        ) * 1000 + value.microsecond // 1000
        return struct.pack("<ii", value.date().toordinal() + JULIAN_OFFSET, ms)
    if t == "L":
        if value is None:
            value = False  # a blank logical is written F, never '?'
        if not isinstance(value, bool):
            raise TypeError(f"{f.name} L takes a bool, not {type(value).__name__}")
        return b"T" if value else b"F"
    if t == "I":
        if isinstance(value, float | bool):
            raise TypeError(f"{f.name} I takes an int")
        return struct.pack("<i", 0 if value is None else int(value))
    if t == "B":
        raise TypeError(f"{f.name} B (double) fields are not written by the agent")
    if t == "M":
        if not value:
            return struct.pack("<i", 0)
        if memo_writer is None:
            raise ValueError(f"{f.name} M: a memo value needs the table's FPT")
        payload = value.encode(ENCODING) if isinstance(value, str) else bytes(value)
        return struct.pack("<i", memo_writer(payload))
    raise ValueError(f"{f.name}: unsupported field type {t!r}")


def decode(
    f: Field, raw: bytes, memo_reader: Callable[[int], str] | None = None
) -> Any:
    t = f.type
    if t in "CV":
        return raw.decode(ENCODING, "replace")  # padding kept: output trims
    if t in "NF":
        s = raw.strip()
        if not s or s.startswith(b"*"):
            return Decimal(0).scaleb(-f.decimals)
        try:
            return Decimal(s.decode("ascii"))
        except InvalidOperation:
            return Decimal(0).scaleb(-f.decimals)
    if t == "Y":
        return Decimal(struct.unpack("<q", raw)[0]).scaleb(-4)
    if t == "D":
        s = raw.strip()
        if not s or s == b"00000000":
            return None
        try:
            return datetime.date(int(s[:4]), int(s[4:6]), int(s[6:8]))
        except ValueError:
            return None
    if t == "T":
        j, ms = struct.unpack("<ii", raw)
        if j <= 0:
            return None
        day = datetime.date.fromordinal(j - JULIAN_OFFSET)
        return datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(
            milliseconds=ms
        )
    if t == "L":
        return raw in (b"T", b"t", b"Y", b"y")
    if t == "I":
        return struct.unpack("<i", raw)[0]
    if t == "B":
        return Decimal(repr(struct.unpack("<d", raw)[0]))
    if t == "M":
        block = struct.unpack("<i", raw)[0]
        if block <= 0 or memo_reader is None:
            return ""
        return memo_reader(block)
    return raw


def decode_record(
    h: Header, rec: bytes, memo_reader: Callable[[int], str] | None = None
) -> tuple[bool, dict[str, Any]]:
    """(deleted, {FIELD: value}) for one record's bytes."""
    values = {
        f.name: decode(f, rec[f.offset : f.offset + f.length], memo_reader)
        for f in h.fields
    }
    return rec[0:1] == b"*", values


def encode_record(
    h: Header,
    values: Mapping[str, Any],
    memo_writer: Callable[[bytes], int] | None = None,
    *,
    deleted: bool = False,
) -> bytes:
    """A whole new record; fields not given are blank (L fields F)."""
    vals = {k.upper(): v for k, v in values.items()}
    unknown = set(vals) - set(h.names())
    if unknown:
        raise KeyError(f"unknown fields {sorted(unknown)}")
    parts = [b"*" if deleted else b" "]
    parts += [encode(f, vals.get(f.name), memo_writer) for f in h.fields]
    rec = b"".join(parts)
    if len(rec) != h.rec_len:
        raise ValueError(f"record is {len(rec)} bytes, the header says {h.rec_len}")
    return rec


def patch_record(
    h: Header,
    rec: bytes,
    changes: Mapping[str, Any],
    memo_writer: Callable[[bytes], int] | None = None,
) -> bytes:
    """`rec` with the fields in `changes` re-encoded; every other byte kept."""
    out = bytearray(rec)
    for name, value in changes.items():
        f = h.field(name)
        out[f.offset : f.offset + f.length] = encode(f, value, memo_writer)
    return bytes(out)


def memo_path(dbf_path: str) -> str | None:
    base = os.path.splitext(dbf_path)[0]
    for candidate in (base + ".FPT", base + ".fpt"):
        if os.path.exists(candidate):
            return candidate
    return None


def cdx_path(dbf_path: str) -> str | None:
    base = os.path.splitext(dbf_path)[0]
    for candidate in (base + ".CDX", base + ".cdx"):
        if os.path.exists(candidate):
            return candidate
    return None


def read_memo(path: str, block: int) -> str:
    """The text of one FPT block chain (VFP: big-endian header, block size at byte 6)."""
    with open(path, "rb") as fh:
        fh.seek(6)
        size = struct.unpack(">H", fh.read(2))[0] or 64
        fh.seek(block * size)
        _kind, length = struct.unpack(">II", fh.read(8))
        return fh.read(length).decode(ENCODING, "replace")


def memo_reader(dbf_path: str) -> Callable[[int], str] | None:
    path = memo_path(dbf_path)
    if path is None:
        return None
    return lambda block: read_memo(path, block)
