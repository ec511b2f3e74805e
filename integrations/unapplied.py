"""Unapplied cash: what still waits on a posted receipt, and applying it.

A posted cash receipt whose `unapplied_amount` is above zero (an overpayment, a payment
put on account, a suspected duplicate kept) holds cash that waits for an invoice. What
still waits is that amount less the applications of it posted or on their way
(`Posting.Kind.APPLICATION` on the same transaction, any state but cancelled) and less
the refunds of it asked of PayTrace (`UnappliedRefund`, any state but refused).
`waiting_for` answers that; the review decisions (`integrations.review`), the finance
list and the automatic rule all ask it, so they never disagree.

An application is sent through `integrations.sending` (docs/sagepro-gateway.md §4.9):
`POST /cash-receipts/{receipt_no}/applications` under the posting's idempotency key,
so a repeat is the same request. Once posted, the mirror reads the invoices again and
the receipt's open review items close when nothing waits any more.

The automatic rule (`UnappliedCashRule`, one per Sage Pro connection): when an invoice
appears later for a customer whose cash waits (the mirror's sync sees a new invoice; a
storefront order creates one), `apply_waiting_cash` applies the cash once: the key is
per receipt and invoice, and the receipt's row is locked while what waits is worked
out, so two workers make one application.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from integrations import mirror, sending
from integrations.connectors.base import ConnectorError
from integrations.models import (
    Connection,
    MirroredInvoice,
    PaymentTransaction,
    Posting,
    ReviewItem,
)
from integrations.models.failures import describe_failure
from integrations.models.unapplied import UnappliedCashRule, UnappliedRefund
from mappings.fields import business_date
from mappings.formatting import format_money

logger = logging.getLogger(__name__)

ZERO = Decimal("0.00")
APPLICATION = Posting.Kind.APPLICATION
# Refunds that took (or may have taken) the cash: only a refusal gives it back.
HOLDING_REFUNDS = (
    UnappliedRefund.State.REQUESTED,
    UnappliedRefund.State.REFUNDED,
    UnappliedRefund.State.UNKNOWN,
)
# Sage Pro's refusals of an application that leave the cash waiting (§4.9).
GIVES_BACK = frozenset(
    {
        "OVER_APPLICATION",
        "INVOICE_NOT_FOUND",
        "INVOICE_NOT_OPEN",
        "RECEIPT_REVERSED",
        "RECEIPT_NOT_FOUND",
    }
)
# The items that are about a receipt's unapplied cash: closed once nothing waits.
CASH_ITEM_KINDS = (
    ReviewItem.Kind.OVERPAYMENT,
    ReviewItem.Kind.POSSIBLE_DUPLICATE,
    ReviewItem.Kind.UNMATCHED,
)


@dataclass(frozen=True)
class Waiting:
    """The unapplied cash of one posted receipt, and what is already spoken for."""

    receipt: Posting
    receipt_no: str
    custno: str
    currency: str
    unapplied: Decimal  # what Sage Pro left unapplied when it posted the receipt
    applied: Decimal  # applications posted or on their way since
    refunded: Decimal  # refunds of it asked of PayTrace

    @property
    def amount(self) -> Decimal:
        """What still waits for an invoice (never below zero)."""
        return max(self.unapplied - self.applied - self.refunded, ZERO)

    @property
    def posted_at(self) -> Any:
        return self.receipt.posted_at or self.receipt.created_at

    def describe(self) -> str:
        return (
            f"{format_money(self.amount, self.currency)} of receipt {self.receipt_no} "
            f"waits unapplied on customer {self.custno}'s account"
        )


def receipt_customer(receipt: Posting) -> str:
    """The Sage Pro customer a receipt was posted to, as the mirror keys it."""
    answer = receipt.response if isinstance(receipt.response, dict) else {}
    payload = receipt.payload if isinstance(receipt.payload, dict) else {}
    return mirror.mirror_key(answer.get("custno") or payload.get("custno"))


def application_amount(posting: Posting) -> Decimal:
    """What an application takes of the cash: Sage Pro's applied amount once posted,
    the amounts asked until then."""
    answer = posting.response if isinstance(posting.response, dict) else {}
    if posting.state == Posting.State.POSTED and answer.get("applied_amount") not in (
        None,
        "",
    ):
        try:
            return Decimal(str(answer["applied_amount"]))
        except ArithmeticError:
            pass
    lines = (posting.payload or {}).get("applications") or []
    total = ZERO
    for line in lines:
        if isinstance(line, dict):
            try:
                total += Decimal(str(line.get("amount") or "0"))
            except ArithmeticError:
                continue
    return total


def posted_receipt(txn: PaymentTransaction) -> Posting | None:
    """The transaction's posted cash receipt, if it left cash unapplied."""
    return (
        txn.postings.filter(
            kind=Posting.Kind.CASH_RECEIPT,
            state=Posting.State.POSTED,
            unapplied_amount__gt=0,
        )
        .select_related("transaction", "sagepro")
        .first()
    )


