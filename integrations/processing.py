"""What happens to a stored event: the pipeline from PayTrace record to Sage Pro receipt.

1. Claim the event (attempt counted and committed before any outbound call).
2. Upsert the transaction under a row lock, map its status with the connection's status
   map, and record the change in its history; a status never moves backwards.
3. For a status whose action is "post receipt": find the open Sage Pro invoice its
   `invoice_id` names (outside any DB transaction), create the one cash-receipt posting
   the transaction may have, and send it.
4. Sending: claim the posting (attempt committed first), ask Sage Pro by idempotency key
   when an earlier attempt's outcome is unknown, post, record the result. Transient
   failures back off and are retried by the sweeper; permanent ones go to review.

No database transaction is held open across an HTTP call. Only what a later attempt
may get past is retried (a transient connector error, a busy or unreachable database, a
timeout); anything else fails the same way every time, so it goes to review at once
with the error named, and is logged in one line.
"""

import logging
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import requests
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DataError, InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from integrations import documents
from integrations.connectors.base import ConnectorError
from integrations.connectors.paytrace import normalize_record
from integrations.models import (
    GATEWAY_STATUS_RANK,
    Connection,
    Event,
    InboundDelivery,
    PaymentTransaction,
    Posting,
    ReviewDecision,
    ReviewItem,
    money_problem,
    storable_text,
)
from integrations.redaction import redact_data
from mappings import matching
from mappings.models import StatusMap
from mappings.status import Action, StatusFacts, map_status

logger = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
RECEIPT_TYPES = {"SALE", "CAPTURE", ""}
# PayTrace transaction ids are integers; a silent post naming anything else is refused.
TRANSACTION_ID = re.compile(r"[0-9]{1,19}")
# Failures a later attempt may get past. Any other exception fails the same way on
# every attempt: the record is malformed, a remote system refused it, or a bug.
TRANSIENT_ERRORS = (
    OperationalError,  # database locked, unreachable, deadlock, serialization failure
    InterfaceError,  # the database connection was lost
    TimeoutError,
    ConnectionError,
    requests.Timeout,
    requests.ConnectionError,
)
# Failures caused by the data itself (malformed record, amount out of range, text the
# database cannot store).
DATA_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    ArithmeticError,
    ValidationError,
    DataError,
)


