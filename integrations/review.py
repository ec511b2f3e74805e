"""What a reviewer decides about a review item, a posting or an event.

Apply to an invoice (or several), post on account, mark as a duplicate, dismiss,
correct and retry, retry, reopen, or add a note. The admin, the API and the tests call
these; each business refusal raises `ReviewError`, whose message is what the reviewer
sees. Pressing a decision twice, or two reviewers deciding at once, has the effect of
one.

Every decision that posts or closes money has a `preview_*` twin that says what it
will do (an `Outcome`: what is applied to which invoice, what stays unapplied cash and
the item opened for it, what is closed) without doing it; the admin shows it and
carries the decision out only once the reviewer confirmed that very outcome. An
application follows the pipeline's rules: up to the invoice's balance, the rest kept
as unapplied cash with an overpayment item; another customer's invoice than the
payer's takes an explicit tick and a note. The amount is always the payment's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from integrations import documents, learning, mirror, refunds, sending, unapplied
from integrations.connectors.base import ConnectorError, NotFoundError
from integrations.connectors.paytrace import REFUND_NOT_SETTLED
from integrations.documents import Application
from integrations.documents.matching import (
    _Gatherer,
    invoice_problem,
    is_invoice_key,
    matching_invoice,
    matching_payment,
    matching_rules,
    payer_of,
)
from integrations.models import (
    Connection,
    Event,
    MirroredCustomer,
    MirroredInvoice,
    PaymentTransaction,
    Posting,
    ReviewDecision,
    ReviewItem,
    saved_user,
)
from integrations.models.review import OverrideRequest
from integrations.models.unapplied import UnappliedRefund
from integrations.processing import create_receipt_posting, queue
from mappings import fields as fm
from mappings import matching, payers
from mappings.formatting import format_money

ZERO = Decimal("0.00")
# The postings a reviewer may send again: the rest are posted or being sent.
RETRYABLE_POSTING_STATES = frozenset(
    {Posting.State.FAILED, Posting.State.DEAD, Posting.State.NEEDS_REVIEW}
)


class ReviewError(Exception):
    """A reviewer's decision was refused; the message says why, in their words."""


class CorrectionRefused(ReviewError):
    """Corrected values were refused before anything was saved or sent."""


class AnotherCustomerError(ReviewError):
    """The invoice is another customer's than the payer's: it takes a tick and a note."""


# --- what a decision will do ------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeLine:
    """One invoice a receipt pays, with its balance before and after."""

    invno: str
    custno: str
    balance: Decimal
    applied: Decimal

    @property
    def balance_after(self) -> Decimal:
        return self.balance - self.applied


@dataclass(frozen=True)
class Outcome:
    """What a decision will do, shown to the reviewer before it is done.

    `fingerprint` changes whenever anything shown would change (an invoice's balance
    above all): the confirmation carries it, and a confirmation whose fingerprint is
    no longer the outcome's is shown the new outcome instead of being carried out.
    """

    summary: str
    transaction_id: str = ""
    customer: str = ""
    amount: Decimal = ZERO
    currency: str = "USD"
    lines: tuple[OutcomeLine, ...] = ()
    unapplied: Decimal = ZERO
    posts: bool = False
    opens: tuple[str, ...] = ()
    closes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    # What it posts (when `posts`), and what the amount shown is.
    document: str = "a cash receipt"
    amount_note: str = "the payment's amount; not editable"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:20]


def outcomes_fingerprint(outcomes: list[Outcome]) -> str:
    """One fingerprint for the outcomes of a bulk action."""
    return hashlib.sha256(
        "".join(o.fingerprint for o in outcomes).encode()
    ).hexdigest()[:20]


def payer_identity(txn: PaymentTransaction, sage_conn: Connection) -> payers.Identity:
    """Who the payer is in Sage Pro, and why: the customer mapping, a customer id that
    is a customer number, or the mirrored customers' e-mail and names."""
    # The matcher's own gatherer, so the page and the pipeline never disagree.
    return _Gatherer(txn, sage_conn, False).identity(payer_of(txn))


def payer_customer(txn: PaymentTransaction, sage_conn: Connection) -> str:
    """The Sage Pro customer the payer is known to be ('' when not known or unclear)."""
    identity = payer_identity(txn, sage_conn)
    return "" if identity.conflict else identity.custno


def payer_facts(txn: PaymentTransaction) -> dict[str, str]:
    """What the payment says about its payer, as stored: billing name, PayTrace
    customer id, e-mail and card."""
    record = txn.source_record if isinstance(txn.source_record, dict) else {}
    billing = record.get("billing_address")
    billing = billing if isinstance(billing, dict) else {}
    email = next(
        (
            str(record[name])
            for name in ("receipt_emailed_to", "email", "billing_email", "EMAIL")
            if record.get(name)
        ),
        "",
    )
    return {
        "name": str(billing.get("name") or record.get("billing_name") or ""),
        "customer_id": txn.customer_reference,
        "email": email,
        "card": f"{txn.card_brand} •••• {txn.card_last4}".strip()
        if txn.card_last4
        else "",
    }


def search_invoices(
    sage_conn: Connection, query: str, limit: int = 20
) -> list[dict[str, Any]]:
    """Open invoices of the mirror whose number, customer (number or name) or
    amount (balance or invoice amount) matches `query`, by invoice number."""
    query = query.strip()
    if not query:
        return []
    found = Q(invno__icontains=query) | Q(custno__iexact=query)
    names = MirroredCustomer.objects.filter(
        connection=sage_conn, deleted=False, name__icontains=query
    ).values_list("custno", flat=True)[:50]
    found |= Q(custno__in=list(names))
    try:
        amount = Decimal(query.replace(",", "").lstrip("$"))
    except ArithmeticError:
        amount = None
    if (
        amount is not None
        and amount.is_finite()
        and abs(amount) < Decimal("1e12")
        and amount == amount.quantize(Decimal("0.01"))
    ):
        found |= Q(balance=amount) | Q(invamt=amount)
    rows = (
        MirroredInvoice.objects.filter(found, connection=sage_conn, deleted=False)
        .exclude(balance=0)
        .order_by("invno")[:limit]
    )
    invoices = [mirror.invoice_answer(row) for row in rows]
    if not invoices and is_invoice_key(query.upper()):
        # A mirror that does not hold it yet: ask Sage Pro for that one number.
        try:
            invoice = sage_conn.mirror().get_invoice(query)
        except ConnectorError:
            invoice = None
        if invoice is not None and Decimal(invoice["balance"]) != 0:
            invoices = [invoice]
    names_of = dict(
        MirroredCustomer.objects.filter(
            connection=sage_conn, custno__in={i["custno"] for i in invoices}
        ).values_list("custno", "name")
    )
    for invoice in invoices:
        invoice["customer_name"] = names_of.get(invoice["custno"], "")
    return invoices


def earlier_payments(txn: PaymentTransaction, limit: int = 5) -> list[dict[str, Any]]:
    """The payments a suspected duplicate may repeat: the same card and amount, or the
    same invoice reference with a posted receipt, newest first."""
    same_card = (
        Q(card_last4=txn.card_last4, amount=txn.amount)
        if txn.card_last4
        else Q(pk=None)
    )
    same_invoice = (
        Q(invoice_reference=txn.invoice_reference, postings__state=Posting.State.POSTED)
        if txn.invoice_reference.strip()
        else Q(pk=None)
    )
    others = list(
        PaymentTransaction.objects.filter(
            same_card | same_invoice, connection=txn.connection
        )
        .exclude(pk=txn.pk)
        .distinct()
        .order_by("-created_at", "-pk")[:limit]
    )
    receipts = {
        posting.transaction_id: posting
        for posting in Posting.objects.filter(
            transaction__in=others, kind=Posting.Kind.CASH_RECEIPT
        )
    }
    return [
        {"transaction": other, "receipt": receipts.get(other.pk)} for other in others
    ]


def _item_words(item: ReviewItem) -> str:
    return f"review item {item.pk} ({item.get_kind_display().lower()})"


