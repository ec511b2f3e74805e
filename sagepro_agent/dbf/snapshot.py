"""`snapshot`: copy a FoxPro data folder's tables aside, with a manifest. Read-only on
the source.

An installer takes one snapshot, keys one receipt in Sage Pro in a TEST company, takes
another, and runs `diff` on the two: that lists the tables, records and fields Sage Pro
wrote, which is how the site mapping is written from evidence. Take snapshots while
nobody else is working in that company (files are copied one after another).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

EXTENSIONS = (".dbf", ".cdx", ".fpt", ".dbc", ".dcx", ".dct")
MANIFEST = "MANIFEST.json"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def take(
    folder: str | os.PathLike[str], dest: str | os.PathLike[str]
) -> dict[str, Any]:
    """Copy every table file of `folder` into `dest` (new, or empty) and write
    `dest/MANIFEST.json` with each file's size and SHA-256; return the manifest."""
    folder, dest = os.fspath(folder), os.fspath(dest)
    if os.path.abspath(folder) == os.path.abspath(dest):
        raise ValueError("the snapshot must go to another folder")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(EXTENSIONS))
    os.makedirs(dest, exist_ok=True)
    if os.listdir(dest):
        raise FileExistsError(
            f"{dest} is not empty: take each snapshot into a new folder"
        )
    files = {}
    for name in names:
        src = os.path.join(folder, name)
        shutil.copyfile(src, os.path.join(dest, name))
        files[name] = {
            "size": os.path.getsize(src),
            "sha256": _sha256(os.path.join(dest, name)),
        }
    manifest = {
        "source": os.path.abspath(folder),
        "taken_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    with open(os.path.join(dest, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """`snapshot <folder> <dest>`: exit 0, or 2 on an error."""
    parser = argparse.ArgumentParser(
        prog="sagepro_agent snapshot",
        description="Copy a FoxPro data folder's tables (DBF, CDX, FPT) aside with a manifest.",
    )
    parser.add_argument("folder")
    parser.add_argument("dest")
    args = parser.parse_args(argv)
    try:
        manifest = take(args.folder, args.dest)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"snapshot failed: {exc}\n")
        return 2
    total = sum(f["size"] for f in manifest["files"].values())
    _say(f"{len(manifest['files'])} file(s), {total} bytes copied to {args.dest}")
    return 0


def _say(text: str) -> None:
    """Command-line output (the CLI prints; nothing else here does)."""
    sys.stdout.write(f"{text}\n")