def waiting_for(
    txn: PaymentTransaction, *, receipt: Posting | None = None
) -> Waiting | None:
    """The cash that waits on the transaction's receipt (None: no receipt left any)."""
    receipt = receipt or posted_receipt(txn)
    if receipt is None:
        return None
    return waiting_many([receipt])[receipt.pk]


def waiting_many(receipts: Iterable[Posting]) -> dict[int, Waiting]:
    """`waiting_for` of several receipts, in three queries (the finance list)."""
    receipts = list(receipts)
    txn_ids = [r.transaction_id for r in receipts]
    applied: dict[int, Decimal] = {}
    for posting in Posting.objects.filter(
        transaction_id__in=txn_ids, kind=APPLICATION
    ).exclude(state=Posting.State.CANCELLED):
        applied[posting.transaction_id] = applied.get(
            posting.transaction_id, ZERO
        ) + application_amount(posting)
    refunded: dict[int, Decimal] = {}
    for refund in UnappliedRefund.objects.filter(
        transaction_id__in=txn_ids, state__in=HOLDING_REFUNDS
    ):
        refunded[refund.transaction_id] = (
            refunded.get(refund.transaction_id, ZERO) + refund.amount
        )
    return {
        r.pk: Waiting(
            receipt=r,
            receipt_no=r.document_number,
            custno=receipt_customer(r),
            currency=r.transaction.currency,
            unapplied=r.unapplied_amount or ZERO,
            applied=applied.get(r.transaction_id, ZERO),
            refunded=refunded.get(r.transaction_id, ZERO),
        )
        for r in receipts
    }


def receipts_with_cash(sage_conn: Connection | None = None) -> list[Posting]:
    """Posted receipts that left cash unapplied (some of it may be applied since)."""
    rows = Posting.objects.filter(
        kind=Posting.Kind.CASH_RECEIPT,
        state=Posting.State.POSTED,
        unapplied_amount__gt=0,
    ).select_related("transaction")
    if sage_conn is not None:
        rows = rows.filter(sagepro=sage_conn)
    return list(rows.order_by("posted_at", "pk"))


def waiting_receipt_ids() -> list[int]:
    """The receipts whose cash still waits, for the finance list."""
    waiting = waiting_many(receipts_with_cash())
    return [pk for pk, w in waiting.items() if w.amount > 0]


# --- the application document ------------------------------------------------------


def application_payload(
    waiting: Waiting, lines: list[tuple[str, Decimal]], on: date | None = None
) -> dict[str, Any]:
    """The §4.9 body, with the receipt it is applied from (kept out of the body)."""
    on = on or business_date(timezone.now(), settings.BUSINESS_TIME_ZONE)
    return {
        "receipt_no": waiting.receipt_no,
        "date": on.isoformat(),
        "applications": [
            {"invno": invno, "amount": f"{amount:.2f}"} for invno, amount in lines
        ],
    }


def application_key(txn: PaymentTransaction, suffix: str) -> str:
    """The idempotency key `sending.create_posting` gives an application."""
    key = Posting.key_for(txn.connection, txn.transaction_id, APPLICATION)
    return f"{key}-{suffix}"[:120]


