"""Hold one Visual FoxPro lock byte of a DBF from another process, as another Sage Pro
user's program would: `python lockholder.py <dbf> <offset>` takes a POSIX write lock on
the byte at `offset` (VFP locks record n at 0x7FFFFFFE - n, the header at 0x7FFFFFFE),
prints "locked", and holds it until a line arrives on stdin (or stdin closes), then
prints "released" and exits."""

import fcntl
import os
import sys


def main() -> int:
    path, offset = sys.argv[1], int(sys.argv[2])
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset, os.SEEK_SET)
    print("locked", flush=True)  # noqa: T201 - the parent reads it
    sys.stdin.readline()
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset, os.SEEK_SET)
    os.close(fd)
    print("released", flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
