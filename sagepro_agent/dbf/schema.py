"""`schema`: dump the structure of every FoxPro table in a folder. Read-only.

For each `.DBF`: version, header flags (structural CDX, memo, part of a database),
record count (and whether the file size agrees), every field (name, type, width,
decimals), and the structural CDX's tags with their key and filter expressions.
Each tag says whether dbflib's FoxPro expression compiler can evaluate it (what the
fixture store needs to rebuild the index and the watchdog needs for its sampled index
lookups) and which leading fields a byte-exact SEEK can use. Sage's real tag
expressions have to be checked against that subset on each site (groundwork Q1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from sagepro_agent.dbf import codec
from sagepro_agent.dbf.integrity import dbf_files

FLAG_NAMES = {0x01: "structural CDX", 0x02: "memo", 0x04: "database (.DBC) table"}


def _key_fields(key: str, names: set[str]) -> list[str]:
    out = []
    for part in key.split("+"):
        part = part.strip().upper()
        if part not in names:
            break
        out.append(part)
    return out


def describe_table(path: str) -> dict[str, Any]:
    from dbflib import read_cdx_definitions
    from dbflib.foxpro import compile_expression

    info: dict[str, Any] = {
        "table": os.path.splitext(os.path.basename(path))[0].upper(),
        "file": os.path.basename(path),
    }
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            h = codec.read_header(fh)
            backlink = b""
            if h.version in (0x30, 0x31, 0x32):
                fh.seek(32 + 32 * len(h.fields) + 1)
                backlink = fh.read(263).split(b"\0")[0]
    except (OSError, codec.NotADbfError) as exc:
        info["error"] = str(exc)
        return info
    expected = h.expected_size()
    info.update(
        version=f"{h.version:#04x}",
        flags=[label for bit, label in FLAG_NAMES.items() if h.table_flags & bit],
        codepage=h.codepage,
        last_update=f"{h.updated[0]:02d}-{h.updated[1]:02d}-{h.updated[2]:02d}",
        records=h.reccount,
        record_length=h.rec_len,
        size_ok=size in (expected, expected + 1),
        database=backlink.decode(codec.ENCODING, "replace"),
        fields=[
            {"name": f.name, "type": f.type, "width": f.length, "decimals": f.decimals}
            for f in h.fields
        ],
        tags=[],
    )
    cdx = codec.cdx_path(path)
    if cdx is None:
        return info
    try:
        definitions = read_cdx_definitions(cdx)
    except Exception as exc:  # noqa: BLE001 (any damage is reported, not raised)
        info["cdx_error"] = f"{type(exc).__name__}: {exc}"
        return info
    fields = {f.name: (f.type, f.offset, f.length, f.decimals) for f in h.fields}
    for tag, spec in definitions:
        entry: dict[str, Any] = {
            "tag": tag,
            "key": spec["key"],
            "filter": spec.get("filter", ""),
        }
        entry["unique"] = bool(spec.get("unique"))
        entry["descending"] = bool(spec.get("descending"))
        problems = []
        for label in ("key", "filter"):
            if spec.get(label):
                try:
                    compile_expression(spec[label], fields, {})
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"{label}: {exc}")
        if entry["descending"]:
            problems.append("descending tags are not built by dbflib 1.1")
        entry["evaluable"] = not problems
        entry["problems"] = problems
        entry["seek_fields"] = (
            [] if entry["filter"] else _key_fields(spec["key"], set(fields))
        )
        info["tags"].append(entry)
    return info


def dump(folder: str | os.PathLike[str]) -> dict[str, Any]:
    folder = os.fspath(folder)
    return {"folder": folder, "tables": [describe_table(p) for p in dbf_files(folder)]}


def render(schema: dict[str, Any]) -> str:
    lines = [f"folder {schema['folder']}: {len(schema['tables'])} table(s)"]
    for t in schema["tables"]:
        lines.append("")
        if "error" in t:
            lines.append(f"{t['table']}: unreadable: {t['error']}")
            continue
        flags = ", ".join(t["flags"]) or "no flags"
        size = "" if t["size_ok"] else "  (FILE SIZE DISAGREES WITH THE COUNT)"
        lines.append(
            f"{t['table']}  version {t['version']}, {flags}, {t['records']} records{size}"
        )
        if t["database"]:
            lines.append(f"  database: {t['database']}")
        for f in t["fields"]:
            width = (
                f"{f['width']},{f['decimals']}" if f["decimals"] else f"{f['width']}"
            )
            lines.append(f"  {f['name']:<10} {f['type']} ({width})")
        if "cdx_error" in t:
            lines.append(f"  CDX unreadable: {t['cdx_error']}")
        for tag in t["tags"]:
            extra = f" FOR {tag['filter']}" if tag["filter"] else ""
            ok = (
                "evaluable"
                if tag["evaluable"]
                else "NOT evaluable: " + "; ".join(tag["problems"])
            )
            seek = (
                f", SEEK on {'+'.join(tag['seek_fields'])}"
                if tag["seek_fields"]
                else ""
            )
            lines.append(f"  tag {tag['tag']:<10} {tag['key']}{extra}  [{ok}{seek}]")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`schema <folder> [--json]`: exit 0, or 2 when the folder cannot be read."""
    parser = argparse.ArgumentParser(
        prog="sagepro_agent schema",
        description="Dump every FoxPro table's fields and index tags (read-only).",
    )
    parser.add_argument("folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        schema = dump(args.folder)
    except OSError as exc:
        sys.stderr.write(f"cannot read {args.folder}: {exc.strerror}\n")
        return 2
    _say(json.dumps(schema, indent=2) if args.json else render(schema))
    return 0


def _say(text: str) -> None:
    """Command-line output (the CLI prints; nothing else here does)."""
    sys.stdout.write(f"{text}\n")
