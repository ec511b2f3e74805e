"""A fake adodbapi connection to the VFP OLE DB provider, for the production store's tests.

It is not a SQL engine. It understands exactly the statement shapes that
`sagepro_agent.store.vfpoledb.statements` builds (SET, SELECT, INSERT, UPDATE, DELETE,
and the recall script run through EXECSCRIPT), with a small matcher per shape, and
fails loudly on anything else. It keeps one in-memory table per physical name, typed
like the VFP fields, and hands values back the way adodbapi is expected to (N as float,
Y as Decimal, D and T as datetime with ADO's 1899-12-30 for an empty one, RECNO() as a
float).

What the tests use:
- `db.statements`: every statement any connection was asked to run, with its
  parameter list, in order (including the ones that failed);
- `db.fail(pattern, number, text, nth=1, times=1, drop=False)`: the `nth` statement
  matching `pattern` (and the next `times - 1`) raises like adodbapi does, with the VFP
  error number in the connection's ADO `Errors` collection; `drop=True` also closes the
  connection, as a lost network share would;
- `db.drop_connections()`: every open connection is closed under the store's feet;
- `db.lock_record(table, recno)` / `db.lock_header(table)`: another user's VFP lock, so
  an UPDATE/DELETE/INSERT touching it raises error 109/108 (as after SET REPROCESS);
- `db.threads`: the names of the threads statements ran on; `db.on_statement(sql)` is
  called before each statement (a test can stall one there).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sagepro_agent import layouts
from sagepro_agent.store.base import FieldSpec

ZERO = datetime(1899, 12, 30)  # noqa: DTZ001 (ADO's zero date)
PROVIDER = "Microsoft OLE DB Provider for Visual FoxPro"


class DatabaseError(Exception):
    """Shaped like adodbapi.apibase.DatabaseError: one string argument."""


@dataclass
class AdoError:
    """One entry of ADO's Connection.Errors collection."""

    NativeError: int
    Description: str
    Source: str = PROVIDER
    SQLState: str = ""


@dataclass
class Failure:
    pattern: re.Pattern[str]
    number: int
    text: str
    nth: int
    times: int
    drop: bool
    seen: int = 0


class FakeTable:
    def __init__(self, name: str, specs: list[FieldSpec]) -> None:
        self.name = name
        self.specs = {spec.name: spec for spec in specs}
        self.records: list[dict[str, Any]] = []
        self.deleted: list[bool] = []
        self.locked: set[int] = set()
        self.header_locked = False

    def blank(self) -> dict[str, Any]:
        return {name: _blank(spec) for name, spec in self.specs.items()}

    def add(self, deleted: bool = False, **values: Any) -> int:
        record = self.blank()
        for name, value in values.items():
            record[name] = _store(self.specs[name], value)
        self.records.append(record)
        self.deleted.append(deleted)
        return len(self.records)

    def record(self, recno: int) -> dict[str, Any]:
        return self.records[recno - 1]


