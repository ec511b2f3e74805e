"""What a reviewer decides about a review item, a posting or an event.

Apply to an invoice (or several), post on account, mark as a duplicate, dismiss,
correct and retry, retry, or add a note. The admin, the API and the tests call these;
each business refusal raises `ReviewError`, whose message is what the reviewer sees.
Pressing a decision twice, or two reviewers deciding at once, has the effect of one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from integrations import documents, learning, mirror
from integrations.connectors.base import ConnectorError, NotFoundError
from integrations.documents import Application
from integrations.documents.matching import (
    invoice_problem,
    matching_invoice,
    matching_payment,
    matching_rules,
)
from integrations.models import (
    Connection,
    Event,
    PaymentTransaction,
    Posting,
    ReviewDecision,
    ReviewItem,
    saved_user,
)
from integrations.processing import create_receipt_posting, queue
from mappings import matching


class ReviewError(Exception):
    """A reviewer's decision was refused; the message says why, in their words."""


class CorrectionRefused(ReviewError):
    """Corrected values were refused before anything was saved or sent."""


# --- postings and events ---------------------------------------------------------------


def retry_posting(
    posting: Posting, user: AbstractBaseUser | None = None, *, queue_send: bool = True
) -> bool:
    """Queue a failed, dead or needs-review posting to be sent again now.

    Safe when pressed twice at once: only one caller moves it back to pending.
    Returns False when it was already posted or being sent. With `queue_send=False`
    the caller sends it itself (the dead-letter replay, to keep the order).
    """
    retryable = [Posting.State.FAILED, Posting.State.DEAD, Posting.State.NEEDS_REVIEW]
    with transaction.atomic():
        moved = Posting.objects.filter(pk=posting.pk, state__in=retryable).update(
            state=Posting.State.PENDING, next_attempt_at=None, attempts=0
        )
        if not moved:
            return False
        posting.refresh_from_db()
        posting.transaction.record(
            "retry_requested", "Retry now (attempt count reset)", user=user
        )
        for item in ReviewItem.objects.filter(
            posting=posting, state=ReviewItem.State.OPEN
        ):
            ReviewDecision.objects.create(
                item=item,
                user=saved_user(user),
                action="retry",
                detail={"posting": posting.pk},
            )
        if queue_send:
            queue("send_posting", posting.pk)
    return True


def reprocess_event(event: Event, user: AbstractBaseUser | None = None) -> bool:
    """Run an event through the pipeline again (after a status-map row was added, or
    an invoice created). Returns False when it is queued or running already."""
    with transaction.atomic():
        moved = Event.objects.filter(
            pk=event.pk,
            state__in=[Event.State.PROCESSED, Event.State.FAILED, Event.State.DEAD],
        ).update(
            state=Event.State.QUEUED, attempts=0, next_attempt_at=None, last_error=""
        )
        if not moved:
            return False
        txn = PaymentTransaction.objects.filter(
            connection_id=event.connection_id, transaction_id=event.transaction_id
        ).first()
        if txn is not None:
            txn.record(
                "reprocess_requested",
                f"Event {event.event_id} queued again",
                event=event,
                user=user,
            )
        queue("process_event", event.pk)
    return True


def queue_replay(
    *,
    ids: list[int] | None = None,
    since: datetime | None = None,
    user_id: int | None = None,
) -> None:
    """Queue one dead-letter replay (it runs in a single worker, in order)."""
    async_task(
        "integrations.tasks.replay_dead_letters",
        ids,
        since.isoformat() if since else None,
        user_id,
        task_name="replay-dead-letters",
    )


# --- review items ----------------------------------------------------------------------


def invoice_candidates(
    txn: PaymentTransaction, limit: int = 3
) -> list[matching.Candidate]:
    """The best open invoices for a payment a person has to place, with their scores:
    those its reference may name and the open invoices of the customer who paid (of
    every customer when the payer is not known)."""
    sage_conn = txn.connection.sagepro
    if sage_conn is None:
        return []
    placement = documents.place(txn, sage_conn)
    customer = placement.decision.customer
    invoices = dict(placement.invoices)
    for invoice in sage_conn.mirror().list_open_invoices(customer):
        invoices.setdefault(str(invoice["invno"]).strip().upper(), invoice)
    payment = replace(matching_payment(txn), customer=customer)
    history: dict[str, int] = {}
    if txn.card_last4:
        for posting in (
            Posting.objects.filter(
                transaction__connection=txn.connection,
                transaction__card_last4=txn.card_last4,
                state=Posting.State.POSTED,
            )
            .exclude(transaction=txn)
            .only("payload")[:200]
        ):
            custno = str(posting.payload.get("custno", "")).strip().upper()
            history[custno] = history.get(custno, 0) + 1
    return matching.candidates(
        payment,
        [matching_invoice(i) for i in invoices.values()],
        matching.choose_rule(payment, matching_rules(txn.connection)),
        history,
        limit,
    )