class UnprocessableRecordError(ValueError):
    """The stored record cannot be read as a PayTrace transaction."""


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same work again later may succeed."""
    if isinstance(exc, ConnectorError):
        return exc.transient
    return isinstance(exc, TRANSIENT_ERRORS)


def failure_code(exc: BaseException) -> str:
    """A short machine-readable name for a failure (review items, postings)."""
    if isinstance(exc, ConnectorError):
        return (exc.code or ("unavailable" if exc.transient else "refused"))[:40]
    if isinstance(exc, TRANSIENT_ERRORS):
        return (
            "database_unavailable" if isinstance(exc, OperationalError) else "timeout"
        )
    if isinstance(exc, DATA_ERRORS):
        return "invalid_record"
    return "internal_error"


def describe_failure(exc: BaseException) -> str:
    """The failure in plain words, for a person (card numbers masked)."""
    if isinstance(exc, UnprocessableRecordError) and exc.__cause__ is not None:
        text = f"{exc}: {describe_failure(exc.__cause__)}"
    elif isinstance(exc, ValidationError):
        text = "; ".join(exc.messages)
    elif isinstance(exc, KeyError):
        text = (
            f"the field {exc.args[0]!r} is missing"
            if exc.args
            else "a field is missing"
        )
    elif isinstance(exc, UnicodeError):
        text = "a text field holds characters that cannot be stored (invalid Unicode, e.g. a lone surrogate)"
    elif isinstance(exc, ArithmeticError) and str(exc).startswith("[<class 'decimal."):
        # decimal's own text is only "[<class 'decimal.InvalidOperation'>]"
        text = (
            "an amount is not a number the portal can hold (too large, or not finite)"
        )
    else:
        text = str(exc).strip() or type(exc).__name__
    return storable_text(text)[:1500]


def lease() -> timedelta:
    """How long a claim on an event or posting lasts. A claim older than this was
    abandoned by a worker that died, and may be taken again."""
    return timedelta(seconds=settings.WORK_LEASE_SECONDS)


def backoff_delay(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: base·2^(n−1), capped, then 50–100 % of it."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    factor = (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=ceiling * factor)


def queue(func: str, *args: Any) -> None:
    """Queue `integrations.tasks.<func>(*args)` so it runs only if the caller commits.

    On the ORM broker the task row is written in the caller's transaction and commits
    or rolls back with it. Another broker (Redis) publishes at once, so there the task
    is queued after the commit instead.
    """
    path = f"integrations.tasks.{func}"
    name = f"{func}-{'-'.join(map(str, args))}"
    if settings.Q_CLUSTER.get("orm"):
        async_task(path, *args, task_name=name)
    else:
        transaction.on_commit(lambda: async_task(path, *args, task_name=name))


# --- events ----------------------------------------------------------------------------


def process_event(event_id: int) -> str:
    """Run one event through the pipeline. Safe to call twice, or at the same time."""
    event = _claim_event(event_id)
    if event is None:
        return "skipped"
    try:
        outcome = _apply_event(event)
    except Exception as exc:
        if not is_transient(exc):
            return _event_unprocessable(event, exc)
        logger.warning(
            "event %s failed (attempt %s), will retry: %s",
            event.pk,
            event.attempts,
            describe_failure(exc),
        )
        return _event_failed(event, exc)
    Event.objects.filter(pk=event.pk).update(
        state=Event.State.PROCESSED,
        processed_at=timezone.now(),
        outcome=outcome[:200],
        last_error="",
    )
    return outcome


def _event_failed(event: Event, exc: BaseException) -> str:
    if event.attempts >= settings.EVENT_MAX_ATTEMPTS:
        event.mark_failed(exc, state=Event.State.DEAD)
        txn = PaymentTransaction.objects.filter(
            connection=event.connection, transaction_id=event.transaction_id
        ).first()
        open_review(
            txn,
            ReviewItem.Kind.DEAD,
            f"Event {event.event_id} ({event.type}) failed {event.attempts} times: {describe_failure(exc)}",
            event=event,
        )
        return "dead"
    event.next_attempt_at = timezone.now() + backoff_delay(event.attempts)
    event.save(update_fields=["next_attempt_at"])
    event.mark_failed(exc)
    return "failed"


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
    )
    event.mark_failed(
        exc, state=Event.State.DEAD, error=f"{type(exc).__name__}: {plain}"
    )
    txn = PaymentTransaction.objects.filter(
        connection=event.connection, transaction_id=event.transaction_id
    ).first()
    open_review(
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


def _claim_event(event_id: int) -> Event | None:
    with transaction.atomic():
        event = (
            Event.objects.select_for_update()
            .select_related("connection")
            .filter(pk=event_id)
            .first()
        )
        if event is None or event.state in (Event.State.PROCESSED, Event.State.DEAD):
            return None
        now = timezone.now()
        if (
            event.state == Event.State.PROCESSING
            and event.started_at
            and event.started_at > now - lease()
        ):
            return None  # another worker holds it
        if (
            event.state == Event.State.FAILED
            and event.next_attempt_at
            and event.next_attempt_at > now
        ):
            return None  # backing off
        if event.attempts >= settings.EVENT_MAX_ATTEMPTS:
            # No attempt finished: each one died with its worker. Stop, don't loop.
            reason = event.last_error or "its worker stopped during every attempt"
            _event_failed(
                event,
                RuntimeError(f"gave up after {event.attempts} attempts: {reason}"),
            )
            return None
        event.state = Event.State.PROCESSING
        event.attempts += 1
        event.started_at = now
        event.save(update_fields=["state", "attempts", "started_at"])
        return event


@dataclass
class Decision:
    """What step 2 decided, to act on outside the row lock."""

    transaction: PaymentTransaction
    action: str
    outcome: str


def _apply_event(event: Event) -> str:
    try:
        record_data = event.payload.get("data") or {}
        record = normalize_record(record_data, event.connection.time_zone)
    except Exception as exc:
        raise UnprocessableRecordError("the PayTrace record is malformed") from exc
    decision = _upsert_transaction(event, record, record_data)
    if decision.action != Action.POST_RECEIPT:
        return decision.outcome
    return prepare_receipt(decision.transaction, event=event)


def _upsert_transaction(event: Event, record: Any, record_data: dict) -> Decision:
    facts = StatusFacts(
        event_type=event.type,
        transaction_type=record.transaction_type,
        status_code=record.status_code,
        status_message=record.status_message,
        response_code=record.response_code,
    )
    rule = map_status(facts, StatusMap.rules_for(event.connection))
    source, _ = redact_data(record_data)
    with transaction.atomic():
        txn, created = PaymentTransaction.objects.get_or_create(
            connection=event.connection,
            transaction_id=record.transaction_id,
            defaults={"amount": record.amount, "currency": record.currency},
        )
        txn = PaymentTransaction.objects.select_for_update().get(pk=txn.pk)
        if created:
            txn.record(
                "received", f"First seen in {event.type} ({event.source}).", event=event
            )

        if rule is None:
            _copy_record(txn, record, source)
            txn.save()
            txn.record(
                "unmapped_status", f"No status-map row matches {facts}.", event=event
            )
            open_review(
                txn,
                ReviewItem.Kind.UNMAPPED_STATUS,
                f"No status-map row for event {event.type}, type {record.transaction_type or '-'}, status_code {record.status_code or '-'}, message {record.status_message or '-'}. Add a row and retry.",
                event=event,
            )
            return Decision(txn, Action.REVIEW, "unmapped status")

        old_rank = GATEWAY_STATUS_RANK.get(txn.gateway_status, 0)
        new_rank = GATEWAY_STATUS_RANK.get(rule.gateway_status, 0)
        older = (
            txn.status_changed_at is not None
            and event.occurred_at < txn.status_changed_at
        )
        if new_rank < old_rank or (
            new_rank == old_rank and older and rule.gateway_status != txn.gateway_status
        ):
            # The record in a stale event is older than what we hold: keep ours.
            txn.record(
                "stale_event_ignored",
                f"{event.type} ({rule.gateway_status}) arrived after {txn.gateway_status}; status kept.",
                event=event,
                kept=txn.gateway_status,
                ignored=rule.gateway_status,
            )
            # A late event can still post the receipt its status calls for, if none exists.
            action = Action.POST_RECEIPT if _wants_receipt(txn) else Action.RECORD_ONLY
            return Decision(txn, action, f"stale {rule.gateway_status} ignored")

        previous = (txn.gateway_status, txn.mapped_status)
        _copy_record(txn, record, source)
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
        action = rule.action
        if (
            action == Action.RECORD_ONLY
            and txn.gateway_status in ("voided", "refunded")
            and txn.postings.filter(state=Posting.State.POSTED).exists()
        ):
            open_review(
                txn,
                ReviewItem.Kind.REVERSAL,
                f"PayTrace reports {txn.gateway_status} but receipt {txn.postings.first().document_number} is posted in Sage Pro. Reverse it there.",
                event=event,
            )
        if action == Action.REVIEW:
            open_review(
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
        return Decision(txn, action, f"{txn.gateway_status}/{txn.mapped_status}")


def _wants_receipt(txn: PaymentTransaction) -> bool:
    return (
        txn.mapped_status == "Paid"
        and (txn.transaction_type or "").upper() in RECEIPT_TYPES
    )


def _copy_record(txn: PaymentTransaction, record: Any, source: dict) -> None:
    txn.transaction_type = record.transaction_type
    txn.amount = record.amount
    txn.currency = record.currency
    txn.tax_amount = record.tax_amount
    txn.invoice_reference = record.invoice_id
    txn.customer_reference = record.customer_id
    txn.customer_po = record.customer_reference_id
    txn.card_last4 = record.card_last4
    txn.card_brand = record.card_brand
    txn.approval_code = record.approval_code
    txn.channel = record.channel
    txn.status_code = record.status_code
    txn.status_message = record.status_message
    txn.batch_number = record.batch_number or txn.batch_number
    txn.created_at = record.created_at or txn.created_at
    txn.settled_at = record.settled_at or txn.settled_at
    txn.source_record = source


def open_review(
    txn: PaymentTransaction | None,
    kind: str,
    reason: str,
    *,
    event: Event | None = None,
    posting: Posting | None = None,
    error_code: str = "",
) -> ReviewItem:
    """Open a review item, or refresh the open one of the same kind (never two)."""
    item = (
        ReviewItem.objects.filter(
            transaction=txn, kind=kind, state=ReviewItem.State.OPEN
        ).first()
        if txn
        else None
    )
    if item is None:
        item = ReviewItem.objects.create(
            transaction=txn,
            kind=kind,
            reason=reason,
            event=event,
            posting=posting,
            error_code=error_code,
        )
    else:
        item.reason, item.error_code = reason, error_code
        item.posting = posting or item.posting
        item.save(update_fields=["reason", "error_code", "posting"])
    if txn is not None:
        txn.record("review_opened", f"{kind}: {reason}", event=event)
    return item


# --- receipts --------------------------------------------------------------------------


def posting_date(txn: PaymentTransaction) -> date:
    """The Sage Pro posting date: the payment's creation day in the business time zone."""
    when = txn.created_at or txn.first_seen_at
    return when.astimezone(ZoneInfo(settings.BUSINESS_TIME_ZONE)).date()


