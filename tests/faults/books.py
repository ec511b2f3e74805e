"""Independent readers of a fixture company's books, for the fault tests.

The agent writes FoxPro files with its own codec and `dbflib`; these checks read them
back with other code: `dbfread` for the rows (numbers parsed as `Decimal`, never
float), a plain header walk for the record numbers and delete flags, Perl's
`XBase::cdx` (`tests/agent/cdxcheck.py`) for the index, and the fixture store's full
integrity check (`sample=None`: every key of every tag) for the file structure.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from dbfread import DBF, FieldParser

from sagepro_agent.layouts import TABLES, physical_name

COMPANY = "01"
CENT = Decimal("0.01")


class DecimalParser(FieldParser):
    """dbfread's parser with N/F fields as exact Decimals."""

    def parseN(self, field, data):  # noqa: ANN001, ANN201, N802 (dbfread's name)
        text = data.strip().strip(b"*").strip()
        return Decimal(text.decode("ascii")) if text else None

    parseF = parseN  # noqa: N815


def dbf_path(folder: Path, name: str, company: str = COMPANY) -> Path:
    return Path(folder) / f"{physical_name(name, company)}.DBF"


def delete_flags(path: Path) -> list[bool]:
    """Each record's delete flag, in record-number order, from the header alone."""
    with open(path, "rb") as fh:
        head = fh.read(32)
        count, header_len, rec_len = struct.unpack("<IHH", head[4:12])
        flags = []
        for recno in range(count):
            fh.seek(header_len + recno * rec_len)
            flags.append(fh.read(1) == b"*")
    return flags


def rows(folder: Path, name: str, company: str = COMPANY) -> list[dict[str, Any]]:
    """The live rows of a table, each with its record number under `_recno`."""
    path = dbf_path(folder, name, company)
    live = [i + 1 for i, deleted in enumerate(delete_flags(path)) if not deleted]
    table = DBF(
        str(path),
        parserclass=DecimalParser,
        char_decode_errors="strict",
        ignore_missing_memofile=False,
    )
    records = [dict(r) for r in table]
    assert len(records) == len(live), (
        f"{path.name}: dbfread reads {len(records)} live records, the header walk "
        f"{len(live)}: the file is damaged"
    )
    for record, recno in zip(records, live, strict=True):
        record["_recno"] = recno
    return records


def text(value: Any) -> str:
    return (value or "").strip() if isinstance(value, str) else str(value or "")


@dataclass
class Books:
    """What a user of Sage Pro would see: invoices, customers, receipts, lines."""

    invoices: dict[str, dict[str, Any]]
    customers: dict[str, dict[str, Any]]
    receipts: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)

    def receipts_for(self, reference: str) -> list[dict[str, Any]]:
        return [r for r in self.receipts if text(r["REFNO"]) == reference]


def read_books(folder: Path) -> Books:
    invoices = {text(r["INVNO"]): r for r in rows(folder, "invoices")}
    customers = {text(r["CUSTNO"]): r for r in rows(folder, "customers")}
    receipts = rows(folder, "receipts")
    lines = rows(folder, "receipt_lines")
    counts = {
        name: len(delete_flags(dbf_path(folder, name)))
        for name in ("receipts", "receipt_lines", "invoices", "customers")
    }
    return Books(invoices, customers, receipts, lines, counts)


def pick_invoices(folder: Path, count: int = 2) -> tuple[str, list[str]]:
    """A customer with `count` open invoices (balance over 50.00), and their numbers."""
    books = read_books(folder)
    by_customer: dict[str, list[str]] = {}
    for invno, inv in sorted(books.invoices.items()):
        if text(inv["ARTYPE"]) != "C" and inv["BALANCE"] > Decimal("50.00"):
            by_customer.setdefault(text(inv["CUSTNO"]), []).append(invno)
    for custno, invnos in sorted(by_customer.items()):
        if len(invnos) >= count:
            return custno, invnos[:count]
    raise AssertionError(f"the seed has no customer with {count} open invoices")