def preview_apply(
    item: ReviewItem,
    allocations: list[tuple[str, Decimal | None]],
    *,
    other_customer: bool = False,
    note: str = "",
    spent: dict[str, Decimal] | None = None,
) -> Outcome:
    """What applying the item's payment to these invoices will do, without doing it.

    Raises ReviewError as the decision itself would. `spent` (bulk actions) holds what
    earlier items of the same action take of each invoice's balance.
    """
    txn, sage_conn = _reviewable(item)
    _check_open(item)
    lines = _allocate(txn, sage_conn, allocations, spent=spent)
    custno = str(lines[0][0]["custno"]).strip()
    notes = _check_other_customer(txn, sage_conn, custno, other_customer, note)
    same_currency = _same_currency(txn, sage_conn)
    applied = sum((share for _, share in lines), ZERO)
    unapplied = txn.amount - applied if same_currency else ZERO
    opens: tuple[str, ...] = ()
    if unapplied > 0:
        opens = (
            f"An overpayment review item for the {format_money(unapplied, txn.currency)} "
            f"kept as unapplied cash on customer {custno}'s account",
        )
    if not same_currency:
        notes += (
            f"A {txn.currency} payment: Sage Pro applies the exchange rate when it books "
            "the receipt.",
        )
    invoices = ", ".join(str(inv["invno"]).strip() for inv, _ in lines)
    summary = (
        f"Apply {format_money(applied, txn.currency)} to invoice"
        f"{'s' if len(lines) > 1 else ''} {invoices}"
        + (
            f"; {format_money(unapplied, txn.currency)} stays unapplied cash"
            if unapplied > 0
            else ""
        )
    )
    return Outcome(
        summary=summary,
        transaction_id=txn.transaction_id,
        customer=custno,
        amount=txn.amount,
        currency=txn.currency,
        lines=tuple(
            OutcomeLine(
                str(inv["invno"]).strip(),
                str(inv["custno"]).strip(),
                Decimal(inv["balance"]) - (spent or {}).get(_key(inv["invno"]), ZERO),
                share,
            )
            for inv, share in lines
        ),
        unapplied=unapplied,
        posts=True,
        opens=opens,
        closes=(_item_words(item),),
        notes=notes,
    )


def preview_on_account(item: ReviewItem, custno: str = "") -> Outcome:
    """What posting the payment on a customer's account will do."""
    txn, sage_conn = _reviewable(item)
    _check_open(item)
    custno = (custno or txn.customer_reference).strip().upper()
    if not custno:
        raise ReviewError("Name the Sage Pro customer whose account takes the payment.")
    try:
        _check_customer(sage_conn, custno)
    except ConnectorError as exc:
        raise ReviewError(f"Sage Pro has no customer {custno} ({exc}).") from exc
    return Outcome(
        summary=f"Post {format_money(txn.amount, txn.currency)} on customer {custno}'s "
        "account as unapplied cash",
        transaction_id=txn.transaction_id,
        customer=custno,
        amount=txn.amount,
        currency=txn.currency,
        unapplied=txn.amount,
        posts=True,
        closes=(_item_words(item),),
        notes=("Nothing is applied to an invoice; the cash waits on the account.",),
    )


def preview_closing(item: ReviewItem, action: str, why: str) -> Outcome:
    """What marking the item a duplicate, or dismissing it, will do: nothing posted."""
    _check_open(item)
    why = why.strip()
    if not why:
        raise ReviewError(
            "Say why the payment is a duplicate (which payment it repeats)."
            if action == "duplicate"
            else "Say why the item is dismissed."
        )
    txn = item.transaction
    receipt = (
        txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first() if txn else None
    )
    notes: tuple[str, ...] = ("Nothing is posted to Sage Pro.",)
    if receipt is not None and receipt.state == Posting.State.POSTED:
        notes += (
            f"Receipt {receipt.document_number} stays in Sage Pro as it is "
            "(a refund or reversal is done there).",
        )
    elif txn is not None and item.kind in (
        ReviewItem.Kind.UNMATCHED,
        ReviewItem.Kind.UNDERPAYMENT,
    ):
        notes += (
            f"The payment of {format_money(txn.amount, txn.currency)} is then not "
            "booked in Sage Pro at all: reconciliation shows it as not posted.",
        )
    verb = "Mark as a duplicate" if action == "duplicate" else "Dismiss"
    return Outcome(
        summary=f"{verb}: {why}",
        transaction_id=txn.transaction_id if txn else "",
        customer=txn.customer_reference if txn else "",
        amount=txn.amount if txn else ZERO,
        currency=txn.currency if txn else "USD",
        closes=(_item_words(item),),
        notes=notes,
    )


def _check_open(item: ReviewItem) -> None:
    item.refresh_from_db(fields=["state", "resolution"])
    if item.state != ReviewItem.State.OPEN:
        raise ReviewError(
            f"Review item {item.pk} was already {item.state}: {item.resolution}"
        )


def _key(invno: object) -> str:
    return str(invno).strip().upper()


def _same_currency(txn: PaymentTransaction, sage_conn: Connection) -> bool:
    return txn.currency.upper() == (sage_conn.base_currency or "USD").upper()


def _check_other_customer(
    txn: PaymentTransaction,
    sage_conn: Connection,
    custno: str,
    other_customer: bool,
    note: str,
) -> tuple[str, ...]:
    """Refuse another customer's invoice than the payer's known customer, unless the
    reviewer ticked it and wrote why; return what the confirmation says about it."""
    try:
        payer = payer_customer(txn, sage_conn)
    except ConnectorError as exc:
        raise ReviewError(
            f"Sage Pro could not be asked who the payer is: {exc}. Try again shortly."
        ) from exc
    if not payer or payer.upper() == custno.upper():
        return ()
    if not other_customer or not note.strip():
        raise AnotherCustomerError(
            f"Invoice customer {custno} is not the payer's customer {payer}. To apply "
            'it anyway, tick "apply to another customer\'s invoice" and write a note '
            "saying why."
        )
    return (
        f"Another customer's invoice: the payer is customer {payer}, the invoice "
        f"is {custno}'s. Note: {note.strip()}",
    )


# --- postings and events ---------------------------------------------------------------


def retry_posting(
    posting: Posting,
    user: AbstractBaseUser | None = None,
    *,
    queue_send: bool = True,
    note_items: bool = True,
) -> bool:
    """Queue a failed, dead or needs-review posting to be sent again now.

    Safe when pressed twice at once: only one caller moves it back to pending.
    Returns False when it was already posted or being sent. With `queue_send=False`
    the caller sends it itself (the dead-letter replay, to keep the order).
    """
    with transaction.atomic():
        moved = Posting.objects.filter(
            pk=posting.pk, state__in=RETRYABLE_POSTING_STATES
        ).update(state=Posting.State.PENDING, next_attempt_at=None, attempts=0)
        if not moved:
            return False
        posting.refresh_from_db()
        posting.transaction.record(
            "retry_requested", "Retry now (attempt count reset)", user=user
        )
        open_items = ReviewItem.objects.filter(
            posting=posting, state=ReviewItem.State.OPEN
        )
        for item in open_items if note_items else []:
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
    ranked = matching.candidates(
        payment,
        [matching_invoice(i) for i in invoices.values()],
        matching.choose_rule(payment, matching_rules(txn.connection)),
        history,
        max(limit, 50),
    )
    # The payer's own customer's invoices first, then by score; the invoice number
    # breaks ties, so the order is the same on every reload.
    own = (payer_customer(txn, sage_conn) or customer or "").strip().upper()
    ranked.sort(
        key=lambda c: (
            bool(own) and c.invoice.custno.strip().upper() != own,
            -c.score,
            (len(c.invoice.invno.strip()), c.invoice.invno.strip()),
        )
    )
    return ranked[:limit]


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
            what = f"posting {item.posting.pk}"
        elif event is not None:
            what = f"event {event.event_id}"
        else:
            raise ReviewError(
                f"Review item {item.pk} has no posting or event to retry."
            )
        # Resolved first, so `retry_posting` (which notes the retry on the posting's
        # open items) does not log this one a second time; a refusal rolls it back.
        item.state = ReviewItem.State.RESOLVED
        item.resolved_at = timezone.now()
        item.resolved_by = saved_user(user)
        item.resolution = f"Retried ({what})"
        item.save()
        if item.posting is not None and item.posting.state != Posting.State.POSTED:
            retried = retry_posting(item.posting, user)
        else:
            assert event is not None
            retried = reprocess_event(event, user)
        if not retried:
            raise ReviewError(f"The {what} is already queued or being sent.")
        detail: dict[str, Any] = {"what": what}
        if item.posting is not None:
            detail["posting"] = item.posting.pk
        ReviewDecision.objects.create(
            item=item, user=item.resolved_by, action="retry", detail=detail
        )
    return what


def apply_review_item(
    item: ReviewItem,
    invno: str,
    user: AbstractBaseUser | None = None,
    *,
    other_customer: bool = False,
    note: str = "",
) -> Posting:
    """Resolve an item by applying its payment to one invoice, up to its balance;
    the rest of the payment stays as unapplied cash with an overpayment item open
    for it, as the pipeline does.

    Raises ReviewError with a message for the reviewer when the invoice is unknown,
    not open, or another customer's than the payer's (unless `other_customer` is
    ticked and a note says why). Pressing it twice (or two reviewers at once)
    creates one posting.
    """
    if not invno.strip():
        raise ReviewError("Enter the Sage Pro invoice number to apply the payment to.")
    return apply_review_item_split(
        item, [(invno, None)], user, other_customer=other_customer, note=note
    )