def prepare_receipt(txn: PaymentTransaction, *, event: Event | None = None) -> str:
    """Match the payment to its open invoice and create and send its cash receipt.

    The connection's matching rules decide (mappings.matching): apply by itself only
    on an exact reference, an amount within tolerance and a consistent customer; keep
    a second payment of a paid invoice, or a likely duplicate, as unapplied cash with a
    `possible_duplicate` item; apply an overpayment up to the balance with an
    `overpayment` item; anything else waits in review. Never creates a second receipt
    posting for a transaction.
    """
    existing = txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first()
    if existing is not None:
        if existing.state in (
            Posting.State.PENDING,
            Posting.State.FAILED,
            Posting.State.IN_PROGRESS,
        ):
            send_posting(existing.pk)
        return f"receipt posting already exists ({existing.state})"
    sage_conn = txn.connection.sagepro
    if sage_conn is None or not sage_conn.is_active:
        open_review(
            txn,
            ReviewItem.Kind.VALIDATION,
            f"Connection {txn.connection.slug} has no active Sage Pro connection to post to. Set one on the connection, then retry.",
            event=event,
        )
        return "no Sage Pro connection"
    invno = documents.invoice_number_for(txn)  # invoice_id, through an invno mapping
    invoice = (
        sage_conn.sage().get_invoice(invno) if invno else None
    )  # transient errors retry the event
    decision = matching.decide(
        matching_payment(txn, invno),
        [matching_invoice(invoice)] if invoice else [],
        matching_rules(txn.connection),
        earlier=earlier_payments(txn),
    )
    if decision.action == "review":
        open_review(txn, decision.review_kind, decision.reason, event=event)
        return f"{decision.review_kind}: {decision.reason}"
    posting = create_receipt_posting(
        txn, sage_conn, invoice, on_account=decision.action == "on_account"
    )
    if decision.review_kind:
        open_review(
            txn, decision.review_kind, decision.reason, event=event, posting=posting
        )
    send_posting(posting.pk)
    return f"receipt {posting.pk} {posting.state}" + (
        f" ({decision.review_kind})" if decision.review_kind else ""
    )


