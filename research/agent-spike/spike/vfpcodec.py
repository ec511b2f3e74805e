"""Raw Visual FoxPro DBF/FPT record codec (spike).

No trimming, no silent rounding: C values keep every leading space, money is quantised
ROUND_HALF_UP by the caller's declared scale, overflow raises.  Works on the bytes on
disk so it can read and patch records that dbflib (append-only) cannot update.
"""
from __future__ import annotations

import datetime
import os
import struct
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

ENCODING = "cp1252"
EOF = b"\x1a"


class FieldOverflow(ValueError):
    pass


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    offset: int  # within the record (byte 0 is the delete flag)
    length: int
    decimals: int
    flags: int


@dataclass
class Header:
    version: int
    reccount: int
    header_len: int
    rec_len: int
    table_flags: int
    codepage: int
    fields: list[Field]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name.upper():
                return f
        raise KeyError(name)

    def record_pos(self, recno: int) -> int:
        return self.header_len + (recno - 1) * self.rec_len


def read_header(fh) -> Header:
    fh.seek(0)
    head = fh.read(32)
    version = head[0]
    reccount, header_len, rec_len = struct.unpack_from("<IHH", head, 4)
    rest = fh.read(header_len - 32)
    fields, pos, off = [], 0, 1
    while pos < len(rest) and rest[pos] != 0x0D:
        d = rest[pos:pos + 32]
        name = d[:11].split(b"\0")[0].decode("ascii")
        fields.append(Field(name.upper(), chr(d[11]), off, d[16], d[17], d[18]))
        off += d[16]
        pos += 32
    return Header(version, reccount, header_len, rec_len, head[28], head[29], fields)


# ---- Julian day helpers (VFP T fields store a Julian day number + milliseconds) ----
def _jdn(d: datetime.date) -> int:
    return d.toordinal() + 1721425


def _from_jdn(j: int) -> datetime.date:
    return datetime.date.fromordinal(j - 1721425)


def quantize(value, places: int) -> Decimal:
    if isinstance(value, float):
        raise TypeError("floats never reach the ledger: pass Decimal or str")
    return Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def encode(f: Field, value, memo_writer=None) -> bytes:
    t, w = f.type, f.length
    if t == "C":
        raw = b"" if value is None else (value.encode(ENCODING) if isinstance(value, str) else bytes(value))
        if len(raw) > w:
            raise FieldOverflow(f"{f.name} C({w}): {value!r} is {len(raw)} bytes")
        return raw.ljust(w, b" ")  # pad right only; leading spaces are kept as given
    if t in "NF":
        if value is None:
            return b" " * w
        q = quantize(value, f.decimals)
        text = f"{q:.{f.decimals}f}" if f.decimals else str(int(q))
        if len(text) > w:
            raise FieldOverflow(f"{f.name} N({w},{f.decimals}): {value!r}")
        return text.rjust(w).encode("ascii")
    if t == "Y":
        q = quantize(0 if value is None else value, 4)
        return struct.pack("<q", int(q.scaleb(4)))
    if t == "D":
        return b" " * 8 if value is None else value.strftime("%Y%m%d").encode("ascii")
    if t == "T":
        if value is None:
            return bytes(8)
        ms = ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + value.microsecond // 1000
        return struct.pack("<ii", _jdn(value.date()), ms)
    if t == "L":
        if value is None:
            raise ValueError(f"{f.name} L: write T or F explicitly, never '?'")
        return b"T" if value else b"F"
    if t == "I":
        return struct.pack("<i", 0 if value is None else int(value))
    if t == "B":
        return struct.pack("<d", 0.0 if value is None else float(value))
    if t == "M":
        if not value:
            return struct.pack("<i", 0)
        if memo_writer is None:
            raise ValueError("memo value needs a memo writer")
        return struct.pack("<i", memo_writer(value.encode(ENCODING) if isinstance(value, str) else value))
    raise ValueError(f"unsupported type {t}")


def decode(f: Field, raw: bytes, memo_reader=None):
    t = f.type
    if t == "C":
        return raw.decode(ENCODING)  # padding kept: the caller trims for output
    if t in "NF":
        s = raw.strip()
        return Decimal(s.decode("ascii")) if s else None
    if t == "Y":
        return Decimal(struct.unpack("<q", raw)[0]).scaleb(-4)
    if t == "D":
        s = raw.strip()
        return datetime.datetime.strptime(s.decode(), "%Y%m%d").date() if s else None
    if t == "T":
        j, ms = struct.unpack("<ii", raw)
        if j == 0:
            return None
        return datetime.datetime.combine(_from_jdn(j), datetime.time()) + datetime.timedelta(milliseconds=ms)
    if t == "L":
        return {b"T": True, b"t": True, b"Y": True, b"y": True, b"F": False, b"f": False,
                b"N": False, b"n": False}.get(raw)
    if t == "I":
        return struct.unpack("<i", raw)[0]
    if t == "B":
        return struct.unpack("<d", raw)[0]
    if t == "M":
        block = struct.unpack("<i", raw)[0]
        return "" if block == 0 or memo_reader is None else memo_reader(block)
    return raw


def decode_record(h: Header, rec: bytes, memo_reader=None) -> dict:
    out = {"_deleted": rec[0:1] == b"*"}
    for f in h.fields:
        out[f.name] = decode(f, rec[f.offset:f.offset + f.length], memo_reader)
    return out


def encode_record(h: Header, values: dict, memo_writer=None, deleted=False) -> bytes:
    vals = {k.upper(): v for k, v in values.items()}
    unknown = set(vals) - {f.name for f in h.fields}
    if unknown:
        raise KeyError(f"unknown fields {sorted(unknown)}")
    parts = [b"*" if deleted else b" "]
    for f in h.fields:
        v = vals.get(f.name)
        if v is None and f.type == "L":
            v = False  # blank logical is F, never '?'
        parts.append(encode(f, v, memo_writer))
    rec = b"".join(parts)
    assert len(rec) == h.rec_len
    return rec


class Memo:
    """Minimal FPT appender/reader (VFP: big-endian header, 64-byte blocks by default)."""

    def __init__(self, path: str):
        self.path = path

    def read(self, block: int) -> str:
        with open(self.path, "rb") as fh:
            fh.seek(6)
            bs = struct.unpack(">H", fh.read(2))[0]
            fh.seek(block * bs)
            typ, ln = struct.unpack(">II", fh.read(8))
            return fh.read(ln).decode(ENCODING)

    def append(self, payload: bytes) -> int:
        with open(self.path, "r+b") as fh:
            nxt, _, bs = struct.unpack(">IHH", fh.read(8))
            chunk = struct.pack(">II", 1, len(payload)) + payload
            blocks = -(-len(chunk) // bs)
            fh.seek(nxt * bs)
            fh.write(chunk.ljust(blocks * bs, b"\0"))
            fh.seek(0)
            fh.write(struct.pack(">I", nxt + blocks))
            return nxt


def memo_path(dbf_path: str) -> str | None:
    base = os.path.splitext(dbf_path)[0]
    for c in (base + ".FPT", base + ".fpt"):
        if os.path.exists(c):
            return c
    return None
