"""`VfpOleDbStore`: the production store, Sage Pro tables through the VFP engine itself.

See the package docstring for what has and has not been verified.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sagepro_agent import layouts as layouts_module
from sagepro_agent.store.base import (
    CasMiss,
    FieldSpec,
    Locked,
    Row,
    StoreError,
    TableDamaged,
    Unavailable,
)
from sagepro_agent.store.vfpoledb import errors, statements, values
from sagepro_agent.store.vfpoledb.connection import (
    COLLATING_SEQUENCE,
    COMMAND_TIMEOUT_SECONDS,
    adodbapi_connect,
    connection_string,
)
from sagepro_agent.store.vfpoledb.statements import Column, TableShape

log = logging.getLogger(__name__)

COMPANY_RE = re.compile(r"^[A-Za-z0-9]{1,3}$")
# Index lookups through the provider per table and check (the file-level check of
# `sagepro_agent.dbf.integrity` samples far more, cheaply); `sample=None` means all.
PROVIDER_LOOKUP_SAMPLE = 20
# A tag whose key is one field or fields joined with "+" (e.g. CUSTNO+INVNO) can be
# looked up with plain comparisons; UPPER(), DTOS() and the like are left to the
# file-level check.
# Seconds before a file-level finding is checked again (see `VfpOleDbStore.check`).
RECHECK_DELAY = 0.5
SIMPLE_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\+[A-Za-z_][A-Za-z0-9_]*)*$")

Connect = Callable[[str], Any]


class VfpOleDbStore:
    """The `base.Store` over a Sage Pro data folder (free tables) or `.DBC`.

    - `source`: the data folder, or the path of the `.DBC`.
    - `user`: the agent's Sage user id, C(4) (`ADDUSER`, `LCKUSER`).
    - `tables`: logical table name -> physical name template (`"ARMAST{co}"`), for the
      tables a site names differently from `sagepro_agent.layouts`.
    - `fields`: logical table name -> {canonical field: the site's field name}.
    - `reprocess`: seconds the engine waits for a lock before giving up (423).
    - `connect`: `connect(connection_string) -> connection`, adodbapi-shaped; the
      default imports adodbapi (Windows, 32-bit Python, pywin32) when first used.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        user: str,
        tables: Mapping[str, str] | None = None,
        fields: Mapping[str, Mapping[str, str]] | None = None,
        reprocess: float = 2.0,
        connect: Connect | None = None,
        collate: str = COLLATING_SEQUENCE,
        layouts: Mapping[str, layouts_module.Layout] | None = None,
    ) -> None:
        self.source = str(source)
        self.layouts = dict(layouts or layouts_module.TABLES)
        problems = _check_settings(self.layouts, user, tables or {}, fields or {})
        if problems:
            raise ValueError(
                "the VFP OLE DB store's settings are wrong:\n- " + "\n- ".join(problems)
            )
        self.user = user.ljust(4)
        self.templates = {
            name: (tables or {}).get(name, layout.physical)
            for name, layout in self.layouts.items()
        }
        self.renames = {name: dict(m) for name, m in (fields or {}).items()}
        self.reprocess_seconds = max(1, math.ceil(reprocess))
        self.connection_string = connection_string(self.source, collate)
        self._connect = connect or adodbapi_connect
        # Every provider call runs on one thread that owns the one connection (see
        # `ProviderThread`); `_conn` is only touched on that thread.
        self._worker = ProviderThread(f"vfpoledb {self.source}")
        self._conn: Any = None
        self._probed: set[tuple[str, str]] = set()
        # Why a table's file-level check did not run: (company, name) -> reasons.
        self.not_checked: dict[tuple[str, str], list[str]] = {}

    # -- Store ---------------------------------------------------------------------

    def table(self, company: str, name: str) -> VfpOleDbTable:
        shape = self.shape(company, name)
        if (company, name) not in self._probed:
            sql, params = statements.probe(shape)
            self.execute(sql, params, _where(shape, name, company, "open"), fetch=True)
            self._probed.add((company, name))
        return VfpOleDbTable(self, company, name, shape)

    def check(self, company: str, name: str, *, sample: int | None = 100) -> list[str]:
        """Header record count, the file-level integrity check when the DBF is
        reachable as a path, `COUNT(*)` through the provider against the header,
        and sampled index lookups through the provider.

        Sage Pro users keep appending while this runs, and an append in progress
        looks like damage for a moment (record bytes written, header count not yet).
        A file-level finding is therefore checked again after `RECHECK_DELAY`
        seconds and reported only if it persists, and `COUNT(*)` is accepted when it
        lies between the header counts read before and after it."""
        shape = self.shape(company, name)
        where = _where(shape, name, company, "integrity check")
        problems: list[str] = []
        notes: list[str] = []
        path = self.dbf_path(shape)
        if path is None:
            notes.append(
                f"{shape.physical}.DBF is not reachable as a file under {self.source}: "
                "header and file checks not run"
            )
        else:
            try:
                problems += self._file_findings(path, name, sample)
                if problems:
                    time.sleep(RECHECK_DELAY)
                    problems = self._file_findings(path, name, sample)
            except ImportError as exc:  # the module, or dbflib inside it
                notes.append(
                    f"file-level checks not run: {exc} is not installed (the "
                    "'discovery' extra installs dbflib)"
                )
        try:
            before = _header_count_or_none(path)
            sql, params = statements.count_records(shape)
            rows, _ = self.execute(sql, params, where, fetch=True)
            count = int(rows[0][0])
            after = _header_count_or_none(path)
            if (
                before is not None
                and after is not None
                and not before <= count <= after
            ):
                problems.append(
                    f"{shape.physical}: COUNT(*) through the provider gives {count} "
                    f"records, the DBF header says {after}"
                )
            problems += self._sampled_lookups(shape, name, count, sample, where)
        except TableDamaged as exc:
            problems += exc.problems
        if notes:
            log.warning("%s: %s", where, "; ".join(notes))
        self.not_checked[(company, name)] = notes
        return problems

    def _file_findings(self, path: Path, name: str, sample: int | None) -> list[str]:
        try:
            read_header_count(path)
        except (OSError, ValueError) as exc:
            return [f"{path}: cannot read the DBF header ({exc})"]
        integrity = _integrity_module()
        if integrity is None:
            raise ImportError("sagepro_agent.dbf.integrity")
        tags = dict(self.layouts[name].tags)
        return list(integrity.check_table(str(path), layout_tags=tags, sample=sample))

    def close(self) -> None:
        if self._worker.running:
            self._worker.run(self._close_connection, f"{self.source}: close")
        self._worker.stop()

    def _close_connection(self) -> None:
        connection, self._conn = self._conn, None
        if connection is not None:
            _close_quietly(connection)

    # -- helpers shared with the table ------------------------------------------------

    def shape(self, company: str, name: str) -> TableShape:
        if name not in self.layouts:
            raise ValueError(
                f"unknown logical table {name!r}; known: {', '.join(self.layouts)}"
            )
        if not COMPANY_RE.match(company or ""):
            raise ValueError(f"company id {company!r} is not 1-3 letters or digits")
        layout = self.layouts[name]
        physical = self.templates[name].format(co=company)
        renames = self.renames.get(name, {})
        columns = tuple(
            Column(spec.name, renames.get(spec.name, spec.name), spec)
            for spec in layout.fields().values()
        )
        return TableShape(physical, columns)

    def dbf_path(self, shape: TableShape) -> Path | None:
        """The table's DBF file when it is reachable as a path (the agent runs on the
        file server, or the share is mapped); None otherwise."""
        base = Path(self.source)
        if base.suffix.lower() == ".dbc":
            base = base.parent
        relative = shape.physical.replace("\\", os.sep)
        if not Path(relative).suffix:
            relative += ".DBF"
        candidate = base / relative
        for option in (candidate, candidate.with_suffix(candidate.suffix.lower())):
            if option.is_file():
                return option
        lower = base / relative.lower()
        return lower if lower.is_file() else None

    def execute(
        self, sql: str, params: list[Any], where: str, *, fetch: bool
    ) -> tuple[list[Any], int]:
        """Run one statement on the provider thread; provider failures become
        Locked / Unavailable / TableDamaged naming `where`. Returns (rows, affected
        row count)."""
        return self._worker.run(
            lambda: self._execute_here(sql, params, where, fetch), where
        )

    def _execute_here(
        self, sql: str, params: list[Any], where: str, fetch: bool
    ) -> tuple[list[Any], int]:
        connection = self._connection(where)
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, params)
                rows = list(cursor.fetchall()) if fetch else []
                count = getattr(cursor, "rowcount", -1)
            finally:
                _close_quietly(cursor)
        except StoreError:
            raise
        except Exception as exc:
            failure = errors.classify(exc, connection, where)
            if not isinstance(failure, Locked):
                # Anything but a lock may mean the connection is gone; a new one is
                # opened (and the session SETs sent again) on the next call.
                self._drop(connection)
            log.warning("%s", failure)
            raise failure from exc
        return rows, (count if isinstance(count, int) else -1)

    def _connection(self, where: str) -> Any:
        if self._conn is not None:
            return self._conn
        if not os.path.exists(self.source):
            raise Unavailable(
                f"{where}: the Sage data at {self.source} cannot be reached (share "
                "offline or path wrong); nothing was written."
            )
        try:
            connection = self._connect(self.connection_string)
        except Exception as exc:
            raise Unavailable(
                f"{where}: cannot open {self.source} through the VFP OLE DB provider "
                f"({errors.error_text(exc)}). Check that the provider (VFP 9 SP2, "
                "32-bit) is installed and the agent runs on 32-bit Python."
            ) from exc
        try:
            for command in statements.session(self.reprocess_seconds):
                cursor = connection.cursor()
                try:
                    cursor.execute(command, [])
                finally:
                    _close_quietly(cursor)
        except Exception as exc:
            failure = errors.classify(exc, connection, f"{where}: session setup")
            _close_quietly(connection)
            raise failure from exc
        self._conn = connection
        return connection

    def _drop(self, connection: Any) -> None:
        if self._conn is connection:
            self._conn = None
        _close_quietly(connection)

    def _sampled_lookups(
        self, shape: TableShape, name: str, count: int, sample: int | None, where: str
    ) -> list[str]:
        keys = [
            (tag, [shape.column(part) for part in expression.split("+")])
            for tag, expression in self.layouts[name].tags
            if SIMPLE_KEY_RE.match(expression)
            and all(
                part in self.layouts[name].fields() for part in expression.split("+")
            )
        ]
        if not keys or count == 0:
            return []
        size = count if sample is None else min(sample, PROVIDER_LOOKUP_SAMPLE, count)
        columns = list({c.name: c for _, cols in keys for c in cols}.values())
        sql, params = statements.select_tail(shape, columns, count - size)
        rows, _ = self.execute(sql, params, where, fetch=True)
        problems = []
        for raw in rows:
            cells = list(raw)  # adodbapi rows are sequences, not tuples
            ref = int(cells[-1])
            found = {
                c.name: values.value_from_provider(c.spec, v)
                for c, v in zip(columns, cells, strict=False)
            }
            for tag, cols in keys:
                sql, params = statements.select_refs(
                    shape, [(c, found[c.name]) for c in cols]
                )
                hits, _ = self.execute(sql, params, where, fetch=True)
                if ref not in {int(hit[0]) for hit in hits}:
                    problems.append(
                        f"{shape.physical} tag {tag}: a lookup by key does not find "
                        f"record {ref} (stale index?)"
                    )
        return problems


