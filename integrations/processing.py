"""What happens to a stored event: the pipeline from PayTrace record to Sage Pro receipt.

1. Claim the event (attempt counted and committed before any outbound call): one at a
   time here (`process_event`), or a batch at a time (`integrations.batches`).
2. Upsert the transaction under a row lock, map its status with the connection's status
   map, and record the change in its history; a status never moves backwards.
3. For a status whose action is "post receipt": decide which open Sage Pro invoice it
   pays, on the local mirror (a fresh read unless it is a clean match), and create the
   one cash-receipt posting the transaction may have (`choose_receipt`, which reads,
   then `commit_choice`, which writes).
4. Sending is `integrations.posting`: claim the posting (attempt committed first), ask
   Sage Pro by idempotency key when an earlier attempt's outcome is unknown, post,
   record the result. Transient failures back off and are retried by the sweeper;
   permanent ones go to review; a refusal a stale mirror explains is decided again.

No database transaction is held open across an HTTP call. Only what a later attempt
may get past is retried (a transient connector error, a busy or unreachable database, a
timeout); anything else fails the same way every time, so it goes to review at once
with the error named, and is logged in one line.

Transitions of one row are its model's methods (`Event.claim`, `Posting.mark_posted`,
`ReviewItem.open` ...); what a reviewer decides is in `integrations.review`.
"""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from integrations import documents, refunds, storefront
from integrations.batchcache import cached
from integrations.connectors.paytrace import PaymentRecord, normalize_record
from integrations.models import (
    GATEWAY_STATUS_RANK,
    Connection,
    Event,
    InboundDelivery,
    PaymentTransaction,
    Posting,
    ReviewItem,
    storable_text,
)
from integrations.models.failures import (
    UnprocessableRecordError,
    describe_failure,
    failure_code,
    is_transient,
    lease,
)
from integrations.models.payments import RECEIPT_TYPES
from integrations.posting import (
    decide_placement,
    decision_fields,
    receipt_document,
    send_posting,
)
from integrations.queueing import queue, record_and_queue
from integrations.redaction import redact_data
from mappings.matching import Decision as MatchDecision
from mappings.models import GatewayStatus, StatusMap
from mappings.status import Action, StatusFacts, StatusRule, map_status

logger = logging.getLogger(__name__)

# PayTrace transaction ids are integers; a silent post naming anything else is refused.
TRANSACTION_ID = re.compile(r"[0-9]{1,19}")


# --- 1. the event ------------------------------------------------------------------------


def process_event(event_id: int) -> str:
    """Run one event through the pipeline. Safe to call twice, or at the same time."""
    event = Event.claim(event_id)
    if event is None:
        return "skipped"
    try:
        outcome = _apply_event(event)
    except Exception as exc:
        return event_failed(event, exc)
    Event.objects.filter(pk=event.pk).update(
        state=Event.State.PROCESSED,
        processed_at=timezone.now(),
        outcome=outcome[:200],
        last_error="",
    )
    return outcome


def event_failed(event: Event, exc: BaseException) -> str:
    """Back off on a failure a later attempt may get past; anything else is dead at
    once, with a review item. Returns "failed" or "dead"."""
    if not is_transient(exc):
        return _event_unprocessable(event, exc)
    logger.warning(
        "event %s failed (attempt %s), will retry: %s",
        event.pk,
        event.attempts,
        describe_failure(exc),
        extra={"event_id": event.pk},
    )
    return event.fail(exc)


def _event_unprocessable(event: Event, exc: BaseException) -> str:
    """A failure no retry will fix: the event is dead at once, a person is told why."""
    plain = describe_failure(exc)
    code = failure_code(exc)
    logger.warning(
        "event %s (%s) cannot be processed, sent to review without retrying [%s]: %s",
        event.pk,
        event.type,
        code,
        plain,
        extra={"event_id": event.pk},
    )
    event.mark_failed(
        exc, state=Event.State.DEAD, error=f"{type(exc).__name__}: {plain}"
    )
    txn = PaymentTransaction.objects.filter(
        connection=event.connection, transaction_id=event.transaction_id
    ).first()
    ReviewItem.open(
        txn,
        ReviewItem.Kind.DEAD,
        storable_text(
            f"Event {event.event_id} ({event.type}) cannot be processed: {plain}. "
            "No retry will fix this: check the payment with the sender, then dismiss "
            "this item (a corrected record arrives as a new event)."
        ),
        event=event,
        error_code=code,
    )
    return "dead"


