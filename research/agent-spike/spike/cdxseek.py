"""Read-only CDX B-tree descent (spike): SEEK one key in one tag without walking the
whole index.  Page layout as dbflib writes and reads it (512-byte pages; interior
entries = key + big-endian recno + big-endian child offset; compressed leaves)."""
from __future__ import annotations

import mmap
import struct

PAGE = 512


class CdxFile:
    def __init__(self, path: str):
        self.fh = open(path, "rb")
        self.mm = mmap.mmap(self.fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.tags = {name.rstrip(b" ").decode(): off for name, off in self._leaf_walk(0)}

    def close(self):
        self.mm.close()
        self.fh.close()

    def _tag_header(self, off):
        root, = struct.unpack_from("<i", self.mm, off)
        keylen, options = struct.unpack_from("<HB", self.mm, off + 12)
        pool = self.mm[off + 512:off + 1024]
        key_expr, _, rest = pool.partition(b"\0")
        return root, keylen, options, key_expr.decode("cp1252"), rest.split(b"\0")[0].decode("cp1252")

    def _leaf_entries(self, node, keylen, pad):
        mm = self.mm
        _, count, _, right = struct.unpack_from("<HHii", mm, node)
        recmask, = struct.unpack_from("<I", mm, node + 14)
        dupmask, trailmask, recbits, dupbits, _, info = mm[node + 18:node + 24]
        ip, kp, prev, out = node + 24, node + PAGE, b"", []
        for _ in range(count):
            packed = int.from_bytes(mm[ip:ip + info], "little")
            ip += info
            recno = packed & recmask
            dup = (packed >> recbits) & dupmask
            trail = (packed >> (recbits + dupbits)) & trailmask
            seg = keylen - dup - trail
            kp -= seg
            key = prev[:dup] + mm[kp:kp + seg]
            prev = key
            out.append((key + pad * trail, recno))
        return out, right

    def _leaf_walk(self, header_off):
        root, keylen, *_ = self._tag_header(header_off)
        node = root
        while not struct.unpack_from("<H", self.mm, node)[0] & 2:
            node = struct.unpack_from(">I", self.mm, node + 12 + keylen + 4)[0]
        out = []
        while True:
            entries, right = self._leaf_entries(node, keylen, b" ")
            out += entries
            if right == -1:
                return out
            node = right

    def tag_info(self, tag):
        root, keylen, options, key, flt = self._tag_header(self.tags[tag])
        return {"keylen": keylen, "key": key, "filter": flt, "options": options}

    def entries(self, tag):
        """Every (key, recno) of a tag in index order (full walk)."""
        root, keylen, *_ = self._tag_header(self.tags[tag])
        pad = b" " if self._is_char(tag) else b"\0"
        node = root
        while not struct.unpack_from("<H", self.mm, node)[0] & 2:
            node = struct.unpack_from(">I", self.mm, node + 12 + keylen + 4)[0]
        out = []
        while True:
            e, right = self._leaf_entries(node, keylen, pad)
            out += e
            if right == -1:
                return out
            node = right

    def _is_char(self, tag):
        # dbflib: character tags pad with spaces; numeric/date keys are 8 bytes binary.
        return True

    def seek(self, tag: str, key: bytes, prefix: bool = False, pad: bytes = b" ") -> list[int]:
        """Record numbers whose key equals `key` (or starts with it when prefix=True),
        found by descending the B-tree from the root: O(depth) pages plus the matches."""
        root, keylen, *_ = self._tag_header(self.tags[tag])
        want = key if prefix else key.ljust(keylen, pad)
        mm, node, pages = self.mm, root, 0
        while True:
            pages += 1
            attr, count = struct.unpack_from("<HH", mm, node)
            if attr & 2:
                break
            child = None
            for i in range(count):
                p = node + 12 + i * (keylen + 8)
                k = mm[p:p + keylen]
                if k[:len(want)] >= want:  # first subtree whose last key >= wanted key
                    child = struct.unpack_from(">I", mm, p + keylen + 4)[0]
                    break
            if child is None:
                return []
            node = child
        hits = []
        while True:
            entries, right = self._leaf_entries(node, keylen, pad)
            for k, recno in entries:
                head = k[:len(want)]
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
