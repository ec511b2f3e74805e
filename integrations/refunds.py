"""Refunds and voids post their reversal in Sage Pro (issue 14 point 1).

The status map's "reverse" action (`mappings.status.Action.REVERSE`) lands here, under
the transaction's row lock (`processing._upsert_transaction`):

- a **refund** (its own PayTrace transaction, type REFUND) is linked to its sale
  (`link_sale`: the sale named by the relayed event, else a refund the portal asked
  for, else the one sale with the same invoice, customer and card whose refundable
  remainder covers it), and once the sale's receipt is posted it becomes one credit
  memo posting (§4.7 of the gateway contract). Refunds of one sale add up and never
  exceed it: one that would is refused here with a `refund` review item, and so is
  Sage Pro's `OVER_REFUND`.
- a **void** of a sale whose receipt posted becomes one receipt-reversal posting
  (§4.8); a void before posting cancels the receipt posting and posts nothing; a void
  while the receipt is being sent is decided when that send is over.

What cannot be decided yet waits in a `PendingReversal` row: decided again when the
sale's receipt is recorded (`after_receipt`, called by `integrations.posting`) and by
the sweeper (`sweep`), and sent to review after `REFUND_WAIT_MINUTES`.

Fees: a credit memo carries a refund fee only when the PayTrace connection has an
active `RefundFee` with an amount above zero and a GL rule of purpose `refund_fee`
chooses the fee's account (the suspense account is not used for fees).
"""

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations import sending
from integrations.connectors.base import ConnectorError
from integrations.models import PaymentTransaction, Posting, ReviewItem
from integrations.models.failures import describe_failure
from integrations.models.refunds import ExpectedRefund, PendingReversal, RefundFee
from mappings.fields import business_date
from mappings.formatting import format_money
from mappings.gl import GlFacts, Purpose, choose_gl_account
from mappings.models import GatewayStatus, GlRule

logger = logging.getLogger(__name__)

REFUND_TYPE = "REFUND"
SALE_TYPES = ("SALE", "CAPTURE", "")
# Credit memo postings that hold (or will hold) part of a sale's refundable amount.
LIVE_MEMO = ~Q(state=Posting.State.CANCELLED) & ~Q(last_error_code="OVER_REFUND")
# A receipt posting that nothing has sent yet, or that Sage Pro refused (wrote
# nothing): a void cancels it at once.
UNSENT_STATES = (
    Posting.State.PENDING,
    Posting.State.FAILED,
    Posting.State.NEEDS_REVIEW,
    Posting.State.DEAD,
)


# The codes of the review items a refund or void opens before any posting exists; a
# later decision that goes through closes them.
DECIDED_LATER = (
    "WAITING",
    "OVER_REFUND",
    "AMBIGUOUS_SALE",
    "NO_REFUND_ACCOUNT",
    "SALE_NOT_POSTED",
)


def wait_minutes() -> int:
    return int(settings.REFUND_WAIT_MINUTES)


# --- the portal's own refunds ----------------------------------------------------------


def expect_refund(
    original: PaymentTransaction,
    refund_transaction_id: str,
    amount: Decimal,
    user: Any,
) -> None:
    """Remember that PayTrace refund `refund_transaction_id` refunds `original` (the
    portal asked for it); its event links to that sale, whenever it arrives."""
    from integrations.models.storage import saved_user

    ExpectedRefund.objects.get_or_create(
        connection=original.connection,
        refund_transaction_id=str(refund_transaction_id).strip(),
        defaults={
            "original": original,
            "amount": abs(amount),
            "requested_by": saved_user(user),
        },
    )
    waiting = PendingReversal.objects.filter(
        transaction__connection=original.connection,
        transaction__transaction_id=str(refund_transaction_id).strip(),
    ).exclude(state=PendingReversal.State.DONE)
    for txn_pk in waiting.values_list("transaction_id", flat=True):
        transaction.on_commit(partial(decide_again, txn_pk))


# --- the decision ------------------------------------------------------------------------


def decide_reversal(txn: PaymentTransaction, *, event: Any = None) -> str:
    """What the "reverse" action does for `txn` (locked by the caller); the outcome."""
    if (txn.transaction_type or "").upper() == REFUND_TYPE:
        return decide_refund(txn, event=event)
    if txn.gateway_status == GatewayStatus.VOIDED:
        return decide_void(txn)
    return _reversal_by_hand(txn, event)


def _reversal_by_hand(txn: PaymentTransaction, event: Any) -> str:
    """A status the map reverses that is neither a refund nor a void (a sale PayTrace
    reports as refunded): a person reverses its receipt."""
    receipt = _receipt(txn)
    if receipt is None or receipt.state != Posting.State.POSTED:
        return "nothing posted to reverse"
    ReviewItem.open(
        txn,
        ReviewItem.Kind.REVERSAL,
        f"PayTrace reports {txn.gateway_status} but receipt {receipt.document_number} "
        "is posted in Sage Pro. Reverse it there.",
        event=event,
    )
    return "reversal needs a person"