def _apply_event(event: Event) -> str:
    outcome, posting = plan_event(event)
    if posting is not None:
        send_posting(posting.pk)
    return outcome


def plan_event(event: Event) -> tuple[str, Posting | None]:
    """Steps 2 and 3 for one claimed event: the event's outcome, and the posting to
    send now (None when there is none). Sending is the caller's: one at a time here,
    in batches in `integrations.batches` (which runs the same steps a batch at a
    time: `upsert_event`, `choose_receipt`, `commit_choice`)."""
    decision = upsert_event(event)
    if decision.action != Action.POST_RECEIPT:
        return decision.outcome, None
    return plan_receipt(decision.transaction, event=event)


def upsert_event(event: Event) -> "Decision":
    """Step 2: the event's record on its transaction, and what its status asks for."""
    try:
        record_data = event.payload.get("data") or {}
        record = normalize_record(record_data, event.connection.time_zone)
    except Exception as exc:
        raise UnprocessableRecordError("the PayTrace record is malformed") from exc
    return _upsert_transaction(event, record, record_data)


# --- 2. the transaction and its status ---------------------------------------------------


@dataclass
class Decision:
    """What step 2 decided, to act on outside the row lock."""

    transaction: PaymentTransaction
    action: str
    outcome: str


def _upsert_transaction(
    event: Event, record: PaymentRecord, record_data: dict[str, Any]
) -> Decision:
    """Store the record on its transaction under a row lock and map its status; a
    status never moves backwards."""
    facts = StatusFacts(
        event_type=event.type,
        transaction_type=record.transaction_type,
        status_code=record.status_code,
        status_message=record.status_message,
        response_code=record.response_code,
    )
    connection = event.connection
    rule = map_status(
        facts,
        cached(("status_map", connection.pk), lambda: StatusMap.rules_for(connection)),
    )
    source, _ = redact_data(record_data)
    with transaction.atomic(savepoint=False):  # inside a batch: the event's savepoint
        txn = _locked_transaction(event, record)
        if rule is None:
            return _unmapped_status(txn, event, record, source, facts)
        if _is_stale(txn, event, rule):
            # The record in a stale event is older than what we hold: keep ours.
            txn.record(
                "stale_event_ignored",
                f"{event.type} ({rule.gateway_status}) arrived after {txn.gateway_status}; status kept.",
                event=event,
                kept=txn.gateway_status,
                ignored=rule.gateway_status,
            )
            # A late event can still post the receipt its status calls for, if none exists.
            action = Action.POST_RECEIPT if txn.wants_receipt() else Action.RECORD_ONLY
            return Decision(txn, action, f"stale {rule.gateway_status} ignored")
        _change_status(txn, event, record, source, rule)
        action = _action_for(txn, event, rule)
        outcome = f"{txn.gateway_status}/{txn.mapped_status}"
        if action == Action.REVERSE:
            # A refund's credit memo or a void's receipt reversal, decided under the
            # row lock (no outbound call: the posting is sent after the commit).
            outcome = f"{outcome}: {refunds.decide_reversal(txn, event=event)}"
        return Decision(txn, action, outcome)