def matching_payment(
    txn: PaymentTransaction, reference: str | None = None
) -> matching.Payment:
    return matching.Payment(
        transaction_id=txn.transaction_id,
        amount=txn.amount,
        reference=txn.invoice_reference.strip() if reference is None else reference,
        customer=txn.customer_reference.strip(),
        card_last4=txn.card_last4,
        channel=txn.channel,
        paid_on=posting_date(txn),
    )


def matching_invoice(invoice: dict) -> matching.Invoice:
    return matching.Invoice(
        invno=str(invoice["invno"]).strip(),
        custno=str(invoice["custno"]).strip(),
        balance=Decimal(invoice["balance"]),
        invamt=Decimal(invoice.get("invamt") or 0),
        invdte=invoice.get("invdte"),
    )


def matching_rules(connection: Connection) -> list[matching.Rule]:
    from mappings.models import MatchingRule

    def split(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())

    return [
        matching.Rule(
            name=row.name,
            reference_mode=row.reference_mode,
            strip_prefixes=split(row.strip_prefixes),
            tolerance_type=row.tolerance_type,
            tolerance_value=row.tolerance_value,
            require_same_customer=row.require_same_customer,
            auto_apply=row.auto_apply,
            allow_partial=row.allow_partial,
            customer_pattern=row.customer_pattern,
            channels=split(row.channels),
            amount_min=row.amount_min,
            amount_max=row.amount_max,
            duplicate_window_days=row.duplicate_window_days,
            priority=row.priority,
            id=row.pk,
        )
        for row in MatchingRule.objects.filter(connection=connection, is_active=True)
    ]


def earlier_payments(txn: PaymentTransaction) -> list[matching.Earlier]:
    """Paid transactions with the same card and amount, for duplicate detection."""
    if not txn.card_last4:
        return []
    others = (
        PaymentTransaction.objects.filter(
            connection=txn.connection,
            card_last4=txn.card_last4,
            amount=txn.amount,
            mapped_status="Paid",
        )
        .exclude(pk=txn.pk)
        .order_by("-created_at")[:50]
    )
    return [
        matching.Earlier(
            o.transaction_id,
            o.card_last4,
            o.amount,
            o.invoice_reference,
            posting_date(o),
        )
        for o in others
    ]


def invoice_candidates(
    txn: PaymentTransaction, limit: int = 3
) -> list[matching.Candidate]:
    """The best open invoices for a payment a person has to place, with their scores."""
    sage_conn = txn.connection.sagepro
    if sage_conn is None:
        return []
    payment = matching_payment(txn)
    rules = matching_rules(txn.connection)
    open_invoices = sage_conn.sage().list_open_invoices(payment.customer)
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
        [matching_invoice(i) for i in open_invoices],
        matching.choose_rule(payment, rules),
        history,
        limit,
    )


def invoice_problem(invoice: dict | None, invno: str, customer: str) -> str:
    """Why this invoice cannot take the payment, or '' when it can."""
    if invoice is None:
        return f"Invoice {invno} was not found in Sage Pro."
    if Decimal(invoice["balance"]) <= 0:
        return f"Invoice {invno} is not open (balance {invoice['balance']})."
    if customer and customer.strip().upper() != str(invoice["custno"]).strip().upper():
        return f"Invoice {invno} belongs to customer {invoice['custno']}, but the payment names customer {customer}."
    return ""


