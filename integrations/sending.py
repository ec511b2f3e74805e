"""Sending every document other than a cash receipt: credit memos, receipt reversals,
applications of unapplied cash, GL batches, customers and sales orders.

Each kind registers a `DocumentSender` (what to call, how to find it again by its
idempotency key, its number in Sage Pro's answer, what to do once it is posted). The
posting's `payload` is the body exactly as it is sent; it is stored before the first
attempt and never rebuilt, so a repeat is the same request under the same key.

`send_document` gives each kind what receipts have (`posting.send_posting`): one claim
per attempt, counted and committed before anything is sent; after an attempt whose
outcome is unknown, a look-up by key before sending again; transient failures back
off and are retried by the sweeper until `POSTING_MAX_ATTEMPTS`, then a dead letter;
a refusal waits for a person in a review item that says what Sage Pro said. A site
whose on-site agent does not write the kind yet (`NOT_SUPPORTED_AT_SITE`) gets a
review item that says so: the document is posted by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.connectors.base import NOT_SUPPORTED_AT_SITE, ConnectorError
from integrations.models import (
    Connection,
    PaymentTransaction,
    Posting,
    ReviewItem,
)
from integrations.models.failures import (
    backoff_delay,
    describe_failure,
    failure_code,
    is_transient,
)
from integrations.queueing import queue

if TYPE_CHECKING:
    from integrations.connectors.sagepro import SageProConnector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentSender:
    """How one kind of document reaches Sage Pro."""

    kind: str
    label: str
    send: Callable[[SageProConnector, Posting], dict[str, Any]]
    find: Callable[[SageProConnector, Posting], dict[str, Any] | None]
    number: Callable[[dict[str, Any]], str]
    on_posted: Callable[[Posting, dict[str, Any]], None] | None = None
    on_refused: Callable[[Posting, ConnectorError], str | None] | None = None
    review_kind: str = ReviewItem.Kind.VALIDATION


_SENDERS: dict[str, DocumentSender] = {}
# The modules whose import registers a sender.
SENDER_MODULES = (
    "integrations.refunds",
    "integrations.unapplied",
    "integrations.chargebacks",
    "integrations.storefront",
)


def register(sender: DocumentSender) -> None:
    """Make `sender` the way its kind is sent (modules call this when imported)."""
    if sender.kind == Posting.Kind.CASH_RECEIPT:
        raise ValueError("cash receipts are sent by integrations.posting")
    _SENDERS[sender.kind] = sender


def sender_for(kind: str) -> DocumentSender:
    if kind not in _SENDERS:
        _load_senders()
    try:
        return _SENDERS[kind]
    except KeyError:
        raise LookupError(f"no sender is registered for {kind!r} postings") from None


def _load_senders() -> None:
    """Import the modules that register senders (a worker may meet a posting of a kind
    whose module nothing has imported yet)."""
    from importlib import import_module

    for name in SENDER_MODULES:
        try:
            import_module(name)
        except ImportError:  # a module of a part not installed: its kind stays unknown
            logger.exception("document sender module %s cannot be imported", name)


# --- creating ---------------------------------------------------------------------------


def create_posting(
    txn: PaymentTransaction,
    sagepro: Connection,
    kind: str,
    payload: dict[str, Any],
    *,
    key_suffix: str = "",
    decided_by: Any = None,
) -> tuple[Posting, bool]:
    """The posting of `kind` for `txn` under its idempotency key, created with `payload`
    unless it exists (then it is returned unchanged: the same document is never sent
    under a second key, nor a second document under the same key)."""
    key = Posting.key_for(txn.connection, txn.transaction_id, kind)
    if key_suffix:
        key = f"{key}-{key_suffix}"[:120]
    existing = Posting.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            posting = Posting.objects.create(
                transaction=txn,
                sagepro=sagepro,
                kind=kind,
                idempotency_key=key,
                payload=payload,
                decided_automatically=decided_by is None,
            )
    except IntegrityError:
        # Created by a concurrent worker meanwhile (the key, or one per transaction).
        found = Posting.objects.filter(idempotency_key=key).first()
        if found is None:
            found = Posting.objects.get(transaction=txn, kind=kind)
        return found, False
    label = _label(kind)
    who = f" by {decided_by}" if decided_by else ""
    txn.record(
        "posting_created",
        f"{label[:1].upper()}{label[1:]} to send to Sage Pro{who}",
        kind=kind,
        posting=posting.pk,
    )
    return posting, True


def queue_send(posting: Posting) -> None:
    """Send the posting on a worker (the task row commits with the caller)."""
    queue("send_posting", posting.pk)


def _label(kind: str) -> str:
    sender = _SENDERS.get(kind)
    if sender is not None:
        return sender.label
    return str(Posting.Kind(kind).label).lower() if kind in Posting.Kind else kind


# --- sending ----------------------------------------------------------------------------


def send_document(posting_id: int) -> str:
    """Send one non-receipt posting, at most once in effect. Safe to call concurrently."""
    posting = Posting.claim(posting_id)
    if posting is None:
        return "skipped"
    return send_claimed(posting)


def send_claimed(posting: Posting) -> str:
    """Send a posting this worker has just claimed (`Posting.claim`)."""
    try:
        sender = sender_for(posting.kind)
    except LookupError as exc:
        return _needs_review(posting, str(exc), "NO_SENDER", ReviewItem.Kind.VALIDATION)
    try:
        sage = posting.sagepro.sage()
        if posting.attempts > 1:
            found = sender.find(sage, posting)
            if found:
                return posted(posting, sender, found, recovered=True)
        result = sender.send(sage, posting)
    except Exception as exc:
        return refused(posting, sender, exc)
    return posted(posting, sender, result)


def posted(
    posting: Posting,
    sender: DocumentSender,
    result: dict[str, Any],
    *,
    recovered: bool = False,
) -> str:
    """Record the document Sage Pro holds, then the kind's own consequences."""
    number = sender.number(result or {})
    with transaction.atomic():
        posting.mark_posted(
            result or {}, recovered=recovered, number=number, label=sender.label
        )
        if sender.on_posted is not None:
            sender.on_posted(posting, result or {})
    return "posted"


