"""Shared expectations of the conformance tests, taken from docs/sagepro-gateway.md."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from typing import Any

from tests.conformance.targets import Answer, Target

MONEY = re.compile(r"^-?\d+\.\d{2}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

CUSTOMER_FIELDS = {
    "custno", "company", "company_id", "contact", "address1", "address2", "city",
    "state", "zip", "country", "phone", "email", "terms", "balance", "credit_limit",
    "currency", "credit_status", "status", "ar_account", "last_payment_date",
    "last_payment_amount",
}  # fmt: skip
CUSTOMER_MONEY = ("balance", "credit_limit", "last_payment_amount")
INVOICE_FIELDS = {
    "invno", "custno", "invamt", "paidamt", "balance", "invdte", "artype", "status",
    "ornum", "ponum",
}  # fmt: skip
INVOICE_MONEY = ("invamt", "paidamt", "balance")
RECEIPT_FIELDS = {
    "receipt_no", "custno", "date", "amount", "method", "reference", "idempotency_key",
    "applications", "applied_amount", "unapplied_amount", "gl_account", "created_at",
    "deleted", "reversed", "reversal_date", "reversal_reason",
}  # fmt: skip

# The seeded baseline (docs/sagepro-gateway.md section 6, "Seeding").
SEEDED_CUSTOMERS = 12
OPEN_INVOICES = [str(n) for n in range(10001, 10057)]
PAID_INVOICE = "10057"  # ZEROBL, fully paid
CREDIT_MEMO = "10058"  # IRONWD, -75.00
DELETED_INVOICE = "10059"  # ACME, deleted


def is_money(value: Any) -> bool:
    return isinstance(value, str) and bool(MONEY.match(value))


def dec(value: str) -> Decimal:
    assert is_money(value), f"{value!r} is not a money string with 2 places"
    return Decimal(value)


def expect_error(
    answer: Answer, status: int, code: str, *, fields: set[str] | None = None
) -> dict[str, Any]:
    """Assert an error answer in the contract's shape; return its body."""
    assert answer.status == status, answer
    body = answer.json
    assert isinstance(body, dict), answer
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    if fields is not None:
        assert set(body.get("errors", {})) == fields, body
        for messages in body["errors"].values():
            assert messages and all(isinstance(m, str) and m for m in messages), body
    return body


def ok(answer: Answer, status: int = 200) -> Any:
    assert answer.status == status, answer
    return answer.json


def check_invoice(row: dict[str, Any]) -> None:
    """The shape and the invariant `invamt - paidamt = balance` of one invoice."""
    assert set(row) >= INVOICE_FIELDS, row
    for name in INVOICE_MONEY:
        assert is_money(row[name]), (name, row)
    assert dec(row["invamt"]) - dec(row["paidamt"]) == dec(row["balance"]), row
    assert row["status"] == ("open" if dec(row["balance"]) != 0 else "closed"), row
    assert (
        row["invno"] == row["invno"].strip() and row["custno"] == row["custno"].strip()
    )
    assert row["invdte"] is None or DATE.match(row["invdte"]), row


def check_customer(row: dict[str, Any]) -> None:
    assert set(row) >= CUSTOMER_FIELDS, row
    for name in CUSTOMER_MONEY:
        assert is_money(row[name]), (name, row)
    assert row["custno"] == row["custno"].strip()
    assert row["last_payment_date"] is None or DATE.match(row["last_payment_date"])


def check_receipt(row: dict[str, Any]) -> None:
    assert set(row) == RECEIPT_FIELDS, row
    for name in ("amount", "applied_amount", "unapplied_amount"):
        assert is_money(row[name]), (name, row)
    assert dec(row["applied_amount"]) + dec(row["unapplied_amount"]) == dec(
        row["amount"]
    )
    assert sum((dec(a["amount"]) for a in row["applications"]), Decimal("0")) == dec(
        row["applied_amount"]
    )
    for app in row["applications"]:
        assert set(app) == {"invno", "amount", "requested_amount"}, app
        assert dec(app["amount"]) <= dec(app["requested_amount"]), app
    assert re.fullmatch(r"\d{6}", row["receipt_no"]), row
    created = datetime.datetime.fromisoformat(row["created_at"])
    assert created.tzinfo is not None, row
    assert DATE.match(row["date"]), row


def receipt_body(
    target: Target,
    *,
    custno: str = "ACME",
    amount: str = "10.00",
    reference: str = "pt-1",
    applications: list[dict[str, Any]] | None = None,
    offset: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "custno": custno,
        "date": target.period_date(offset).isoformat(),
        "amount": amount,
        "method": "VISA",
        "reference": reference,
        "applications": applications if applications is not None else [],
    }
    body.update(extra)
    return body


def invoice(target: Target, invno: str) -> dict[str, Any]:
    return ok(target.call("GET", f"/invoices/{invno}"))


def customer(target: Target, custno: str) -> dict[str, Any]:
    return ok(target.call("GET", f"/customers/{custno}"))


def receipts_for_key(target: Target, key: str) -> list[dict[str, Any]]:
    return ok(target.get("/cash-receipts", idempotency_key=key))["results"]


def check_customer_balance(target: Target, custno: str) -> None:
    """`ARCUST.BALANCE` = the sum of the customer's live invoice balances."""
    rows = ok(target.get("/invoices", custno=custno))["results"]
    total = sum((dec(r["balance"]) for r in rows), Decimal("0.00"))
    assert dec(customer(target, custno)["balance"]) == total