def create_receipt_posting(
    txn: PaymentTransaction,
    sage_conn: Connection,
    invoice: dict | None,
    *,
    on_account: bool = False,
) -> Posting:
    """Create the transaction's one cash-receipt posting, applied to `invoice`.

    The application is capped at the invoice's live balance; the rest stays on the
    receipt as unapplied cash. The document (payload, GL account and rule trace,
    exchange rate) comes from `integrations.documents`; it is validated against Sage
    Pro's periods and chart when it is sent.
    """
    document = documents.build_cash_receipt(
        txn, invoice, sage_conn=sage_conn, on_account=on_account
    )
    payload = document.payload
    kind = Posting.Kind.CASH_RECEIPT
    with transaction.atomic():
        posting, created = Posting.objects.get_or_create(
            transaction=txn,
            kind=kind,
            defaults={
                "sagepro": sage_conn,
                "idempotency_key": Posting.key_for(
                    txn.connection, txn.transaction_id, kind
                ),
                **document.posting_fields(),
                # Sending builds it again and stops with a validation item.
                "last_error": documents.problem_summary(document.problems)[:2000]
                if document.problems
                else "",
            },
        )
        if created:
            applications = payload["applications"]
            txn.record(
                "posting_created",
                f"Cash receipt for invoice {applications[0]['invno'] if applications else '-'}"
                + (
                    f", GL account {document.gl_account}" if document.gl_account else ""
                ),
                amount=txn.amount,
                applied=applications[0]["amount"] if applications else "0.00",
                gl_account=document.gl_account,
                gl_rule=document.gl_rule_id,
                exchange_rate=document.exchange_rate,
            )
    return posting


def _receipt_for_connector(payload: dict) -> dict:
    receipt = {
        "custno": payload["custno"],
        "date": date.fromisoformat(payload["date"]),
        "amount": Decimal(payload["amount"]),
        "method": payload["method"],
        "reference": payload["reference"],
        "applications": [
            {"invno": a["invno"], "amount": Decimal(a["amount"])}
            for a in payload.get("applications", [])
        ],
    }
    if payload.get("gl_account"):
        receipt["gl_account"] = payload["gl_account"]
    return receipt


def send_posting(posting_id: int) -> str:
    """Send one posting to Sage Pro, at most once in effect. Safe to call concurrently."""
    posting = _claim_posting(posting_id)
    if posting is None:
        return "skipped"
    try:
        sage = posting.sagepro.sage()
        if posting.attempts > 1:
            # An earlier attempt may have reached Sage Pro before it failed or its
            # worker died: ask before sending again.
            found = sage.find_cash_receipts(idempotency_key=posting.idempotency_key)
            if found:
                _mark_posted(posting, found[0], recovered=True)
                return "posted (found by idempotency key)"
        document = documents.document_for_send(posting, sage)
        if not document.is_valid:
            return _mark_invalid(posting, document)
        _store_document(posting, document)
        result = sage.post_cash_receipt(
            posting.idempotency_key, _receipt_for_connector(document.payload)
        )
    except Exception as exc:
        return _mark_send_failed(posting, exc)
    _mark_posted(posting, result)
    return "posted"


def _store_document(posting: Posting, document: documents.ReceiptDocument) -> None:
    """Keep what is about to be sent on the posting, before it is sent."""
    fields = document.posting_fields()
    changed = {
        name: value for name, value in fields.items() if getattr(posting, name) != value
    }
    if changed:
        Posting.objects.filter(pk=posting.pk).update(**changed)
        for name, value in changed.items():
            setattr(posting, name, value)


def _mark_invalid(posting: Posting, document: documents.ReceiptDocument) -> str:
    """Our own validation refused the document: nothing was sent; a person decides."""
    reasons = documents.problem_summary(document.problems)
    code = document.problems[0].error_code
    with transaction.atomic():
        for name, value in document.posting_fields().items():
            setattr(posting, name, value)
        posting.state = Posting.State.NEEDS_REVIEW
        posting.next_attempt_at = None
        posting.last_error = reasons[:2000]
        posting.last_error_code = code[:40]
        posting.save()
        open_review(
            posting.transaction,
            ReviewItem.Kind.VALIDATION,
            f"{reasons}. Correct the value and retry.",
            posting=posting,
            error_code=code[:40],
        )
    return "needs review"