def _receipt(sale: PaymentTransaction) -> Posting | None:
    return sale.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first()


def _wait(txn: PaymentTransaction, reason: str, *, original_id: str = "") -> str:
    """Keep the refund or void waiting, with its reason (once in its history)."""
    pending, created = PendingReversal.objects.get_or_create(
        transaction=txn, defaults={"reason": reason[:300]}
    )
    changed = created or pending.reason != reason[:300]
    pending.reason = reason[:300]
    pending.original_transaction_id = original_id or pending.original_transaction_id
    if pending.state == PendingReversal.State.DONE:
        pending.state = PendingReversal.State.WAITING
        pending.waiting_since = timezone.now()
    pending.save()
    if changed:
        txn.record("reversal_waiting", reason)
    return f"waiting: {reason}"


def _done(txn: PaymentTransaction, outcome: str) -> str:
    """The reversal is decided: stop waiting, close a waiting item."""
    PendingReversal.objects.filter(transaction=txn).exclude(
        state=PendingReversal.State.DONE
    ).update(
        state=PendingReversal.State.DONE,
        decided_at=timezone.now(),
        reason=outcome[:300],
    )
    for item in ReviewItem.objects.filter(
        transaction=txn,
        kind=ReviewItem.Kind.REFUND,
        state=ReviewItem.State.OPEN,
        posting__isnull=True,
        error_code__in=DECIDED_LATER,
    ):
        item.resolve(None, f"Decided automatically: {outcome}", "auto", {})
    return outcome


def _to_review(
    txn: PaymentTransaction, reason: str, code: str, event: Any = None
) -> str:
    PendingReversal.objects.update_or_create(
        transaction=txn,
        defaults={"state": PendingReversal.State.REVIEW, "reason": reason[:300]},
    )
    ReviewItem.open(txn, ReviewItem.Kind.REFUND, reason, event=event, error_code=code)
    return f"review: {reason}"


# --- refunds -----------------------------------------------------------------------------


def refund_amount(txn: PaymentTransaction) -> Decimal:
    """What a refund gives back: PayTrace's sign on refunds is unverified."""
    return abs(txn.amount)


def refunded_total(sale: PaymentTransaction, *, exclude: int | None = None) -> Decimal:
    """Σ of the sale's refunds whose credit memo is posted or on its way."""
    memos = Posting.objects.filter(
        LIVE_MEMO, kind=Posting.Kind.CREDIT_MEMO, transaction__original=sale
    )
    if exclude is not None:
        memos = memos.exclude(transaction_id=exclude)
    total = Decimal("0.00")
    for amount in memos.values_list("transaction__amount", flat=True):
        total += abs(amount)
    return total


def decide_refund(txn: PaymentTransaction, *, event: Any = None) -> str:
    """Link the refund to its sale and create its credit memo, or wait, or review."""
    if "VOID" in (txn.status_message or "").upper():
        return _refund_voided(txn, event)
    memo = txn.postings.filter(kind=Posting.Kind.CREDIT_MEMO).first()
    if memo is not None:
        return _done(txn, f"credit memo posting already exists ({memo.state})")
    sale, why = link_sale(txn, event)
    if sale is None:
        return why
    # One refund of a sale at a time: the refunded total is read and added to under
    # the sale's row lock.
    sale = PaymentTransaction.objects.select_for_update().get(pk=sale.pk)
    receipt = _receipt(sale)
    if receipt is None or receipt.state != Posting.State.POSTED:
        if receipt is not None and receipt.state == Posting.State.CANCELLED:
            return _to_review(
                txn,
                f"Refund {txn.transaction_id} is for sale {sale.transaction_id}, whose "
                "receipt was cancelled (the sale was voided): nothing in Sage Pro to "
                "refund. Check the refund at PayTrace, then dismiss this item.",
                "SALE_NOT_POSTED",
                event,
            )
        return _wait(txn, f"waiting for the receipt of sale {sale.transaction_id}")
    amount = refund_amount(txn)
    already = refunded_total(sale, exclude=txn.pk)
    if already + amount > sale.amount:
        return _over_refund(txn, sale, amount, already, event)
    sage_conn = receipt.sagepro
    payload, problem = credit_memo_payload(txn, sale, receipt)
    if problem:
        return _to_review(txn, problem, "NO_REFUND_ACCOUNT", event)
    posting, created = sending.create_posting(
        txn, sage_conn, Posting.Kind.CREDIT_MEMO, payload
    )
    if created:
        txn.record(
            "credit_memo_decided",
            f"Credit memo of {format_money(amount, txn.currency)} against receipt "
            f"{receipt.document_number} of sale {sale.transaction_id}: refund account "
            f"{payload['refund_account']}, cash account "
            f"{payload['cash_account'] or '(Sage default)'}",
            amount=amount,
        )
        sending.queue_send(posting)
    return _done(txn, f"credit memo {posting.pk} {posting.state}")