def apply_review_item_split(
    item: ReviewItem,
    allocations: list[tuple[str, Decimal | None]],
    user: AbstractBaseUser | None = None,
    *,
    other_customer: bool = False,
    note: str = "",
) -> Posting:
    """Apply a payment across one or several invoices of one customer.

    Each allocation is (invoice number, amount); an amount of None takes what is left
    of the payment, up to that invoice's balance. Whatever is not allocated stays on
    the receipt as unapplied cash, and an overpayment item is opened for it. Raises
    ReviewError with a reviewer-facing message.
    """
    txn, sage_conn = _reviewable(item)
    if not allocations:
        raise ReviewError("Name at least one invoice.")
    whole = len(allocations) == 1 and allocations[0][1] is None  # up to its balance
    if not whole and not _same_currency(txn, sage_conn):
        raise ReviewError(
            f"A {txn.currency} payment is applied to one invoice at a time (the rate is applied when it is booked)."
        )
    lines = _allocate(txn, sage_conn, allocations)
    summary = ", ".join(
        f"{str(inv['invno']).strip()} ({share})" for inv, share in lines
    )
    first = str(lines[0][0]["invno"]).strip()
    custno = str(lines[0][0]["custno"]).strip()
    resolution = (
        f"Applied to invoice {first}" if whole else f"Applied to invoices {summary}"
    )
    unapplied = (
        txn.amount - sum((share for _, share in lines), ZERO)
        if _same_currency(txn, sage_conn)
        else ZERO
    )
    if unapplied > 0:
        resolution += f"; {unapplied} stays unapplied cash"
    with transaction.atomic():
        item, posting = _locked_open_item(item, resolution)
        if posting is not None:
            return posting
        # Checked once the item is locked: the same answer as the preview gave.
        noted = _check_other_customer(txn, sage_conn, custno, other_customer, note)
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
        detail: dict[str, Any] = {
            "allocations": [
                [str(inv["invno"]).strip(), str(share)] for inv, share in lines
            ],
            "posting": posting.pk,
        }
        if unapplied > 0:
            detail["unapplied"] = str(unapplied)
        if noted:
            detail["other_customer"] = True
            detail["note"] = note.strip()
        item.resolve(user, resolution, "apply", detail)
        if unapplied > 0:
            _open_overpayment(item, posting, lines, unapplied, custno, user)
        learning.observe(
            item,
            str(lines[0][0]["custno"]),
            [str(inv["invno"]).strip() for inv, _ in lines],
            user,
        )
        queue("send_posting", posting.pk)
    return posting


def _open_overpayment(
    item: ReviewItem,
    posting: Posting,
    lines: list[tuple[dict[str, Any], Decimal]],
    unapplied: Decimal,
    custno: str,
    user: AbstractBaseUser | None,
) -> ReviewItem:
    """Open the overpayment item for what a reviewer's application leaves unapplied,
    in the pipeline's words, so the cash is never left without an item."""
    txn = item.transaction
    assert txn is not None
    invoices = ", ".join(f"{str(inv['invno']).strip()}" for inv, _ in lines)
    applied = txn.amount - unapplied
    reason = (
        f"Paid {unapplied} more than applied to invoice{'s' if len(lines) > 1 else ''} "
        f"{invoices} ({applied} applied by {user or 'a reviewer'}): {unapplied} kept as "
        f"unapplied cash on {custno}'s account."
    )
    return ReviewItem.open(txn, ReviewItem.Kind.OVERPAYMENT, reason, posting=posting)


def _allocate(
    txn: PaymentTransaction,
    sage_conn: Connection,
    allocations: list[tuple[str, Decimal | None]],
    *,
    spent: dict[str, Decimal] | None = None,
    available: Decimal | None = None,
    over: str = "",
) -> list[tuple[dict[str, Any], Decimal]]:
    """Each invoice with the share of the payment it takes, checked against its
    balance, the payment and the customer.

    The invoices are read from the mirror; one the mirror would refuse is read again
    from Sage Pro first, so a stale copy never refuses a reviewer by itself.
    `available` (unapplied cash) replaces the payment's amount; `over` is then the
    refusal of amounts that add up to more.
    """
    reader = sage_conn.mirror()
    remaining = txn.amount if available is None else available
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
        assert invoice is not None
        balance = Decimal(invoice["balance"]) - (spent or {}).get(_key(invno), ZERO)
        if spent is not None and balance <= 0:
            raise ReviewError(
                f"Invoice {invno} is paid in full by the payments before this one."
            )
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
                over or f"The amounts add up to more than the payment of {txn.amount}."
            )
        lines.append((invoice, share))
    if spent is not None:
        for invoice, share in lines:
            key = _key(invoice["invno"])
            spent[key] = spent.get(key, ZERO) + share
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
    unapplied cash already booked stays for the refund or a later application).
    The note, saying which payment it repeats, is required."""
    if not note.strip():
        raise ReviewError(
            "Say why the payment is a duplicate (which payment it repeats)."
        )
    resolution = f"Marked as a duplicate: {note.strip()}"
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


# Decisions that may have put a receipt on its way to Sage Pro.
POSTING_ACTIONS = ("apply", "on_account", "retry", "correct")
STOPPABLE = (
    Posting.State.PENDING,
    Posting.State.FAILED,
    Posting.State.DEAD,
    Posting.State.NEEDS_REVIEW,
)


def decided_posting(item: ReviewItem) -> Posting | None:
    """The posting the item's last decision sent (or queued), if any."""
    for decision in item.decisions.order_by("-at", "-id"):
        if decision.action == "reopen":
            return None  # decided again since: nothing of the later decision yet
        if decision.action in POSTING_ACTIONS:
            pk = (decision.detail or {}).get("posting") or item.posting_id
            if pk:
                return Posting.objects.filter(pk=pk).first()
            # An event run again: whatever receipt the pipeline made of it.
            return (
                item.transaction.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first()
                if item.transaction
                else None
            )
    return None


def reopen_refusal(item: ReviewItem) -> str:
    """Why the item cannot be reopened ('' when it can): what its decision posted in
    Sage Pro, and the reversal that undoing it needs."""
    if item.state == ReviewItem.State.OPEN:
        return ""
    last = item.decisions.order_by("-at", "-id").first()
    if last is not None and last.action in ("unapplied_applied", "refund_unapplied"):
        what = (
            "applied to invoices"
            if last.action == "unapplied_applied"
            else "refunded through PayTrace"
        )
        return (
            f"The payment's unapplied cash was {what}; the item closed because nothing "
            "waits any more. To undo it, reverse the application in Sage Pro (or the "
            "refund in PayTrace), then add a note to this item saying what was done."
        )
    posting = decided_posting(item)
    if posting is None or posting.state in STOPPABLE:
        return ""
    if posting.state == Posting.State.IN_PROGRESS:
        return (
            f"Receipt posting {posting.pk} is being sent to Sage Pro right now; "
            "open this page again in a minute."
        )
    payload = posting.payload or {}
    currency = posting.transaction.currency
    amount = format_money(posting.transaction.amount, currency)
    applied = [
        f"{format_money(a.get('amount'), currency)} on invoice {str(a.get('invno')).strip()}"
        for a in payload.get("applications") or []
        if isinstance(a, dict)
    ]
    what = "; ".join(applied) if applied else "unapplied cash on the account"
    number = posting.document_number or posting.pk
    return (
        f"This decision posted receipt {number} for {amount} to customer "
        f"{str(payload.get('custno', '')).strip() or '?'} in Sage Pro ({what}). "
        f"The item cannot be reopened here. To undo it, reverse receipt {number} in "
        "Sage Pro (that puts the applied amounts back on the invoices' balances), "
        "apply the payment there as it should have been, and add a note to this item "
        "saying what was done."
    )


