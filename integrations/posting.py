"""Sending cash-receipt postings to Sage Pro: one at a time, or in batches.

Both paths claim each posting first (attempt counted and committed before anything is
sent), ask Sage Pro by idempotency key when an earlier attempt's outcome is unknown,
validate the document against the local mirror of Sage Pro's periods and chart, send,
and record each result on its own: a batch is never all-or-nothing, and one refused
receipt is routed exactly as the single call would route it.

The mirror may be behind Sage Pro. The gateway stays the authority: a refusal that
stale data explains (`STALE_CODES`) refreshes the invoice or the chart it names and
decides again, automatically, under the same idempotency key (a refused post wrote
nothing). Only when the fresh data needs a person does a review item open. A receipt
Sage Pro applied only in part (the invoice's balance had dropped) is recorded as posted
and shown to a reviewer as an overpayment.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations import documents, mirror, refunds, sending
from integrations.connectors.base import ConnectorError
from integrations.connectors.sagepro import CashReceipt
from integrations.models import Connection, PaymentTransaction, Posting, ReviewItem
from integrations.models.failures import (
    backoff_delay,
    describe_failure,
    failure_code,
    is_transient,
)
from mappings.matching import Action, Decision

logger = logging.getLogger(__name__)

# Refusals a stale mirror explains: the invoice was paid, deleted or moved in Sage Pro,
# or the GL account was made inactive, after the portal's copy was synced.
INVOICE_CODES = {"INVOICE_NOT_OPEN", "INVOICE_NOT_FOUND", "OVER_APPLICATION"}
ACCOUNT_CODES = {"ACCOUNT_INACTIVE", "ACCOUNT_NOT_FOUND"}
STALE_CODES = INVOICE_CODES | ACCOUNT_CODES


# --- the decision (shared with processing.plan_receipt) ---------------------------------


def decide_placement(
    txn: PaymentTransaction, sage_conn: Connection, *, fresh: bool = False
) -> documents.Placement:
    """Where the payment goes, decided on the mirror (`documents.place`).

    A clean application is decided on the mirror alone (no gateway read); anything
    else (no invoice, not open, another customer, an over- or underpayment, a possible
    duplicate, a payment found by its payer) is decided again on the invoices read
    fresh from Sage Pro, so stale data never sends a payment to review or on account
    by itself.
    """
    placement = documents.place(txn, sage_conn, fresh=fresh)
    if not fresh and not _is_clean(placement.decision):
        placement = documents.place(txn, sage_conn, fresh=True)
    return placement


def _is_clean(decision: Decision) -> bool:
    return decision.action == Action.APPLY and not decision.review_kind


def receipt_document(
    txn: PaymentTransaction, sage_conn: Connection, placement: documents.Placement
) -> documents.ReceiptDocument:
    """The cash receipt a decision to apply (or keep on account) makes."""
    decision = placement.decision
    applications: tuple[documents.Application, ...] | None = None
    if decision.action == Action.ON_ACCOUNT:
        applications = ()  # all of it unapplied
    elif len(decision.applications) > 1:
        applications = tuple(
            documents.Application(inv.invno, amount)
            for inv, amount in decision.applications
        )
    return documents.build_cash_receipt(
        txn,
        placement.first_invoice,
        sage_conn=sage_conn,
        applications=applications,
        # On account: of the payer, or of the invoice's customer.
        customer=decision.customer if applications == () else "",
    )


def decision_fields(decision: Decision) -> dict[str, Any]:
    """What a posting keeps of the automatic decision that made it."""
    from mappings.models import MatchingRule, PayerLink

    rule_id = decision.rule.id
    if rule_id and not MatchingRule.objects.filter(pk=rule_id).exists():
        rule_id = None  # deleted while the payment was being decided
    link_id = decision.link_id
    if link_id and not PayerLink.objects.filter(pk=link_id).exists():
        link_id = None
    return {
        "decided_automatically": decision.action == Action.APPLY,
        "match_rule_id": rule_id,
        "match_method": decision.method[:20],
        "payer_link_id": link_id,
        "decision": decision.explanation,
    }


# --- one posting --------------------------------------------------------------------------


def send_posting(posting_id: int) -> str:
    """Send one posting to Sage Pro, at most once in effect. Safe to call concurrently."""
    posting = Posting.claim(posting_id)
    if posting is None:
        return "skipped"
    if posting.kind != Posting.Kind.CASH_RECEIPT:
        return sending.send_claimed(posting)
    try:
        sage = posting.sagepro.sage()
        if posting.attempts > 1:
            found = _found_by_key(posting, sage)
            if found is not None:
                return found
        document = _document(posting)
        if document is None:
            return "needs review"
        result = sage.post_cash_receipt(posting.idempotency_key, document.receipt)
    except Exception as exc:
        return refused(posting, exc)
    return posted(posting, result)


def _found_by_key(posting: Posting, sage: Any) -> str | None:
    """An earlier attempt may have reached Sage Pro before it failed or its worker
    died: ask before sending again."""
    found = sage.find_cash_receipts(idempotency_key=posting.idempotency_key)
    if not found:
        return None
    posted(posting, found[0], recovered=True)
    return "posted (found by idempotency key)"


def _document(
    posting: Posting, *, store: bool = True
) -> documents.ReceiptDocument | None:
    """The document to send, validated against the mirror; None when our own
    validation stopped it (the posting then waits for a person). It is stored on the
    posting before it is sent (`store=False`: the caller stores it)."""
    document = documents.document_for_send(posting, posting.sagepro.mirror())
    if not document.is_valid:
        posting.mark_not_sent(
            document.posting_fields(),
            documents.problem_summary(document.problems),
            document.problems[0].error_code,
        )
        return None
    if store:
        posting.store(document.posting_fields())
    return document


# --- a batch ------------------------------------------------------------------------------


def send_postings(postings: Iterable[Posting]) -> dict[int, str]:
    """Send postings to Sage Pro in batches (`GATEWAY_BATCH_SIZE` receipts a call).

    Pending ones are claimed together, any other due one by itself. Returns each
    posting's outcome. Never raises for one posting: a failure is recorded on that
    posting (or, if even that fails, its claim runs out and the sweeper hands it on,
    as after a crash).
    """
    given = list({p.pk: p for p in postings}.values())
    outcomes: dict[int, str] = {}
    by_company: dict[int, list[Posting]] = defaultdict(list)
    claimed = {p.pk: p for p in Posting.claim_pending(given)}
    for pk in (p.pk for p in given):
        posting = claimed.get(pk) or Posting.claim(pk)
        if posting is None:
            outcomes[pk] = "skipped"
        else:
            by_company[posting.sagepro_id].append(posting)
    for postings in by_company.values():
        outcomes.update(_send_company(postings))
    return outcomes


def _send_company(postings: list[Posting]) -> dict[int, str]:
    sage = postings[0].sagepro.sage()
    outcomes: dict[int, str] = {}
    documents_: list[tuple[Posting, documents.ReceiptDocument]] = []
    for posting in postings:
        try:
            found = _found_by_key(posting, sage) if posting.attempts > 1 else None
            if found is not None:
                outcomes[posting.pk] = found
                continue
            document = _document(posting, store=False)
        except Exception as exc:
            outcomes[posting.pk] = _guarded(refused, posting, exc)
            continue
        if document is None:
            outcomes[posting.pk] = "needs review"
        else:
            documents_.append((posting, document))
    # Every document is on its posting before any is sent: one write transaction.
    with transaction.atomic():
        for posting, document in documents_:
            posting.store(document.posting_fields())
    ready = [(posting, document.receipt) for posting, document in documents_]
    size = max(1, min(settings.GATEWAY_BATCH_SIZE, 100))
    for start in range(0, len(ready), size):
        chunk = ready[start : start + size]
        try:
            results = sage.post_cash_receipts(
                [(p.idempotency_key, receipt) for p, receipt in chunk]
            )
        except Exception as exc:
            # The whole call failed (unavailable, locked, a timeout): each posting backs
            # off; after an unknown outcome its next attempt asks by key first.
            for posting, _ in chunk:
                outcomes[posting.pk] = _guarded(refused, posting, exc)
            continue
        answered = [(p, r) for (p, _), r in zip(chunk, results, strict=True)]
        outcomes.update(
            _record_posted(
                [(p, r.receipt or {}) for p, r in answered if r.error is None]
            )
        )
        for posting, result in answered:
            if result.error is not None:
                outcomes[posting.pk] = _guarded(refused, posting, result.error)
    return outcomes


def _record_posted(answers: list[tuple[Posting, dict[str, Any]]]) -> dict[int, str]:
    """Record the receipts of one batch call in one write transaction (a savepoint
    each, so one that cannot be recorded leaves the others). A receipt Sage Pro applied
    only in part needs a fresh read of its invoices: it is recorded after, by itself."""
    outcomes: dict[int, str] = {}
    later = []
    recorded: list[Posting] = []
    # By customer: two drains recording at once lock the mirrored customers' rows in
    # the same order (no deadlock).
    answers = sorted(answers, key=lambda a: (str(a[1].get("custno", "")), a[0].pk))
    with transaction.atomic():
        for posting, receipt in answers:
            if _short_applications(receipt):
                later.append((posting, receipt))
                continue
            try:
                with transaction.atomic():
                    posting.mark_posted(receipt)
                    mirror.apply_receipt(
                        posting.sagepro, receipt, sent_at=posting.started_at
                    )
            except Exception as exc:
                logger.warning(
                    "posting %s: recording it with its batch failed (%s); "
                    "recording it by itself",
                    posting.pk,
                    describe_failure(exc),
                    extra={"posting_id": posting.pk},
                )
                later.append((posting, receipt))
            else:
                outcomes[posting.pk] = "posted"
                recorded.append(posting)
    refunds.after_receipts(recorded)  # refunds and voids waiting for them
    for posting, receipt in later:
        outcomes[posting.pk] = _guarded(posted, posting, receipt)
    return outcomes


def _guarded(record: Any, posting: Posting, value: Any) -> str:
    """Record one posting's result without letting its failure touch the others."""
    try:
        return str(record(posting, value))
    except Exception:
        logger.exception(
            "posting %s: the result could not be recorded; the sweeper retries it "
            "after its claim expires (the idempotency key prevents a second receipt)",
            posting.pk,
            extra={"posting_id": posting.pk},
        )
        return "unrecorded"


