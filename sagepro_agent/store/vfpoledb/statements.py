"""The VFP SQL the production store sends, one builder per statement.

Every value travels as a `?` parameter. Only names are ever put into the text, and
they come from the layouts and the site mapping, checked against `NAME_RE` and
`TABLE_RE` when the store is built. The one literal is the empty date `{}` (and the
empty datetime `{/:}`): VFP free tables take no NULL, so an empty date cannot be a
parameter; it is a constant chosen by the field's type, never taken from data.

Comparisons. Character and memo fields are compared with `==`, VFP's exact
comparison. With `=`, a VFP SQL comparison of strings follows `SET ANSI`: under the
default `SET ANSI OFF`, `'10045     ' = '1'` is true (the comparison stops at the end
of the shorter string), so a lookup for invoice "1" would find invoice "10045". `==`
compares the whole value, trailing blanks included, which is the byte-exact match the
store interface promises (the core passes keys padded to the field width). Numbers,
dates and logicals use `=`; an empty date is tested with `EMPTY()`.

UNVERIFIED (no real provider has been run here; a site test must confirm each):
- `RECNO()` in the WHERE of UPDATE and DELETE (standard VFP SQL, but untested through
  the provider) and the affected-row count VFPOLEDB reports for them;
- `ORDER BY <column number>` for the `RECNO() AS _ref` column;
- recall through `EXECSCRIPT()` with `?` parameters (VFP SQL has no RECALL; see
  `recall`); the store does not rely on the script's return value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sagepro_agent.store.base import FieldSpec

# Field names: VFP free tables allow 10 characters, DBC tables 128.
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A table: a name, or a path relative to the data folder or absolute (no spaces, no
# quotes: nothing that could end the statement).
TABLE_RE = re.compile(r"^[A-Za-z0-9_:.\\/$-]+$")

Statement = tuple[str, list[Any]]


@dataclass(frozen=True)
class Column:
    name: str  # canonical (layout) name
    physical: str  # the site's field name
    spec: FieldSpec


@dataclass(frozen=True)
class TableShape:
    """One physical table as the statements see it."""

    physical: str
    columns: tuple[Column, ...]

    @property
    def has_object_lock(self) -> bool:
        names = {c.name for c in self.columns}
        return {"LCKSTAT", "LCKUSER"} <= names

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def field_list(self) -> str:
        return ", ".join(c.physical for c in self.columns)

    def ref_position(self) -> int:
        """The column number of `_ref` in a row select (for ORDER BY)."""
        return len(self.columns) + 1


def session(reprocess_seconds: int) -> list[str]:
    """The SET commands sent once on every new connection.

    DELETED is OFF so that `include_deleted` reads and recalls can see deleted rows;
    every live read and every update says `NOT DELETED()` itself. REPROCESS bounds
    every automatic lock wait, after which the provider raises a lock error (423)."""
    return [
        "SET DELETED OFF",
        f"SET REPROCESS TO {reprocess_seconds} SECONDS",
        "SET EXCLUSIVE OFF",
        "SET NULL OFF",
        "SET MULTILOCKS ON",
    ]


def condition(column: Column, value: Any, params: list[Any], marker: str = "?") -> str:
    """One comparison; appends the parameter (if any) to `params`."""
    if column.spec.type in "DT" and value is None:
        return f"EMPTY({column.physical})"
    params.append(value)
    operator = "==" if column.spec.type in "CM" else "="
    return f"{column.physical} {operator} {marker}"


def object_lock_free(
    shape: TableShape, user: str, params: list[Any], marker="?"
) -> str:
    """Nobody but `user` holds Sage's object lock (`LCKSTAT`) on the row."""
    params.append(user)
    lckstat = shape.column("LCKSTAT").physical
    lckuser = shape.column("LCKUSER").physical
    return f"(EMPTY({lckstat}) OR {lckuser} == {marker})"


def select_rows(
    shape: TableShape, where: Sequence[tuple[Column, Any]], *, include_deleted: bool
) -> Statement:
    params: list[Any] = []
    terms = [condition(column, value, params) for column, value in where]
    if not include_deleted:
        terms.append("NOT DELETED()")
    return _select(shape, terms, params)


def select_record(shape: TableShape, ref: int) -> Statement:
    return _select(shape, ["RECNO() = ?"], [ref])


def probe(shape: TableShape) -> Statement:
    """Opens the table and checks every mapped field exists, reading no row."""
    return f"SELECT {shape.field_list()} FROM {shape.physical} WHERE .F.", []


def insert(shape: TableShape, values: Sequence[tuple[Column, Any]]) -> Statement:
    names, markers, params = [], [], []
    for column, value in values:
        names.append(column.physical)
        markers.append(_marker(column, value, params))
    sql = (
        f"INSERT INTO {shape.physical} ({', '.join(names)}) "
        f"VALUES ({', '.join(markers)})"
    )
    return sql, params