class ProviderThread:
    """Runs callables on one long-lived thread and hands back their result.

    The ADO connection is a COM object: it belongs to the thread (apartment) that
    created it, and COM must be initialised on that thread. Request threads come and
    go (the HTTP binding starts one per request), so the store never touches the
    provider from them: every statement is queued to this thread, which opens the
    connection, keeps it and runs the statements one after another. That also
    serialises the agent's own statements, which is all the engine would allow on one
    connection anyway.

    A call that gets no answer within `timeout` seconds raises Unavailable; whether a
    write sent that way happened is unknown, and the journal checks before repeating.
    """

    def __init__(self, name: str, timeout: float = COMMAND_TIMEOUT_SECONDS + 30):
        self.name = name
        self.timeout = timeout
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, job: Callable[[], Any], where: str) -> Any:
        if threading.current_thread() is self._thread:
            return job()
        self._start()
        done = threading.Event()
        box: dict[str, Any] = {}
        self._jobs.put((job, done, box))
        if not done.wait(self.timeout):
            raise Unavailable(
                f"{where}: the VFP OLE DB provider did not answer within "
                f"{self.timeout:g} s; the outcome is unknown and is checked before "
                "the step is repeated."
            )
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def stop(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._jobs.put(None)
            thread.join(timeout=5)
        self._thread = None

    def _start(self) -> None:
        with self._start_lock:
            if not self.running:
                self._jobs = queue.Queue()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._jobs,), name=self.name, daemon=True
                )
                self._thread.start()

    @staticmethod
    def _loop(jobs: queue.Queue[Any]) -> None:
        while True:
            item = jobs.get()
            if item is None:
                return
            job, done, box = item
            try:
                box["result"] = job()
            except BaseException as exc:  # handed to the caller, never lost here
                box["error"] = exc
            finally:
                done.set()