# --- results ------------------------------------------------------------------------------


def posted(
    posting: Posting, result: dict[str, Any] | None, *, recovered: bool = False
) -> str:
    """Record a receipt Sage Pro holds, bring the mirror up to date from its answer,
    and show a reviewer a receipt Sage Pro applied only in part."""
    result = result or {}
    posting.mark_posted(result, recovered=recovered)
    short = _short_applications(result)
    try:
        if short or recovered:
            # Written by an earlier attempt at an unknown time: read the invoices again.
            for line in result.get("applications") or []:
                mirror.refresh_invoice(posting.sagepro, str(line.get("invno", "")))
        else:
            # Sent after the claim: a sync that read the invoice later holds it already.
            mirror.apply_receipt(posting.sagepro, result, sent_at=posting.started_at)
    except Exception as exc:  # the scheduled sync catches up
        logger.warning(
            "posting %s posted; the mirror was not updated: %s",
            posting.pk,
            describe_failure(exc),
        )
    if short:
        lines = "; ".join(
            f"invoice {invno}: {applied} applied of {requested} asked"
            for invno, applied, requested in short
        )
        ReviewItem.open(
            posting.transaction,
            ReviewItem.Kind.OVERPAYMENT,
            f"Sage Pro posted receipt {posting.document_number} but applied less than "
            f"asked ({lines}): the invoice's balance had changed in Sage Pro since the "
            f"portal's copy was synced. The rest, {posting.unapplied_amount}, is "
            "unapplied cash on the customer's account: refund it or apply it.",
            posting=posting,
        )
    refunds.after_receipt(posting)  # refunds and voids waiting for it
    return "posted"