def _refund_voided(txn: PaymentTransaction, event: Any = None) -> str:
    """A refund voided at PayTrace before it settled gives nothing back: its credit
    memo is cancelled if nothing reached Sage Pro, else a person reverses it."""
    memo = (
        Posting.objects.select_for_update()
        .filter(transaction=txn, kind=Posting.Kind.CREDIT_MEMO)
        .first()
    )
    if memo is None:
        return _done(txn, "refund voided before its credit memo: nothing to post")
    if memo.state == Posting.State.CANCELLED:
        return _done(txn, "credit memo already cancelled")
    if memo.state in UNSENT_STATES and _nothing_reached_sage(memo):
        memo.state = Posting.State.CANCELLED
        memo.next_attempt_at = None
        memo.save(update_fields=["state", "next_attempt_at"])
        txn.record("credit_memo_cancelled", "Refund voided: credit memo cancelled.")
        _close_items(txn, memo, "The refund was voided: nothing to post.")
        return _done(txn, "refund voided: credit memo cancelled")
    return _to_review(
        txn,
        f"Refund {txn.transaction_id} was voided at PayTrace, but its credit memo "
        f"{memo.document_number or f'(posting {memo.pk}, {memo.state})'} was already "
        "sent to Sage Pro. Reverse the credit memo in Sage Pro by hand, then resolve "
        "this item.",
        "REFUND_VOIDED",
        event,
    )


def _over_refund(
    txn: PaymentTransaction,
    sale: PaymentTransaction,
    amount: Decimal,
    already: Decimal,
    event: Any = None,
) -> str:
    return _to_review(
        txn, over_refund_reason(txn, sale, amount, already), "OVER_REFUND", event
    )


def over_refund_reason(
    txn: PaymentTransaction, sale: PaymentTransaction, amount: Decimal, already: Decimal
) -> str:
    cur = sale.currency
    remains = max(sale.amount - already, Decimal("0.00"))
    return (
        f"Refund {txn.transaction_id} of {format_money(amount, cur)} is more than what "
        f"remains of sale {sale.transaction_id} ({format_money(sale.amount, cur)}, "
        f"{format_money(already, cur)} already refunded: {format_money(remains, cur)} "
        "remains). Nothing was posted: check the refund at PayTrace, post what is "
        "right in Sage Pro by hand, then resolve this item."
    )


def link_sale(
    txn: PaymentTransaction, event: Any = None
) -> tuple[PaymentTransaction | None, str]:
    """The refund's sale (and `txn.original` set to it), or None and the outcome of
    waiting for it or sending it to review."""
    if txn.original_id is not None:
        return txn.original, ""
    connection = txn.connection
    named = _named_original(txn, event)
    sale: PaymentTransaction | None = None
    how = ""
    if named:
        sale = PaymentTransaction.objects.filter(
            connection=connection, transaction_id=named
        ).first()
        if sale is None:
            return None, _wait(txn, f"waiting for sale {named}", original_id=named)
        how = "named by the refund's event"
    if sale is None:
        expected = (
            ExpectedRefund.objects.filter(
                connection=connection, refund_transaction_id=txn.transaction_id
            )
            .select_related("original")
            .first()
        )
        if expected is not None:
            sale, how = expected.original, "refunded from the portal"
    if sale is None:
        candidates = _candidate_sales(txn)
        if not candidates:
            return None, _wait(
                txn,
                f"waiting for its sale (a sale with invoice "
                f"{txn.invoice_reference or '-'}, customer "
                f"{txn.customer_reference or '-'}, card ending "
                f"{txn.card_last4 or '-'} that covers "
                f"{format_money(refund_amount(txn), txn.currency)})",
            )
        if len(candidates) > 1:
            ids = ", ".join(c.transaction_id for c in candidates[:5])
            return None, _to_review(
                txn,
                f"Refund {txn.transaction_id} could be for any of the sales {ids} "
                "(same invoice, customer and card, each with enough left to refund). "
                "Post its credit memo in Sage Pro by hand against the right receipt, "
                "then resolve this item.",
                "AMBIGUOUS_SALE",
                event,
            )
        sale, how = candidates[0], "the one sale with its invoice, customer and card"
    if sale.pk == txn.pk:
        return None, _to_review(
            txn,
            f"Refund {txn.transaction_id} names itself as its sale.",
            "BAD_ORIGINAL",
            event,
        )
    txn.original = sale
    PaymentTransaction.objects.filter(pk=txn.pk).update(original=sale)
    txn.record(
        "linked_to_sale",
        f"Refund of sale {sale.transaction_id} ({how}).",
        original=sale.transaction_id,
    )
    return sale, ""


