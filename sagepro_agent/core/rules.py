"""Sage Pro's rules for a cash receipt (contract section 4.3, steps 4-8), over a Store.

Reads only: a refusal here means nothing was written. Messages are the sandbox's.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from sagepro_agent.core import keys, reads
from sagepro_agent.core.errors import GatewayError, locked, refuse
from sagepro_agent.core.money import ZERO, cents
from sagepro_agent.core.validation import ReceiptRequest
from sagepro_agent.store.base import Row, Store


def check_customer(store: Store, compid: str, request: ReceiptRequest) -> Row:
    customer = reads.find_customer(store, compid, request.custno)
    if customer is None:
        raise refuse("CUSTOMER_NOT_FOUND", f"no customer {request.custno.strip()!r}")
    return customer


def period_refusal(period: Row, current: str) -> tuple[str, str] | None:
    """Why a document dated in this period may not be posted, or None.

    A permanently locked period is usually closed as well; the lock is the stronger
    reason, so it is checked first."""
    yearprd = reads.text(period["YEARPRD"]).strip()
    if period["PERMLCK"] or period["PLOCKED"]:
        kind = "permanently locked" if period["PERMLCK"] else "locked"
        return "PERIOD_LOCKED", f"period {yearprd} is {kind}"
    if period["PCLOSED"]:
        return "PERIOD_CLOSED", f"period {yearprd} is closed"
    if current and yearprd > current:
        return (
            "FUTURE_PERIOD",
            f"period {yearprd} is after the current period {current}",
        )
    return None


def check_period(store: Store, company: Row, date: datetime.date) -> Row:
    compid = reads.text(company["COMPID"]).strip()
    containing = [
        p
        for p in reads.periods(store, compid)
        if p["BDATE"] and p["EDATE"] and p["BDATE"] <= date <= p["EDATE"]
    ]
    if not containing:
        raise refuse("PERIOD_NOT_DEFINED", f"no fiscal period contains {date}")
    period = containing[0]
    refusal = period_refusal(period, reads.current_yearprd(company))
    if refusal:
        raise refuse(*refusal)
    return period


def account_code(store: Store, compid: str, glacnt: str) -> str:
    return keys.format_glacnt(glacnt, reads.gl_mask(store, compid)) if glacnt else ""


def check_gl_account(store: Store, compid: str, glacnt: str) -> str:
    """Refuse an unknown, deleted or inactive account; return it as `GLACNT` stores
    it, trimmed ("" when the receipt names none)."""
    if not glacnt:
        return ""
    code = account_code(store, compid, glacnt)
    account = reads.find_gl_account(store, compid, code)
    if account is None:
        raise refuse("ACCOUNT_NOT_FOUND", f"no GL account {code!r}")
    if not reads.is_active(account):
        raise refuse("ACCOUNT_INACTIVE", f"GL account {code!r} is inactive")
    return reads.text(account["GLACNT"]).strip()


def check_over_application(request: ReceiptRequest) -> None:
    requested_total = sum((amount for _, amount in request.applications), ZERO)
    if requested_total > request.amount:
        raise refuse(
            "OVER_APPLICATION",
            f"applications total {requested_total} exceeds the receipt amount "
            f"{request.amount}",
        )


def plan_applications(
    store: Store, compid: str, request: ReceiptRequest
) -> list[tuple[Row, Decimal, Decimal]]:
    """Each application's invoice, requested and applied amount (at most the balance),
    in request order. Invoices must be live, the customer's, and open."""
    table = store.table(compid, "invoices")
    plan: list[tuple[Row, Decimal, Decimal]] = []
    for invno, requested in request.applications:
        found = table.find({"INVNO": invno})
        invoice = found[-1] if found else None
        if invoice is None or invoice["CUSTNO"] != request.custno:
            raise refuse(
                "INVOICE_NOT_FOUND",
                f"no invoice {invno.strip()!r} for customer {request.custno.strip()!r}",
            )
        balance = cents(reads.num(invoice["BALANCE"]))
        if balance <= ZERO:
            raise refuse(
                "INVOICE_NOT_OPEN",
                f"invoice {invno.strip()!r} has no balance to pay (balance {balance})",
            )
        plan.append((invoice, requested, min(requested, balance)))
    return plan


def object_lock(row: Row, what: str) -> GatewayError | None:
    """423 when a Sage user (or an unfinished entry of ours) holds the row's
    `LCKSTAT` object lock."""
    status = reads.text(row.get("LCKSTAT", "")).strip()
    if not status:
        return None
    user = reads.text(row.get("LCKUSER", "")).strip() or "another user"
    return locked(f"{what} is in use by {user}")