def refused(posting: Posting, sender: DocumentSender, exc: BaseException) -> str:
    """Back off on what a retry may fix; otherwise a person decides."""
    plain = describe_failure(exc)
    code = failure_code(exc)
    if isinstance(exc, ConnectorError) and exc.code == NOT_SUPPORTED_AT_SITE:
        label = sender.label
        return _needs_review(
            posting,
            f"Sage Pro at this site does not accept this {label} through the on-site "
            f"agent yet ({plain}). Post the {label} in Sage Pro by hand (the document "
            "is on the posting), then resolve this item.",
            NOT_SUPPORTED_AT_SITE,
            ReviewItem.Kind.UNSUPPORTED_DOCUMENT,
        )
    if is_transient(exc):
        return _back_off(posting, plain, code)
    if isinstance(exc, ConnectorError) and sender.on_refused is not None:
        outcome = sender.on_refused(posting, exc)
        if outcome is not None:
            return outcome
    return _needs_review(
        posting,
        f"Sage Pro refused the {sender.label}: {plain}. Correct what it names, then "
        "retry.",
        code,
        sender.review_kind,
    )


def _back_off(posting: Posting, plain: str, code: str) -> str:
    logger.warning(
        "posting %s (%s) failed, attempt %s [%s]: %s",
        posting.pk,
        posting.kind,
        posting.attempts,
        code,
        plain,
    )
    with transaction.atomic():
        posting.last_error = plain[:2000]
        posting.last_error_code = code[:40]
        if posting.attempts >= settings.POSTING_MAX_ATTEMPTS:
            posting.mark_dead(plain)
            return "dead"
        posting.state = Posting.State.FAILED
        posting.next_attempt_at = timezone.now() + backoff_delay(posting.attempts)
        posting.save()
    return "failed (will retry)"


def _needs_review(posting: Posting, reason: str, code: str, kind: str) -> str:
    logger.warning(
        "posting %s (%s) sent to review [%s]: %s",
        posting.pk,
        posting.kind,
        code,
        reason,
    )
    with transaction.atomic():
        posting.state = Posting.State.NEEDS_REVIEW
        posting.next_attempt_at = None
        posting.last_error = reason[:2000]
        posting.last_error_code = code[:40]
        posting.save()
        ReviewItem.open(
            posting.transaction, kind, reason, posting=posting, error_code=code[:40]
        )
    return "needs review"