def _named_original(txn: PaymentTransaction, event: Any) -> str:
    """The sale's id when the relayed event carried it (kept while the refund waits)."""
    values = []
    if event is not None and isinstance(getattr(event, "payload", None), dict):
        data = event.payload.get("data")
        if isinstance(data, dict):
            values.append(data.get("original_transaction_id"))
    if isinstance(txn.source_record, dict):
        values.append(txn.source_record.get("original_transaction_id"))
    pending = PendingReversal.objects.filter(transaction=txn).first()
    if pending is not None:
        values.append(pending.original_transaction_id)
    for value in values:
        text = str(value or "").strip()
        if text.isascii() and text.isdigit():
            return text
    return ""


def _candidate_sales(txn: PaymentTransaction) -> list[PaymentTransaction]:
    """Sales of the same connection, invoice, customer and card whose refundable
    remainder covers the refund."""
    amount = refund_amount(txn)
    sales = (
        PaymentTransaction.objects.filter(
            connection=txn.connection,
            invoice_reference=txn.invoice_reference,
            customer_reference=txn.customer_reference,
            card_last4=txn.card_last4,
        )
        .filter(
            Q(transaction_type__in=[t for t in SALE_TYPES if t])
            | Q(transaction_type="")
        )
        .exclude(pk=txn.pk)
        .order_by("pk")
    )
    return [
        sale
        for sale in sales
        if sale.amount - refunded_total(sale, exclude=txn.pk) >= amount
    ]


def credit_memo_payload(
    txn: PaymentTransaction, sale: PaymentTransaction, receipt: Posting
) -> tuple[dict[str, Any], str]:
    """The §4.7 body for the refund, or a reason a person must act first."""
    source = txn.connection
    sage_conn = receipt.sagepro
    sent = receipt.payload or {}
    answer = receipt.response or {}
    amount = refund_amount(txn)
    facts = GlFacts(
        transaction_type=txn.transaction_type,
        card_brand=txn.card_brand,
        channel=txn.channel,
        amount=amount,
        currency=txn.currency,
        customer=str(answer.get("custno") or sent.get("custno") or ""),
        invoice=txn.invoice_reference,
    )
    suspense = source.suspense_account or sage_conn.suspense_account
    choice = choose_gl_account(
        facts, GlRule.rules_for(source, Purpose.REFUND), suspense
    )
    if not choice.account:
        return {}, (
            f"Refund {txn.transaction_id} has no refund account: no GL rule of "
            f"purpose 'refund' matches it and connection {source.slug} has no suspense "
            "account. Add a refund GL rule (or a suspense account), then retry."
        )
    applications = sent.get("applications") or answer.get("applications") or []
    first = (
        applications[0] if applications and isinstance(applications[0], dict) else {}
    )
    payload: dict[str, Any] = {
        "custno": str(answer.get("custno") or sent.get("custno") or "").strip(),
        "date": txn.posting_date().isoformat(),
        "amount": f"{amount:.2f}",
        "reference": txn.transaction_id[:40],
        "receipt_no": receipt.document_number.strip(),
        "invno": str(first.get("invno") or "").strip(),
        "refund_account": choice.account,
        "cash_account": str(
            answer.get("gl_account") or receipt.gl_account or ""
        ).strip(),
        "reason": f"PayTrace refund of sale {sale.transaction_id}"[:60],
    }
    fee = _refund_fee(txn, facts)
    if fee is not None:
        payload["fee_amount"], payload["fee_account"] = f"{fee[0]:.2f}", fee[1]
    return payload, ""


def _refund_fee(txn: PaymentTransaction, facts: GlFacts) -> tuple[Decimal, str] | None:
    fee = RefundFee.objects.filter(connection=txn.connection, is_active=True).first()
    if fee is None or fee.amount <= 0:
        return None
    rules = GlRule.rules_for(txn.connection, Purpose.REFUND_FEE)
    choice = choose_gl_account(facts, rules)
    if not choice.account:
        return None
    return fee.amount, choice.account


# --- voids -------------------------------------------------------------------------------


def void_date(txn: PaymentTransaction) -> str:
    moment = txn.status_changed_at or timezone.now()
    return business_date(moment, settings.BUSINESS_TIME_ZONE).isoformat()