class FakeDatabase:
    def __init__(self, *, numbers_in_errors: bool = True, report_rowcount: bool = True):
        self.tables: dict[str, FakeTable] = {}
        self.statements: list[tuple[str, list[Any]]] = []
        self.connection_strings: list[str] = []
        self.connections: list[FakeConnection] = []
        self.failures: list[Failure] = []
        self.connect_error: Exception | None = None
        self.numbers_in_errors = numbers_in_errors
        self.report_rowcount = report_rowcount
        self.threads: set[str] = set()  # names of the threads that ran statements
        self.on_statement: Callable[[str], Any] | None = None  # e.g. to stall one

    # -- set-up -------------------------------------------------------------------

    def create(self, logical: str, company: str = "01", physical: str | None = None):
        layout = layouts.TABLES[logical]
        name = (physical or layout.physical.format(co=company)).upper()
        self.tables[name] = FakeTable(name, list(layout.fields().values()))
        return self.tables[name]

    def fail(
        self,
        pattern: str,
        number: int,
        text: str,
        *,
        nth: int = 1,
        times: int = 1,
        drop: bool = False,
    ) -> None:
        self.failures.append(
            Failure(re.compile(pattern), number, text, nth, times, drop)
        )

    def drop_connections(self) -> None:
        for connection in self.connections:
            connection.closed = True

    def lock_record(self, table: str, recno: int) -> None:
        self.tables[table.upper()].locked.add(recno)

    def lock_header(self, table: str) -> None:
        self.tables[table.upper()].header_locked = True

    def connect(self, connection_string: str) -> FakeConnection:
        self.connection_strings.append(connection_string)
        if self.connect_error is not None:
            raise self.connect_error
        connection = FakeConnection(self)
        self.connections.append(connection)
        return connection

    # -- what the tests read ------------------------------------------------------

    def sql(self) -> list[str]:
        return [sql for sql, _ in self.statements]

    def writes(self) -> list[tuple[str, list[Any]]]:
        return [
            (sql, params)
            for sql, params in self.statements
            if sql.startswith(("INSERT", "UPDATE", "DELETE", "EXECSCRIPT"))
        ]

    def clear(self) -> None:
        self.statements.clear()

    # -- execution ------------------------------------------------------------------

    def run(self, connection: FakeConnection, sql: str, params: list[Any]):
        """Returns (rows or None, rowcount)."""
        self.statements.append((sql, list(params)))
        self.threads.add(threading.current_thread().name)
        if self.on_statement is not None:
            self.on_statement(sql)
        if connection.closed:
            connection.connector.Errors = []
            raise DatabaseError(
                _adodbapi_text(
                    "Operation is not allowed when the object is closed.", sql
                )
            )
        for failure in self.failures:
            if failure.pattern.search(sql):
                failure.seen += 1
                if failure.seen >= failure.nth and failure.times > 0:
                    failure.times -= 1
                    if failure.drop:
                        connection.closed = True
                    raise self.error(connection, failure.number, failure.text, sql)
        connection.connector.Errors = []
        for shape, handler in self._handlers():
            match = shape.match(sql)
            if match:
                return handler(connection, match, _Params(params, sql))
        raise AssertionError(f"the fake does not understand this statement: {sql}")

    def error(self, connection, number: int, text: str, sql: str) -> DatabaseError:
        native = number if self.numbers_in_errors else 0
        connection.connector.Errors = [AdoError(native, text)]
        return DatabaseError(_adodbapi_text(text, sql))

    def _handlers(self) -> list[tuple[re.Pattern[str], Callable[..., Any]]]:
        return [
            (re.compile(r"^SET (.+)$"), self._set),
            (
                re.compile(
                    r"^SELECT (?P<cols>.+?) FROM (?P<table>\S+)"
                    r"(?: WHERE (?P<where>.+?))?(?: ORDER BY (?P<order>\d+))?$"
                ),
                self._select,
            ),
            (
                re.compile(
                    r"^INSERT INTO (?P<table>\S+) \((?P<cols>[^)]*)\) VALUES \((?P<vals>.*)\)$"
                ),
                self._insert,
            ),
            (
                re.compile(
                    r"^UPDATE (?P<table>\S+) SET (?P<sets>.+?) WHERE (?P<where>.+)$"
                ),
                self._update,
            ),
            (
                re.compile(r"^DELETE FROM (?P<table>\S+) WHERE (?P<where>.+)$"),
                self._delete,
            ),
            (re.compile(r"^EXECSCRIPT\((?P<marks>[?, ]+)\)$"), self._execscript),
        ]

    def _table(self, connection, name: str, sql: str) -> FakeTable:
        table = self.tables.get(name.upper())
        if table is None:
            raise self.error(
                connection, 1, f"File '{name.lower()}.dbf' does not exist.", sql
            )
        return table

    def _set(self, connection, match, params):
        connection.settings.append(match.group(1))
        return None, -1

    def _select(self, connection, match, params):
        table = self._table(connection, match["table"], params.sql)
        items = [item.strip() for item in match["cols"].split(", ")]
        for item in items:
            name = item.split(" AS ")[0]
            if (
                name not in ("RECNO()", "DELETED()", "COUNT(*)")
                and name not in table.specs
            ):
                raise self.error(
                    connection, 1806, f"SQL: Column '{name}' is not found.", params.sql
                )
        test = _condition(match["where"], table, params) if match["where"] else None
        params.done()
        chosen = [
            n
            for n in range(1, len(table.records) + 1)
            if test is None or test(table, n)
        ]
        if items == ["COUNT(*) AS n"]:
            return [(float(len(chosen)),)], 1
        rows = [tuple(self._out(table, n, item) for item in items) for n in chosen]
        if match["order"]:
            position = int(match["order"]) - 1
            rows.sort(key=lambda row: row[position])
        return rows, len(rows)

    def _out(self, table: FakeTable, n: int, item: str) -> Any:
        if item == "RECNO() AS _ref":
            return float(n)
        if item == "DELETED() AS _del":
            return table.deleted[n - 1]
        return _provider_value(table.specs[item], table.record(n)[item])

    def _insert(self, connection, match, params):
        table = self._table(connection, match["table"], params.sql)
        names = [n.strip() for n in match["cols"].split(",") if n.strip()]
        marks = [m.strip() for m in match["vals"].split(",") if m.strip()]
        assert len(names) == len(marks), params.sql
        values = {
            name: self._value(connection, table, name, mark, params)
            for name, mark in zip(names, marks, strict=True)
        }
        params.done()
        if table.header_locked:
            raise self.error(
                connection, 108, "File is in use by another user.", params.sql
            )
        record = table.blank()
        record.update(values)
        table.records.append(record)
        table.deleted.append(False)
        return None, 1

    def _update(self, connection, match, params):
        table = self._table(connection, match["table"], params.sql)
        changes = {}
        for assignment in _split_top(match["sets"], ", "):
            name, mark = (part.strip() for part in assignment.split(" = ", 1))
            changes[name] = self._value(connection, table, name, mark, params)
        test = _condition(match["where"], table, params)
        params.done()
        chosen = [n for n in range(1, len(table.records) + 1) if test(table, n)]
        if any(n in table.locked for n in chosen):
            raise self.error(
                connection, 109, "Record is in use by another user.", params.sql
            )
        for n in chosen:
            table.record(n).update(changes)
        return None, (len(chosen) if self.report_rowcount else -1)

    def _delete(self, connection, match, params):
        table = self._table(connection, match["table"], params.sql)
        test = _condition(match["where"], table, params)
        params.done()
        chosen = [n for n in range(1, len(table.records) + 1) if test(table, n)]
        if any(n in table.locked for n in chosen):
            raise self.error(
                connection, 109, "Record is in use by another user.", params.sql
            )
        for n in chosen:
            table.deleted[n - 1] = True
        return None, (len(chosen) if self.report_rowcount else -1)

    def _execscript(self, connection, match, params):
        script, ref, user, *rest = params.values
        lines = script.split("\r\n")
        head = lines[0].removeprefix("LPARAMETERS ").split(", ")
        assert head[:2] == ["tnRef", "tcUser"], script
        named = dict(zip(head, [ref, user, *rest], strict=True))
        table_name = next(
            ln.split()[1] for ln in lines if ln.startswith("USE ") and " IN 0 " in ln
        )
        table = self._table(connection, table_name, params.sql)
        test_line = next(ln for ln in lines if ln.startswith("IF DELETED() AND "))
        test = _condition(test_line.removeprefix("IF "), table, _Named(named))
        # RLOCK() fails quietly on a record another user holds.
        if ref <= len(table.records) and test(table, ref) and ref not in table.locked:
            table.deleted[ref - 1] = False
        return None, -1

    def _value(self, connection, table, name, mark, params) -> Any:
        spec = table.specs.get(name)
        if spec is None:
            raise self.error(
                connection, 1806, f"SQL: Column '{name}' is not found.", params.sql
            )
        if mark == "{}" or mark == "{/:}":
            return None
        assert mark == "?", f"a value was written into the statement text: {params.sql}"
        value = params.take()
        if value is None:
            raise self.error(
                connection,
                1581,
                f"Field {name} does not accept null values.",
                params.sql,
            )
        return _store(spec, value)


