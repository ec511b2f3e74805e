"""FoxPro fixture table for tests (spike).  NOT FOR LIVE DATA.

dbflib creates the files and builds the CDX; this module adds what dbflib lacks:
locked appends that re-read the header count, compare-and-set updates in place,
delete/recall/pack, index seeks, an atomic (temp + rename) CDX rebuild that is only
done when a change touches a tag's fields, and crash recovery for the fixture files.
"""
from __future__ import annotations

import datetime
import os
import re
import struct
import time

from dbflib import build_cdx, create_dbf, read_cdx_definitions, structural_cdx_path

from . import vfpcodec as vc
from .cdxseek import CdxFile
from .vfplocks import Locked, VfpLocks  # noqa: F401  (Locked re-exported)

FAULT = None  # test hook: FAULT(point) may os._exit() to simulate a kill


def _fault(point, path=""):
    if FAULT:
        FAULT(point, path)


class CasMiss(Exception):
    def __init__(self, current):
        super().__init__("compare-and-set missed")
        self.current = current


def create_table(path, columns, rows=(), indexes=None):
    if os.environ.get("AGENT_TEST_MODE") != "1":
        raise RuntimeError("the fixture store is for tests only (set AGENT_TEST_MODE=1)")
    create_dbf(path, columns, rows, indexes=indexes)
    return path