def _locked_transaction(event: Event, record: PaymentRecord) -> PaymentTransaction:
    """The record's transaction, created on first sight, locked for this transaction."""
    rows = PaymentTransaction.objects.select_for_update().filter(
        connection=event.connection, transaction_id=record.transaction_id
    )
    txn = rows.first()
    if txn is None:
        try:
            with transaction.atomic():  # a new row is ours (locked) until we commit
                txn = PaymentTransaction.objects.create(
                    connection=event.connection,
                    transaction_id=record.transaction_id,
                    amount=record.amount,
                    currency=record.currency,
                )
        except IntegrityError:  # another worker created it first: wait for its lock
            txn = rows.get()
        else:
            txn.record(
                "received", f"First seen in {event.type} ({event.source}).", event=event
            )
    txn.connection = event.connection  # the same row, already loaded
    return txn


def _unmapped_status(
    txn: PaymentTransaction,
    event: Event,
    record: PaymentRecord,
    source: dict[str, Any],
    facts: StatusFacts,
) -> Decision:
    txn.copy_record(record, source)
    txn.save()
    txn.record("unmapped_status", f"No status-map row matches {facts}.", event=event)
    ReviewItem.open(
        txn,
        ReviewItem.Kind.UNMAPPED_STATUS,
        f"No status-map row for event {event.type}, type {record.transaction_type or '-'}, status_code {record.status_code or '-'}, message {record.status_message or '-'}. Add a row and retry.",
        event=event,
    )
    return Decision(txn, Action.REVIEW, "unmapped status")


# The ranks by plain value: a row's status is a str, the table's keys are the enum.
_RANK: dict[str, int] = {str(k): v for k, v in GATEWAY_STATUS_RANK.items()}


def _is_stale(txn: PaymentTransaction, event: Event, rule: StatusRule) -> bool:
    """Whether the event's status is behind the one the transaction holds."""
    old_rank = _RANK.get(txn.gateway_status, 0)
    new_rank = _RANK.get(rule.gateway_status, 0)
    older = (
        txn.status_changed_at is not None and event.occurred_at < txn.status_changed_at
    )
    return new_rank < old_rank or (
        new_rank == old_rank and older and rule.gateway_status != txn.gateway_status
    )


def _change_status(
    txn: PaymentTransaction,
    event: Event,
    record: PaymentRecord,
    source: dict[str, Any],
    rule: StatusRule,
) -> None:
    previous = (txn.gateway_status, txn.mapped_status)
    txn.copy_record(record, source)
    txn.gateway_status = rule.gateway_status
    txn.mapped_status = rule.payment_status
    txn.status_changed_at = max(
        filter(None, [txn.status_changed_at, event.occurred_at])
    )
    txn.save()
    if previous != (txn.gateway_status, txn.mapped_status):
        txn.record(
            "status_changed",
            f"{previous[0]} → {txn.gateway_status} ({rule.describe()})",
            event=event,
            gateway_status=txn.gateway_status,
            mapped_status=txn.mapped_status,
            rule=rule.id,
        )


def _action_for(txn: PaymentTransaction, event: Event, rule: StatusRule) -> str:
    """What the new status asks for. "Reverse" is carried out by the caller
    (`refunds.decide_reversal`); a status the map only records while a receipt is
    posted, or one the map sends to review, opens a review item for a person."""
    action = rule.action
    if (
        action == Action.RECORD_ONLY
        and txn.gateway_status in (GatewayStatus.VOIDED, GatewayStatus.REFUNDED)
        and txn.postings.filter(state=Posting.State.POSTED).exists()
    ):
        posted = txn.postings.filter(state=Posting.State.POSTED).first()
        receipt = posted.document_number if posted else "?"
        ReviewItem.open(
            txn,
            ReviewItem.Kind.REVERSAL,
            f"PayTrace reports {txn.gateway_status} but receipt {receipt} is posted in Sage Pro. Reverse it there.",
            event=event,
        )
    if action == Action.REVIEW:
        ReviewItem.open(
            txn,
            ReviewItem.Kind.UNMAPPED_STATUS,
            f"The status map sends {rule.describe()} to review.",
            event=event,
        )
    if (
        action == Action.POST_RECEIPT
        and (txn.transaction_type or "").upper() not in RECEIPT_TYPES
    ):
        action = Action.RECORD_ONLY
    return action