def reopen_review_item(
    item: ReviewItem, reason: str, user: AbstractBaseUser | None = None
) -> None:
    """Reopen a resolved or dismissed item whose decision posted nothing, as a
    recorded decision with its reason. A receipt the decision queued but that was
    never sent is stopped (it waits for the new decision); an item the decision
    opened for its unapplied cash is closed with it. Pressing it twice reopens once.
    """
    reason = reason.strip()
    if not reason:
        raise ReviewError("Say why the item is reopened.")
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if item.state == ReviewItem.State.OPEN:
            return
        refusal = reopen_refusal(item)
        if refusal:
            raise ReviewError(refusal)
        txn = item.transaction
        if (
            txn is not None
            and ReviewItem.objects.filter(
                transaction=txn, kind=item.kind, state=ReviewItem.State.OPEN
            ).exists()
        ):
            raise ReviewError(
                f"This payment already has an open {item.get_kind_display().lower()} "
                "item: decide that one instead."
            )
        posting = decided_posting(item)
        if posting is not None:
            stopped = Posting.objects.filter(pk=posting.pk, state__in=STOPPABLE).update(
                state=Posting.State.NEEDS_REVIEW,
                next_attempt_at=None,
                not_sent=True,
                last_error=f"Stopped: review item {item.pk} was reopened.",
            )
            if not stopped:  # it started sending after the check above
                raise ReviewError(
                    f"Receipt posting {posting.pk} is being sent to Sage Pro right now; "
                    "open this page again in a minute."
                )
            for other in ReviewItem.objects.filter(
                posting=posting, state=ReviewItem.State.OPEN
            ).exclude(pk=item.pk):
                other.resolve(
                    user,
                    f"Closed: review item {item.pk} it came from was reopened",
                    "dismiss",
                    {"reason": f"review item {item.pk} was reopened"},
                )
                ReviewItem.objects.filter(pk=other.pk).update(
                    state=ReviewItem.State.DISMISSED
                )
        previous = item.resolution
        item.state = ReviewItem.State.OPEN
        item.resolved_at = None
        item.resolved_by = None
        item.resolution = ""
        item.save()
        ReviewDecision.objects.create(
            item=item,
            user=saved_user(user),
            action="reopen",
            detail={
                "reason": reason,
                "previous": previous,
                "posting": posting.pk if posting else None,
            },
        )
        if txn is not None:
            txn.record(
                "review_reopen",
                f"Review item {item.pk} reopened by {user or 'system'}: {reason} "
                f"(was: {previous})",
                user=user,
            )


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


def _posting_words(posting: Posting) -> str:
    """How a sentence names the posting: "receipt posting 12", "GL batch posting 13"."""
    label = str(posting.get_kind_display())
    if posting.kind == Posting.Kind.CASH_RECEIPT:
        label = "receipt"
    elif not label[:2].isupper():
        label = label[0].lower() + label[1:]
    return f"{label} posting {posting.pk}"


def _refuse_correcting_other_documents(posting: Posting) -> None:
    """Corrections are a cash receipt's fields; other documents (credit memos, GL
    batches, sales orders…) are sent as their flow built them."""
    if posting.kind != Posting.Kind.CASH_RECEIPT:
        raise CorrectionRefused(
            f"{posting.get_kind_display()} postings cannot be corrected here: fix "
            "what the review item names (a GL rule, the order, the period), then "
            "retry it, or post it in Sage Pro by hand and resolve the item."
        )


# What the requester's preview adds; the signer's copy of the preview leaves it out.
SIGNATURE_NOTE = (
    "A finance manager other than you signs the correction before anything is sent "
    "to Sage Pro; until then the receipt stays as it is."
)


def _checked_overrides(
    item: ReviewItem, values: dict[str, str]
) -> tuple[Posting, dict[str, Any]]:
    """The item's receipt posting and the overrides it gets with `values`, refused
    (`CorrectionRefused`, nothing stored) as `correct_and_retry` refuses them."""
    posting = item.posting
    if posting is None:
        raise CorrectionRefused("Choose one review item that has a posting to correct.")
    _refuse_correcting_other_documents(posting)
    for name in values:
        if name not in documents.CORRECTABLE_FIELDS:
            reason = documents.PROTECTED_FIELDS.get(name, "it is not correctable")
            raise CorrectionRefused(f"{name} cannot be corrected here: {reason}.")
    overrides = _kept_overrides(posting) | values
    try:
        documents.check_overrides(overrides, posting.transaction)
    except documents.OverrideError as exc:
        raise CorrectionRefused(f"Nothing was saved or sent: {exc}") from exc
    return posting, overrides


def preview_correction(item: ReviewItem, values: dict[str, str]) -> Outcome:
    """What storing these corrections and sending the receipt again will do, checked
    as `correct_and_retry` checks them (nothing is stored)."""
    posting, _ = _checked_overrides(item, values)
    current = correction_values(item)
    txn = posting.transaction
    payload = posting.payload or {}
    changes = tuple(
        f"{name}: {current.get(name) or '(blank)'} → {value or '(blank)'}"
        for name, value in values.items()
    )
    signature = (SIGNATURE_NOTE,) if values and needs_second_signature() else ()
    return Outcome(
        summary="Correct "
        + (", ".join(values) if values else "nothing")
        + " and send the receipt again",
        transaction_id=txn.transaction_id,
        customer=str(payload.get("custno", "")).strip(),
        amount=txn.amount,
        currency=txn.currency,
        lines=_payload_lines(posting),
        posts=True,
        closes=(_item_words(item),),
        notes=(
            *changes,
            f"The amount stays {format_money(txn.amount, txn.currency)}, the amount "
            "PayTrace collected; it cannot be corrected.",
            *signature,
        ),
    )


def _payload_lines(posting: Posting) -> tuple[OutcomeLine, ...]:
    """The invoices a stored receipt applies to, with their balances in the mirror."""
    payload = posting.payload or {}
    applications = [a for a in payload.get("applications") or [] if isinstance(a, dict)]
    invoices = {
        row.invno.strip(): row
        for row in MirroredInvoice.objects.filter(
            connection_id=posting.sagepro_id,
            invno__in=[mirror.mirror_key(a.get("invno")) for a in applications],
        )
    }
    lines = []
    for a in applications:
        invno = str(a.get("invno") or "").strip()
        applied = Decimal(str(a.get("amount") or "0"))
        row = invoices.get(invno)
        lines.append(
            OutcomeLine(
                invno,
                row.custno if row else str(payload.get("custno", "")).strip(),
                row.balance if row else applied,
                applied,
            )
        )
    return tuple(lines)


def preview_retry(item: ReviewItem) -> Outcome:
    """What retrying the item does: send its receipt again, or run its event through
    the pipeline again (which decides anew)."""
    _check_open(item)
    txn = item.transaction
    posting = item.posting
    if posting is not None and posting.state != Posting.State.POSTED:
        if posting.state not in (
            Posting.State.FAILED,
            Posting.State.DEAD,
            Posting.State.NEEDS_REVIEW,
        ):
            raise ReviewError(
                f"{_posting_words(posting)[0].upper()}{_posting_words(posting)[1:]} "
                "is already queued or being sent."
            )
        lines = _payload_lines(posting)
        applied = sum((line.applied for line in lines), ZERO)
        amount = posting.transaction.amount
        return Outcome(
            summary=f"Send {_posting_words(posting)} to Sage Pro again",
            transaction_id=posting.transaction.transaction_id,
            customer=str((posting.payload or {}).get("custno", "")).strip(),
            amount=amount,
            currency=posting.transaction.currency,
            lines=lines,
            unapplied=max(amount - applied, ZERO),
            posts=True,
            closes=(_item_words(item),),
            notes=(
                "The receipt is sent as it stands; if Sage Pro refuses it again, a "
                "new review item opens.",
            ),
        )
    if txn is None and item.event is None:
        raise ReviewError(f"Review item {item.pk} has no posting or event to retry.")
    return Outcome(
        summary="Run the payment through the pipeline again",
        transaction_id=txn.transaction_id if txn else "",
        customer=txn.customer_reference if txn else "",
        amount=txn.amount if txn else ZERO,
        currency=txn.currency if txn else "USD",
        closes=(_item_words(item),),
        notes=(
            "The matching rules decide again: a receipt is posted only if the payment "
            "now matches an invoice by itself; otherwise a new review item opens.",
        ),
    )


def correct_and_retry(
    item: ReviewItem, user: AbstractBaseUser | None, values: dict[str, str]
) -> str:
    """Store a reviewer's corrections as the posting's overrides and send it again;
    with `OVERRIDE_SECOND_SIGNATURE` on, request them instead (`request_override`):
    nothing is stored on the posting or sent until a finance manager signs.

    Only `documents.CORRECTABLE_FIELDS` can be corrected; the corrected values are
    checked (the date rule among them) before anything is stored. Raises
    `CorrectionRefused` for refused values and `ReviewError` when the posting is
    already posted or being sent; either way nothing was stored. Returns what was
    done. No change at all is a plain send again with the overrides already signed,
    so it takes no signature.
    """
    if values and needs_second_signature():
        request = request_override(item, user, values)
        return (
            f"correction of {', '.join(request.changes)} requested; awaiting a "
            "finance manager's second signature. Nothing was sent to Sage Pro."
        )
    posting, overrides = _checked_overrides(item, values)
    with transaction.atomic():
        _store_overrides(item, posting, overrides, user, {})
    return f"corrected {', '.join(overrides) or 'nothing'}; queued to send again."