def decide_void(txn: PaymentTransaction) -> str:
    """Reverse the posted receipt, cancel one not sent, or wait for a send in flight."""
    reversal = txn.postings.filter(kind=Posting.Kind.RECEIPT_REVERSAL).first()
    if reversal is not None:
        return _done(txn, f"receipt reversal already exists ({reversal.state})")
    receipt = (
        Posting.objects.select_for_update()
        .filter(transaction=txn, kind=Posting.Kind.CASH_RECEIPT)
        .first()
    )
    if receipt is None:
        _close_items(txn, None, "The payment was voided: nothing to post.")
        return _done(txn, "voided before any receipt: nothing to post")
    if receipt.state == Posting.State.CANCELLED:
        return _done(txn, "receipt already cancelled")
    if receipt.state == Posting.State.POSTED:
        payload = {
            "receipt_no": receipt.document_number.strip(),
            "date": void_date(txn),
            "reason": f"PayTrace void of {txn.transaction_id}"[:60],
        }
        posting, created = sending.create_posting(
            txn, receipt.sagepro, Posting.Kind.RECEIPT_REVERSAL, payload
        )
        if created:
            txn.record(
                "reversal_decided",
                f"Voided after receipt {receipt.document_number} posted: reversing it.",
            )
            sending.queue_send(posting)
        return _done(txn, f"receipt reversal {posting.pk} {posting.state}")
    if receipt.state in UNSENT_STATES and _nothing_reached_sage(receipt):
        return _done(txn, cancel_receipt(receipt))
    # In progress, or an earlier attempt's outcome is unknown: decided when the send is
    # over (`after_receipt`), or once the sweeper has asked Sage Pro by key.
    return _wait(txn, f"waiting for receipt posting {receipt.pk} being sent to finish")


def _nothing_reached_sage(receipt: Posting) -> bool:
    """Whether Sage Pro surely holds no receipt for the posting: never sent, stopped by
    our own validation, or refused (a refusal writes nothing)."""
    if receipt.attempts == 0 or receipt.not_sent:
        return True
    return receipt.state == Posting.State.NEEDS_REVIEW


def cancel_receipt(receipt: Posting) -> str:
    """Cancel a receipt posting nothing will send (its sale was voided first)."""
    receipt.state = Posting.State.CANCELLED
    receipt.next_attempt_at = None
    receipt.save(update_fields=["state", "next_attempt_at"])
    receipt.transaction.record(
        "receipt_cancelled",
        "Voided before its receipt posted: the receipt posting is cancelled, nothing "
        "is posted to Sage Pro.",
    )
    _close_items(
        receipt.transaction,
        receipt,
        "The payment was voided before its receipt posted: nothing to post.",
    )
    return "voided before posting: receipt posting cancelled"


def _close_items(txn: PaymentTransaction, receipt: Posting | None, why: str) -> None:
    """Resolve the voided sale's open items (of its receipt, or of no posting)."""
    items = ReviewItem.objects.filter(transaction=txn, state=ReviewItem.State.OPEN)
    mine = Q(posting__isnull=True) | (Q(posting=receipt) if receipt else Q())
    for item in items.filter(mine):
        item.resolve(None, why, "auto", {})


# --- the senders ---------------------------------------------------------------------------


def _send_memo(sage: Any, posting: Posting) -> dict[str, Any]:
    return sage.post_credit_memo(posting.idempotency_key, posting.payload)


def _find_memo(sage: Any, posting: Posting) -> dict[str, Any] | None:
    found = sage.find_credit_memos(idempotency_key=posting.idempotency_key)
    return found[0] if found else None


def _memo_posted(posting: Posting, result: dict[str, Any]) -> None:
    posting.transaction.record(
        "credit_memo_posted",
        f"Sage Pro credit memo {result.get('memo_no', '?')} against receipt "
        f"{result.get('receipt_no') or posting.payload.get('receipt_no')}",
    )


def _memo_refused(posting: Posting, exc: ConnectorError) -> str | None:
    """Sage Pro's `OVER_REFUND` is routed like the portal's own check."""
    if exc.code != "OVER_REFUND":
        return None
    txn = posting.transaction
    with transaction.atomic():
        posting.state = Posting.State.NEEDS_REVIEW
        posting.next_attempt_at = None
        posting.last_error = describe_failure(exc)[:2000]
        posting.last_error_code = "OVER_REFUND"
        posting.save()
        sale = txn.original
        if sale is not None:
            reason = over_refund_reason(
                txn, sale, refund_amount(txn), refunded_total(sale, exclude=txn.pk)
            )
        else:
            reason = f"Sage Pro refused refund {txn.transaction_id}: {exc.detail}"
        ReviewItem.open(
            txn,
            ReviewItem.Kind.REFUND,
            f"{reason} (Sage Pro: {exc.detail})",
            posting=posting,
            error_code="OVER_REFUND",
        )
    return "over refund"