def _claim_posting(posting_id: int) -> Posting | None:
    now = timezone.now()
    with transaction.atomic():
        posting = (
            Posting.objects.select_for_update()
            .select_related("sagepro", "transaction")
            .filter(pk=posting_id)
            .first()
        )
        if posting is None:
            return None
        if (
            posting.state == Posting.State.IN_PROGRESS
            and posting.started_at
            and posting.started_at > now - lease()
        ):
            return None
        if (
            posting.state == Posting.State.FAILED
            and posting.next_attempt_at
            and posting.next_attempt_at > now
        ):
            return None
        if posting.state not in (
            Posting.State.PENDING,
            Posting.State.FAILED,
            Posting.State.IN_PROGRESS,
        ):
            return None
        if posting.attempts >= settings.POSTING_MAX_ATTEMPTS:
            _mark_dead(
                posting,
                posting.last_error
                or "Attempts exhausted (a worker stopped mid-posting each time).",
            )
            return None
        posting.state = Posting.State.IN_PROGRESS
        posting.attempts += 1
        posting.started_at = now
        posting.save(update_fields=["state", "attempts", "started_at"])
        return posting


def _amount_or_none(value: Any) -> Decimal | None:
    """Read an amount from a remote answer; None when it cannot be stored."""
    if value is None or money_problem(value, 14, 2):
        return None
    return Decimal(value) if isinstance(value, (Decimal, int)) else Decimal(str(value))


def _mark_posted(posting: Posting, result: dict, *, recovered: bool = False) -> None:
    # Sage Pro has the receipt: nothing in its answer may stop us from recording that
    # (an unreadable unapplied amount is left empty; the whole answer is kept).
    with transaction.atomic():
        posting.state = Posting.State.POSTED
        posting.document_number = str(result.get("receipt_no", ""))[:40]
        posting.unapplied_amount = _amount_or_none(result.get("unapplied_amount"))
        posting.response = result
        posting.posted_at = timezone.now()
        posting.next_attempt_at = None
        posting.last_error = posting.last_error if recovered else ""
        posting.save()
        note = (
            " (found by idempotency key after an unknown outcome)" if recovered else ""
        )
        posting.transaction.record(
            "posted",
            f"Sage Pro receipt {posting.document_number}{note}",
            receipt=posting.document_number,
        )
        ReviewItem.objects.filter(
            posting=posting,
            state=ReviewItem.State.OPEN,
            kind__in=[ReviewItem.Kind.DEAD, ReviewItem.Kind.VALIDATION],
        ).update(
            state=ReviewItem.State.RESOLVED,
            resolved_at=timezone.now(),
            resolution=f"Posted as receipt {posting.document_number}",
        )


def _mark_send_failed(posting: Posting, exc: BaseException) -> str:
    """Back off on a failure a retry may fix; anything else waits for a person."""
    plain = describe_failure(exc)
    code = failure_code(exc)
    logger.warning(
        "posting %s failed (attempt %s)%s [%s]: %s",
        posting.pk,
        posting.attempts,
        ", will retry" if is_transient(exc) else ", sent to review",
        code,
        plain,
    )
    with transaction.atomic():
        posting.last_error = plain[:2000]
        posting.last_error_code = code
        txn = posting.transaction
        if not is_transient(exc):
            posting.state = Posting.State.NEEDS_REVIEW
            posting.next_attempt_at = None
            posting.save()
            if isinstance(exc, ConnectorError):
                reason = (
                    f"Sage Pro refused the receipt: {plain}"
                    + documents.refused_field(exc.code, posting.payload)
                )
            else:
                reason = (
                    f"The receipt could not be built or sent: {plain}. No retry will "
                    "fix this by itself: correct the cause, then retry."
                )
            open_review(
                txn,
                ReviewItem.Kind.VALIDATION,
                reason,
                posting=posting,
                error_code=code,
            )
            return "needs review"
        if posting.attempts >= settings.POSTING_MAX_ATTEMPTS:
            _mark_dead(posting, plain)
            return "dead"
        posting.state = Posting.State.FAILED
        posting.next_attempt_at = timezone.now() + backoff_delay(posting.attempts)
        posting.save()
        txn.record(
            "post_failed",
            f"Attempt {posting.attempts} failed: {plain}; next try at {posting.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC",
        )
        return "failed"


def _mark_dead(posting: Posting, reason: str) -> None:
    posting.state = Posting.State.DEAD
    posting.next_attempt_at = None
    posting.save()
    open_review(
        posting.transaction,
        ReviewItem.Kind.DEAD,
        f"Gave up after {posting.attempts} attempts: {reason}",
        posting=posting,
        error_code=posting.last_error_code,
    )


# --- silent posts ----------------------------------------------------------------------


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
    data, has_card = redact_data(record)
    with transaction.atomic():
        event, created = Event.objects.get_or_create(
            connection=delivery.connection,
            event_id=delivery.webhook_id,
            defaults={
                "source": Event.Source.SILENT_POST,
                "type": "transaction.exported",
                "occurred_at": timezone.now(),
                "transaction_id": transaction_id,
                "payload": {"type": "transaction.exported", "data": data},
                "contains_card_data": has_card,
            },
        )
        delivery.signature_result = InboundDelivery.SignatureResult.CONFIRMED
        delivery.event = event
        delivery.save(update_fields=["signature_result", "event"])
        if created:
            queue("process_event", event.pk)
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