def _store_overrides(
    item: ReviewItem,
    posting: Posting,
    overrides: dict[str, Any],
    user: AbstractBaseUser | None,
    signed: dict[str, Any],
) -> None:
    """Store the overrides, record the "correct" decision (with who requested and
    who signed, when `signed` says so) and queue the posting to be sent again. Run
    inside the caller's transaction: a posting already posted or being sent raises
    ReviewError, which rolls the overrides back."""
    Posting.objects.filter(pk=posting.pk).update(overrides=overrides)
    posting.overrides = overrides
    # The "correct" decision is the item's record of this click (retry_posting is
    # told not to note a "retry" on it).
    ReviewDecision.objects.create(
        item=item,
        user=saved_user(user),
        action="correct",
        detail={"overrides": overrides, "posting": posting.pk, **signed},
    )
    if not retry_posting(posting, user, note_items=False):
        raise ReviewError("the posting is already posted or being sent.")


# --- overrides and their second signature ---------------------------------------------
# An override is a reviewer's decision that changes what the rules produced: corrected
# values of a cash receipt. With OVERRIDE_SECOND_SIGNATURE on (the default,
# portal/settings_signature.py) it is a request: the exact change, the preview the
# reviewer saw and the receipt's fingerprint are kept, nothing is stored on the
# posting or sent, and a holder of `roles.SIGN_OVERRIDE` other than the requester
# signs it (it is then applied exactly as requested, unless the receipt changed
# meanwhile) or refuses it with a reason. Each step is a ReviewDecision on the item.


def needs_second_signature() -> bool:
    """Whether a reviewer's override waits for a finance manager's signature."""
    return bool(getattr(settings, "OVERRIDE_SECOND_SIGNATURE", True))


def waiting_override(item: ReviewItem) -> OverrideRequest | None:
    """The item's override waiting for a signature, if any."""
    return (
        item.override_requests.filter(state=OverrideRequest.State.WAITING)
        .select_related("requested_by", "posting")
        .first()
    )


def posting_fingerprint(posting: Posting) -> str:
    """Changes whenever what the posting would send changes (its document or its
    overrides): a signature is refused on a receipt that is no longer the one the
    request was made on."""
    shape = json.dumps(
        {"payload": posting.payload, "overrides": posting.overrides or {}},
        sort_keys=True,
        cls=DjangoJSONEncoder,
    )
    return hashlib.sha256(shape.encode()).hexdigest()


def outcome_record(outcome: Outcome) -> dict[str, Any]:
    """An outcome as stored (JSON), for `outcome_from_record` to show it again."""
    return asdict(outcome)


def outcome_from_record(record: dict[str, Any]) -> Outcome:
    """The stored outcome, as the requester was shown it."""
    money = ("amount", "unapplied")
    fields = {k: v for k, v in record.items() if k in Outcome.__dataclass_fields__}
    for name in money:
        fields[name] = Decimal(str(fields.get(name, "0")))
    for name in ("opens", "closes", "notes"):
        fields[name] = tuple(fields.get(name) or ())
    fields["lines"] = tuple(
        OutcomeLine(
            line["invno"],
            line["custno"],
            Decimal(str(line["balance"])),
            Decimal(str(line["applied"])),
        )
        for line in fields.get("lines") or ()
    )
    return Outcome(**fields)


def request_override(
    item: ReviewItem, user: AbstractBaseUser | None, values: dict[str, str]
) -> OverrideRequest:
    """Record a reviewer's correction for a second signature; nothing is stored on
    the posting or sent. The same request pressed twice is recorded once; another
    while one waits is refused (the waiting one is signed or refused first)."""
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().get(pk=item.pk)
        _check_open(item)
        posting, overrides = _checked_overrides(item, values)
        posting = Posting.objects.select_for_update().get(pk=posting.pk)
        if posting.state not in RETRYABLE_POSTING_STATES:
            raise ReviewError(
                f"{_posting_words(posting).capitalize()} is already posted or being "
                "sent: there is nothing to correct."
            )
        waiting = waiting_override(item)
        if waiting is not None:
            if waiting.changes == values and waiting.requested_by_id == getattr(
                user, "pk", None
            ):
                return waiting  # the same request pressed twice
            raise ReviewError(
                f"A correction ({waiting.describe_changes()}) requested by "
                f"{waiting.requested_by or 'someone'} at "
                f"{waiting.requested_at:%Y-%m-%d %H:%M} UTC awaits a finance "
                "manager's second signature: it is signed or refused before another "
                "is requested."
            )
        current = correction_values(item) | values
        request = OverrideRequest.objects.create(
            item=item,
            posting=posting,
            changes=values,
            overrides=overrides,
            preview=outcome_record(_signers_preview(item, values)),
            document=[
                [spec.name, fm.display_value(current.get(spec.name))]
                for spec in fm.CASH_RECEIPT_SPECS
            ],
            posting_fingerprint=posting_fingerprint(posting),
            requested_by=saved_user(user),
        )
        ReviewDecision.objects.create(
            item=item,
            user=saved_user(user),
            action="override_requested",
            detail={"request": request.pk, "changes": values, "posting": posting.pk},
        )
        posting.transaction.record(
            "override_requested",
            f"Correction of {request.describe_changes()} requested by "
            f"{user or 'system'} for review item {item.pk}; awaiting a finance "
            "manager's second signature",
            user=user,
        )
    return request


def _signers_preview(item: ReviewItem, values: dict[str, str]) -> Outcome:
    """The requester's preview as the signer reads it (without the note that a
    finance manager signs it: they are that manager)."""
    outcome = preview_correction(item, values)
    return replace(
        outcome, notes=tuple(n for n in outcome.notes if n != SIGNATURE_NOTE)
    )


def signing_refusal(request: OverrideRequest, user: AbstractBaseUser | None) -> str:
    """Why `user` may not sign or refuse the request ('' when they may)."""
    # Imported here: importing integrations.roles connects its post_migrate receiver,
    # which must come after contenttypes' own (the admin imports this module first).
    from integrations.roles import SIGN_OVERRIDE

    mine = user is not None and request.requested_by_id == user.pk
    if mine:
        return (
            "You requested this correction: a finance manager other than you signs "
            "or refuses it (a second signature is never the requester's own)."
        )
    if user is None or not user.has_perm(SIGN_OVERRIDE):  # type: ignore[attr-defined]
        return (
            "Only a finance manager signs or refuses an override: ask one (the "
            "Finance manager role holds the permission)."
        )
    return ""


def sign_override(request: OverrideRequest, user: AbstractBaseUser | None) -> str:
    """Sign a waiting override: its overrides are stored and the receipt is queued
    to be sent, exactly as requested. Refused (ReviewError) for the requester, for
    someone without the permission, and for a request already decided; a receipt
    that changed since the request (sent, rebuilt, its item closed, the date rule no
    longer met) closes the request as outdated and nothing is sent. Two signers at
    once apply it once: the request's row is locked first."""
    refusal = signing_refusal(request, user)
    if refusal:
        raise ReviewError(refusal)
    with transaction.atomic():
        request = _locked_waiting(request)
        item = ReviewItem.objects.select_for_update().get(pk=request.item_id)
        posting = Posting.objects.select_for_update().get(pk=request.posting_id)
        outdated = _outdated(request, item, posting)
        if outdated:
            _decide(request, OverrideRequest.State.OUTDATED, user, outdated)
        else:
            _decide(request, OverrideRequest.State.SIGNED, user, "")
            signed = {
                "request": request.pk,
                "requested_by": str(request.requested_by or ""),
                "signed_by": str(user),
            }
            _store_overrides(item, posting, request.overrides, user, signed)
    if outdated:
        raise OutcomeChanged(
            f"{outdated} Nothing was sent and the request is closed: the reviewer "
            "requests the correction again on the receipt as it is now."
        )
    return (
        f"signed the correction of {request.describe_changes()} requested by "
        f"{request.requested_by or 'someone'}; the receipt is queued to send again."
    )


def refuse_override(
    request: OverrideRequest, user: AbstractBaseUser | None, reason: str
) -> str:
    """Refuse a waiting override with a reason: nothing is stored or sent; the item
    stays open for another decision."""
    reason = reason.strip()
    if not reason:
        raise ReviewError("Say why the correction is refused (the requester reads it).")
    refusal = signing_refusal(request, user)
    if refusal:
        raise ReviewError(refusal)
    with transaction.atomic():
        request = _locked_waiting(request)
        _decide(request, OverrideRequest.State.REFUSED, user, reason)
    return (
        f"refused the correction of {request.describe_changes()} requested by "
        f"{request.requested_by or 'someone'}: nothing was sent."
    )


def _locked_waiting(request: OverrideRequest) -> OverrideRequest:
    request = (
        OverrideRequest.objects.select_for_update(of=("self",))
        .select_related("requested_by", "decided_by")
        .get(pk=request.pk)
    )
    if request.state != OverrideRequest.State.WAITING:
        by = f" by {request.decided_by}" if request.decided_by else ""
        when = (
            f" at {request.decided_at:%Y-%m-%d %H:%M} UTC" if request.decided_at else ""
        )
        raise ReviewError(
            f"The correction ({request.describe_changes()}) was already "
            f"{request.get_state_display().lower()}{by}{when}: nothing more was done."
        )
    return request