def _send(sage: Any, posting: Posting) -> dict[str, Any]:
    payload = posting.payload or {}
    body = {"date": payload.get("date"), "applications": payload.get("applications")}
    return sage.apply_unapplied_cash(
        posting.idempotency_key, str(payload.get("receipt_no", "")), body
    )


def _find(sage: Any, posting: Posting) -> dict[str, Any] | None:
    # §4.9 has no look-up: sending again under the same key answers the stored result.
    return None


def _number(result: dict[str, Any]) -> str:
    receipt = result.get("receipt") if isinstance(result, dict) else None
    return str((receipt or {}).get("receipt_no") or "")


def _applied_words(result: dict[str, Any], currency: str) -> str:
    lines = [
        f"{format_money(line.get('amount'), currency)} to invoice "
        f"{str(line.get('invno', '')).strip()}"
        for line in result.get("applications") or []
        if isinstance(line, dict)
    ]
    return ", ".join(lines) or "nothing"


def on_application_posted(posting: Posting, result: dict[str, Any]) -> None:
    """Read the invoices again into the mirror, say what was applied on the payment's
    history, and close the receipt's items once nothing waits."""
    txn = posting.transaction
    for line in result.get("applications") or []:
        invno = str((line or {}).get("invno") or "").strip()
        if not invno:
            continue
        try:
            mirror.refresh_invoice(posting.sagepro, invno)
        except Exception as exc:  # the scheduled sync catches up
            logger.warning(
                "application %s posted; invoice %s not refreshed: %s",
                posting.pk,
                invno,
                describe_failure(exc),
            )
    txn.record(
        "unapplied_applied",
        f"Unapplied cash of receipt {_number(result)} applied in Sage Pro: "
        f"{_applied_words(result, txn.currency)}",
        posting=posting.pk,
    )
    waiting = waiting_for(txn)
    if waiting is not None and waiting.amount > 0:
        return
    for item in ReviewItem.objects.select_for_update().filter(
        transaction=txn, state=ReviewItem.State.OPEN, kind__in=CASH_ITEM_KINDS
    ):
        item.resolve(
            None,
            f"Unapplied cash applied: {_applied_words(result, txn.currency)} "
            f"(receipt {_number(result)}); nothing waits any more",
            "unapplied_applied",
            {"posting": posting.pk},
        )


def on_application_refused(posting: Posting, exc: ConnectorError) -> str | None:
    """Sage Pro refused to apply (an invoice paid or gone meanwhile): nothing was
    applied, so the cash waits again and a reviewer is told why."""
    if exc.code not in GIVES_BACK:
        return None
    txn = posting.transaction
    with transaction.atomic():
        Posting.objects.filter(pk=posting.pk).update(
            state=Posting.State.CANCELLED,
            next_attempt_at=None,
            last_error=f"Refused by Sage Pro: {describe_failure(exc)}"[:2000],
            last_error_code=(exc.code or "")[:40],
        )
        waiting = waiting_for(txn)
        ReviewItem.open(
            txn,
            ReviewItem.Kind.OVERPAYMENT,
            f"Sage Pro refused to apply the unapplied cash of receipt "
            f"{(posting.payload or {}).get('receipt_no', '?')} ({exc.code}: "
            f"{describe_failure(exc)}). Nothing was applied; "
            + (waiting.describe() if waiting else "the cash still waits")
            + ": apply it to another open invoice, refund it, or leave it on account.",
            posting=posting,
            error_code=(exc.code or "")[:40],
        )
    return "refused"


sending.register(
    sending.DocumentSender(
        kind=APPLICATION,
        label="application of unapplied cash",
        send=_send,
        find=_find,
        number=_number,
        on_posted=on_application_posted,
        on_refused=on_application_refused,
        review_kind=ReviewItem.Kind.OVERPAYMENT,
    )
)


# --- the automatic rule ----------------------------------------------------------------