# --- people's decisions ----------------------------------------------------------------


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
                item=item, user=user, action="retry", detail={"posting": posting.pk}
            )
        if queue_send:
            queue("send_posting", posting.pk)
    return True


def apply_review_item(
    item: ReviewItem, invno: str, user: AbstractBaseUser | None = None
) -> Posting:
    """Resolve an item by applying its payment to one invoice, up to its balance.

    Raises ValueError with a message for the reviewer when the invoice is unknown, not
    open, or belongs to another customer. Pressing it twice (or two reviewers at once)
    creates one posting.
    """
    if not invno.strip():
        raise ValueError("Enter the Sage Pro invoice number to apply the payment to.")
    return apply_review_item_split(item, [(invno, None)], user)


def dismiss_review_item(
    item: ReviewItem, reason: str, user: AbstractBaseUser | None = None
) -> None:
    reason = reason.strip()
    if not reason:
        raise ValueError("Say why the item is dismissed.")
    resolution = f"Dismissed: {reason}"
    with transaction.atomic():
        item, _ = _locked_open_item(item, resolution)
        if item.state != ReviewItem.State.OPEN:
            return
        _resolve(item, user, resolution, "dismiss", {"reason": reason})
        ReviewItem.objects.filter(pk=item.pk).update(state=ReviewItem.State.DISMISSED)


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
    counts = {"events": 0, "postings": 0}
    with transaction.atomic():
        for row in Event.objects.filter(event_due).values(
            "pk", "state", "next_attempt_at"
        )[:500]:
            # Conditional: a worker or another sweeper that got there first wins.
            if Event.objects.filter(
                pk=row["pk"], state=row["state"], next_attempt_at=row["next_attempt_at"]
            ).update(state=E.QUEUED, next_attempt_at=now):
                queue("process_event", row["pk"])
                counts["events"] += 1
        for row in Posting.objects.filter(posting_due).values(
            "pk", "state", "next_attempt_at"
        )[:500]:
            if Posting.objects.filter(
                pk=row["pk"], state=row["state"], next_attempt_at=row["next_attempt_at"]
            ).update(state=P.PENDING, next_attempt_at=now):
                queue("send_posting", row["pk"])
                counts["postings"] += 1
    return counts


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


def retry_review_item(item: ReviewItem, user: AbstractBaseUser | None = None) -> str:
    """Retry whatever the item is about: its posting if it has one, else its event.

    The item is resolved; if the problem is still there, processing opens a new one.
    Raises ValueError when there is nothing to retry.
    """
    with transaction.atomic():
        item = (
            ReviewItem.objects.select_for_update(of=("self",))
            .select_related("posting", "event")
            .get(pk=item.pk)
        )
        if item.state != ReviewItem.State.OPEN:
            raise ValueError(f"Review item {item.pk} is already {item.state}.")
        event = item.event
        if event is None and item.transaction_id:
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
            raise ValueError(f"Review item {item.pk} has no posting or event to retry.")
        if not retried:
            raise ValueError(f"The {what} is already queued or being sent.")
        item.state = ReviewItem.State.RESOLVED
        item.resolved_at = timezone.now()
        item.resolved_by = user if getattr(user, "pk", None) else None
        item.resolution = f"Retried ({what})"
        item.save()
        ReviewDecision.objects.create(
            item=item, user=item.resolved_by, action="retry", detail={"what": what}
        )
    return what


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
    raise ValueError(
        f"Review item {item.pk} was already {item.state}: {item.resolution}"
    )


def _resolve(
    item: ReviewItem,
    user: AbstractBaseUser | None,
    resolution: str,
    action: str,
    detail: dict,
) -> None:
    item.state = ReviewItem.State.RESOLVED
    item.resolved_at = timezone.now()
    item.resolved_by = user if getattr(user, "pk", None) else None
    item.resolution = resolution
    item.save()
    ReviewDecision.objects.create(
        item=item, user=item.resolved_by, action=action, detail=detail
    )
    if item.transaction:
        item.transaction.record(
            f"review_{action}", f"{resolution} by {user or 'system'}", user=user
        )


def _reviewable(item: ReviewItem) -> tuple[PaymentTransaction, Connection]:
    txn = item.transaction
    if txn is None:
        raise ValueError(f"Review item {item.pk} has no transaction to post.")
    sage_conn = txn.connection.sagepro
    if sage_conn is None:
        raise ValueError(
            f"Connection {txn.connection.slug} has no Sage Pro connection to post to."
        )
    existing = txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first()
    if existing is not None and existing.state == Posting.State.POSTED:
        raise ValueError(
            f"Transaction {txn.transaction_id} is already posted as receipt {existing.document_number}."
        )
    return txn, sage_conn