def _outdated(request: OverrideRequest, item: ReviewItem, posting: Posting) -> str:
    """Why the request no longer fits its receipt ('' when it still does)."""
    if item.state != ReviewItem.State.OPEN:
        return f"Review item {item.pk} was {item.state} meanwhile ({item.resolution})."
    if posting.state not in RETRYABLE_POSTING_STATES:
        return (
            f"{_posting_words(posting).capitalize()} is "
            f"{posting.get_state_display().lower()} now."
        )
    if posting_fingerprint(posting) != request.posting_fingerprint:
        return (
            f"{_posting_words(posting).capitalize()} changed since the correction was "
            "requested (it was rebuilt or corrected again)."
        )
    try:
        documents.check_overrides(request.overrides, posting.transaction)
    except documents.OverrideError as exc:
        return f"The correction is no longer allowed: {exc}."
    return ""


# The decision each way a request closes is recorded as, on its item.
OVERRIDE_ACTIONS: dict[str, str] = {
    OverrideRequest.State.SIGNED: "override_signed",
    OverrideRequest.State.REFUSED: "override_refused",
    OverrideRequest.State.OUTDATED: "override_outdated",
}


def _decide(
    request: OverrideRequest,
    state: str,
    user: AbstractBaseUser | None,
    reason: str,
) -> None:
    """Close the request and record the step on its item and payment."""
    request.state = state
    request.decided_by = saved_user(user)
    request.decided_at = timezone.now()
    request.reason = reason
    request.save(update_fields=["state", "decided_by", "decided_at", "reason"])
    action = OVERRIDE_ACTIONS[state]
    ReviewDecision.objects.create(
        item_id=request.item_id,
        user=request.decided_by,
        action=action,
        detail={
            "request": request.pk,
            "changes": request.changes,
            "requested_by": str(request.requested_by or ""),
            "reason": reason,
        },
    )
    request.posting.transaction.record(
        action,
        f"Correction of {request.describe_changes()} requested by "
        f"{request.requested_by or 'someone'}: {request.get_state_display().lower()} "
        f"by {user or 'system'}" + (f" ({reason})" if reason else ""),
        user=user,
    )


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


# --- unapplied cash --------------------------------------------------------------------
#
# A posted receipt's unapplied cash (integrations.unapplied) is applied to open
# invoices of the receipt's customer, refunded through PayTrace, or left on account
# with a reason. Each has a preview; the decision works the outcome out again with the
# receipt's row locked and refuses one whose fingerprint is not what was confirmed, so
# confirming twice, or two reviewers at once, spends the cash once.


class OutcomeChanged(ReviewError):
    """The outcome is no longer the one the reviewer confirmed: nothing was done."""


def unapplied_cash_of(item: ReviewItem) -> unapplied.Waiting | None:
    """The unapplied cash the item's payment has waiting (None when none waits)."""
    txn = item.transaction
    if txn is None:
        return None
    waiting = unapplied.waiting_for(txn)
    return waiting if waiting is not None and waiting.amount > 0 else None


def _waiting_cash(item: ReviewItem) -> tuple[PaymentTransaction, unapplied.Waiting]:
    """The item's payment and its waiting cash; the item may be resolved already (a
    payment put on account): the cash is the receipt's, not the item's."""
    txn = item.transaction
    if txn is None:
        raise ReviewError(f"Review item {item.pk} has no payment.")
    receipt = txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first()
    if receipt is None or receipt.state != Posting.State.POSTED:
        raise ReviewError(
            f"Transaction {txn.transaction_id} has no posted receipt yet, so no "
            "unapplied cash in Sage Pro: decide where the payment goes instead."
        )
    waiting = unapplied.waiting_for(txn)
    if waiting is None or waiting.amount <= 0:
        raise ReviewError(
            f"Receipt {receipt.document_number} has no unapplied cash waiting: it is "
            "applied, refunded, or on its way to be."
        )
    if not _same_currency(txn, receipt.sagepro):
        raise ReviewError(
            f"A {txn.currency} payment's unapplied cash is applied in Sage Pro itself "
            "(the exchange rate is Sage Pro's)."
        )
    return txn, waiting


def _cash_amount(value: Decimal, what: str) -> Decimal:
    exponent = value.normalize().as_tuple().exponent
    if not value.is_finite() or not isinstance(exponent, int) or exponent < -2:
        raise ReviewError(f"{value} for {what} is not an amount in cents.")
    if value <= 0:
        raise ReviewError(f"The amount for {what} must be more than zero.")
    return value.quantize(Decimal("0.01"))


def preview_apply_unapplied(
    item: ReviewItem, allocations: list[tuple[str, Decimal | None]]
) -> Outcome:
    """What applying the waiting cash to these invoices of the receipt's customer
    will do. An amount of None takes what is left, up to the invoice's balance.
    Over-application, another customer's invoice and a closed invoice are refused."""
    txn, waiting = _waiting_cash(item)
    if not allocations:
        raise ReviewError("Name at least one invoice.")
    given = [
        _cash_amount(amount, f"invoice {invno.strip()}")
        for invno, amount in allocations
        if amount is not None
    ]
    cash = format_money(waiting.amount, txn.currency)
    over = (
        f"The amounts add up to {format_money(sum(given, ZERO), txn.currency)}, more "
        f"than the {cash} of unapplied cash waiting on receipt {waiting.receipt_no}: "
        "nothing was applied."
    )
    if sum(given, ZERO) > waiting.amount:
        raise ReviewError(over)
    sage_conn = waiting.receipt.sagepro
    lines = _allocate(txn, sage_conn, allocations, available=waiting.amount, over=over)
    for invoice, _ in lines:
        custno = mirror.mirror_key(invoice["custno"])
        if custno != waiting.custno:
            raise AnotherCustomerError(
                f"Invoice {str(invoice['invno']).strip()} is customer {custno}'s; the "
                f"unapplied cash is on customer {waiting.custno}'s account (receipt "
                f"{waiting.receipt_no}). Sage Pro applies a receipt's cash only to its "
                "own customer's invoices: refund it instead, or move it in Sage Pro."
            )
    applied = sum((share for _, share in lines), ZERO)
    rest = waiting.amount - applied
    invoices = ", ".join(str(inv["invno"]).strip() for inv, _ in lines)
    summary = (
        f"Apply {format_money(applied, txn.currency)} of the unapplied cash of receipt "
        f"{waiting.receipt_no} to invoice{'s' if len(lines) > 1 else ''} {invoices}"
        + (
            f"; {format_money(rest, txn.currency)} still waits"
            if rest > 0
            else "; nothing waits after it"
        )
    )
    return Outcome(
        summary=summary,
        transaction_id=txn.transaction_id,
        customer=waiting.custno,
        amount=waiting.amount,
        currency=txn.currency,
        lines=tuple(
            OutcomeLine(
                str(inv["invno"]).strip(),
                str(inv["custno"]).strip(),
                Decimal(inv["balance"]),
                share,
            )
            for inv, share in lines
        ),
        unapplied=rest,
        posts=True,
        closes=(f"{_item_words(item)}, once Sage Pro has applied it",)
        if rest <= 0 and item.state == ReviewItem.State.OPEN
        else (),
        notes=(
            f"Receipt {waiting.receipt_no} stays as it is; Sage Pro applies its "
            "unapplied cash to the invoices (at most each one's balance).",
        ),
        document="an application of the receipt's unapplied cash",
        amount_note="the unapplied cash waiting; not editable",
    )


def apply_unapplied(
    item: ReviewItem,
    allocations: list[tuple[str, Decimal | None]],
    user: AbstractBaseUser | None = None,
    *,
    expected: str = "",
) -> Posting:
    """Apply the item's waiting cash to open invoices of the receipt's customer: one
    application posting (§4.9), sent through `integrations.sending`. `expected` is
    the fingerprint the reviewer confirmed; another outcome by now is refused. The
    item stays open until the application is posted and nothing waits."""
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().get(pk=item.pk)
        txn, waiting = _waiting_cash(item)
        Posting.objects.select_for_update().filter(pk=waiting.receipt.pk).first()
        outcome = preview_apply_unapplied(item, allocations)
        if expected and outcome.fingerprint != expected:
            raise OutcomeChanged(
                "The unapplied cash or an invoice's balance changed since the preview: "
                "nothing was applied. Look at the outcome again."
            )
        waiting = unapplied.waiting_for(txn) or waiting
        lines = [(line.invno, line.applied) for line in outcome.lines]
        decision = ReviewDecision.objects.create(
            item=item,
            user=saved_user(user),
            action="apply_unapplied",
            detail={
                "receipt": waiting.receipt_no,
                "allocations": [[invno, str(share)] for invno, share in lines],
                "waiting": str(outcome.unapplied),
            },
        )
        posting, _ = sending.create_posting(
            txn,
            waiting.receipt.sagepro,
            Posting.Kind.APPLICATION,
            unapplied.application_payload(waiting, lines),
            key_suffix=f"app-{decision.pk}",
            decided_by=user or "a reviewer",
        )
        ReviewDecision.objects.filter(pk=decision.pk).update(
            detail={**decision.detail, "posting": posting.pk}
        )
        txn.record(
            "review_apply_unapplied",
            f"{outcome.summary} (by {user or 'a reviewer'}, review item {item.pk})",
            user=user,
            posting=posting.pk,
        )
        sending.queue_send(posting)
    return posting