class FixtureTable:
    def __init__(self, path, reprocess: float = 2.0, lock_mode: str = "ofd", indexes=None):
        """`indexes`: the tag definitions from the schema/site mapping.  Without them they
        are read from the CDX itself, which fails when the CDX is empty or unreadable."""
        self.path = path
        self.reprocess = reprocess
        self.cdx = structural_cdx_path(path)
        if indexes is not None:
            from dbflib import normalize_index_definitions
            self.defs = normalize_index_definitions(indexes)
            self.cdx = self.cdx or os.path.splitext(path)[0] + ".CDX"
        else:
            self.defs = read_cdx_definitions(self.cdx) if self.cdx else []
        self.locks = VfpLocks(path, lock_mode)
        mp = vc.memo_path(path)
        self.memo = vc.Memo(mp) if mp else None
        h = self.header()
        names = {f.name for f in h.fields}
        # fields each tag depends on (identifiers in its key/filter expression)
        self.tag_fields = {
            tag: {w.upper() for w in re.findall(r"[A-Za-z_]\w*", spec["key"] + " " + spec.get("filter", ""))} & names
            for tag, spec in self.defs
        }
        self._cdx_cache = None

    def close(self):
        self.locks.close()
        if self._cdx_cache:
            self._cdx_cache[1].close()

    # ---------------------------------------------------------------- reading
    def header(self) -> vc.Header:
        with open(self.path, "rb") as fh:
            return vc.read_header(fh)

    def read(self, recno: int) -> dict:
        with open(self.path, "rb") as fh:
            h = vc.read_header(fh)
            if not 1 <= recno <= h.reccount:
                raise IndexError(recno)
            fh.seek(h.record_pos(recno))
            return vc.decode_record(h, fh.read(h.rec_len), self.memo.read if self.memo else None)

    def raw(self, recno: int) -> bytes:
        with open(self.path, "rb") as fh:
            h = vc.read_header(fh)
            fh.seek(h.record_pos(recno))
            return fh.read(h.rec_len)

    def rows(self, include_deleted=False):
        with open(self.path, "rb") as fh:
            h = vc.read_header(fh)
            fh.seek(h.header_len)
            data = fh.read(h.reccount * h.rec_len)
        mr = self.memo.read if self.memo else None
        for i in range(h.reccount):
            rec = data[i * h.rec_len:(i + 1) * h.rec_len]
            if include_deleted or rec[0:1] != b"*":
                yield i + 1, vc.decode_record(h, rec, mr)

    def _cdxfile(self) -> CdxFile:
        st = os.stat(self.cdx)
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if not self._cdx_cache or self._cdx_cache[0] != sig:
            if self._cdx_cache:
                self._cdx_cache[1].close()
            self._cdx_cache = (sig, CdxFile(self.cdx))
        return self._cdx_cache[1]

    def seek(self, tag: str, key: str, prefix=False, live=True) -> list[int]:
        """Record numbers found through the CDX tag (as VFP's SEEK would), deleted rows
        dropped unless live=False (VFP keeps deleted rows in the index; SET DELETED ON hides them)."""
        hits = self._cdxfile().seek(tag, key.encode(vc.ENCODING), prefix=prefix)
        if live:
            hits = [r for r in hits if self.raw(r)[0:1] != b"*"]
        return hits

    # ---------------------------------------------------------------- writing
    def rebuild_cdx(self):
        """Whole-CDX rebuild into a temp file, then an atomic rename: a kill leaves the
        old index or the new one, never a 0-byte file (dbflib's own refresh_cdx truncates
        in place, reference E7b).  Caller holds the header lock."""
        if not self.cdx:
            return
        tmp = self.cdx + ".tmp"
        build_cdx(self.path, self.defs, tmp, workers=1)
        _fault("cdx_built", self.path)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.cdx)

    def append(self, values: dict) -> int:
        self.locks.header_lock(self.reprocess)
        try:
            with open(self.path, "r+b") as fh:
                h = vc.read_header(fh)  # fresh count under the header lock (E8 race impossible)
                rec = vc.encode_record(h, values, self.memo.append if self.memo else None)
                recno = h.reccount + 1
                fh.seek(h.record_pos(recno))
                fh.write(rec + vc.EOF)
                fh.flush()
                _fault("record_written", self.path)  # kill here = orphan bytes past the header count
                today = datetime.date.today()
                fh.seek(1)
                fh.write(struct.pack("<BBBI", today.year % 100, today.month, today.day, recno))
            _fault("header_written", self.path)  # kill here = stale CDX
            if self.defs:
                self.rebuild_cdx()
            return recno
        finally:
            self.locks.header_unlock()

    def update(self, recno: int, changes: dict, expect: dict | None = None) -> dict:
        """Compare-and-set: under the record lock, re-read the row; if any `expect` field
        differs raise CasMiss(current); else write `changes` (one write of the whole
        record).  Rebuild the CDX only when a changed field is part of a tag."""
        self.locks.rlock(recno, self.reprocess)
        try:
            with open(self.path, "r+b") as fh:
                h = vc.read_header(fh)
                pos = h.record_pos(recno)
                fh.seek(pos)
                raw = bytearray(fh.read(h.rec_len))
                cur = vc.decode_record(h, bytes(raw), self.memo.read if self.memo else None)
                if expect and any(cur[k.upper()] != v for k, v in expect.items()):
                    raise CasMiss(cur)
                for k, v in changes.items():
                    f = h.field(k)
                    raw[f.offset:f.offset + f.length] = vc.encode(f, v, self.memo.append if self.memo else None)
                fh.seek(pos)
                fh.write(raw)
            touched = {k.upper() for k in changes}
            if any(touched & fs for fs in self.tag_fields.values()):
                self.locks.header_lock(self.reprocess)
                try:
                    self.rebuild_cdx()
                finally:
                    self.locks.header_unlock()
            cur.update({k.upper(): v for k, v in changes.items()})
            return cur
        finally:
            self.locks.runlock(recno)

    def set_deleted(self, recno: int, deleted: bool = True):
        """DELETE / RECALL: flip byte 0.  The CDX keeps deleted rows (as VFP does), so no
        rebuild unless a tag filter uses DELETED()."""
        self.locks.rlock(recno, self.reprocess)
        try:
            with open(self.path, "r+b") as fh:
                h = vc.read_header(fh)
                fh.seek(h.record_pos(recno))
                fh.write(b"*" if deleted else b" ")
            if any("DELETED" in (spec.get("filter", "") + spec["key"]).upper() for _, spec in self.defs):
                self.locks.header_lock(self.reprocess)
                try:
                    self.rebuild_cdx()
                finally:
                    self.locks.header_unlock()
        finally:
            self.locks.runlock(recno)

    def pack(self) -> int:
        """PACK: needs the whole table (FLOCK here; VFP needs EXCLUSIVE use).  Rewrites the
        DBF without deleted rows (record numbers change!) and rebuilds the CDX.  Memo
        blocks of removed rows are not reclaimed (VFP does that with PACK MEMO)."""
        self.locks.flock(self.reprocess)
        self.locks.header_lock(self.reprocess)
        try:
            with open(self.path, "rb") as fh:
                h = vc.read_header(fh)
                fh.seek(0)
                head = bytearray(fh.read(h.header_len))
                data = fh.read(h.reccount * h.rec_len)
            keep = [data[i * h.rec_len:(i + 1) * h.rec_len] for i in range(h.reccount)
                    if data[i * h.rec_len] != 0x2A]
            struct.pack_into("<I", head, 4, len(keep))
            tmp = self.path + ".pack"
            with open(tmp, "wb") as out:
                out.write(bytes(head) + b"".join(keep) + vc.EOF)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            # our lock fd points at the old inode now: reopen
            self.locks.close()
            self.locks = VfpLocks(self.path, self.locks.mode)
            self.locks.header_lock(self.reprocess)
            if self.defs:
                self.rebuild_cdx()
            return h.reccount - len(keep)
        finally:
            try:
                self.locks.header_unlock()
                self.locks.funlock()
            except OSError:
                pass

    def recover(self) -> list[str]:
        """Fixture-only repair run at start (never on live data): drop orphan bytes of an
        append killed before its header update, and rebuild a CDX that is missing,
        empty, unreadable or stale."""
        from .integrity import check_table
        actions = []
        self.locks.header_lock(self.reprocess)
        try:
            with open(self.path, "r+b") as fh:
                h = vc.read_header(fh)
                expected = h.header_len + h.reccount * h.rec_len
                size = os.fstat(fh.fileno()).st_size
                if size > expected + 1 or (size == expected + 1 and self._last_byte(fh) != vc.EOF):
                    fh.truncate(expected)
                    fh.seek(expected)
                    fh.write(vc.EOF)
                    actions.append(f"truncated {size - expected - 1} orphan bytes")
            problems = check_table(self.path, sample=None)
            if any(p.startswith("CDX") for p in problems):
                self.rebuild_cdx()
                actions.append("rebuilt CDX (" + "; ".join(p for p in problems if p.startswith("CDX"))[:120] + ")")
            if os.path.exists(self.cdx + ".tmp"):
                os.remove(self.cdx + ".tmp")
                actions.append("removed leftover CDX temp file")
        finally:
            self.locks.header_unlock()
        return actions

    @staticmethod
    def _last_byte(fh):
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def wait_until(fn, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.01)
    return False