def retry_review_item(item: ReviewItem, user: AbstractBaseUser | None = None) -> str:
    """Retry whatever the item is about: its posting if it has one, else its event.

    The item is resolved; if the problem is still there, processing opens a new one.
    Raises ReviewError when there is nothing to retry.
    """
    with transaction.atomic():
        item = (
            ReviewItem.objects.select_for_update(of=("self",))
            .select_related("posting", "event")
            .get(pk=item.pk)
        )
        if item.state != ReviewItem.State.OPEN:
            raise ReviewError(f"Review item {item.pk} is already {item.state}.")
        event = item.event
        if event is None and item.transaction is not None:
            event = (
                Event.objects.filter(
                    connection_id=item.transaction.connection_id,
                    transaction_id=item.transaction.transaction_id,
                )
                .order_by("-occurred_at")
                .first()
            )
        if item.posting is not None and item.posting.state != Posting.State.POSTED:
            retried = retry_posting(item.posting, user)
            what = f"posting {item.posting.pk}"
        elif event is not None:
            retried = reprocess_event(event, user)
            what = f"event {event.event_id}"
        else:
            raise ReviewError(
                f"Review item {item.pk} has no posting or event to retry."
            )
        if not retried:
            raise ReviewError(f"The {what} is already queued or being sent.")
        item.state = ReviewItem.State.RESOLVED
        item.resolved_at = timezone.now()
        item.resolved_by = saved_user(user)
        item.resolution = f"Retried ({what})"
        item.save()
        ReviewDecision.objects.create(
            item=item, user=item.resolved_by, action="retry", detail={"what": what}
        )
    return what


def apply_review_item(
    item: ReviewItem, invno: str, user: AbstractBaseUser | None = None
) -> Posting:
    """Resolve an item by applying its payment to one invoice, up to its balance.

    Raises ReviewError with a message for the reviewer when the invoice is unknown,
    not open, or belongs to another customer. Pressing it twice (or two reviewers at
    once) creates one posting.
    """
    if not invno.strip():
        raise ReviewError("Enter the Sage Pro invoice number to apply the payment to.")
    return apply_review_item_split(item, [(invno, None)], user)


def apply_review_item_split(
    item: ReviewItem,
    allocations: list[tuple[str, Decimal | None]],
    user: AbstractBaseUser | None = None,
) -> Posting:
    """Apply a payment across one or several invoices of one customer.

    Each allocation is (invoice number, amount); an amount of None takes what is left
    of the payment, up to that invoice's balance. Whatever is not allocated stays on
    the receipt as unapplied cash. Raises ReviewError with a reviewer-facing message.
    """
    txn, sage_conn = _reviewable(item)
    if not allocations:
        raise ReviewError("Name at least one invoice.")
    whole = len(allocations) == 1 and allocations[0][1] is None  # up to its balance
    if not whole and txn.currency.upper() != (sage_conn.base_currency or "USD").upper():
        raise ReviewError(
            f"A {txn.currency} payment is applied to one invoice at a time (the rate is applied when it is booked)."
        )
    lines = _allocate(txn, sage_conn, allocations)
    summary = ", ".join(
        f"{str(inv['invno']).strip()} ({share})" for inv, share in lines
    )
    first = str(lines[0][0]["invno"]).strip()
    resolution = (
        f"Applied to invoice {first}" if whole else f"Applied to invoices {summary}"
    )
    with transaction.atomic():
        item, posting = _locked_open_item(item, resolution)
        if posting is not None:
            return posting
        document = documents.build_cash_receipt(
            txn,
            lines[0][0],
            sage_conn=sage_conn,
            # One invoice up to its balance: the builder's cap applies.
            applications=None
            if whole
            else tuple(
                Application(str(inv["invno"]).strip(), share) for inv, share in lines
            ),
        )
        posting = create_receipt_posting(txn, sage_conn, document)
        _replace_document(posting, document)
        item.resolve(
            user,
            resolution,
            "apply",
            {
                "allocations": [
                    [str(inv["invno"]).strip(), str(share)] for inv, share in lines
                ],
                "posting": posting.pk,
            },
        )
        learning.observe(
            item,
            str(lines[0][0]["custno"]),
            [str(inv["invno"]).strip() for inv, _ in lines],
            user,
        )
        queue("send_posting", posting.pk)
    return posting