def preview_refund_unapplied(item: ReviewItem, amount: Decimal | None) -> Outcome:
    """What refunding the waiting cash (all of it, or `amount`) through PayTrace will
    do; never more than waits."""
    txn, waiting = _waiting_cash(item)
    amount = (
        waiting.amount
        if amount is None
        else _cash_amount(amount, f"the refund of {txn.transaction_id}")
    )
    cash = format_money(waiting.amount, txn.currency)
    if amount > waiting.amount:
        raise ReviewError(
            f"{format_money(amount, txn.currency)} is more than the {cash} of unapplied "
            f"cash waiting on receipt {waiting.receipt_no}: refund at most {cash}."
        )
    pending = UnappliedRefund.objects.filter(
        transaction=txn,
        state__in=[UnappliedRefund.State.REQUESTED, UnappliedRefund.State.UNKNOWN],
    ).first()
    if pending is not None:
        raise ReviewError(
            f"A refund of {format_money(pending.amount, txn.currency)} of this cash was "
            f"asked of PayTrace at {pending.requested_at:%Y-%m-%d %H:%M} UTC and its "
            "answer is not known: look the sale up in PayTrace before refunding again."
        )
    rest = waiting.amount - amount
    return Outcome(
        summary=f"Refund {format_money(amount, txn.currency)} of the unapplied cash of "
        f"receipt {waiting.receipt_no} to the card through PayTrace"
        + (f"; {format_money(rest, txn.currency)} still waits" if rest > 0 else ""),
        transaction_id=txn.transaction_id,
        customer=waiting.custno,
        amount=waiting.amount,
        currency=txn.currency,
        unapplied=rest,
        posts=False,
        closes=(_item_words(item),)
        if rest <= 0 and item.state == ReviewItem.State.OPEN
        else (),
        notes=(
            f"PayTrace refunds {format_money(amount, txn.currency)} of sale "
            f"{txn.transaction_id} to the card "
            + (f"•••• {txn.card_last4}" if txn.card_last4 else "it was paid with")
            + ". PayTrace refuses a sale that has not settled yet: then nothing is "
            "refunded and you can try again after settlement.",
            "The refund comes back from PayTrace as its own transaction and is "
            "booked in Sage Pro as a credit memo against this receipt.",
        ),
        amount_note="the unapplied cash waiting; not editable",
    )


def refund_unapplied(
    item: ReviewItem,
    amount: Decimal | None,
    user: AbstractBaseUser | None = None,
    *,
    expected: str = "",
) -> UnappliedRefund:
    """Refund waiting cash through PayTrace, once.

    The refund is recorded (and committed) before PayTrace is called, so a second
    press or a second reviewer finds the cash already taken. A refusal (error 817: the
    sale has not settled) gives the cash back and says so; no answer at all leaves the
    refund `unknown` (the cash stays taken until someone looks in PayTrace). On
    success the refund is expected (`integrations.refunds.expect_refund`), so the
    refund transaction PayTrace reports later is booked against this sale.
    """
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().get(pk=item.pk)
        txn, waiting = _waiting_cash(item)
        Posting.objects.select_for_update().filter(pk=waiting.receipt.pk).first()
        outcome = preview_refund_unapplied(item, amount)
        if expected and outcome.fingerprint != expected:
            raise OutcomeChanged(
                "The unapplied cash changed since the preview: nothing was refunded. "
                "Look at the outcome again."
            )
        amount = waiting.amount - outcome.unapplied
        refund = UnappliedRefund.objects.create(
            transaction=txn,
            receipt=waiting.receipt,
            item=item,
            amount=amount,
            currency=txn.currency,
            requested_by=saved_user(user),
        )
    money = format_money(amount, txn.currency)
    try:
        answer = txn.connection.paytrace().refund(txn.transaction_id, amount)
    except ConnectorError as exc:
        if exc.transient or exc.outcome_unknown:
            _refund_answered(refund, UnappliedRefund.State.UNKNOWN, str(exc))
            raise ReviewError(
                f"PayTrace did not answer the refund of {money} ({exc}). It may have "
                f"been made: look sale {txn.transaction_id} up in PayTrace before "
                "doing anything else; the cash counts as refunded until then."
            ) from exc
        _refund_answered(refund, UnappliedRefund.State.REFUSED, str(exc))
        if exc.code == REFUND_NOT_SETTLED:
            raise ReviewError(
                f"PayTrace refused the refund: sale {txn.transaction_id} has not "
                "settled yet (PayTrace error 817). Nothing was refunded. Wait until "
                "the sale settles (usually the next business day) and refund it then."
            ) from exc
        raise ReviewError(
            f"PayTrace refused the refund of {money}: {exc}. Nothing was refunded."
        ) from exc
    refund_id = str(answer.get("transaction_id") or "")
    with transaction.atomic():
        _refund_answered(refund, UnappliedRefund.State.REFUNDED, "", refund_id)
        detail = {
            "refund": refund.pk,
            "amount": str(amount),
            "refund_transaction_id": refund_id,
            "receipt": waiting.receipt_no,
        }
        text = (
            f"Refunded {money} of the unapplied cash of receipt {waiting.receipt_no} "
            f"through PayTrace (refund {refund_id})"
        )
        if outcome.unapplied > 0 or item.state != ReviewItem.State.OPEN:
            ReviewDecision.objects.create(
                item=item,
                user=saved_user(user),
                action="refund_unapplied",
                detail=detail,
            )
            txn.record("review_refund_unapplied", text, user=user)
        else:
            item.resolve(user, text, "refund_unapplied", detail)
        _expect_refund(txn, refund_id, amount, user)
    return refund


def _refund_answered(
    refund: UnappliedRefund, state: str, error: str, refund_id: str = ""
) -> None:
    UnappliedRefund.objects.filter(pk=refund.pk).update(
        state=state,
        error=error[:2000],
        refund_transaction_id=refund_id[:40],
        answered_at=timezone.now(),
    )
    refund.refresh_from_db()


def _expect_refund(
    txn: PaymentTransaction,
    refund_id: str,
    amount: Decimal,
    user: AbstractBaseUser | None,
) -> None:
    """Tell the refunds pipeline the refund is ours: it links the refund transaction
    PayTrace reports later to this sale and books its credit memo."""
    refunds.expect_refund(txn, refund_id, amount, user)
    txn.record(
        "refund_expected",
        f"Refund {refund_id} of {format_money(amount, txn.currency)} expected from "
        "PayTrace (unapplied cash refunded by a reviewer)",
        user=user,
    )


def preview_leave_on_account(item: ReviewItem, reason: str) -> Outcome:
    """What leaving the waiting cash on the customer's account will do: nothing
    posted, the item resolved with the reason."""
    txn, waiting = _waiting_cash(item)
    reason = reason.strip()
    if not reason:
        raise ReviewError("Say why the cash stays on account (the reason is kept).")
    return Outcome(
        summary=f"Leave {format_money(waiting.amount, txn.currency)} on customer "
        f"{waiting.custno}'s account: {reason}",
        transaction_id=txn.transaction_id,
        customer=waiting.custno,
        amount=waiting.amount,
        currency=txn.currency,
        unapplied=waiting.amount,
        closes=(_item_words(item),) if item.state == ReviewItem.State.OPEN else (),
        notes=(
            "Nothing is posted to Sage Pro; the cash stays unapplied on receipt "
            f"{waiting.receipt_no} and in the Unapplied cash list.",
        ),
        amount_note="the unapplied cash waiting; not editable",
    )


def leave_on_account(
    item: ReviewItem, reason: str, user: AbstractBaseUser | None = None
) -> None:
    """Leave the waiting cash on account, with the reason: an open item is resolved
    with it; a resolved one (the payment was put on account) keeps the reason among
    its decisions. Pressing it twice records it once."""
    reason = reason.strip()
    if not reason:
        raise ReviewError("Say why the cash stays on account (the reason is kept).")
    resolution = f"Left on account as unapplied cash: {reason}"
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().get(pk=item.pk)
        last = item.decisions.order_by("-at", "-id").first()
        if (
            last is not None
            and last.action == "leave_on_account"
            and (last.detail or {}).get("reason") == reason
        ):
            return
        txn, waiting = _waiting_cash(item)
        detail = {
            "reason": reason,
            "receipt": waiting.receipt_no,
            "waiting": str(waiting.amount),
        }
        if item.state == ReviewItem.State.OPEN:
            item.resolve(user, resolution, "leave_on_account", detail)
            return
        ReviewDecision.objects.create(
            item=item, user=saved_user(user), action="leave_on_account", detail=detail
        )
        txn.record("review_leave_on_account", f"{resolution} by {user}", user=user)


