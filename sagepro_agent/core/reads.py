"""Reads: look rows up by normalised key and render them as the sandbox does.

Every lookup here sees live rows only (FoxPro's `SET DELETED ON`); the change feeds
render deleted rows through the same functions with `deleted` added.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from sagepro_agent.core import keys
from sagepro_agent.core.errors import not_found
from sagepro_agent.core.money import ZERO, money
from sagepro_agent.store.base import Row, Store


def text(value: Any) -> str:
    """A C or M value as the contract answers it: trailing padding removed."""
    return (value or "").rstrip()


def date_or_none(value: datetime.date | None) -> str | None:
    return value.isoformat() if value else None


def timestamp(value: datetime.datetime | None) -> str | None:
    """A T value (naive, meaning UTC) as ISO 8601 with its offset."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC).isoformat()


def num(value: Any) -> Decimal:
    return Decimal(value) if value is not None else ZERO


# --- company ------------------------------------------------------------------------


def company_row(store: Store, compid: str) -> Row | None:
    rows = store.table(compid, "company").find({"COMPID": compid})
    return rows[0] if rows else None


def get_company(store: Store, value: str | None, configured: list[str]) -> Row:
    """The live `SYCCOMP` row for the `Sage-Company` header (absent = "01")."""
    try:
        compid = keys.normalize_company(value or "01")
    except keys.InvalidKeyError as exc:
        raise not_found("COMPANY_NOT_FOUND", str(exc)) from exc
    row = company_row(store, compid) if compid in configured else None
    if row is None:
        raise not_found("COMPANY_NOT_FOUND", f"no company {compid!r}")
    return row


def current_yearprd(company: Row) -> str:
    return f"{text(company['CURYR']).strip()}{text(company['CURPRD']).strip()}"


def gl_mask(store: Store, compid: str) -> str:
    rows = store.table(compid, "gl_structure").find({"COMPID": compid})
    masks = [text(r["SEGMASK"]).strip() for r in sorted(rows, key=lambda r: r["SEGID"])]
    return "-".join(masks) or keys.DEFAULT_MASK


# --- customers ----------------------------------------------------------------------


def find_customer(store: Store, compid: str, custno: str) -> Row | None:
    rows = store.table(compid, "customers").find({"CUSTNO": custno})
    return rows[0] if rows else None


def get_customer(store: Store, compid: str, custno: str) -> Row:
    """A live customer or 404 CUSTOMER_NOT_FOUND."""
    try:
        key = keys.pad_custno(custno)
    except keys.InvalidKeyError as exc:
        raise not_found("CUSTOMER_NOT_FOUND", str(exc)) from exc
    row = find_customer(store, compid, key)
    if row is None:
        raise not_found("CUSTOMER_NOT_FOUND", f"no customer {key.strip()!r}")
    return row


def customer_json(row: Row, compid: str) -> dict[str, Any]:
    return {
        "custno": text(row["CUSTNO"]).strip(),
        "company": text(row["COMPANY"]),
        "company_id": compid,
        "contact": text(row["CONTACT"]),
        "address1": text(row["ADDRESS1"]),
        "address2": text(row["ADDRESS2"]),
        "city": text(row["CITY"]),
        "state": text(row["STATE"]),
        "zip": text(row["ZIP"]),
        "country": text(row["COUNTRY"]),
        "phone": text(row["PHONE"]),
        "email": text(row["EMAIL"]),
        "terms": text(row["PTERMS"]),
        "balance": money(num(row["BALANCE"])),
        "credit_limit": money(num(row["CREDLIMIT"])),
        "currency": text(row["CURRENCY"]),
        "credit_status": text(row["CREDSTAT"]).strip(),
        "status": text(row["CUSTSTAT"]).strip(),
        "ar_account": text(row["ARACCT"]).strip(),
        "last_payment_date": date_or_none(row["LASTPAY"]),
        "last_payment_amount": money(num(row["LPYMT"])),
    }


# --- invoices -----------------------------------------------------------------------


def is_open(row: Row) -> bool:
    return not row.deleted and num(row["BALANCE"]) != ZERO


def get_invoice(store: Store, compid: str, invno: str) -> Row:
    try:
        key = keys.pad_invno(invno)
    except keys.InvalidKeyError as exc:
        raise not_found("INVOICE_NOT_FOUND", str(exc)) from exc
    rows = store.table(compid, "invoices").find({"INVNO": key})
    if not rows:
        raise not_found("INVOICE_NOT_FOUND", f"no invoice {key.strip()!r}")
    return rows[0]