def _replace_payload(posting: Posting, payload: dict) -> None:
    if posting.state != Posting.State.POSTED:
        Posting.objects.filter(pk=posting.pk).update(
            payload=payload,
            state=Posting.State.PENDING,
            attempts=0,
            next_attempt_at=None,
            last_error="",
        )


def apply_review_item_split(
    item: ReviewItem,
    allocations: list[tuple[str, Decimal | None]],
    user: AbstractBaseUser | None = None,
) -> Posting:
    """Apply a payment across one or several invoices of one customer.

    Each allocation is (invoice number, amount); an amount of None takes what is left
    of the payment, up to that invoice's balance. Whatever is not allocated stays on
    the receipt as unapplied cash. Raises ValueError with a reviewer-facing message.
    """
    txn, sage_conn = _reviewable(item)
    if not allocations:
        raise ValueError("Name at least one invoice.")
    whole = (
        len(allocations) == 1 and allocations[0][1] is None
    )  # one invoice, up to its balance
    if not whole and txn.currency.upper() != (sage_conn.base_currency or "USD").upper():
        raise ValueError(
            f"A {txn.currency} payment is applied to one invoice at a time (the rate is applied when it is booked)."
        )
    sage = sage_conn.sage()
    remaining = txn.amount
    lines: list[tuple[dict, Decimal]] = []
    for invno, amount in allocations:
        invno = invno.strip()
        try:
            invoice = sage.get_invoice(invno)
        except ConnectorError as exc:
            raise ValueError(
                f"Sage Pro could not be asked about invoice {invno}: {exc}. Try again shortly."
            ) from exc
        problem = invoice_problem(invoice, invno, "")
        if problem:
            raise ValueError(problem)
        balance = Decimal(invoice["balance"])
        share = min(remaining, balance) if amount is None else amount
        if not share.is_finite() or share.normalize().as_tuple().exponent < -2:
            raise ValueError(f"{share} for invoice {invno} is not an amount in cents.")
        if share <= 0:
            raise ValueError(
                f"Nothing is left of the payment to apply to invoice {invno}."
            )
        if share > balance:
            raise ValueError(
                f"{share} is more than invoice {invno}'s balance {balance}."
            )
        remaining -= share
        if remaining < 0:
            raise ValueError(
                f"The amounts add up to more than the payment of {txn.amount}."
            )
        lines.append((invoice, share))
    customers = {str(inv["custno"]).strip() for inv, _ in lines}
    if len(customers) > 1:
        raise ValueError(
            f"The invoices belong to different customers ({', '.join(sorted(customers))}); a receipt is for one customer."
        )
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
        posting = create_receipt_posting(txn, sage_conn, lines[0][0])
        payload = dict(
            documents.build_cash_receipt(txn, lines[0][0], sage_conn=sage_conn).payload
        )
        if (
            not whole
        ):  # one invoice up to its balance: the builder's cap (in the base currency)
            payload["applications"] = [
                {"invno": str(inv["invno"]).strip(), "amount": str(share)}
                for inv, share in lines
            ]
        _replace_payload(posting, payload)
        _resolve(
            item,
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
        queue("send_posting", posting.pk)
    return posting


def post_on_account(
    item: ReviewItem, user: AbstractBaseUser | None = None, custno: str = ""
) -> Posting:
    """Post the payment as unapplied cash on a customer's account."""
    txn, sage_conn = _reviewable(item)
    custno = (custno or txn.customer_reference).strip().upper()
    if not custno:
        raise ValueError("Name the Sage Pro customer whose account takes the payment.")
    try:
        sage_conn.sage().get_customer(custno)
    except ConnectorError as exc:
        raise ValueError(f"Sage Pro has no customer {custno} ({exc}).") from exc
    resolution = f"Posted on account of customer {custno} as unapplied cash"
    with transaction.atomic():
        item, posting = _locked_open_item(item, resolution)
        if posting is not None:
            return posting
        account = {"invno": "", "custno": custno, "balance": "0"}
        posting = create_receipt_posting(txn, sage_conn, account, on_account=True)
        _replace_payload(
            posting,
            documents.build_cash_receipt(
                txn, account, sage_conn=sage_conn, on_account=True
            ).payload,
        )
        _resolve(
            item,
            user,
            resolution,
            "on_account",
            {"custno": custno, "posting": posting.pk},
        )
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
        _resolve(item, user, resolution, "mark_duplicate", {"note": note.strip()})


def annotate_review_item(
    item: ReviewItem, note: str, user: AbstractBaseUser | None = None
) -> ReviewDecision:
    note = note.strip()
    if not note:
        raise ValueError("Write the note first.")
    return ReviewDecision.objects.create(
        item=item,
        user=user if getattr(user, "pk", None) else None,
        action="note",
        detail={"note": note},
    )