# --- a refund item: link the refund to its sale, or decide it again ---------------------
# The preview says what `refunds.decide_refund` will do (a credit memo of the refund's
# amount against the sale's receipt, or a wait for that receipt), or refuses with why
# nothing can be (another connection's sale, a refund, over what remains). Confirming
# twice, or two reviewers at once, decides once: the refund holds one credit memo.


def _refund_of(item: ReviewItem) -> PaymentTransaction:
    """The item's refund, if a reviewer may decide it."""
    if item.kind != ReviewItem.Kind.REFUND:
        raise ReviewError(f"Review item {item.pk} is not about a refund.")
    txn = item.transaction
    if txn is None or not refunds.is_refund(txn):
        raise ReviewError(
            f"Review item {item.pk} is about a void, not a refund: reverse the receipt "
            "in Sage Pro by hand, then resolve the item."
        )
    if "VOID" in (txn.status_message or "").upper():
        raise ReviewError(
            f"Refund {txn.transaction_id} was voided at PayTrace: nothing to post."
        )
    memo = txn.postings.filter(kind=Posting.Kind.CREDIT_MEMO).first()
    if memo is not None:
        raise ReviewError(
            f"Refund {txn.transaction_id} already has its credit memo (posting "
            f"{memo.pk}, {memo.get_state_display().lower()}): retry or resolve that "
            "posting instead."
        )
    return txn


def find_sale(txn: PaymentTransaction, sale_id: str) -> PaymentTransaction:
    """The payment a reviewer typed, preferring the refund's own connection."""
    text = str(sale_id or "").strip()
    if not text:
        raise ReviewError("Type or pick the sale's PayTrace transaction id.")
    found = list(
        PaymentTransaction.objects.filter(transaction_id=text).select_related(
            "connection"
        )[:5]
    )
    if not found:
        raise ReviewError(f"No payment {text} is known to the portal.")
    for sale in found:
        if sale.connection_id == txn.connection_id:
            return sale
    return found[0]  # another connection's: refused with the reason


def _refund_outcome(
    item: ReviewItem, txn: PaymentTransaction, sale: PaymentTransaction, verb: str
) -> Outcome:
    plan = refunds.plan_refund(txn, sale)
    if plan.problem:
        raise ReviewError(plan.problem)
    cur = txn.currency
    amount = plan.amount
    after = plan.remains - amount
    facts = (
        f"Sale {sale.transaction_id}: {format_money(sale.amount, cur)}; already "
        f"refunded {format_money(plan.already, cur)}; remains "
        f"{format_money(plan.remains, cur)}, {format_money(after, cur)} after this "
        "refund.",
    )
    if plan.waits:
        receipt = plan.receipt
        state = receipt.get_state_display().lower() if receipt else "not created yet"
        return Outcome(
            summary=(
                f"{verb}: refund {txn.transaction_id} of {format_money(amount, cur)} "
                f"waits for the receipt of sale {sale.transaction_id} ({state}); its "
                "credit memo posts when that receipt does"
            ),
            transaction_id=txn.transaction_id,
            amount=amount,
            currency=cur,
            posts=False,
            closes=(_item_words(item),),
            notes=(
                *facts,
                "Nothing is posted now: the refund waits, and comes back to review "
                "if the receipt never posts.",
            ),
            amount_note="the refund's amount; not editable",
        )
    payload = plan.payload or {}
    receipt_no = payload.get("receipt_no", "")
    cash = payload.get("cash_account") or "Sage Pro's default cash account"
    lines = [
        f"Dr refund account {payload.get('refund_account')} "
        f"{format_money(amount, cur)} / Cr cash account {cash} "
        f"{format_money(amount, cur)}."
    ]
    if payload.get("fee_amount"):
        fee = Decimal(payload["fee_amount"])
        lines.append(
            f"Refund fee: Dr fee account {payload.get('fee_account')} "
            f"{format_money(fee, cur)} / Cr cash account {cash} "
            f"{format_money(fee, cur)}."
        )
    if payload.get("invno"):
        lines.append(
            f"Linked to invoice {payload['invno']}, which is not reopened (the refund "
            "is paid out)."
        )
    return Outcome(
        summary=(
            f"{verb}: post a credit memo of {format_money(amount, cur)} against receipt "
            f"{receipt_no} of sale {sale.transaction_id}"
        ),
        transaction_id=txn.transaction_id,
        customer=str(payload.get("custno", "")),
        amount=amount,
        currency=cur,
        posts=True,
        closes=(_item_words(item),),
        notes=(*facts, *lines),
        document=f"a credit memo against receipt {receipt_no}",
        amount_note="the refund's amount; not editable",
    )


def preview_link_sale(item: ReviewItem, sale_id: str) -> Outcome:
    """What linking the item's refund to the sale `sale_id` and deciding it will do."""
    _check_open(item)
    txn = _refund_of(item)
    sale = find_sale(txn, sale_id)
    if txn.original_id is not None and txn.original_id != sale.pk:
        raise ReviewError(
            f"Refund {txn.transaction_id} is already linked to sale "
            f"{txn.original.transaction_id}: decide it again instead."  # type: ignore[union-attr]
        )
    return _refund_outcome(
        item,
        txn,
        sale,
        f"Link refund {txn.transaction_id} to sale {sale.transaction_id}",
    )


def preview_decide_refund(item: ReviewItem) -> Outcome:
    """What deciding the item's refund again (its cause fixed) will do."""
    _check_open(item)
    txn = _refund_of(item)
    sale, why = refunds.planned_sale(txn)
    if sale is None:
        raise ReviewError(
            f"Refund {txn.transaction_id} has no sale to decide against ({why}): link "
            "it to its sale instead."
        )
    return _refund_outcome(item, txn, sale, "Decide again")


def _settle_refund(
    item: ReviewItem,
    user: AbstractBaseUser | None,
    expected: str,
    action: str,
    sale_id: str = "",
) -> str:
    resolution = (
        f"Linked to sale {str(sale_id).strip()} and decided"
        if action == "link_sale"
        else "Decided again"
    )
    if item.transaction_id is None:
        raise ReviewError(f"Review item {item.pk} has no payment.")
    with transaction.atomic():
        # The refund's row first, as the pipeline locks it, then the item.
        txn = (
            PaymentTransaction.objects.select_for_update()
            .select_related("connection")
            .get(pk=item.transaction_id)
        )
        item = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if item.state != ReviewItem.State.OPEN:
            if item.resolution.startswith(resolution):
                return item.resolution  # the same confirmation again: done once
            raise ReviewError(
                f"Review item {item.pk} was already {item.state}: {item.resolution}"
            )
        item.transaction = txn
        if action == "link_sale":
            outcome = preview_link_sale(item, sale_id)
        else:
            outcome = preview_decide_refund(item)
        if expected and outcome.fingerprint != expected:
            raise OutcomeChanged(
                "The refund or its sale changed since the preview (another refund of "
                "the sale, a posting): nothing was done. Look at the outcome again."
            )
        detail: dict[str, Any] = {"outcome": outcome.summary}
        if action == "link_sale":
            sale = find_sale(txn, sale_id)
            detail["sale"] = sale.transaction_id
        item.resolve(user, f"{resolution}: {outcome.summary}"[:1000], action, detail)
        try:
            if action == "link_sale":
                done = refunds.link_by_review(txn, sale, user)
            else:
                done = refunds.decide_by_review(txn)
        except ValueError as exc:
            raise ReviewError(str(exc)) from exc
        if done.startswith("review"):
            raise ReviewError(done.removeprefix("review: "))
    return f"{resolution}: {done}"


def link_refund_to_sale(
    item: ReviewItem,
    sale_id: str,
    user: AbstractBaseUser | None = None,
    *,
    expected: str = "",
) -> str:
    """Link the item's refund to the sale `sale_id` and decide it: a credit memo
    queued for Sage Pro, or a wait for the sale's receipt. `expected` is the
    fingerprint the reviewer confirmed."""
    return _settle_refund(item, user, expected, "link_sale", sale_id)


def decide_refund_again(
    item: ReviewItem, user: AbstractBaseUser | None = None, *, expected: str = ""
) -> str:
    """Decide the item's refund again (its cause fixed, e.g. a refund GL rule now
    exists): what `preview_decide_refund` showed."""
    return _settle_refund(item, user, expected, "decide_refund")
