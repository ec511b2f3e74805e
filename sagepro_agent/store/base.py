"""The store interface: how the gateway core reads and writes Sage Pro tables.

The core never sees files, SQL or locks. It asks a `Store` for a `Table` by company and
*logical* name (`TABLES` in `sagepro_agent.layouts`), and works with `Row`s whose values
are keyed by the canonical Sage field names of that layout. The site mapping
(`sagepro_agent.config`) translates logical names and canonical fields to a site's
physical tables and fields, so stores and the core stay site-independent.

Value conventions, the same in every implementation:

| FoxPro type | Python value |
|---|---|
| C (character) | `str`, exactly as stored: padded to the field width, never stripped |
| N, F, Y (numeric, currency) | `decimal.Decimal` (a float is refused on write) |
| D (date) | `datetime.date`, or `None` for an empty date `{}` |
| T (datetime) | naive `datetime.datetime` meaning UTC, or `None` when empty |
| L (logical) | `bool` |
| I (integer) | `int` |
| M (memo) | `str` |

Keys are normalised by the core (contract section 2) before they reach a store: a store
compares bytes and does no padding or case folding of its own.

Writes never span tables atomically (FoxPro free tables have no transactions); the core's
journal makes a multi-table write resumable. Every write that changes an existing row is
a compare-and-set: it names the values it expects to find, and a store raises `CasMiss`
instead of writing when the row no longer holds them. Record numbers change when a table
is packed, so `expect` always includes the row's key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class StoreError(Exception):
    """Base class of every failure a store reports to the core."""


class Locked(StoreError):
    """Contract 423 RECORD_LOCKED: a record, header or object (`LCKSTAT`) lock is held by
    someone else past the bounded wait (`SET REPROCESS`), or the table is in exclusive use.
    Nothing was written. Worth retrying."""


class Unavailable(StoreError):
    """Contract 503 UNAVAILABLE: the data cannot be reached or must not be written (share
    offline, file missing, provider error, a table that failed its integrity check).
    Nothing was written by the failing call. Worth retrying once the cause is fixed."""


class TableDamaged(Unavailable):
    """A table failed the integrity watchdog and is no longer written (503 plus an alert)."""

    def __init__(self, table: str, problems: list[str]) -> None:
        super().__init__(
            f"table {table} failed its integrity check: " + "; ".join(problems)
        )
        self.table = table
        self.problems = problems


class CasMiss(StoreError):
    """A compare-and-set found the row changed: `current` is the row as it is now (None
    when the record no longer exists). Nothing was written."""

    def __init__(self, current: Row | None, detail: str = "") -> None:
        super().__init__(detail or "the row no longer holds the expected values")
        self.current = current


@dataclass(frozen=True)
class FieldSpec:
    name: str  # canonical field name, upper case
    type: str  # one of C N F Y D T L I M
    length: int = 0  # width for C and N; 0 where the type fixes it
    decimals: int = 0


@dataclass(frozen=True)
class Row:
    """One record. `ref` is its record number (VFP `RECNO()`, 1-based): valid until the
    table is packed. `values` holds every field of the layout (canonical names)."""

    ref: int
    deleted: bool
    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


@runtime_checkable
class Table(Protocol):
    name: str  # logical name, e.g. "invoices"
    fields: Mapping[str, FieldSpec]

    def find(
        self, where: Mapping[str, Any], *, include_deleted: bool = False
    ) -> list[Row]:
        """Rows whose fields equal every value in `where` (byte-exact for C fields), in
        record order. Uses an index when one covers the fields; live rows only unless
        `include_deleted`."""

    def rows(self, *, include_deleted: bool = False) -> Iterator[Row]:
        """Every row in record order (a full scan)."""

    def get(self, ref: int) -> Row | None:
        """The record with this number, deleted or not; None past the end."""

    def append(self, values: Mapping[str, Any]) -> Row:
        """Add a record (fields not given are blank) under the header lock and keep the
        indexes current. Raises Locked, Unavailable."""

    def update(
        self, ref: int, changes: Mapping[str, Any], *, expect: Mapping[str, Any]
    ) -> Row:
        """Compare-and-set under the record lock: if record `ref` is live and holds every
        value in `expect`, write `changes` in one record write and return the new row.
        Raises CasMiss (nothing written), Locked, Unavailable."""

    def set_deleted(self, ref: int, deleted: bool, *, expect: Mapping[str, Any]) -> Row:
        """Soft delete (or recall) record `ref`, compare-and-set like `update` (the
        record need not be live). Raises CasMiss, Locked, Unavailable."""


@runtime_checkable
class Store(Protocol):
    def table(self, company: str, name: str) -> Table:
        """The logical table `name` (`sagepro_agent.layouts.TABLES`) of `company`.
        Company-independent tables (`company`, `periods`, `counters`, `gl_structure`)
        ignore `company`. Raises Unavailable when it cannot be opened."""

    def check(self, company: str, name: str, *, sample: int | None = 100) -> list[str]:
        """The integrity watchdog's findings for one table (empty = healthy): header
        record count against file size, sampled index lookups. `sample=None` checks
        every record."""

    def close(self) -> None: ...


def rows_as_dicts(rows: Iterator[Row] | list[Row]) -> list[dict[str, Any]]:
    """Test and tooling helper: plain dicts with `_ref` and `_deleted`."""
    return [{"_ref": r.ref, "_deleted": r.deleted, **r.values} for r in rows]