def invoice_json(row: Row) -> dict[str, Any]:
    return {
        "invno": text(row["INVNO"]).strip(),
        "custno": text(row["CUSTNO"]).strip(),
        "invamt": money(num(row["INVAMT"])),
        "paidamt": money(num(row["PAIDAMT"])),
        "balance": money(num(row["BALANCE"])),
        "invdte": date_or_none(row["INVDTE"]),
        "artype": text(row["ARTYPE"]).strip(),
        "status": "open" if is_open(row) else "closed",
        "ornum": text(row["ORNUM"]).strip(),
        "ponum": text(row["PONUM"]).strip(),
    }


def search_invoices(
    store: Store, compid: str, status: str, custno: str | None
) -> list[Row]:
    table = store.table(compid, "invoices")
    rows = table.find({"CUSTNO": custno}) if custno else list(table.rows())
    if status == "open":
        rows = [r for r in rows if num(r["BALANCE"]) != ZERO]
    elif status == "closed":
        rows = [r for r in rows if num(r["BALANCE"]) == ZERO]
    return sorted(rows, key=lambda r: (r["INVNO"], r.ref))


# --- GL accounts and periods ----------------------------------------------------------


def find_gl_account(store: Store, compid: str, code: str) -> Row | None:
    if len(code) > keys.GLACNT_WIDTH:
        return None
    rows = store.table(compid, "gl_accounts").find(
        {"GLACNT": code.ljust(keys.GLACNT_WIDTH)}
    )
    return rows[0] if rows else None


def get_gl_account(store: Store, compid: str, glacnt: str) -> Row:
    code = keys.format_glacnt(glacnt, gl_mask(store, compid))
    row = find_gl_account(store, compid, code)
    if row is None:
        raise not_found("ACCOUNT_NOT_FOUND", f"no GL account {code!r}")
    return row


def is_active(row: Row) -> bool:
    return text(row["GLSTAT"]) != "I" and not row.deleted


def gl_account_json(row: Row) -> dict[str, Any]:
    return {
        "glacnt": text(row["GLACNT"]).strip(),
        "gldesc": text(row["GLDESC"]),
        "glstat": text(row["GLSTAT"]),
        "active": is_active(row),
    }


def periods(store: Store, compid: str) -> list[Row]:
    rows = store.table(compid, "periods").find({"COMPID": compid})
    return sorted(rows, key=lambda r: (r["YEARPRD"], r.ref))


def period_json(row: Row, current: str) -> dict[str, Any]:
    yearprd = text(row["YEARPRD"]).strip()
    return {
        "yearprd": yearprd,
        "bdate": date_or_none(row["BDATE"]),
        "edate": date_or_none(row["EDATE"]),
        "pclosed": bool(row["PCLOSED"]),
        "plocked": bool(row["PLOCKED"]),
        "permlck": bool(row["PERMLCK"]),
        "current": yearprd == current,
    }


# --- receipts -----------------------------------------------------------------------


def receipt_row(store: Store, compid: str, receipt_no: str) -> Row | None:
    rows = store.table(compid, "receipts").find({"RCPTNO": receipt_no})
    return rows[0] if rows else None


def receipt_json(
    store: Store, compid: str, header: Row, idempotency_key: str
) -> dict[str, Any]:
    lines = store.table(compid, "receipt_lines").find({"RCPTNO": header["RCPTNO"]})
    return {
        "receipt_no": text(header["RCPTNO"]).strip(),
        "custno": text(header["CUSTNO"]).strip(),
        "date": date_or_none(header["DTEPAID"]),
        "amount": money(num(header["AMOUNT"])),
        "method": text(header["PAYMETH"]),
        "reference": text(header["REFNO"]),
        "idempotency_key": idempotency_key,
        "applications": [
            {
                "invno": text(line["INVNO"]).strip(),
                "amount": money(num(line["PAIDAMT"])),
                "requested_amount": money(num(line["REQAMT"])),
            }
            for line in lines
        ],
        "applied_amount": money(num(header["APPLIED"])),
        "unapplied_amount": money(num(header["UNAPPLIED"])),
        "gl_account": text(header["GLACNT"]).strip(),
        "created_at": timestamp(header["CREATED"]),
        "deleted": header.deleted,
        # Receipt reversal (contract §4.8) is not supported at a site yet (501).
        "reversed": False,
        "reversal_date": None,
        "reversal_reason": "",
    }