def _short_applications(result: dict[str, Any]) -> list[tuple[str, Decimal, Decimal]]:
    """(invno, applied, requested) for each application Sage Pro cut to the balance."""
    short = []
    for line in result.get("applications") or []:
        try:
            applied = Decimal(str(line.get("amount")))
            requested = Decimal(str(line.get("requested_amount", line.get("amount"))))
        except (ArithmeticError, TypeError, ValueError):
            continue
        if applied < requested:
            short.append((str(line.get("invno", "")), applied, requested))
    return short


def refused(posting: Posting, exc: BaseException) -> str:
    """Route a failed send: decide again when stale data explains the refusal, back off
    when a retry may help, else a person decides."""
    if (
        isinstance(exc, ConnectorError)
        and not is_transient(exc)
        and exc.code in STALE_CODES
    ):
        try:
            outcome = _decide_again(posting, exc)
        except Exception as again:
            logger.warning(
                "posting %s: deciding again after %s failed: %s",
                posting.pk,
                exc.code,
                describe_failure(again),
                extra={"posting_id": posting.pk},
            )
            outcome = None
            if is_transient(again):
                exc = again
        if outcome is not None:
            return outcome
    outcome = mark_send_failed(posting, exc)
    refunds.after_receipt(posting)  # a void waiting for this send decides now
    return outcome