class VfpOleDbTable:
    """One logical table of one company (`base.Table`)."""

    def __init__(
        self, store: VfpOleDbStore, company: str, name: str, shape: TableShape
    ) -> None:
        self.store = store
        self.company = company
        self.name = name
        self.shape = shape
        self.fields: dict[str, FieldSpec] = {c.name: c.spec for c in shape.columns}

    def find(
        self, where: Mapping[str, Any], *, include_deleted: bool = False
    ) -> list[Row]:
        if any(isinstance(v, str) and not _encodable(v) for v in where.values()):
            # No record can hold it, and the provider would turn the character into
            # "?" and might match a row that holds a real "?".
            return []
        terms = [(self._column(f), self._comparable(f, v)) for f, v in where.items()]
        sql, params = statements.select_rows(
            self.shape, terms, include_deleted=include_deleted
        )
        return self._rows(sql, params, "find")

    def rows(self, *, include_deleted: bool = False) -> Iterator[Row]:
        return iter(self.find({}, include_deleted=include_deleted))

    def get(self, ref: int) -> Row | None:
        if isinstance(ref, bool) or not isinstance(ref, int) or ref < 1:
            return None
        sql, params = statements.select_record(self.shape, ref)
        found = self._rows(sql, params, f"read of record {ref}")
        return found[0] if found else None

    def append(self, values_: Mapping[str, Any]) -> Row:
        given = [(self._column(f), self._writable(f, v)) for f, v in values_.items()]
        sql, params = statements.insert(self.shape, given)
        where = self._where("append")
        self.store.execute(sql, params, where, fetch=False)
        # The provider gives no record number back. The new record is the last live
        # one holding exactly the values just written (the engine appends under the
        # header lock, so it is the highest such RECNO()). Datetimes and memos are
        # left out of the comparison: how precisely the provider stores a datetime's
        # fraction of a second is UNVERIFIED, and memos are slow to compare.
        lookup = [(c, v) for c, v in given if c.spec.type not in "TM"]
        sql, params = statements.select_rows(self.shape, lookup, include_deleted=False)
        found = self._rows(sql, params, "read-back of the appended record")
        if not found:
            raise Unavailable(
                f"{where}: the record was appended but cannot be read back by its "
                "values; the journal's check before repeating finds it."
            )
        return found[-1]

    def update(
        self, ref: int, changes: Mapping[str, Any], *, expect: Mapping[str, Any]
    ) -> Row:
        sets = [(self._column(f), self._writable(f, v)) for f, v in changes.items()]
        wanted = [(self._column(f), self._comparable(f, v)) for f, v in expect.items()]
        if not sets:
            current = self.get(ref)
            if (
                current is not None
                and not current.deleted
                and self._holds(current, expect)
            ):
                return current
            raise self._refusal(ref, current, expect)
        sql, params = statements.update(self.shape, ref, sets, wanted, self.store.user)
        _, count = self.store.execute(
            sql, params, self._where(f"update of record {ref}"), fetch=False
        )
        current = self.get(ref)
        if count == 1 and current is not None:
            return current
        if count < 0 and current is not None and not current.deleted:
            # The provider reported no row count (UNVERIFIED whether VFPOLEDB does):
            # judge by what the record holds now.
            target = {**expect, **changes}
            if self._holds(current, target):
                return current
        if count > 1:
            raise Unavailable(
                f"{self._where('update')}: RECNO() = {ref} matched {count} records"
            )
        raise self._refusal(ref, current, expect)

    def set_deleted(self, ref: int, deleted: bool, *, expect: Mapping[str, Any]) -> Row:
        wanted = [(self._column(f), self._comparable(f, v)) for f, v in expect.items()]
        user = self.store.user
        if deleted:
            sql, params = statements.delete(self.shape, ref, wanted, user)
            action = f"delete of record {ref}"
        else:
            sql, params = statements.recall(self.shape, ref, wanted, user)
            action = f"recall of record {ref}"
        # No fetch: whether EXECSCRIPT hands back a rowset is UNVERIFIED, and the
        # outcome is read from the record itself below.
        self.store.execute(sql, params, self._where(action), fetch=False)
        current = self.get(ref)
        if (
            current is not None
            and current.deleted == deleted
            and self._holds(current, expect)
        ):
            return current
        refusal = self._refusal(ref, current, expect)
        if (
            isinstance(refusal, CasMiss)
            and current is not None
            and self._holds(current, expect)
            and not self._foreign_lock(current)
        ):
            # The record still holds what was expected and no object lock stands in
            # the way: the engine could not lock it within SET REPROCESS.
            raise Locked(
                f"{self._where(action)}: the record could not be locked in time; "
                "nothing was written. Retry."
            )
        raise refusal

    # -- helpers ---------------------------------------------------------------------

    def _rows(self, sql: str, params: list[Any], action: str) -> list[Row]:
        raw_rows, _ = self.store.execute(sql, params, self._where(action), fetch=True)
        return [self._row(raw) for raw in raw_rows]

    def _row(self, raw: Any) -> Row:
        cells = list(raw)
        width = len(self.shape.columns)
        row_values = {
            column.name: values.value_from_provider(column.spec, cell)
            for column, cell in zip(self.shape.columns, cells[:width], strict=True)
        }
        return Row(
            ref=int(cells[width]), deleted=bool(cells[width + 1]), values=row_values
        )

    def _column(self, field: str) -> Column:
        try:
            return self.shape.column(field)
        except KeyError:
            raise ValueError(
                f"{self.name} has no field {field!r}; its fields are "
                f"{', '.join(self.fields)}"
            ) from None

    def _writable(self, field: str, value: Any) -> Any:
        return values.value_to_provider(
            self.shape.physical, self._column(field).spec, value
        )

    def _comparable(self, field: str, value: Any) -> Any:
        spec = self._column(field).spec
        if spec.type in "CM":
            # Byte-exact: the core passes keys padded to the field width, and a
            # shorter value must not match (statements.py explains the `==`).
            if not isinstance(value, str):
                raise TypeError(
                    f"{self.shape.physical}.{field}: got {type(value).__name__}"
                )
            return value
        return values.value_to_provider(self.shape.physical, spec, value)

    def _holds(self, row: Row, expected: Mapping[str, Any]) -> bool:
        for field, value in expected.items():
            spec = self.fields[field]
            if spec.type == "C" and isinstance(value, str):
                if row.get(field) != value.ljust(spec.length):
                    return False
            elif spec.type in values.MONEY_TYPES and value is not None:
                if row.get(field) != values.money_to_provider(field, spec, value):
                    return False
            elif row.get(field) != value:
                return False
        return True

    def _foreign_lock(self, row: Row) -> bool:
        if not self.shape.has_object_lock:
            return False
        return bool(str(row.get("LCKSTAT", "")).strip()) and (
            row.get("LCKUSER") != self.store.user.ljust(self.fields["LCKUSER"].length)
        )

    def _refusal(
        self, ref: int, current: Row | None, expect: Mapping[str, Any]
    ) -> StoreError:
        where = self._where(f"record {ref}")
        if current is None:
            return CasMiss(None, f"{where} does not exist")
        if self._foreign_lock(current):
            return Locked(
                f"{where} is open in Sage Pro by user "
                f"{str(current.get('LCKUSER')).strip() or '?'} (LCKSTAT="
                f"{str(current.get('LCKSTAT')).strip()!r}); nothing was written. Retry "
                "once they have closed it."
            )
        differs = [
            f"{field}: expected {value!r}, found {current.get(field)!r}"
            for field, value in expect.items()
            if not self._holds(current, {field: value})
        ]
        detail = "; ".join(differs) or "it changed while being written"
        if current.deleted:
            detail = "the record is deleted; " + detail
        return CasMiss(
            current, f"{where} no longer holds the expected values: {detail}"
        )

    def _where(self, action: str) -> str:
        return _where(self.shape, self.name, self.company, action)