def update(
    shape: TableShape,
    ref: int,
    changes: Sequence[tuple[Column, Any]],
    expect: Sequence[tuple[Column, Any]],
    user: str,
) -> Statement:
    params: list[Any] = []
    sets = [f"{c.physical} = {_marker(c, value, params)}" for c, value in changes]
    params.append(ref)
    terms = ["RECNO() = ?", "NOT DELETED()"]
    terms += [condition(column, value, params) for column, value in expect]
    if shape.has_object_lock:
        terms.append(object_lock_free(shape, user, params))
    sql = f"UPDATE {shape.physical} SET {', '.join(sets)} WHERE {' AND '.join(terms)}"
    return sql, params


def delete(
    shape: TableShape, ref: int, expect: Sequence[tuple[Column, Any]], user: str
) -> Statement:
    """Soft delete (VFP SQL DELETE marks the record; only PACK would remove it)."""
    params: list[Any] = [ref]
    terms = ["RECNO() = ?"]
    terms += [condition(column, value, params) for column, value in expect]
    if shape.has_object_lock:
        terms.append(object_lock_free(shape, user, params))
    return f"DELETE FROM {shape.physical} WHERE {' AND '.join(terms)}", params


def recall(
    shape: TableShape, ref: int, expect: Sequence[tuple[Column, Any]], user: str
) -> Statement:
    """Recall (undelete) through a short VFP script run by `EXECSCRIPT()`.

    VFP SQL has no RECALL and the provider runs no bare xBase commands, but VFP 9's
    provider evaluates `EXECSCRIPT()`. The script text is built from names only; the
    record number, the user and the expected values are its parameters. It recalls
    the record under `RLOCK()` (bounded by SET REPROCESS) only if it still holds the
    expected values and no one else's object lock; the store then re-reads the record
    to learn what happened, so the script's return value does not matter."""
    params: list[Any] = []
    markers = [f"tv{i}" for i in range(1, len(expect) + 1)]
    terms = [
        condition(column, value, params, marker)
        for (column, value), marker in zip(expect, markers, strict=True)
    ]
    if shape.has_object_lock:
        terms.append(object_lock_free(shape, user, [], "tcUser"))
    test = " AND ".join(terms) or ".T."
    script = "\r\n".join(
        [
            "LPARAMETERS " + ", ".join(["tnRef", "tcUser", *markers]),
            "LOCAL lnDone",
            "lnDone = 0",
            f"USE {shape.physical} IN 0 AGAIN SHARED ALIAS agent_recall",
            "SELECT agent_recall",
            "IF tnRef <= RECCOUNT()",
            "GO tnRef",
            f"IF DELETED() AND {test}",
            "IF RLOCK()",
            "RECALL",
            "UNLOCK RECORD tnRef",
            "lnDone = 1",
            "ELSE",
            "lnDone = -1",
            "ENDIF",
            "ENDIF",
            "ENDIF",
            "USE IN agent_recall",
            "RETURN lnDone",
        ]
    )
    marks = ", ".join(["?"] * (3 + len(params)))
    return f"EXECSCRIPT({marks})", [script, ref, user, *params]


def count_records(shape: TableShape) -> Statement:
    """Every record, deleted ones included (the session runs with SET DELETED OFF),
    so the result must equal the DBF header's record count."""
    return f"SELECT COUNT(*) AS n FROM {shape.physical}", []


def select_tail(shape: TableShape, columns: Sequence[Column], after: int) -> Statement:
    names = ", ".join(c.physical for c in columns)
    sql = f"SELECT {names}, RECNO() AS _ref FROM {shape.physical} WHERE RECNO() > ?"
    return sql, [after]


def select_refs(shape: TableShape, where: Sequence[tuple[Column, Any]]) -> Statement:
    params: list[Any] = []
    terms = [condition(column, value, params) for column, value in where]
    sql = f"SELECT RECNO() AS _ref FROM {shape.physical} WHERE {' AND '.join(terms)}"
    return sql, params


def _select(shape: TableShape, terms: list[str], params: list[Any]) -> Statement:
    sql = f"SELECT {shape.field_list()}, RECNO() AS _ref, DELETED() AS _del"
    sql += f" FROM {shape.physical}"
    if terms:
        sql += " WHERE " + " AND ".join(terms)
    sql += f" ORDER BY {shape.ref_position()}"
    return sql, params


def _marker(column: Column, value: Any, params: list[Any]) -> str:
    if value is None and column.spec.type == "D":
        return "{}"
    if value is None and column.spec.type == "T":
        return "{/:}"
    params.append(value)
    return "?"