def _send_reversal(sage: Any, posting: Posting) -> dict[str, Any]:
    body = {k: v for k, v in posting.payload.items() if k != "receipt_no"}
    return sage.reverse_cash_receipt(
        posting.idempotency_key, posting.payload["receipt_no"], body
    )


def _find_reversal(sage: Any, posting: Posting) -> dict[str, Any] | None:
    receipt = _receipt(posting.transaction)
    if receipt is None:
        return None
    found = sage.find_cash_receipts(idempotency_key=receipt.idempotency_key)
    return found[0] if found and found[0].get("reversed") else None


def _reversal_posted(posting: Posting, result: dict[str, Any]) -> None:
    posting.transaction.record(
        "receipt_reversed",
        f"Sage Pro receipt {result.get('receipt_no', '?')} reversed "
        f"({result.get('reversal_date') or posting.payload.get('date')})",
    )


sending.register(
    sending.DocumentSender(
        kind=Posting.Kind.CREDIT_MEMO,
        label="credit memo",
        send=_send_memo,
        find=_find_memo,
        number=lambda result: str(result.get("memo_no", "")),
        on_posted=_memo_posted,
        on_refused=_memo_refused,
        review_kind=ReviewItem.Kind.REFUND,
    )
)
sending.register(
    sending.DocumentSender(
        kind=Posting.Kind.RECEIPT_REVERSAL,
        label="receipt reversal",
        send=_send_reversal,
        find=_find_reversal,
        number=lambda result: str(result.get("receipt_no", "")),
        on_posted=_reversal_posted,
        review_kind=ReviewItem.Kind.REFUND,
    )
)


# --- deciding again: when a receipt is recorded, and by the sweeper ------------------------


def decide_again(transaction_pk: int) -> str:
    """Decide a waiting refund or void again, under its row lock."""
    with transaction.atomic():
        txn = (
            PaymentTransaction.objects.select_for_update()
            .select_related("connection")
            .filter(pk=transaction_pk)
            .first()
        )
        if txn is None:
            return "gone"
        return decide_reversal(txn)


def after_receipts(postings: list[Posting]) -> None:
    """`after_receipt` for a batch of recorded receipts: one query when nothing waits
    (the usual case), instead of one a receipt. Never raises."""
    receipts = [p for p in postings if p.kind == Posting.Kind.CASH_RECEIPT]
    if not receipts:
        return
    try:
        if not PendingReversal.objects.exclude(
            state=PendingReversal.State.DONE
        ).exists():
            return
    except Exception:
        logger.exception("deciding the waiting refunds and voids failed")
        return
    for posting in receipts:
        after_receipt(posting)


def after_receipt(posting: Posting) -> None:
    """A receipt posting's send is over (posted, or refused): decide again the refunds
    and voids waiting for it. Never raises (the sweeper decides them later)."""
    if posting.kind != Posting.Kind.CASH_RECEIPT:
        return
    try:
        sale = posting.transaction
        waiting = PendingReversal.objects.exclude(
            state=PendingReversal.State.DONE
        ).filter(
            Q(transaction=sale)
            | Q(transaction__original=sale)
            | Q(
                transaction__connection_id=sale.connection_id,
                original_transaction_id=sale.transaction_id,
            )
            | Q(
                transaction__connection_id=sale.connection_id,
                transaction__original__isnull=True,
                original_transaction_id="",
                transaction__invoice_reference=sale.invoice_reference,
                transaction__card_last4=sale.card_last4,
            )
        )
        for pk in list(waiting.values_list("transaction_id", flat=True)):
            decide_again(pk)
    except Exception:
        logger.exception(
            "posting %s: deciding the waiting refunds and voids failed; the sweeper "
            "decides them again",
            posting.pk,
        )


def sweep(now: datetime | None = None) -> int:
    """Decide the waiting refunds and voids again; send those waiting longer than
    `REFUND_WAIT_MINUTES` to review. Returns how many were decided."""
    now = now or timezone.now()
    decided = 0
    rows = list(
        PendingReversal.objects.filter(state=PendingReversal.State.WAITING).values_list(
            "pk", "transaction_id"
        )[:200]
    )
    for pk, txn_pk in rows:
        try:
            _check_unknown_receipt(txn_pk)
            outcome = decide_again(txn_pk)
        except Exception:
            logger.exception("waiting reversal %s: deciding again failed", pk)
            continue
        if not outcome.startswith("waiting"):
            decided += 1
            continue
        _time_out(pk, now)
    return decided + _retry_missing_accounts()