# --- 3. the decision: which invoice the payment pays ------------------------------------


def prepare_receipt(txn: PaymentTransaction, *, event: Event | None = None) -> str:
    """Match the payment to its open invoice, and create and send its cash receipt."""
    outcome, posting = plan_receipt(txn, event=event)
    if posting is not None:
        send_posting(posting.pk)
    return outcome


def plan_receipt(
    txn: PaymentTransaction, *, event: Event | None = None
) -> tuple[str, Posting | None]:
    """Match the payment to its open invoice and create its cash receipt posting;
    returns the outcome and the posting to send (None when nothing is to be sent).

    The connection's matching rules decide (mappings.matching) on the mirror of Sage
    Pro's invoices, and on a fresh read of the invoice whenever the answer is anything
    but a clean application (`posting.decide_placement`): apply by itself only
    on an exact reference, an amount within tolerance and a consistent customer; keep
    a second payment of a paid invoice, or a likely duplicate, as unapplied cash with a
    `possible_duplicate` item; apply an overpayment up to the balance with an
    `overpayment` item; anything else waits in review. Never creates a second receipt
    posting for a transaction.
    """
    return commit_choice(choose_receipt(txn, event=event))


@dataclass
class ReceiptChoice:
    """What `choose_receipt` decided (it reads, and writes nothing); `commit_choice`
    writes it: a review item to open, or the posting to create, or nothing new."""

    transaction: PaymentTransaction
    event: Event | None
    outcome: str = ""
    existing: Posting | None = None  # a posting still to send
    review: tuple[str, str] | None = None  # (kind, reason) to open instead
    sage_conn: Connection | None = None
    document: documents.ReceiptDocument | None = None
    review_kind: str = ""
    reason: str = ""
    decision: MatchDecision | None = None  # the matching rules' decision, explained
    handoff: Callable[[], str] | None = None  # another flow takes the payment over


def choose_receipt(
    txn: PaymentTransaction, *, event: Event | None = None
) -> ReceiptChoice:
    """Step 3 without its writes: which invoice the payment pays, and the receipt.

    No transaction is held: a decision that is not a clean application reads the
    invoice fresh from Sage Pro (transient errors retry the event)."""
    existing = txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first()
    if existing is not None:
        due = existing.state in (
            Posting.State.PENDING,
            Posting.State.FAILED,
            Posting.State.IN_PROGRESS,
        )
        return ReceiptChoice(
            txn,
            event,
            f"receipt posting already exists ({existing.state})",
            existing=existing if due else None,
        )
    sage_conn = txn.connection.sagepro
    if sage_conn is None or not sage_conn.is_active:
        reason = f"Connection {txn.connection.slug} has no active Sage Pro connection to post to. Set one on the connection, then retry."
        return ReceiptChoice(
            txn,
            event,
            "no Sage Pro connection",
            review=(ReviewItem.Kind.VALIDATION, reason),
        )
    handoff = storefront.payment_handoff(txn)
    if handoff is not None:
        return ReceiptChoice(txn, event, "storefront order", handoff=handoff)
    placement = decide_placement(txn, sage_conn)
    decision = placement.decision
    if decision.action == "review":
        return ReceiptChoice(
            txn,
            event,
            f"{decision.review_kind}: {decision.reason}",
            review=(decision.review_kind, decision.reason),
            decision=decision,
        )
    return ReceiptChoice(
        txn,
        event,
        sage_conn=sage_conn,
        document=receipt_document(txn, sage_conn, placement),
        review_kind=decision.review_kind,
        reason=decision.reason,
        decision=decision,
    )