def _decide_again(posting: Posting, exc: ConnectorError) -> str | None:
    """Refresh what the refusal names and decide again; None when nothing changes
    (the refusal is then routed as it is)."""
    sage_conn = posting.sagepro
    stored = CashReceipt.from_payload(posting.payload or {})
    txn = posting.transaction
    if exc.code in ACCOUNT_CODES:
        mirror.refresh_gl_accounts(sage_conn)
        document = documents.document_for_send(posting, sage_conn.mirror())
        if document.is_valid:
            return None
        posting.mark_not_sent(
            document.posting_fields(),
            documents.problem_summary(document.problems),
            document.problems[0].error_code,
        )
        return "needs review"
    if (
        posting.overrides
        or not stored.applications
        or (len(stored.applications) > 1 and not posting.decided_automatically)
    ):
        # A reviewer placed this money (a split, on account, a correction): theirs to
        # decide again. The refreshed mirror shows them the invoice as it is now.
        for application in stored.applications:
            mirror.refresh_invoice(sage_conn, application.invno)
        return None
    placement = decide_placement(txn, sage_conn, fresh=True)
    decision = placement.decision
    PaymentTransaction.objects.filter(pk=txn.pk).update(
        match_explanation=decision.explanation
    )
    txn.record(
        "decided_again",
        f"Sage Pro refused the receipt ({exc.code}): the portal's copy of invoice "
        f"{stored.applications[0].invno} was out of date. Decided again on Sage Pro's "
        f"data: {decision.action}"
        + (f" ({decision.review_kind})" if decision.review_kind else ""),
    )
    if decision.action == Action.REVIEW:
        posting.state = Posting.State.NEEDS_REVIEW
        posting.next_attempt_at = None
        posting.last_error = f"{describe_failure(exc)}; decided again: review"[:2000]
        posting.last_error_code = exc.code[:40]
        posting.save()
        ReviewItem.open(
            txn,
            decision.review_kind,
            decision.reason,
            posting=posting,
            error_code=exc.code,
        )
        return "needs review"
    document = receipt_document(txn, sage_conn, placement)
    if document.receipt == stored or not document.is_valid:
        return None
    posting.store({**document.posting_fields(), **decision_fields(decision)})
    if decision.review_kind:
        ReviewItem.open(txn, decision.review_kind, decision.reason, posting=posting)
    try:
        result = sage_conn.sage().post_cash_receipt(
            posting.idempotency_key, document.receipt
        )
    except Exception as again:
        return mark_send_failed(posting, again)
    return posted(posting, result)


def mark_send_failed(posting: Posting, exc: BaseException) -> str:
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
        extra={"posting_id": posting.pk},
    )
    with transaction.atomic():
        posting.last_error = plain[:2000]
        posting.last_error_code = code
        posting.not_sent = False
        txn = posting.transaction
        if not is_transient(exc):
            posting.state = Posting.State.NEEDS_REVIEW
            posting.next_attempt_at = None
            posting.save()
            ReviewItem.open(
                txn,
                ReviewItem.Kind.VALIDATION,
                documents.refusal_reason(exc, plain, posting.payload),
                posting=posting,
                error_code=code,
            )
            return "needs review"
        if posting.attempts >= settings.POSTING_MAX_ATTEMPTS:
            posting.mark_dead(plain)
            return "dead"
        posting.state = Posting.State.FAILED
        posting.next_attempt_at = timezone.now() + backoff_delay(posting.attempts)
        posting.save()
        txn.record(
            "post_failed",
            f"Attempt {posting.attempts} failed: {plain}; next try at {posting.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC",
        )
        return "failed"
