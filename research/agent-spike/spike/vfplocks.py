"""VFP lock bytes on Linux for the fixture store (spike).

Offsets: record n -> 0x7FFFFFFE - n, header/append lock ("record 0") -> 0x7FFFFFFE,
CDX write lock -> byte 0x7FFFFFFE of the .CDX (foxpert, Harbour, CodeBase; reference E-12..E-14).

Two implementations:
  * mode="posix": fcntl.lockf (F_SETLK) as the reference's vfplock.py does. Owned by the
    *process*: two fds of one process never conflict, and closing ANY fd of that file
    drops every lock the process holds on it.
  * mode="ofd": Linux open-file-description locks (F_OFD_SETLK, kernel >= 3.15). Owned
    by the open file: conflict between fds/threads of one process too, and closing an
    unrelated fd does not release them.  Same byte offsets, so they also exclude (and are
    excluded by) POSIX locks taken by another process on the same bytes.
"""
from __future__ import annotations

import fcntl
import os
import struct
import time

LOCKPOS = 0x7FFFFFFE
FLOCK_START, FLOCK_LEN = 0x40000000, LOCKPOS - 0x40000000 + 1  # CodeBase/foxpert: covers header too


class Locked(Exception):
    """Another user holds the lock -> gateway 423 RECORD_LOCKED."""


def record_offset(recno: int) -> int:
    return LOCKPOS - recno


def _ofd(fd, ltype, start, length, wait=False):
    # struct flock on x86_64/aarch64 Linux: short l_type, short l_whence, off_t l_start,
    # off_t l_len, pid_t l_pid (must be 0 for OFD), padding -> 32 bytes.
    data = struct.pack("hhxxxxqqi4x", ltype, os.SEEK_SET, start, length, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, data)


class VfpLocks:
    def __init__(self, path: str, mode: str = "ofd"):
        self.fd = os.open(path, os.O_RDWR)
        self.mode = mode

    def close(self):
        os.close(self.fd)

    def _try(self, start, length):
        try:
            if self.mode == "ofd":
                _ofd(self.fd, fcntl.F_WRLCK, start, length)
            else:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start, 0)
            return True
        except (BlockingIOError, PermissionError):
            return False

    def _release(self, start, length):
        if self.mode == "ofd":
            _ofd(self.fd, fcntl.F_UNLCK, start, length)
        else:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, length, start, 0)

    def lock_range(self, start, length, what, reprocess: float = 0.0, interval: float = 0.05):
        """Try, then retry until `reprocess` seconds have passed (VFP's SET REPROCESS TO n
        SECONDS); raise Locked if it is still held."""
        deadline = time.monotonic() + reprocess
        while not self._try(start, length):
            if time.monotonic() >= deadline:
                raise Locked(f"{what} is locked")
            time.sleep(interval)

    def rlock(self, recno, reprocess=0.0):
        self.lock_range(record_offset(recno), 1, f"record {recno}" if recno else "header", reprocess)

    def runlock(self, recno):
        self._release(record_offset(recno), 1)

    def header_lock(self, reprocess=0.0):
        self.rlock(0, reprocess)

    def header_unlock(self):
        self.runlock(0)

    def flock(self, reprocess=0.0):
        self.lock_range(FLOCK_START, FLOCK_LEN, "table", reprocess)

    def funlock(self):
        self._release(FLOCK_START, FLOCK_LEN)