def _retry_missing_accounts() -> int:
    """Refunds sent to review for want of a refund account, decided again once their
    connection has one (a refund GL rule or a suspense account)."""
    decided = 0
    items = ReviewItem.objects.filter(
        kind=ReviewItem.Kind.REFUND,
        state=ReviewItem.State.OPEN,
        error_code="NO_REFUND_ACCOUNT",
        posting__isnull=True,
    ).select_related("transaction__connection")[:100]
    for item in items:
        txn = item.transaction
        if txn is None or not _has_refund_account(txn):
            continue
        try:
            if decide_again(txn.pk).startswith("credit memo"):
                decided += 1
        except Exception:
            logger.exception("refund %s: deciding again failed", txn.pk)
    return decided


def _has_refund_account(txn: PaymentTransaction) -> bool:
    source = txn.connection
    sage_conn = source.sagepro
    return bool(
        GlRule.rules_for(source, Purpose.REFUND)
        or source.suspense_account.strip()
        or (sage_conn is not None and sage_conn.suspense_account.strip())
    )


def _check_unknown_receipt(txn_pk: int) -> None:
    """A voided sale whose receipt's last attempt has an unknown outcome: ask Sage Pro
    by key (no lock held) and record what it holds, so the void can be decided."""
    txn = PaymentTransaction.objects.filter(pk=txn_pk).first()
    if txn is None or txn.gateway_status != GatewayStatus.VOIDED:
        return
    receipt = _receipt(txn)
    if (
        receipt is None
        or receipt.state not in UNSENT_STATES
        or _nothing_reached_sage(receipt)
    ):
        return
    sage = receipt.sagepro.sage()
    found = sage.find_cash_receipts(idempotency_key=receipt.idempotency_key)
    with transaction.atomic():
        locked = Posting.objects.select_for_update().get(pk=receipt.pk)
        if locked.state != receipt.state or locked.attempts != receipt.attempts:
            return  # a worker took it meanwhile: its send decides
        if found:
            locked.mark_posted(found[0], recovered=True)
        else:  # Sage Pro holds none: nothing reached it, and nothing will now
            _done(txn, cancel_receipt(locked))


def _time_out(pk: int, now: datetime) -> None:
    limit = now - timedelta(minutes=wait_minutes())
    with transaction.atomic():
        pending = (
            PendingReversal.objects.select_for_update()
            .select_related("transaction")
            .filter(pk=pk, state=PendingReversal.State.WAITING, waiting_since__lt=limit)
            .first()
        )
        if pending is None:
            return
        txn = pending.transaction
        pending.state = PendingReversal.State.REVIEW
        pending.save(update_fields=["state"])
        what = (
            "Refund" if (txn.transaction_type or "").upper() == REFUND_TYPE else "Void"
        )
        ReviewItem.open(
            txn,
            ReviewItem.Kind.REFUND,
            f"{what} {txn.transaction_id} has been {pending.reason} for more than "
            f"{wait_minutes()} minutes. It is still decided by itself when that "
            "arrives; if it never will, post the reversal in Sage Pro by hand and "
            "resolve this item.",
            error_code="WAITING",
        )


# --- a reviewer settles a refund item (issue 14 follow-up) -----------------------------


class RefundPlan:
    """What deciding a refund against `sale` would do, worked out without writing:
    `payload` when a credit memo would be posted, `waits` when the sale's receipt is
    not posted yet, else `problem` says why nothing can be."""

    def __init__(
        self,
        txn: PaymentTransaction,
        sale: PaymentTransaction,
        *,
        amount: Decimal,
        already: Decimal,
        receipt: Posting | None,
        payload: dict[str, Any] | None = None,
        waits: bool = False,
        problem: str = "",
    ) -> None:
        self.txn, self.sale, self.amount, self.already = txn, sale, amount, already
        self.receipt, self.payload, self.waits, self.problem = (
            receipt,
            payload,
            waits,
            problem,
        )

    @property
    def remains(self) -> Decimal:
        return max(self.sale.amount - self.already, Decimal("0.00"))


def is_refund(txn: PaymentTransaction) -> bool:
    return (txn.transaction_type or "").upper() == REFUND_TYPE


def is_sale(txn: PaymentTransaction) -> bool:
    return (txn.transaction_type or "").upper() in SALE_TYPES


def sale_problem(txn: PaymentTransaction, sale: PaymentTransaction) -> str:
    """Why `sale` cannot be the refund `txn`'s sale ("" when it can)."""
    if sale.pk == txn.pk:
        return f"Refund {txn.transaction_id} cannot be its own sale."
    if sale.connection_id != txn.connection_id:
        return (
            f"Transaction {sale.transaction_id} is connection {sale.connection.slug}'s; "
            f"refund {txn.transaction_id} is connection {txn.connection.slug}'s. A "
            "refund is linked to a sale of its own PayTrace account only."
        )
    if not is_sale(sale):
        return (
            f"Transaction {sale.transaction_id} is a {sale.transaction_type or 'refund'}"
            ", not a sale: a refund is linked to the sale it gives money back from."
        )
    if sale.currency != txn.currency:
        return (
            f"Sale {sale.transaction_id} is in {sale.currency}, refund "
            f"{txn.transaction_id} in {txn.currency}."
        )
    return ""