class FakeConnection:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.closed = False
        self.settings: list[str] = []
        self.connector = _Connector()

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        self.closed = True


class FakeCursor:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.rows: list[tuple[Any, ...]] | None = None
        self.rowcount = -1

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        self.rows, self.rowcount = self.connection.db.run(
            self.connection, sql, list(params or [])
        )

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self.rows is None:
            raise DatabaseError("No result set to fetch from.")
        return self.rows

    def close(self) -> None:
        pass


@dataclass
class _Connector:
    Errors: list[AdoError] = field(default_factory=list)


class _Params:
    """The statement's parameters, consumed left to right as the `?` appear."""

    def __init__(self, values: list[Any], sql: str) -> None:
        self.values = values
        self.sql = sql
        self.position = 0

    def take(self) -> Any:
        assert self.position < len(self.values), f"too few parameters for: {self.sql}"
        value = self.values[self.position]
        self.position += 1
        return value

    def resolve(self, mark: str) -> Any:
        assert mark == "?", f"a value was written into the statement text: {self.sql}"
        return self.take()

    def done(self) -> None:
        assert self.position == len(self.values), f"parameters left over: {self.sql}"


class _Named:
    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named

    def resolve(self, mark: str) -> Any:
        return self.named[mark]


Test = Callable[[FakeTable, int], bool]