def read_header_count(path: Path) -> int:
    """The record count in a DBF header (bytes 4-7, little-endian)."""
    with open(path, "rb") as handle:
        header = handle.read(8)
    if len(header) < 8:
        raise ValueError(f"the file is {len(header)} bytes, shorter than a DBF header")
    return struct.unpack_from("<I", header, 4)[0]


def _header_count_or_none(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return read_header_count(path)
    except (OSError, ValueError):
        return None  # already reported by the file-level check


def _where(shape: TableShape, name: str, company: str, action: str) -> str:
    return f"{shape.physical} ({name}, company {company}): {action}"


def _integrity_module() -> Any:
    try:
        from sagepro_agent.dbf import integrity
    except ImportError:
        return None
    return integrity


def _close_quietly(thing: Any) -> None:
    try:
        thing.close()
    except Exception:  # closing a dead COM object can raise anything
        log.debug("closing %r failed", thing, exc_info=True)


def _check_settings(
    layouts: Mapping[str, layouts_module.Layout],
    user: str,
    tables: Mapping[str, str],
    fields: Mapping[str, Mapping[str, str]],
) -> list[str]:
    problems = []
    if not isinstance(user, str) or not user.strip() or len(user) > 4:
        problems.append(f"user {user!r}: the agent's Sage user id is 1-4 characters")
    for name, template in tables.items():
        if name not in layouts:
            problems.append(f"tables.{name}: unknown logical table")
            continue
        try:
            physical = template.format(co="01")
        except (KeyError, IndexError, ValueError):
            problems.append(f"tables.{name} = {template!r}: only {{co}} may be used")
            continue
        if not statements.TABLE_RE.match(physical):
            problems.append(
                f"tables.{name} = {template!r}: a table name or path without spaces "
                "or quotes is needed"
            )
    for name, renames in fields.items():
        if name not in layouts:
            problems.append(f"fields.{name}: unknown logical table")
            continue
        known = {column for column, _ in layouts[name].columns}
        for canonical, physical in renames.items():
            if canonical not in known:
                problems.append(f"fields.{name}.{canonical}: not a field of {name}")
            if not isinstance(physical, str) or not statements.NAME_RE.match(physical):
                problems.append(
                    f"fields.{name}.{canonical} = {physical!r}: not a field name"
                )
    return problems


def _encodable(text: str) -> bool:
    """Whether a FoxPro character field (Windows-1252) can hold `text`."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True