def commit_choice(choice: ReceiptChoice) -> tuple[str, Posting | None]:
    """Write what `choose_receipt` decided; returns the outcome and the posting to
    send (None when nothing is to be sent)."""
    txn, event = choice.transaction, choice.event
    if choice.decision is not None:
        txn.match_explanation = choice.decision.explanation
        PaymentTransaction.objects.filter(pk=txn.pk).update(
            match_explanation=choice.decision.explanation
        )
    if choice.handoff is not None:
        return choice.handoff(), None
    if choice.review is not None:
        ReviewItem.open(txn, choice.review[0], choice.review[1], event=event)
        return choice.outcome, None
    if choice.document is None or choice.sage_conn is None:
        return choice.outcome, choice.existing
    posting = create_receipt_posting(
        txn, choice.sage_conn, choice.document, decision=choice.decision
    )
    if choice.review_kind:
        ReviewItem.open(
            txn, choice.review_kind, choice.reason, event=event, posting=posting
        )
    outcome = f"receipt {posting.pk} {posting.state}" + (
        f" ({choice.review_kind})" if choice.review_kind else ""
    )
    return outcome, posting


# --- 4. the document and 5. its posting --------------------------------------------------


def create_receipt_posting(
    txn: PaymentTransaction,
    sage_conn: Connection,
    document: documents.ReceiptDocument,
    *,
    decision: MatchDecision | None = None,
) -> Posting:
    """Create the transaction's one cash-receipt posting from its built `document`
    (receipt, GL account and rule trace, exchange rate), or return the one it has.

    The document is validated against Sage Pro's periods and chart when it is sent.
    """
    receipt = document.receipt
    kind = Posting.Kind.CASH_RECEIPT
    with transaction.atomic(savepoint=False):  # see _upsert_transaction
        posting, created = Posting.objects.get_or_create(
            transaction=txn,
            kind=kind,
            defaults={
                "sagepro": sage_conn,
                "idempotency_key": Posting.key_for(
                    txn.connection, txn.transaction_id, kind
                ),
                **document.posting_fields(),
                **(decision_fields(decision) if decision is not None else {}),
                # Sending builds it again and stops with a validation item.
                "last_error": documents.problem_summary(document.problems)[:2000]
                if document.problems
                else "",
                "not_sent": bool(document.problems),
            },
        )
        if created:
            first = receipt.applications[0] if receipt.applications else None
            invoices = ", ".join(a.invno for a in receipt.applications) or "-"
            txn.record(
                "posting_created",
                f"Cash receipt for invoice{'s' if len(receipt.applications) > 1 else ''} {invoices}"
                + (
                    f", GL account {document.gl_account}" if document.gl_account else ""
                ),
                amount=txn.amount,
                applied=str(first.amount) if first else "0.00",
                gl_account=document.gl_account,
                gl_rule=document.gl_rule_id,
                exchange_rate=document.exchange_rate,
            )
    return posting


# --- silent posts: confirmed by lookup, then an event like any other -------------------


def confirm_silent_post(delivery_id: int) -> str:
    """Look up the transaction a silent post names at PayTrace; only then create an event."""
    delivery = InboundDelivery.objects.select_related("connection").get(pk=delivery_id)
    if delivery.event_id or delivery.connection is None:
        return "already handled"
    transaction_id = delivery.webhook_id.removeprefix("silent-post:")
    if not TRANSACTION_ID.fullmatch(transaction_id):
        # "²³".isdigit() is True, yet no PayTrace id looks like it: never looked up.
        return _silent_post_unconfirmed(
            delivery,
            "invalid_transaction_id",
            "TRANSACTIONID is not a PayTrace transaction id (1 to 19 ASCII digits); "
            "the silent post was not looked up.",
        )
    try:
        record = delivery.connection.paytrace().export_by_id(transaction_id)
    except Exception as exc:
        if is_transient(exc):
            delivery.failure_reason = "lookup_failed"
            delivery.failure_detail = describe_failure(exc)
            delivery.save(update_fields=["failure_reason", "failure_detail"])
            raise
        return _silent_post_unconfirmed(
            delivery,
            "lookup_failed",
            f"PayTrace could not confirm transaction {transaction_id}: "
            f"{describe_failure(exc)}",
        )
    if record is None:
        delivery.signature_result = InboundDelivery.SignatureResult.UNCONFIRMED
        delivery.failure_reason = "not_found_at_paytrace"
        delivery.failure_detail = f"PayTrace has no transaction {transaction_id}; the silent post was not trusted."
        delivery.save(
            update_fields=["signature_result", "failure_reason", "failure_detail"]
        )
        return "unconfirmed"
    with transaction.atomic():
        event, _ = record_and_queue(
            Event.from_export(
                delivery.connection,
                delivery.webhook_id,
                record,
                source=Event.Source.SILENT_POST,
                transaction_id=transaction_id,
            )
        )
        delivery.signature_result = InboundDelivery.SignatureResult.CONFIRMED
        delivery.event = event
        delivery.save(update_fields=["signature_result", "event"])
    return "confirmed"


