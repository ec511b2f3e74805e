"""An in-memory `Store` for fast unit tests of the gateway core. NOT a Sage store.

It keeps the conventions of `store.base` (C values padded to the field width, money as
Decimal with the field's decimals, soft deletes, compare-and-set updates, the `LCKSTAT`
object lock of another user -> `Locked`) so the core's rules and the journal's steps can
be tested without FoxPro files. Tests can make any operation fail (`fail_next`) and
set what the integrity watchdog reports (`findings`).
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from sagepro_agent.layouts import TABLES, Layout
from sagepro_agent.store.base import (
    CasMiss,
    FieldSpec,
    Locked,
    Row,
    StoreError,
    Unavailable,
)


def blank(spec: FieldSpec) -> Any:
    if spec.type == "C":
        return " " * spec.length
    if spec.type in "NFY":
        return Decimal(0).quantize(Decimal(1).scaleb(-spec.decimals))
    if spec.type == "L":
        return False
    if spec.type == "I":
        return 0
    if spec.type == "M":
        return ""
    return None  # D, T


def coerce(spec: FieldSpec, value: Any) -> Any:
    """A value as the table would store it; wrong types are refused."""
    if value is None:
        return blank(spec)
    if spec.type == "C":
        if not isinstance(value, str):
            raise TypeError(f"{spec.name} takes a str, not {type(value).__name__}")
        if len(value) > spec.length:
            raise ValueError(f"{spec.name} is C({spec.length}); {value!r} is longer")
        return value.ljust(spec.length)
    if spec.type in "NFY":
        if isinstance(value, float | bool):
            raise TypeError(f"{spec.name} takes a Decimal, not {type(value).__name__}")
        return Decimal(value).quantize(Decimal(1).scaleb(-spec.decimals))
    if spec.type == "D" and isinstance(value, datetime.datetime):
        raise TypeError(f"{spec.name} is a date")
    return value


class MemoryTable:
    def __init__(self, store: MemoryStore, name: str, layout: Layout) -> None:
        self.store = store
        self.name = name
        self.fields = layout.fields()
        self._rows: list[tuple[bool, dict[str, Any]]] = []

    def _row(self, ref: int) -> Row:
        deleted, values = self._rows[ref - 1]
        return Row(ref, deleted, dict(values))

    def _matches(self, values: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
        return all(values.get(k) == coerce(self.fields[k], v) for k, v in where.items())

    def find(
        self, where: Mapping[str, Any], *, include_deleted: bool = False
    ) -> list[Row]:
        self.store._maybe_fail("find", self.name)
        with self.store.lock:
            return [
                self._row(i + 1)
                for i, (deleted, values) in enumerate(self._rows)
                if (include_deleted or not deleted) and self._matches(values, where)
            ]

    def rows(self, *, include_deleted: bool = False) -> Iterator[Row]:
        self.store._maybe_fail("rows", self.name)
        with self.store.lock:
            found = [
                self._row(i + 1)
                for i, (deleted, _) in enumerate(self._rows)
                if include_deleted or not deleted
            ]
        return iter(found)

    def get(self, ref: int) -> Row | None:
        self.store._maybe_fail("get", self.name)
        with self.store.lock:
            return self._row(ref) if 1 <= ref <= len(self._rows) else None

    def append(self, values: Mapping[str, Any], *, deleted: bool = False) -> Row:
        self.store._maybe_fail("append", self.name)
        with self.store.lock:
            row = {name: blank(spec) for name, spec in self.fields.items()}
            for name, value in values.items():
                row[name] = coerce(self.fields[name], value)
            self._rows.append((deleted, row))
            return self._row(len(self._rows))

    def _check(self, ref: int, expect: Mapping[str, Any], live: bool) -> None:
        current = self._row(ref) if 1 <= ref <= len(self._rows) else None
        if current is None or (live and current.deleted):
            raise CasMiss(current, f"record {ref} of {self.name} is not live")
        lckstat = current.values.get("LCKSTAT", " ").strip()
        lckuser = current.values.get("LCKUSER", "").strip()
        if lckstat and lckuser != self.store.user.strip():
            raise Locked(
                f"{self.name} record {ref} is in use by {lckuser or 'someone'}"
            )
        if not self._matches(current.values, expect):
            raise CasMiss(current)

    def update(
        self, ref: int, changes: Mapping[str, Any], *, expect: Mapping[str, Any]
    ) -> Row:
        self.store._maybe_fail("update", self.name)
        with self.store.lock:
            self._check(ref, expect, live=True)
            deleted, values = self._rows[ref - 1]
            new = dict(values)
            for name, value in changes.items():
                new[name] = coerce(self.fields[name], value)
            self._rows[ref - 1] = (deleted, new)
            return self._row(ref)

    def set_deleted(self, ref: int, deleted: bool, *, expect: Mapping[str, Any]) -> Row:
        self.store._maybe_fail("set_deleted", self.name)
        with self.store.lock:
            self._check(ref, expect, live=False)
            self._rows[ref - 1] = (deleted, self._rows[ref - 1][1])
            return self._row(ref)

    def pack(self) -> None:
        """Drop deleted rows and renumber (what FoxPro's PACK does)."""
        with self.store.lock:
            self._rows = [r for r in self._rows if not r[0]]


class MemoryStore:
    """Every logical table of `layouts.TABLES`, per company, in memory."""

    def __init__(self, *, user: str = "AGNT") -> None:
        self.user = user
        self.lock = threading.RLock()
        self.findings: dict[tuple[str, str], list[str]] = {}
        self.offline = False
        self._tables: dict[tuple[str, str], MemoryTable] = {}
        self._failures: list[tuple[str, str, StoreError, int]] = []

    def table(self, company: str, name: str) -> MemoryTable:
        if self.offline:
            raise Unavailable("the data folder is offline")
        layout = TABLES[name]
        key = (company if layout.per_company else "", name)
        with self.lock:
            if key not in self._tables:
                self._tables[key] = MemoryTable(self, name, layout)
            return self._tables[key]

    def check(self, company: str, name: str, *, sample: int | None = 100) -> list[str]:
        if self.offline:
            raise Unavailable("the data folder is offline")
        return list(self.findings.get((company, name), []))

    def close(self) -> None:
        pass

    def fail_next(
        self, op: str, table: str, error: StoreError, *, after: int = 0
    ) -> None:
        """Make the (after+1)-th call of `op` on `table` raise `error` (once)."""
        self._failures.append((op, table, error, after))

    def _maybe_fail(self, op: str, table: str) -> None:
        if self.offline:
            raise Unavailable("the data folder is offline")
        for i, (f_op, f_table, error, after) in enumerate(self._failures):
            if f_op == op and f_table == table:
                if after:
                    self._failures[i] = (f_op, f_table, error, after - 1)
                    return
                del self._failures[i]
                raise error


# --- a small demo company, shaped like the sandbox's seed -------------------------


def month_start(offset: int, base: datetime.date) -> datetime.date:
    index = base.year * 12 + base.month - 1 + offset
    return datetime.date(index // 12, index % 12 + 1, 1)


def period_date(offset: int, today: datetime.date, day: int = 15) -> datetime.date:
    """A date `offset` months from the current period (0 = this month)."""
    return month_start(offset, today).replace(day=day)


def seed_company(store: MemoryStore, company: str, today: datetime.date) -> None:
    """A company like the sandbox's (smaller): periods -12..+3 with the sandbox's
    flags, the XXXX-XX mask, its GL accounts, customers ACME, BLUEOX, HOLDCO (on hold),
    IRONWD (a -75.00 credit memo) and ZEROBL (owes nothing), invoices 10001-10006, a
    paid 10007 and a deleted 10009."""
    store.table(company, "company").append(
        {
            "COMPID": company,
            "COMPNAME": "Memory Trading Co",
            "CURYR": f"{today.year:04d}",
            "CURPRD": f"{today.month:02d}",
        }
    )
    periods = store.table(company, "periods")
    for offset in range(-12, 4):
        start = month_start(offset, today)
        end = month_start(offset + 1, today) - datetime.timedelta(days=1)
        periods.append(
            {
                "COMPID": company,
                "YEARPRD": f"{start.year:04d}{start.month:02d}",
                "BDATE": start,
                "EDATE": end,
                "PCLOSED": offset <= -3,
                "PLOCKED": offset == -2,
                "PERMLCK": offset <= -4,
            }
        )
    stru = store.table(company, "gl_structure")
    stru.append(
        {"COMPID": company, "SEGID": "1", "SEGLEN": Decimal(4), "SEGMASK": "XXXX"}
    )
    stru.append(
        {"COMPID": company, "SEGID": "2", "SEGLEN": Decimal(2), "SEGMASK": "XX"}
    )
    accounts = store.table(company, "gl_accounts")
    for code, desc, stat, deleted in [
        ("1000-00", "Cash - operating", "", False),
        ("1050-00", "Cash - closed bank account", "", True),
        ("1100-00", "Undeposited card receipts", "", False),
        ("1200-00", "Accounts receivable", "", False),
        ("6900-00", "Old bank charges", "I", False),
    ]:
        accounts.append(
            {"GLACNT": code, "GLDESC": desc, "GLSTAT": stat}, deleted=deleted
        )
    customers = store.table(company, "customers")
    for custno, name, credstat in [
        ("ACME", "Acme Supply Co", ""),
        ("BLUEOX", "Blue Ox Hardware", ""),
        ("HOLDCO", "Holdover Contracting", "H"),
        ("IRONWD", "Ironwood Cabinets", ""),
        ("ZEROBL", "Zero Balance Bakery", ""),
    ]:
        customers.append(
            {
                "CUSTNO": custno.ljust(6),
                "COMPANY": name,
                "CONTACT": "Accounts Payable",
                "CITY": "Portland",
                "STATE": "OR",
                "COUNTRY": "USA",
                "EMAIL": f"ap@{custno.lower()}.example",
                "PTERMS": "Net 30",
                "CREDLIMIT": Decimal("10000"),
                "ARACCT": "1200-00",
                "CURRENCY": "USD",
                "CREDSTAT": credstat,
                "CUSTSTAT": "A",
            }
        )
    invoices = store.table(company, "invoices")
    rows = [
        ("10001", "ACME", "100.00", "40.00", ""),
        ("10002", "ACME", "250.00", "0", ""),
        ("10003", "BLUEOX", "80.00", "0", ""),
        ("10004", "HOLDCO", "60.00", "0", ""),
        ("10005", "IRONWD", "500.00", "0", ""),
        ("10006", "ACME", "30.00", "0", ""),
        ("10007", "ZEROBL", "120.00", "120.00", ""),
        ("10008", "IRONWD", "-75.00", "0", "C"),
        ("10009", "ACME", "300.00", "0", ""),
    ]
    for invno, custno, invamt, paid, artype in rows:
        amount, paidamt = Decimal(invamt), Decimal(paid)
        invoices.append(
            {
                "INVNO": invno.rjust(10),
                "CUSTNO": custno.ljust(6),
                "INVDTE": today - datetime.timedelta(days=10),
                "INVAMT": amount,
                "PAIDAMT": paidamt,
                "BALANCE": amount - paidamt,
                "ARTYPE": artype,
                "ORNUM": str(int(invno) + 4_043_000).rjust(10),
            },
            deleted=invno == "10009",
        )
    for row in customers.rows():
        total = sum(
            (i["BALANCE"] for i in invoices.find({"CUSTNO": row["CUSTNO"]})), Decimal(0)
        )
        customers.update(row.ref, {"BALANCE": total}, expect={"CUSTNO": row["CUSTNO"]})
    store.table(company, "counters").append(
        {"SYSID": f"AR{company}", "COUNTER": "RCPTNO", "NEXTNO": "1".rjust(10)}
    )