def plan_refund(txn: PaymentTransaction, sale: PaymentTransaction) -> RefundPlan:
    """What `decide_refund` would do once the refund is linked to `sale` (no writes)."""
    amount = refund_amount(txn)
    already = refunded_total(sale, exclude=txn.pk)
    receipt = _receipt(sale)
    plan = partial(
        RefundPlan, txn, sale, amount=amount, already=already, receipt=receipt
    )
    problem = sale_problem(txn, sale)
    if problem:
        return plan(problem=problem)
    if already + amount > sale.amount:
        return plan(problem=over_refund_reason(txn, sale, amount, already))
    if receipt is None or receipt.state != Posting.State.POSTED:
        if receipt is not None and receipt.state == Posting.State.CANCELLED:
            return plan(
                problem=f"Sale {sale.transaction_id}'s receipt was cancelled (the sale "
                "was voided): nothing in Sage Pro to refund."
            )
        return plan(waits=True)
    payload, problem = credit_memo_payload(txn, sale, receipt)
    if problem:
        return plan(problem=problem)
    return plan(payload=payload)


def sales_to_link(txn: PaymentTransaction, limit: int = 20) -> list[RefundPlan]:
    """The sales a reviewer may link the refund to: the same connection's sales with
    its invoice, customer or card, newest first, each with what remains of it."""
    keys = Q()
    for field in ("invoice_reference", "customer_reference", "card_last4"):
        value = (getattr(txn, field) or "").strip()
        if value:
            keys |= Q(**{field: value})
    if not keys:
        return []
    sales = (
        PaymentTransaction.objects.filter(keys, connection=txn.connection)
        .filter(
            Q(transaction_type__in=[t for t in SALE_TYPES if t])
            | Q(transaction_type="")
        )
        .exclude(pk=txn.pk)
        .order_by("-pk")[:limit]
    )
    return [plan_refund(txn, sale) for sale in sales]


def planned_sale(txn: PaymentTransaction) -> tuple[PaymentTransaction | None, str]:
    """The sale `decide_refund` would link the refund to now (no writes), or None
    and why not."""
    if txn.original_id is not None:
        return txn.original, ""
    named = _named_original(txn, None)
    if named:
        sale = PaymentTransaction.objects.filter(
            connection=txn.connection, transaction_id=named
        ).first()
        return sale, "" if sale else f"its sale {named} has not arrived yet"
    expected = (
        ExpectedRefund.objects.filter(
            connection=txn.connection, refund_transaction_id=txn.transaction_id
        )
        .select_related("original")
        .first()
    )
    if expected is not None:
        return expected.original, ""
    candidates = _candidate_sales(txn)
    if len(candidates) == 1:
        return candidates[0], ""
    if not candidates:
        return None, "no sale with its invoice, customer and card covers it"
    return None, "it fits several sales"


def link_by_review(txn: PaymentTransaction, sale: PaymentTransaction, user: Any) -> str:
    """A reviewer links the refund `txn` (locked by the caller) to `sale` and decides
    it again; the outcome. A refund that then waits for the sale's receipt waits
    like one the pipeline linked (decided when the receipt posts, by the sweeper)."""
    problem = sale_problem(txn, sale)
    if problem:
        raise ValueError(problem)
    if txn.original_id is not None and txn.original_id != sale.pk:
        raise ValueError(
            f"Refund {txn.transaction_id} is already linked to sale "
            f"{txn.original.transaction_id}."  # type: ignore[union-attr]
        )
    if txn.original_id is None:
        txn.original = sale
        PaymentTransaction.objects.filter(pk=txn.pk).update(original=sale)
        txn.record(
            "linked_to_sale",
            f"Refund of sale {sale.transaction_id} (linked by {user or 'a reviewer'}).",
            user=user,
            original=sale.transaction_id,
        )
    return decide_by_review(txn)


def decide_by_review(txn: PaymentTransaction) -> str:
    """Decide the refund `txn` (locked by the caller) again for a reviewer."""
    outcome = decide_reversal(txn)
    if outcome.startswith("waiting"):
        PendingReversal.objects.filter(transaction=txn).exclude(
            state=PendingReversal.State.DONE
        ).update(state=PendingReversal.State.WAITING, waiting_since=timezone.now())
    return outcome