def _silent_post_unconfirmed(
    delivery: InboundDelivery, reason: str, detail: str
) -> str:
    """Record why a silent post was not trusted; no retry will change it."""
    logger.warning("silent post delivery %s not confirmed [%s]", delivery.pk, reason)
    delivery.signature_result = InboundDelivery.SignatureResult.UNCONFIRMED
    delivery.failure_reason = reason
    delivery.failure_detail = storable_text(detail)
    delivery.save(
        update_fields=["signature_result", "failure_reason", "failure_detail"]
    )
    return "unconfirmed"


# --- the sweeper -----------------------------------------------------------------------


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Re-queue what is due, once.

    Due: failed work whose backoff has passed; work claimed longer ago than the lease
    (its worker died); and work queued longer ago than the lease whose task never ran
    (lost). Re-queueing moves a row back to queued/pending and stamps the time in
    `next_attempt_at`, so the next sweep leaves it alone until the lease passes again.
    """
    now = now or timezone.now()
    stale = now - lease()
    E, P = Event.State, Posting.State
    event_due = (
        Q(state=E.FAILED, next_attempt_at__lte=now)
        | Q(state=E.PROCESSING, started_at__lt=stale)
        | Q(state=E.QUEUED, next_attempt_at__lt=stale)
        | Q(state=E.QUEUED, next_attempt_at__isnull=True, received_at__lt=stale)
    )
    posting_due = (
        Q(state=P.FAILED, next_attempt_at__lte=now)
        | Q(state=P.IN_PROGRESS, started_at__lt=stale)
        | Q(state=P.PENDING, next_attempt_at__lt=stale)
        | Q(state=P.PENDING, next_attempt_at__isnull=True, created_at__lt=stale)
    )
    with transaction.atomic():
        counts = {
            "events": _requeue(Event, event_due, E.QUEUED, "process_event", now),
            "postings": _requeue(Posting, posting_due, P.PENDING, "send_posting", now),
        }
        # Events stored by a web process that died before it woke a worker: one drain
        # for all of them, once (stamped like a re-queue; the lease rule above hands
        # them on one by one if even that drain never runs).
        unwoken = Event.objects.filter(
            state=E.QUEUED,
            next_attempt_at__isnull=True,
            received_at__lt=now - timedelta(seconds=10),
        ).update(next_attempt_at=now)
        if unwoken:
            queue("drain")
        counts["drains"] = int(bool(unwoken))
    # Refunds and voids waiting for their sale or its receipt (each in its own
    # transaction; a look-up at Sage Pro holds none).
    counts["reversals"] = refunds.sweep(now)
    return counts


def _requeue(
    model: type[Event] | type[Posting], due: Q, state: str, task: str, now: datetime
) -> int:
    """Queue up to 500 due rows once each; returns how many were queued."""
    queued = 0
    for row in model.objects.filter(due).values("pk", "state", "next_attempt_at")[:500]:
        # Conditional: a worker or another sweeper that got there first wins.
        if model.objects.filter(
            pk=row["pk"], state=row["state"], next_attempt_at=row["next_attempt_at"]
        ).update(state=state, next_attempt_at=now):
            queue(task, row["pk"])
            queued += 1
    return queued