def _allocate(
    txn: PaymentTransaction,
    sage_conn: Connection,
    allocations: list[tuple[str, Decimal | None]],
) -> list[tuple[dict[str, Any], Decimal]]:
    """Each invoice with the share of the payment it takes, checked against its
    balance, the payment and the customer.

    The invoices are read from the mirror; one the mirror would refuse is read again
    from Sage Pro first, so a stale copy never refuses a reviewer by itself.
    """
    reader = sage_conn.mirror()
    remaining = txn.amount
    lines: list[tuple[dict[str, Any], Decimal]] = []
    for invno, amount in allocations:
        invno = invno.strip()
        try:
            invoice = reader.get_invoice(invno)
            if not reader.fresh and _would_refuse(invoice, invno, amount):
                invoice = mirror.refresh_invoice(
                    sage_conn, invno, gateway=reader.gateway
                )
        except ConnectorError as exc:
            raise ReviewError(
                f"Sage Pro could not be asked about invoice {invno}: {exc}. Try again shortly."
            ) from exc
        problem = invoice_problem(invoice, invno, "")
        if problem:
            raise ReviewError(problem)
        balance = Decimal(invoice["balance"])
        share = min(remaining, balance) if amount is None else amount
        exponent = share.normalize().as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -2:
            raise ReviewError(f"{share} for invoice {invno} is not an amount in cents.")
        if share <= 0:
            raise ReviewError(
                f"Nothing is left of the payment to apply to invoice {invno}."
            )
        if share > balance:
            raise ReviewError(
                f"{share} is more than invoice {invno}'s balance {balance}."
            )
        remaining -= share
        if remaining < 0:
            raise ReviewError(
                f"The amounts add up to more than the payment of {txn.amount}."
            )
        lines.append((invoice, share))
    customers = {str(inv["custno"]).strip() for inv, _ in lines}
    if len(customers) > 1:
        raise ReviewError(
            f"The invoices belong to different customers ({', '.join(sorted(customers))}); a receipt is for one customer."
        )
    return lines


def post_on_account(
    item: ReviewItem, user: AbstractBaseUser | None = None, custno: str = ""
) -> Posting:
    """Post the payment as unapplied cash on a customer's account."""
    txn, sage_conn = _reviewable(item)
    custno = (custno or txn.customer_reference).strip().upper()
    if not custno:
        raise ReviewError("Name the Sage Pro customer whose account takes the payment.")
    try:
        _check_customer(sage_conn, custno)
    except ConnectorError as exc:
        raise ReviewError(f"Sage Pro has no customer {custno} ({exc}).") from exc
    resolution = f"Posted on account of customer {custno} as unapplied cash"
    with transaction.atomic():
        item, posting = _locked_open_item(item, resolution)
        if posting is not None:
            return posting
        document = documents.build_cash_receipt(
            txn, None, sage_conn=sage_conn, applications=(), customer=custno
        )
        posting = create_receipt_posting(txn, sage_conn, document)
        _replace_document(posting, document)
        item.resolve(
            user,
            resolution,
            "on_account",
            {"custno": custno, "posting": posting.pk},
        )
        learning.observe(item, custno, [], user)
        queue("send_posting", posting.pk)
    return posting


def mark_duplicate(
    item: ReviewItem, user: AbstractBaseUser | None = None, note: str = ""
) -> None:
    """Record that the payment duplicates another: nothing more is posted for it (any
    unapplied cash already booked stays for the refund or a later application)."""
    resolution = "Marked as a duplicate" + (f": {note.strip()}" if note.strip() else "")
    with transaction.atomic():
        item, _ = _locked_open_item(item, resolution)
        if item.state != ReviewItem.State.OPEN:
            return
        item.resolve(user, resolution, "mark_duplicate", {"note": note.strip()})


def dismiss_review_item(
    item: ReviewItem, reason: str, user: AbstractBaseUser | None = None
) -> None:
    """Close the item without posting anything, saying why."""
    reason = reason.strip()
    if not reason:
        raise ReviewError("Say why the item is dismissed.")
    resolution = f"Dismissed: {reason}"
    with transaction.atomic():
        item, _ = _locked_open_item(item, resolution)
        if item.state != ReviewItem.State.OPEN:
            return
        item.resolve(user, resolution, "dismiss", {"reason": reason})
        ReviewItem.objects.filter(pk=item.pk).update(state=ReviewItem.State.DISMISSED)


def correction_values(item: ReviewItem) -> dict[str, Any]:
    """The receipt's current values as a reviewer corrects them: the posting's payload
    with the stored overrides of still-correctable fields applied."""
    if item.posting is None:
        raise ReviewError("Choose one review item that has a posting to correct.")
    current = documents.stored_values(
        documents.CashReceipt.from_payload(item.posting.payload)
    )
    current.update(_kept_overrides(item.posting))
    return current