def apply_waiting_cash(sage_connection: Connection, invno: str) -> Posting | None:
    """Apply cash that waits for the invoice's customer to a new invoice, as the
    connection's rule allows; at most once per receipt and invoice.

    Returns the application posting (the one made earlier for the same receipt and
    invoice, if any), or None when the rule is off or no cash fits.
    """
    rule = UnappliedCashRule.objects.filter(
        sagepro=sage_connection, enabled=True
    ).first()
    if rule is None:
        return None
    try:
        invoice = sage_connection.mirror().get_invoice(invno)
    except ConnectorError as exc:
        logger.warning(
            "unapplied cash rule: invoice %s not read: %s", invno, describe_failure(exc)
        )
        raise
    if invoice is None or Decimal(invoice["balance"]) <= 0:
        return None
    custno = mirror.mirror_key(invoice["custno"])
    since = timezone.now() - timedelta(days=rule.max_age_days)
    base = (sage_connection.base_currency or "USD").upper()
    for receipt in receipts_with_cash(sage_connection):
        if (
            receipt_customer(receipt) != custno
            or (receipt.posted_at or receipt.created_at) < since
            or receipt.transaction.currency.upper() != base
        ):
            continue
        posting = _apply_by_rule(rule, receipt, invoice)
        if posting is not None:
            return posting
    return None


def _apply_by_rule(
    rule: UnappliedCashRule, receipt: Posting, invoice: dict[str, Any]
) -> Posting | None:
    txn = receipt.transaction
    invno = str(invoice["invno"]).strip()
    balance = Decimal(invoice["balance"])
    suffix = f"auto-{mirror.mirror_key(invno)}"
    with transaction.atomic():
        # One decision at a time about this receipt's cash (reviewers and workers).
        locked = Posting.objects.select_for_update().get(pk=receipt.pk)
        existing = Posting.objects.filter(
            idempotency_key=application_key(txn, suffix)
        ).first()
        if existing is not None:
            return existing
        waiting = waiting_for(txn, receipt=locked)
        if waiting is None or waiting.amount <= 0:
            return None
        if (
            rule.amount_mode == UnappliedCashRule.AmountMode.EXACT
            and waiting.amount != balance
        ):
            return None
        share = min(waiting.amount, balance)
        posting, created = sending.create_posting(
            txn,
            rule.sagepro,
            APPLICATION,
            application_payload(waiting, [(invno, share)]),
            key_suffix=suffix,
        )
        if created:
            txn.record(
                "unapplied_rule",
                f"{format_money(share, txn.currency)} of the unapplied cash of receipt "
                f"{waiting.receipt_no} applied to new invoice {invno} of customer "
                f"{waiting.custno} by the {rule.describe()}",
                rule=rule.pk,
                invno=invno,
                amount=share,
                posting=posting.pk,
            )
            sending.queue_send(posting)
    return posting


def apply_waiting_cash_task(sage_connection_id: int, invnos: list[str]) -> str:
    """django-q2 entry point: the rule for the invoices a sync found new."""
    connection = Connection.objects.get(pk=sage_connection_id)
    made = [
        posting.pk
        for invno in invnos
        if (posting := apply_waiting_cash(connection, invno)) is not None
    ]
    return f"{len(made)} application(s) of unapplied cash"


def after_new_invoices(connection: Connection, rows: Iterable[MirroredInvoice]) -> None:
    """Called by the mirror's sync inside its transaction, with invoices it had not
    held before: once the sync commits, a task applies waiting cash to those of
    customers whose cash waits (nothing at all while the rule is off)."""
    if not UnappliedCashRule.objects.filter(sagepro=connection, enabled=True).exists():
        return
    waiting_customers = {
        waiting.custno
        for waiting in waiting_many(receipts_with_cash(connection)).values()
        if waiting.amount > 0
    }
    invnos = sorted(
        row.invno
        for row in rows
        if not row.deleted
        and row.balance > 0
        and mirror.mirror_key(row.custno) in waiting_customers
    )
    if not invnos:
        return
    connection_id = connection.pk

    def wake() -> None:
        async_task(
            "integrations.unapplied.apply_waiting_cash_task",
            connection_id,
            invnos,
            task_name=f"apply-waiting-cash-{connection_id}-{invnos[0]}"[:100],
        )

    # As `queueing.queue`: on the ORM broker the task row commits with the sync's page
    # (a worker sees it only then); another broker publishes after the commit.
    if settings.Q_CLUSTER.get("orm"):
        wake()
    else:
        transaction.on_commit(wake)