def check_invariants(folder: Path) -> Books:
    """The books balance and nothing is left half-written:
    `invamt - paidamt = balance` on every invoice, every customer's balance is the sum
    of its live invoices, no row carries the agent's in-progress marker, no two live
    receipts share a reference, and every line belongs to a live receipt."""
    books = read_books(folder)
    for invno, inv in books.invoices.items():
        assert inv["INVAMT"] - inv["PAIDAMT"] == inv["BALANCE"], (
            f"invoice {invno} shows a balance of {inv['BALANCE']} although "
            f"{inv['INVAMT']} - {inv['PAIDAMT']} paid = {inv['INVAMT'] - inv['PAIDAMT']}"
        )
    for custno, cust in books.customers.items():
        total = sum(
            (
                i["BALANCE"]
                for i in books.invoices.values()
                if text(i["CUSTNO"]) == custno
            ),
            Decimal(0),
        )
        assert cust["BALANCE"] == total, (
            f"customer {custno} shows a balance of {cust['BALANCE']} but its open "
            f"invoices add up to {total}"
        )
    for name, table in (
        ("invoice", books.invoices.values()),
        ("customer", books.customers.values()),
        ("receipt", books.receipts),
        ("receipt line", books.lines),
    ):
        for row in table:
            assert text(row.get("LCKSTAT")) == "", (
                f"a {name} (record {row['_recno']}) is still marked in progress "
                f"by {text(row.get('LCKUSER'))!r}: Sage Pro users cannot edit it"
            )
    references = [text(r["REFNO"]) for r in books.receipts]
    doubled = sorted({r for r in references if references.count(r) > 1})
    assert not doubled, f"the same payment was booked twice: references {doubled}"
    numbers = {text(r["RCPTNO"]) for r in books.receipts}
    orphans = [text(line["RCPTNO"]) for line in books.lines]
    assert set(orphans) <= numbers, (
        f"receipt lines {sorted(set(orphans) - numbers)} belong to no live receipt"
    )
    return books


def check_integrity(folder: Path) -> None:
    """The fixture store's full watchdog check on every table: header count vs file
    size, delete flags, memo pointers and every key of every CDX tag."""
    from sagepro_agent.store.fixture import FixtureStore

    store = FixtureStore(folder, user="CHEK")
    try:
        for name in TABLES:
            problems = store.check(COMPANY, name, sample=None)
            assert problems == [], (
                f"{physical_name(name, COMPANY)} fails its integrity check, so Sage "
                f"Pro could misread it: {problems}"
            )
    finally:
        store.close()


def check_index_finds(folder: Path, receipt: dict[str, Any]) -> None:
    """Perl's XBase::cdx finds the receipt, once, in its RCPTNO and REFNO tags."""
    from tests.agent.cdxcheck import cdx_keys

    path = str(dbf_path(folder, "receipts"))
    for tag, value in (("RCPTNO", receipt["RCPTNO"]), ("REFNO", receipt["REFNO"])):
        wanted = value.encode("ascii").rstrip(b" ")
        hits = [
            recno for key, recno in cdx_keys(path, tag) if key.rstrip(b" ") == wanted
        ]
        assert hits == [receipt["_recno"]], (
            f"the {tag} index of ARCASH finds {value.strip()!r} at records {hits}, "
            f"not once at record {receipt['_recno']}: Sage Pro would not find it"
        )


def check_receipt_once(
    folder: Path,
    reference: str,
    before: Books,
    applications: dict[str, Decimal],
    *,
    receipt_no: str | None = None,
) -> dict[str, Any]:
    """Exactly one live receipt carries `reference`, its lines are the applications,
    each invoice was paid once (PAIDAMT raised by exactly the amount applied), and the
    whole folder passes the invariants, the integrity check and the index check."""
    books = check_invariants(folder)
    found = books.receipts_for(reference)
    assert len(found) == 1, (
        f"payment {reference} is booked {len(found)} times in Sage Pro, not once"
    )
    receipt = found[0]
    number = text(receipt["RCPTNO"])
    if receipt_no is not None:
        assert number == receipt_no.strip(), (
            f"the portal was told receipt {receipt_no} but Sage Pro holds {number}"
        )
    lines = {
        text(line["INVNO"]): line["PAIDAMT"]
        for line in books.lines
        if text(line["RCPTNO"]) == number
    }
    assert lines == applications, (
        f"receipt {number} applies {lines}, not the requested {applications}"
    )
    assert receipt["APPLIED"] == sum(applications.values(), Decimal(0))
    for invno, amount in applications.items():
        paid_before = before.invoices[invno]["PAIDAMT"]
        paid_after = books.invoices[invno]["PAIDAMT"]
        assert paid_after - paid_before == amount, (
            f"invoice {invno} went from {paid_before} to {paid_after} paid: the "
            f"payment of {amount} was applied {(paid_after - paid_before) / amount} times"
        )
    check_integrity(folder)
    check_index_finds(folder, receipt)
    return receipt