def _condition(text: str, table: FakeTable, params: Any) -> Test:
    """AND-joined terms as the store writes them; parameters bound in text order."""
    terms = [_term(term.strip(), table, params) for term in _split_top(text, " AND ")]
    return lambda t, n: all(term(t, n) for term in terms)


def _term(term: str, table: FakeTable, params: Any) -> Test:
    if term.startswith("(") and term.endswith(")"):
        options = [
            _term(o.strip(), table, params) for o in _split_top(term[1:-1], " OR ")
        ]
        return lambda t, n: any(option(t, n) for option in options)
    if term == ".F.":
        return lambda t, n: False
    if term == ".T.":
        return lambda t, n: True
    if term == "NOT DELETED()":
        return lambda t, n: not t.deleted[n - 1]
    if term == "DELETED()":
        return lambda t, n: t.deleted[n - 1]
    match = re.fullmatch(r"RECNO\(\) (=|>) (\?|\w+)", term)
    if match:
        wanted = params.resolve(match[2])
        if match[1] == "=":
            return lambda t, n: n == wanted
        return lambda t, n: n > wanted
    match = re.fullmatch(r"EMPTY\((\w+)\)", term)
    if match:
        name = match[1]
        _spec(table, name)
        return lambda t, n: _is_empty(t.specs[name], t.record(n)[name])
    match = re.fullmatch(r"(\w+) (==|=) (\?|\w+)", term)
    if match:
        name, operator = match[1], match[2]
        spec = _spec(table, name)
        wanted = params.resolve(match[3])
        if operator == "==":
            assert spec.type in "CM", f"== on a {spec.type} field: {term}"
            return lambda t, n: t.record(n)[name] == wanted
        return lambda t, n: _loose_equal(spec, t.record(n)[name], wanted)
    raise AssertionError(f"the fake does not understand this condition: {term}")


def _spec(table: FakeTable, name: str) -> FieldSpec:
    if name not in table.specs:
        raise AssertionError(f"{table.name} has no field {name}")
    return table.specs[name]


def _split_top(text: str, separator: str) -> list[str]:
    """Split on `separator` outside parentheses."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
        elif depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            i += len(separator)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _loose_equal(spec: FieldSpec, stored: Any, wanted: Any) -> bool:
    if spec.type in "CM":
        # VFP SQL `=` under SET ANSI OFF: stops at the end of the shorter string.
        return stored[: len(wanted)] == wanted
    if spec.type in "NFY":
        return Decimal(str(stored)) == Decimal(str(wanted))
    return stored == wanted


def _is_empty(spec: FieldSpec, value: Any) -> bool:
    if spec.type in "CM":
        return not value.strip()
    if spec.type in "DT":
        return value is None
    return not value


def _blank(spec: FieldSpec) -> Any:
    return {
        "C": " " * spec.length,
        "M": "",
        "L": False,
        "I": 0,
        "D": None,
        "T": None,
    }.get(spec.type, Decimal(0))


def _store(spec: FieldSpec, value: Any) -> Any:
    if spec.type == "C":
        return str(value)[: spec.length].ljust(spec.length)
    if spec.type in "NFY":
        return Decimal(str(value))
    return value


def _provider_value(spec: FieldSpec, value: Any) -> Any:
    """What adodbapi is expected to hand back for a stored value."""
    if spec.type in "NF":
        return float(value)
    if spec.type == "Y":
        return Decimal(value).quantize(Decimal("0.0001"))
    if spec.type == "D":
        return ZERO if value is None else datetime(value.year, value.month, value.day)  # noqa: DTZ001
    if spec.type == "T":
        return ZERO if value is None else value
    return value


def _adodbapi_text(description: str, sql: str) -> str:
    com_args = (
        -2147352567,
        "Exception occurred.",
        (0, PROVIDER, description, None, 0, -2147467259),
        None,
    )
    return f"{com_args!r}\nCommand:\n{sql}\nParameters:\n[...]"