def correct_and_retry(
    item: ReviewItem, user: AbstractBaseUser | None, values: dict[str, str]
) -> str:
    """Store a reviewer's corrections as the posting's overrides and send it again.

    Only `documents.CORRECTABLE_FIELDS` can be corrected; the corrected values are
    checked (the date rule among them) before anything is stored. Raises
    `CorrectionRefused` when nothing was saved, and `ReviewError` when the corrections
    were saved but the posting is already posted or being sent. Returns what was done.
    """
    posting = item.posting
    if posting is None:
        raise CorrectionRefused("Choose one review item that has a posting to correct.")
    for name in values:
        if name not in documents.CORRECTABLE_FIELDS:
            reason = documents.PROTECTED_FIELDS.get(name, "it is not correctable")
            raise CorrectionRefused(f"{name} cannot be corrected here: {reason}.")
    overrides = _kept_overrides(posting) | values
    try:
        documents.check_overrides(overrides, posting.transaction)
    except documents.OverrideError as exc:
        raise CorrectionRefused(f"Nothing was saved or sent: {exc}") from exc
    Posting.objects.filter(pk=posting.pk).update(overrides=overrides)
    posting.overrides = overrides
    ReviewDecision.objects.create(
        item=item,
        user=saved_user(user),
        action="correct",
        detail={"overrides": overrides, "posting": posting.pk},
    )
    if not retry_posting(posting, user):
        raise ReviewError("the posting is already posted or being sent.")
    return f"corrected {', '.join(overrides) or 'nothing'}; queued to send again."


def annotate_review_item(
    item: ReviewItem, note: str, user: AbstractBaseUser | None = None
) -> ReviewDecision:
    """Add a note to the item's decisions; the item stays as it is."""
    note = note.strip()
    if not note:
        raise ReviewError("Write the note first.")
    return ReviewDecision.objects.create(
        item=item,
        user=saved_user(user),
        action="note",
        detail={"note": note},
    )


# --- shared steps ----------------------------------------------------------------------


def _kept_overrides(posting: Posting) -> dict[str, Any]:
    """Stored overrides of fields no longer correctable are dropped, not kept."""
    return {
        name: value
        for name, value in (posting.overrides or {}).items()
        if name in documents.CORRECTABLE_FIELDS
    }


def _locked_open_item(
    item: ReviewItem, resolution: str
) -> tuple[ReviewItem, Posting | None]:
    """Lock the item. If it is already resolved with the same resolution (the same
    decision made twice, or by two people at once), return its posting; otherwise
    refuse with the earlier decision."""
    item = ReviewItem.objects.select_for_update().get(pk=item.pk)
    if item.state == ReviewItem.State.OPEN:
        return item, None
    posting = (
        item.transaction.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first()
        if item.transaction
        else None
    )
    if item.resolution == resolution:
        return item, posting
    raise ReviewError(
        f"Review item {item.pk} was already {item.state}: {item.resolution}"
    )


def _would_refuse(
    invoice: dict[str, Any] | None, invno: str, amount: Decimal | None
) -> bool:
    """Whether `invoice` as the mirror has it would refuse the allocation."""
    if invoice is None or invoice_problem(invoice, invno, ""):
        return True
    if amount is None or not amount.is_finite():
        return False  # refused below, for what it is
    return amount > Decimal(invoice["balance"])


def _check_customer(sage_conn: Connection, custno: str) -> None:
    """Raise ConnectorError unless Sage Pro has the customer: the mirror answers, and
    Sage Pro itself is asked before a customer the mirror lacks is refused."""
    reader = sage_conn.mirror()
    try:
        reader.get_customer(custno)
    except NotFoundError:
        if reader.fresh:  # Sage Pro itself said so
            raise
        mirror.refresh_customer(sage_conn, custno, gateway=reader.gateway)


def _reviewable(item: ReviewItem) -> tuple[PaymentTransaction, Connection]:
    txn = item.transaction
    if txn is None:
        raise ReviewError(f"Review item {item.pk} has no transaction to post.")
    sage_conn = txn.connection.sagepro
    if sage_conn is None:
        raise ReviewError(
            f"Connection {txn.connection.slug} has no Sage Pro connection to post to."
        )
    existing = txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first()
    if existing is not None and existing.state == Posting.State.POSTED:
        raise ReviewError(
            f"Transaction {txn.transaction_id} is already posted as receipt {existing.document_number}."
        )
    return txn, sage_conn


def _replace_document(posting: Posting, document: documents.ReceiptDocument) -> None:
    """Put a reviewer's receipt on the transaction's posting (new, or the one that was
    stopped) and make it due to be sent afresh."""
    if posting.state != Posting.State.POSTED:
        Posting.objects.filter(pk=posting.pk).update(
            payload=document.payload,
            state=Posting.State.PENDING,
            attempts=0,
            next_attempt_at=None,
            last_error="",
            not_sent=False,
        )
