"""`diff`: what changed between two copies of a FoxPro data folder. Read-only.

`compare(before, after)` takes two folders (two `snapshot`s, or a snapshot and the live
folder) and lists which tables changed, which records were added, deleted, recalled,
changed or removed (by record number, and by primary key where one of the table's
index tags gives a key that is unique in both copies), and which fields changed from
what to what, memo contents included. Matching is by record number, or by key when the
table shrank (a PACK renumbers records). Text values are shown with `repr`, so the
padding Sage keeps (right-justified keys) is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sagepro_agent.dbf import codec
from sagepro_agent.dbf.integrity import dbf_files


@dataclass
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass
class RecordChange:
    kind: str  # added, deleted, recalled, changed, removed
    recno: int  # in `after` (in `before` for removed)
    key: str = ""
    fields: list[FieldChange] = field(default_factory=list)
    before_recno: int | None = None


@dataclass
class TableDiff:
    table: str
    status: str  # added, removed, changed
    notes: list[str] = field(
        default_factory=list
    )  # header, structure, index, memo file
    records: list[RecordChange] = field(default_factory=list)
    key_tag: str = ""


@dataclass
class Diff:
    before: str
    after: str
    tables: list[TableDiff] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.tables)

    def table(self, name: str) -> TableDiff | None:
        return next((t for t in self.tables if t.table == name.upper()), None)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=_show))

    def render(self) -> str:
        lines = [f"diff {self.before} -> {self.after}"]
        if not self.tables:
            lines.append("no table changed")
        for t in self.tables:
            keyed = f" (key: tag {t.key_tag})" if t.key_tag else ""
            lines.append(f"\n{t.table}: {t.status}{keyed}")
            lines += [f"  {note}" for note in t.notes]
            for r in t.records:
                where = f"record {r.recno}" + (f" [{r.key}]" if r.key else "")
                if r.before_recno not in (None, r.recno):
                    where += f" (was record {r.before_recno})"
                lines.append(f"  {r.kind} {where}")
                for c in r.fields:
                    if r.kind == "added":
                        lines.append(f"    {c.field} = {_show(c.after)}")
                    else:
                        lines.append(
                            f"    {c.field}: {_show(c.before)} -> {_show(c.after)}"
                        )
        if self.unchanged:
            lines.append(f"\nunchanged: {', '.join(self.unchanged)}")
        return "\n".join(lines)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


@dataclass
class _Table:
    path: str
    header: codec.Header
    records: list[bytes]
    values: list[dict[str, Any]]
    deleted: list[bool]

    @classmethod
    def load(cls, path: str) -> _Table:
        with open(path, "rb") as fh:
            h = codec.read_header(fh)
            fh.seek(h.header_len)
            data = fh.read(h.reccount * h.rec_len)
        reader = codec.memo_reader(path)
        records = [
            data[i * h.rec_len : (i + 1) * h.rec_len]
            for i in range(len(data) // h.rec_len)
        ]
        decoded = [codec.decode_record(h, rec, reader) for rec in records]
        return cls(path, h, records, [v for _, v in decoded], [d for d, _ in decoded])


def _file_bytes(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def _key_tag(before: _Table, after: _Table) -> tuple[str, list[str]] | None:
    """A tag of bare fields whose values are unique in both copies."""
    cdx = codec.cdx_path(after.path) or codec.cdx_path(before.path)
    if cdx is None:
        return None
    try:
        from dbflib import read_cdx_definitions

        definitions = read_cdx_definitions(cdx)
    except Exception:  # noqa: BLE001 (no usable index: match by record number)
        return None
    names = set(before.header.names()) & set(after.header.names())
    candidates = []
    for tag, spec in definitions:
        parts = [p.strip().upper() for p in spec["key"].split("+")]
        if spec.get("filter") or not all(p in names for p in parts):
            continue
        candidates.append((not spec.get("unique"), len(parts), tag, parts))
    for *_, tag, parts in sorted(candidates):
        if all(
            len({tuple(v[p] for p in parts) for v in t.values}) == len(t.values)
            for t in (before, after)
        ):
            return tag, parts
    return None


def _key_text(values: dict[str, Any], parts: list[str]) -> str:
    return ", ".join(f"{p}={str(values[p]).strip()}" for p in parts)


def _compare_table(name: str, bpath: str, apath: str) -> TableDiff | None:
    before, after = _Table.load(bpath), _Table.load(apath)
    out = TableDiff(name, "changed")
    bh, ah = before.header, after.header
    bfields = [(f.name, f.type, f.length, f.decimals) for f in bh.fields]
    afields = [(f.name, f.type, f.length, f.decimals) for f in ah.fields]
    if bfields != afields:
        out.notes.append(f"structure changed: {bfields} -> {afields}")
    if bh.reccount != ah.reccount:
        out.notes.append(f"record count {bh.reccount} -> {ah.reccount}")
    for ext, label in (("cdx", "index (CDX)"), ("fpt", "memo file (FPT)")):
        finder = codec.cdx_path if ext == "cdx" else codec.memo_path
        if _file_bytes(finder(bpath)) != _file_bytes(finder(apath)):
            out.notes.append(f"{label} rewritten")
    common = [n for n in ah.names() if n in set(bh.names())]
    keyed = _key_tag(before, after)
    parts = keyed[1] if keyed else []
    if keyed:
        out.key_tag = keyed[0]

    def key_of(t: _Table, i: int) -> str:
        return _key_text(t.values[i], parts) if parts else ""

    pairs: list[tuple[int | None, int | None]]
    if keyed and ah.reccount < bh.reccount:
        index = {tuple(v[p] for p in parts): i for i, v in enumerate(before.values)}
        seen = set()
        pairs = []
        for i, v in enumerate(after.values):
            j = index.get(tuple(v[p] for p in parts))
            pairs.append((j, i))
            if j is not None:
                seen.add(j)
        pairs += [(j, None) for j in range(len(before.values)) if j not in seen]
    else:
        n = max(len(before.records), len(after.records))
        pairs = [
            (
                i if i < len(before.records) else None,
                i if i < len(after.records) else None,
            )
            for i in range(n)
        ]
    for j, i in pairs:
        if i is None:
            out.records.append(
                RecordChange("removed", j + 1, key_of(before, j), before_recno=j + 1)
            )
            continue
        if j is None:
            values = after.values[i]
            shown = [
                FieldChange(k, None, v)
                for k, v in values.items()
                if v not in ("", None) and not (isinstance(v, str) and not v.strip())
            ]
            rec = RecordChange("added", i + 1, key_of(after, i), shown)
            if after.deleted[i]:
                rec.fields.insert(0, FieldChange("(deleted)", None, True))
            out.records.append(rec)
            continue
        if before.records[j] == after.records[i] and bfields == afields:
            continue
        changes = [
            FieldChange(k, before.values[j][k], after.values[i][k])
            for k in common
            if before.values[j][k] != after.values[i][k]
        ]
        if before.deleted[j] != after.deleted[i]:
            kind = "deleted" if after.deleted[i] else "recalled"
        elif changes:
            kind = "changed"
        else:
            continue
        out.records.append(
            RecordChange(kind, i + 1, key_of(after, i), changes, before_recno=j + 1)
        )
    if not out.records and not out.notes:
        return None
    return out


def compare(before: str | os.PathLike[str], after: str | os.PathLike[str]) -> Diff:
    before, after = os.fspath(before), os.fspath(after)
    result = Diff(before, after)
    btables = {
        os.path.splitext(os.path.basename(p))[0].upper(): p for p in dbf_files(before)
    }
    atables = {
        os.path.splitext(os.path.basename(p))[0].upper(): p for p in dbf_files(after)
    }
    for name in sorted(set(btables) | set(atables)):
        if name not in btables:
            t = _Table.load(atables[name])
            result.tables.append(
                TableDiff(name, "added", [f"{t.header.reccount} record(s)"])
            )
        elif name not in atables:
            result.tables.append(TableDiff(name, "removed"))
        else:
            diff = _compare_table(name, btables[name], atables[name])
            if diff is None:
                result.unchanged.append(name)
            else:
                result.tables.append(diff)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """`diff <before> <after> [--json]`: exit 0 when nothing changed, 1 when something
    did (as diff(1) does), 2 when a folder cannot be read."""
    parser = argparse.ArgumentParser(
        prog="sagepro_agent diff",
        description="List the tables, records and fields that differ between two copies "
        "of a FoxPro data folder (e.g. two snapshots around one receipt keyed in Sage Pro).",
    )
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        diff = compare(args.before, args.after)
    except (OSError, codec.NotADbfError) as exc:
        sys.stderr.write(f"diff failed: {exc}\n")
        return 2
    _say(json.dumps(diff.as_dict(), indent=2) if args.json else diff.render())
    return 1 if diff.changed else 0


def _say(text: str) -> None:
    """Command-line output (the CLI prints; nothing else here does)."""
    sys.stdout.write(f"{text}\n")
