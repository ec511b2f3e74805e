"""Read-only structural CDX reader: list tags, walk a tag, SEEK one key.

The page layout is Visual FoxPro's compound index as dbflib writes and reads it:
512-byte pages; interior entries are the key, a big-endian record number and a
big-endian child offset, the key being the highest key of that child; leaves hold
compressed entries (duplicate prefix and trailing padding counts) and link to their
right sibling. SEEK descends from the root, so it reads 3-4 pages at 100k rows
instead of the whole index (`docs/agent-groundwork.md` Q1: about 80 us).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

from sagepro_agent.dbf.codec import ENCODING

PAGE = 512


class CdxError(ValueError):
    """The index file cannot be read (empty, truncated, or a pointer out of range)."""


@dataclass(frozen=True)
class TagInfo:
    name: str
    keylen: int
    key: str
    filter: str
    options: int

    @property
    def unique(self) -> bool:
        return bool(self.options & 0x01)


class CdxFile:
    """One open CDX (memory-mapped). Close it, or use it as a context manager."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open(path, "rb")  # noqa: SIM115 (closed in close())
        try:
            self._size = self._fh.seek(0, 2)
            if self._size < 1024:
                raise CdxError(f"{path} is {self._size} bytes: no index in it")
            self.mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            self.tags: dict[str, int] = {}
            for name, off in self._walk(0, b" "):
                self.tags[name.rstrip(b" ").decode("ascii", "replace")] = off
        except Exception:
            self.close()
            raise
        self.last_pages = 0

    def close(self) -> None:
        mm = getattr(self, "mm", None)
        if mm is not None:
            mm.close()
            self.mm = None  # type: ignore[assignment]  # closed: nothing to read
        self._fh.close()

    def __enter__(self) -> CdxFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pages ------------------------------------------------------------------

    def _page(self, node: int) -> int:
        if node < 0 or node + PAGE > self._size:
            raise CdxError(f"{self.path}: page pointer {node} outside the file")
        return node

    def _header(self, off: int) -> tuple[int, int, int, str, str]:
        if off < 0 or off + 1024 > self._size:
            raise CdxError(f"{self.path}: tag header at {off} outside the file")
        (root,) = struct.unpack_from("<i", self.mm, off)
        keylen, options = struct.unpack_from("<HB", self.mm, off + 12)
        pool = self.mm[off + 512 : off + 1024]
        key_expr, _, rest = pool.partition(b"\0")
        return (
            root,
            keylen,
            options,
            key_expr.decode(ENCODING, "replace"),
            rest.split(b"\0")[0].decode(ENCODING, "replace"),
        )

    def _leaf(
        self, node: int, keylen: int, pad: bytes
    ) -> tuple[list[tuple[bytes, int]], int]:
        mm = self.mm
        self._page(node)
        _, count, _, right = struct.unpack_from("<HHii", mm, node)
        (recmask,) = struct.unpack_from("<I", mm, node + 14)
        dupmask, trailmask, recbits, dupbits, _, info = mm[node + 18 : node + 24]
        if count > PAGE or info == 0:
            raise CdxError(f"{self.path}: leaf page at {node} is not a leaf")
        ip, kp, prev, out = node + 24, node + PAGE, b"", []
        for _ in range(count):
            packed = int.from_bytes(mm[ip : ip + info], "little")
            ip += info
            recno = packed & recmask
            dup = (packed >> recbits) & dupmask
            trail = (packed >> (recbits + dupbits)) & trailmask
            seg = keylen - dup - trail
            if seg < 0:
                raise CdxError(f"{self.path}: corrupt leaf entry at page {node}")
            kp -= seg
            key = prev[:dup] + mm[kp : kp + seg]
            prev = key
            out.append((key + pad * trail, recno))
        return out, right

    def _leftmost_leaf(self, root: int, keylen: int) -> int:
        node = self._page(root)
        for _ in range(64):  # deeper than any real tree: a loop means a corrupt file
            if struct.unpack_from("<H", self.mm, node)[0] & 2:
                return node
            node = self._page(
                struct.unpack_from(">I", self.mm, node + 12 + keylen + 4)[0]
            )
        raise CdxError(f"{self.path}: no leaf under root {root}")

    def _walk(self, header_off: int, pad: bytes) -> list[tuple[bytes, int]]:
        root, keylen, *_ = self._header(header_off)
        node = self._leftmost_leaf(root, keylen)
        out: list[tuple[bytes, int]] = []
        for _ in range(self._size // PAGE + 1):
            entries, right = self._leaf(node, keylen, pad)
            out += entries
            if right == -1:
                return out
            node = right
        raise CdxError(f"{self.path}: leaf chain loops")

    # -- tags -------------------------------------------------------------------

    def tag_info(self, tag: str) -> TagInfo:
        _root, keylen, options, key, flt = self._header(self._tag_offset(tag))
        return TagInfo(tag.upper(), keylen, key, flt, options)

    def _tag_offset(self, tag: str) -> int:
        try:
            return self.tags[tag.upper()]
        except KeyError:
            raise KeyError(f"{self.path} has no tag {tag.upper()}") from None

    def entries(self, tag: str, pad: bytes = b" ") -> list[tuple[bytes, int]]:
        """Every (key, recno) of a tag in index order (a full walk)."""
        return self._walk(self._tag_offset(tag), pad)

    def count_entries(self, tag: str) -> int:
        """The number of keys in a tag, from the leaf headers alone."""
        root, keylen, *_ = self._header(self._tag_offset(tag))
        node = self._leftmost_leaf(root, keylen)
        total = 0
        for _ in range(self._size // PAGE + 1):
            self._page(node)
            _, count, _, right = struct.unpack_from("<HHii", self.mm, node)
            total += count
            if right == -1:
                return total
            node = right
        raise CdxError(f"{self.path}: leaf chain loops")

    def seek(
        self, tag: str, key: bytes, *, prefix: bool = False, pad: bytes = b" "
    ) -> list[int]:
        """Record numbers whose key equals `key` (or starts with it when `prefix`), in
        index order, found by descending the B-tree (deleted records included, as in
        VFP; the caller filters them)."""
        root, keylen, *_ = self._header(self._tag_offset(tag))
        want = key if prefix else key.ljust(keylen, pad)
        if len(want) > keylen:
            return []
        mm, node, pages = self.mm, self._page(root), 1
        for _ in range(64):
            attr, count = struct.unpack_from("<HH", mm, node)
            if attr & 2:
                break
            child = None
            for i in range(count):
                p = node + 12 + i * (keylen + 8)
                if (
                    mm[p : p + len(want)] >= want
                ):  # first child whose highest key >= want
                    child = struct.unpack_from(">I", mm, p + keylen + 4)[0]
                    break
            if child is None:
                self.last_pages = pages
                return []
            node = self._page(child)
            pages += 1
        hits: list[int] = []
        for _ in range(self._size // PAGE + 1):
            entries, right = self._leaf(node, keylen, pad)
            for k, recno in entries:
                head = k[: len(want)]
                if head == want:
                    hits.append(recno)
                elif head > want:
                    self.last_pages = pages
                    return hits
            if right == -1:
                self.last_pages = pages
                return hits
            node = right
            pages += 1
        raise CdxError(f"{self.path}: leaf chain loops")
