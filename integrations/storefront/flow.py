"""Storefront order-to-cash: from a stored webhook and a PayTrace payment to a Sage Pro
customer, sales order and invoice with the cash applied.

1. `process_event` (a worker, per stored webhook): an order is stored or updated
   (its lines only until its sales order is sent), a cancellation or a refund is
   recorded on it. An order whose payment is already here is advanced.
2. `take_payment` (inside the pipeline's write transaction, through
   `payment_handoff`): a payment whose PayTrace `invoice_id` names an order is tied to
   it; an order not seen yet waits for it.
3. `advance` (a worker, no transaction held across a call): checks (cancelled, total
   against the payment, every SKU an active Sage Pro item), the customer (mapping
   table, then e-mail, else a new one by the number rule), then the sales order as a
   `sales_order` posting with `invoice: true`. When it posts (`on_sales_order_posted`,
   in the posting's transaction) the cash receipt is created, applied to the order's
   invoice (or on account when there is none), and sent by `send_receipt`.
4. `sweep_orders` (every minute): what waited longer than the connection's
   `wait_minutes` goes to review; stalled work is advanced again.

Anything a person has to decide ends as an `order` review item whose reason names the
order and the fix; `retry_order` sends it round again once fixed.
"""

import dataclasses
import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from integrations.connectors.base import NOT_SUPPORTED_AT_SITE, ConnectorError
from integrations.models import (
    Connection,
    PaymentTransaction,
    Posting,
    ReviewItem,
)
from integrations.models.failures import describe_failure, is_transient
from integrations.models.storefront import (
    StorefrontEvent,
    StorefrontOrder,
    StorefrontOrderLine,
    StorefrontRefund,
    StorefrontSettings,
)
from integrations.storefront.tasks import queue_task
from mappings import storefront as rules
from mappings.models import PayerLink

logger = logging.getLogger(__name__)

State = StorefrontOrder.State
# States in which the order's documents are being made; the order no longer changes.
SENT_STATES = (State.PROCESSING, State.ORDERED, State.PAID)
STALLED_AFTER = timedelta(minutes=5)


class OrderReviewError(Exception):
    """What stops an order, in words a reviewer acts on."""

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


def settings_of(connection: Connection) -> StorefrontSettings | None:
    return StorefrontSettings.objects.filter(connection=connection).first()


# --- 1. the storefront's webhooks ------------------------------------------------------


def process_event(event_id: int) -> str:
    """Apply one stored webhook to its order. Safe to run twice."""
    with transaction.atomic():
        event = (
            StorefrontEvent.objects.select_for_update()
            .select_related("connection")
            .filter(pk=event_id, state=StorefrontEvent.State.QUEUED)
            .first()
        )
        if event is None:
            return "skipped"
        try:
            outcome = _apply_event(event)
            event.state = StorefrontEvent.State.PROCESSED
        except rules.OrderShapeError as exc:  # checked at the edge: a bug if seen
            outcome = f"unreadable: {exc}"
            event.state = StorefrontEvent.State.FAILED
        event.outcome = outcome[:300]
        event.processed_at = timezone.now()
        event.save(update_fields=["state", "outcome", "processed_at"])
    return outcome


def _apply_event(event: StorefrontEvent) -> str:
    if event.topic == "refunds/create":
        return record_refund(event.connection, rules.parse_refund(event.payload))
    order = rules.parse_order(event.payload)
    if event.topic == "orders/cancelled":
        order = dataclasses.replace(order, cancelled=True)
    row = upsert_order(event.connection, order, event.topic)
    return f"order {row.name}: {row.get_state_display()}"


def upsert_order(
    connection: Connection, order: rules.Order, topic: str = ""
) -> StorefrontOrder:
    """Store the order (its details until its sales order is sent), then move it on."""
    key = rules.order_key(order.number or order.name)
    with transaction.atomic():
        row, created = StorefrontOrder.objects.select_for_update().get_or_create(
            connection=connection,
            reference_key=key,
            defaults={"state": State.WAITING_PAYMENT, "waiting_since": timezone.now()},
        )
        row.financial_status = order.financial_status
        if row.state not in SENT_STATES and not row.sono:
            _copy_order(row, order)
            row.note("received" if created else "updated", f"{topic or 'order'}")
        if order.cancelled and not row.cancelled:
            return _cancel(row)
        row.save()
        _resume_if_waited(row)
        if row.state == State.REVIEW or row.state in SENT_STATES:
            return row
        if row.transaction_id is not None:
            row.move_to(State.PROCESSING, "payment matched", "the payment was here")
            queue_task("advance_order", row.pk)
        elif row.state != State.WAITING_PAYMENT:
            row.waiting_since = timezone.now()
            row.move_to(State.WAITING_PAYMENT, "waiting for payment")
    return row


def _copy_order(row: StorefrontOrder, order: rules.Order) -> None:
    row.order_id = order.order_id
    row.name = order.name[:40]
    row.number = order.number
    row.email = order.email
    row.customer_id = order.customer_id
    row.customer_name = order.customer_name
    row.billing_address = order.billing.as_dict()
    row.ship_to = order.ship_to.as_dict()
    row.currency = order.currency
    row.subtotal, row.tax, row.freight, row.total = (
        order.subtotal,
        order.tax,
        order.freight,
        order.total,
    )
    row.save()
    row.lines.all().delete()
    StorefrontOrderLine.objects.bulk_create(
        StorefrontOrderLine(
            order=row,
            line_no=n,
            sku=line.sku,
            title=line.title[:200],
            quantity=line.quantity,
            price=line.price,
            location=line.location,
            taxable=line.taxable,
        )
        for n, line in enumerate(order.lines, start=1)
    )


def _cancel(row: StorefrontOrder) -> StorefrontOrder:
    row.cancelled = True
    row.save()
    if row.transaction_id is None and row.state != State.REVIEW:
        row.move_to(State.CANCELLED, "cancelled", "cancelled before it was paid")
        return row
    txn = row.transaction
    posted = txn is not None and txn.postings.filter(state=Posting.State.POSTED)
    what = (
        f"sales order {row.sono} and its payment are posted in Sage Pro"
        if posted
        else "its payment was received"
    )
    row.open_review(
        f"Storefront order {row.name} was cancelled, but {what}: refund the payment "
        f"{txn.transaction_id if txn else ''} in PayTrace (its refund posts the credit "
        "memo), then resolve this item.",
        code="ORDER_CANCELLED",
    )
    return row


def record_refund(connection: Connection, refund: rules.Refund) -> str:
    """Record a storefront refund on its order and link it to the PayTrace refund of
    the order's payment (a refund transaction whose `original` is that payment)."""
    order = (
        StorefrontOrder.objects.filter(connection=connection, order_id=refund.order_id)
        .select_related("transaction")
        .first()
    )
    if order is None:
        return f"refund {refund.refund_id}: no order {refund.order_id} here"
    row, created = StorefrontRefund.objects.get_or_create(
        order=order,
        refund_id=refund.refund_id,
        defaults={"amount": refund.amount, "note": refund.note},
    )
    if created:
        order.note("refund", f"storefront refund {refund.refund_id}: {refund.amount}")
        order.save()
    link_refunds(order)
    return f"refund {refund.refund_id} of order {order.name}"


def link_refunds(order: StorefrontOrder) -> None:
    """Tie each unlinked storefront refund to a PayTrace refund of the order's
    payment for the same amount, not tied to another one."""
    if order.transaction_id is None:
        return
    for refund in order.refunds.filter(transaction__isnull=True):
        candidate = (
            PaymentTransaction.objects.filter(
                original_id=order.transaction_id, amount=refund.amount
            )
            .exclude(storefront_refunds__isnull=False)
            .order_by("pk")
            .first()
        )
        if candidate is not None:
            refund.transaction = candidate
            refund.save(update_fields=["transaction"])


# --- 2. the payment --------------------------------------------------------------------


def payment_handoff_for(txn: PaymentTransaction) -> Any:
    """The storefront order a payment pays, as the pipeline's handoff callable, or
    None to leave the payment to the receipt path."""
    candidates = StorefrontSettings.objects.filter(
        paytrace_id=txn.connection_id, connection__is_active=True
    ).select_related("connection")
    for config in candidates:
        ref = rules.order_reference(txn.invoice_reference, config.reference_prefix)
        if ref is None:
            continue
        exists = StorefrontOrder.objects.filter(
            connection=config.connection, reference_key=ref.key
        ).exists()
        if exists or ref.explicit:
            conn_pk, key, txn_pk = config.connection_id, ref.key, txn.pk
            return lambda: take_payment(conn_pk, key, txn_pk)
    return None


def take_payment(connection_id: int, key: str, txn_id: int) -> str:
    """Tie the payment to its order (creating the order's row when it has not
    arrived yet, to wait for it); advance the order when both are here."""
    txn = PaymentTransaction.objects.get(pk=txn_id)
    with transaction.atomic():
        order, created = StorefrontOrder.objects.select_for_update().get_or_create(
            connection_id=connection_id,
            reference_key=key,
            defaults={
                "state": State.WAITING_ORDER,
                "waiting_since": timezone.now(),
                "name": f"#{key}",
                "transaction": txn,
            },
        )
        if order.transaction_id not in (None, txn.pk):
            other = order.transaction.transaction_id if order.transaction else "?"
            ReviewItem.open(
                txn,
                ReviewItem.Kind.ORDER,
                f"Payment {txn.transaction_id} names storefront order {order.name}, "
                f"which payment {other} already pays. Refund this one in PayTrace, "
                "or post it by hand, then resolve this item.",
            )
            return f"storefront order {order.name}: second payment, in review"
        if order.transaction_id is None:
            order.transaction = txn
            order.note("payment", f"PayTrace payment {txn.transaction_id}")
            order.save()
        if created:
            order.note("payment", f"PayTrace payment {txn.transaction_id}")
            order.save()
        txn.record(
            "storefront_order",
            f"Pays storefront order {order.name}.",
            order=order.pk,
        )
        _resume_if_waited(order)
        if order.state == State.WAITING_PAYMENT and order.has_details:
            order.move_to(State.PROCESSING, "payment matched")
            queue_task("advance_order", order.pk)
        elif order.state == State.CANCELLED:
            _cancel(order)
        return f"storefront order {order.name}: {order.get_state_display()}"


def _resume_if_waited(order: StorefrontOrder) -> None:
    """An order sent to review only for waiting too long goes on once both are here."""
    item = order.review_item
    if (
        order.state == State.REVIEW
        and order.has_details
        and order.transaction_id is not None
        and item is not None
        and item.error_code == "ORDER_WAIT_EXPIRED"
        and item.state == ReviewItem.State.OPEN
    ):
        item.resolve(None, "Both the order and its payment arrived", "resumed", {})
        order.move_to(
            State.WAITING_PAYMENT, "resumed", "the order and payment are here"
        )


# --- 3. Sage Pro ------------------------------------------------------------------------


def advance(order_id: int) -> str:
    """Make the order's Sage Pro documents, as far as they can go now. Idempotent."""
    order = (
        StorefrontOrder.objects.select_related("connection", "transaction")
        .filter(pk=order_id)
        .first()
    )
    if order is None or order.state != State.PROCESSING:
        return "skipped"
    config = settings_of(order.connection)
    if config is None or order.transaction is None:
        return "skipped"
    try:
        return _advance(order, config)
    except OrderReviewError as exc:
        order.open_review(exc.reason, code=exc.code)
        return f"order {order.name}: in review"
    except ConnectorError as exc:
        if is_transient(exc):
            order.note("retry", f"Sage Pro did not answer: {describe_failure(exc)}")
            order.save()
            return "will retry"
        kind = (
            ReviewItem.Kind.UNSUPPORTED_DOCUMENT
            if exc.code == NOT_SUPPORTED_AT_SITE
            else ReviewItem.Kind.ORDER
        )
        order.open_review(_refusal_reason(order, exc), code=exc.code[:40], kind=kind)
        return f"order {order.name}: in review"


def _advance(order: StorefrontOrder, config: StorefrontSettings) -> str:
    txn = order.transaction
    assert txn is not None
    sage_conn = config.sagepro
    posting = txn.postings.filter(kind=Posting.Kind.SALES_ORDER).first()
    if posting is None or not posting.payload:
        posting = _create_sales_order(order, config, sage_conn, txn, posting)
    if posting.state in (Posting.State.PENDING, Posting.State.FAILED):
        from integrations import sending

        sending.send_document(posting.pk)
        posting.refresh_from_db()
    order.refresh_from_db()
    if posting.state == Posting.State.POSTED:
        return send_receipt(order.pk)
    # The posting's own review item says what Sage Pro answered.
    if (
        posting.state in (Posting.State.NEEDS_REVIEW, Posting.State.DEAD)
        and order.state == State.PROCESSING
    ):
        order.review_item = (
            posting.review_items.filter(state=ReviewItem.State.OPEN).first()
            or order.review_item
        )
        order.move_to(
            State.REVIEW,
            "review",
            posting.last_error or "The sales order waits in review.",
        )
    return f"order {order.name}: sales order {posting.get_state_display().lower()}"


def _create_sales_order(
    order: StorefrontOrder,
    config: StorefrontSettings,
    sage_conn: Connection,
    txn: PaymentTransaction,
    retried: Posting | None = None,
) -> Posting:
    """The sales order posting, after every check; `retried`: the posting a reviewer
    sent round again (nothing reached Sage Pro), given the document made anew."""
    _check_order(order, txn)
    lines = [
        rules.OrderLine(
            sku=line.sku,
            title=line.title,
            quantity=line.quantity,
            price=line.price,
            taxable=line.taxable,
            location=line.location,
        )
        for line in order.lines.all()
    ]
    gateway = sage_conn.sage()
    items = {
        str(item.get("item", "")).strip().upper(): bool(item.get("active", True))
        for item in gateway.list_items()
    }
    problems = rules.order_problems(lines, items, config.default_location)
    if problems:
        raise OrderReviewError(
            f"Storefront order {order.name} cannot become a sales order: "
            + "; ".join(problems)
            + ". Add or activate the item in Sage Pro (or correct the SKU in the "
            "storefront), then retry.",
            "ITEM_NOT_FOUND",
        )
    if not order.custno:
        order.custno = resolve_customer(order, config, gateway)
        order.note("customer", f"Sage Pro customer {order.custno}")
        order.save()
    document = sales_order_for(order, config, lines, txn)
    if document.total != order.total:
        raise OrderReviewError(
            f"Storefront order {order.name}'s lines, tax and freight add up to "
            f"{document.total}, but its total is {order.total} (a discount?). "
            "Enter the sales order in Sage Pro by hand, then resolve this item.",
            "ORDER_TOTAL_MISMATCH",
        )
    if retried is not None:
        retried.payload = document.as_payload()
        retried.save(update_fields=["payload"])
        return retried
    from integrations import sending

    posting, created = sending.create_posting(
        txn, sage_conn, Posting.Kind.SALES_ORDER, document.as_payload()
    )
    if created:
        order.note("sales order", f"sales order posting {posting.pk} created")
        order.save()
    return posting


def _check_order(order: StorefrontOrder, txn: PaymentTransaction) -> None:
    if order.cancelled:
        raise OrderReviewError(
            f"Storefront order {order.name} was cancelled, but payment "
            f"{txn.transaction_id} was received: refund it in PayTrace, then resolve "
            "this item.",
            "ORDER_CANCELLED",
        )
    if order.currency.upper() != txn.currency.upper():
        raise OrderReviewError(
            f"Storefront order {order.name} is in {order.currency}, its payment "
            f"{txn.transaction_id} in {txn.currency}.",
            "ORDER_TOTAL_MISMATCH",
        )
    if problem := rules.total_problem(order.total, txn.amount, order.currency):
        raise OrderReviewError(
            f"Storefront order {order.name}: {problem} Refund or collect the "
            f"difference, or correct the order, then retry.",
            "ORDER_TOTAL_MISMATCH",
        )


def sales_order_for(
    order: StorefrontOrder,
    config: StorefrontSettings,
    lines: list[rules.OrderLine],
    txn: PaymentTransaction,
) -> rules.SalesOrder:
    ship = order.ship_to or order.billing_address or {}
    return rules.SalesOrder(
        custno=order.custno,
        date=txn.posting_date(),
        reference=(order.name or f"#{order.reference_key}")[: rules.REFERENCE_WIDTH],
        ponum=(order.name or "")[:20],
        ship_to=rules.Address(
            **{k: str(ship.get(k, "")) for k in rules.Address().as_dict()}
        ),
        lines=rules.sales_order_lines(lines, config.default_location),
        tax=order.tax,
        freight=order.freight,
    )


def resolve_customer(
    order: StorefrontOrder, config: StorefrontSettings, gateway: Any
) -> str:
    """The Sage Pro customer of the order: the mapping table (storefront customer
    id, then e-mail), then Sage Pro's customers with the e-mail, else a new one."""
    links = PayerLink.objects.filter(connection=order.connection, is_active=True)
    link = None
    if order.customer_id:
        link = links.filter(
            kind=PayerLink.Kind.CUSTOMER_ID, key=order.customer_id.upper()
        ).first()
    if link is None and order.email:
        link = links.filter(kind=PayerLink.Kind.EMAIL, key=order.email.lower()).first()
    if link is not None:
        custno = link.custno
        _check_customer(order, gateway.get_customer(custno))
        return custno
    found = gateway.find_customers(email=order.email) if order.email else []
    if len(found) > 1:
        numbers = ", ".join(str(c.get("custno", "")).strip() for c in found[:5])
        raise OrderReviewError(
            f"Storefront order {order.name}: several Sage Pro customers have the "
            f"e-mail {order.email} ({numbers}). Add a customer mapping for it, then "
            "retry.",
            "CUSTOMER_AMBIGUOUS",
        )
    if found:
        custno = str(found[0].get("custno", "")).strip()
        _check_customer(order, found[0])
        how = "found by e-mail"
    else:
        custno = _new_customer(order, config, gateway)
        how = "created"
    _remember(order, custno, how)
    return custno


def _check_customer(order: StorefrontOrder, customer: dict[str, Any]) -> None:
    if str(customer.get("credit_status", "")).strip().upper() == "H":
        custno = str(customer.get("custno", "")).strip()
        raise OrderReviewError(
            f"Storefront order {order.name}: Sage Pro customer {custno} is on credit "
            "hold. Release the hold in Sage Pro (or map the order to another "
            "customer), then retry.",
            "CUSTOMER_ON_HOLD",
        )


def _new_customer(
    order: StorefrontOrder, config: StorefrontSettings, gateway: Any
) -> str:
    def is_taken(candidate: str) -> bool:
        if PayerLink.objects.filter(custno=candidate).exists():
            return True
        try:
            gateway.get_customer(candidate)
        except ConnectorError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    billing = order.billing_address or {}
    custno = rules.new_customer_number(
        billing.get("company") or order.customer_name,
        order.email,
        is_taken,
        letters=config.customer_letters or 4,
    )
    gateway.put_customer(
        custno,
        {
            "company": (order.customer_name or order.email)[:35],
            "contact": str(billing.get("name", ""))[:30],
            "address1": str(billing.get("address1", ""))[:35],
            "address2": str(billing.get("address2", ""))[:35],
            "city": str(billing.get("city", ""))[:20],
            "state": str(billing.get("state", ""))[:10],
            "zip": str(billing.get("zip", ""))[:10],
            "country": str(billing.get("country", ""))[:15],
            "phone": str(billing.get("phone", ""))[:20],
            "email": order.email[:100],
            "terms": config.customer_terms,
        },
    )
    return custno


def _remember(order: StorefrontOrder, custno: str, how: str) -> None:
    """Record the customer in the mapping table for the next order."""
    pairs = [
        (PayerLink.Kind.CUSTOMER_ID, order.customer_id.upper()),
        (PayerLink.Kind.EMAIL, order.email.lower()),
    ]
    for kind, key in pairs:
        if key:
            PayerLink.objects.get_or_create(
                connection=order.connection,
                kind=kind,
                key=key,
                defaults={
                    "custno": custno,
                    "evidence": f"Storefront order {order.name}: customer {how}.",
                },
            )


def _refusal_reason(order: StorefrontOrder, exc: ConnectorError) -> str:
    if exc.code == NOT_SUPPORTED_AT_SITE:
        return (
            f"Sage Pro at this site does not accept customers and sales orders "
            f"through the on-site agent yet: enter storefront order {order.name} in "
            "Sage Pro by hand, then resolve this item."
        )
    return (
        f"Sage Pro refused storefront order {order.name}: {describe_failure(exc)}. "
        "Correct what it names, then retry."
    )


# --- the sales order posting's consequences -------------------------------------------


def order_of(posting: Posting) -> StorefrontOrder | None:
    return (
        StorefrontOrder.objects.select_for_update()
        .filter(transaction_id=posting.transaction_id)
        .first()
    )


def on_sales_order_posted(posting: Posting, result: dict[str, Any]) -> None:
    """The sales order is in Sage Pro: note its number and invoice, and create the
    cash receipt applied to that invoice (on account when there is none)."""
    order = order_of(posting)
    if order is None:
        return
    order.sono = str(result.get("sono", "")).strip()
    order.invno = str(result.get("invno") or "").strip()
    order.custno = str(result.get("custno") or order.custno).strip()
    order.move_to(
        State.ORDERED,
        "sales order posted",
        f"sales order {order.sono}"
        + (f", invoice {order.invno}" if order.invno else ""),
    )
    _create_receipt(order, posting.transaction, posting.sagepro)
    queue_task("send_receipt", order.pk)


def on_sales_order_refused(posting: Posting, exc: ConnectorError) -> str | None:
    order = order_of(posting)
    if order is None:
        return None
    posting.state = Posting.State.NEEDS_REVIEW
    posting.next_attempt_at = None
    posting.last_error = describe_failure(exc)[:2000]
    posting.last_error_code = exc.code[:40]
    posting.save()
    item = order.open_review(_refusal_reason(order, exc), code=exc.code[:40])
    if item.posting_id is None:
        item.posting = posting
        item.save(update_fields=["posting"])
    return "needs review"


def _create_receipt(
    order: StorefrontOrder, txn: PaymentTransaction, sage_conn: Connection
) -> Posting:
    from integrations import documents, processing
    from integrations.connectors.sagepro import Application

    if order.invno:
        applied = min(txn.amount, order.total)
        invoice = {"invno": order.invno, "custno": order.custno, "balance": order.total}
        document = documents.build_cash_receipt(
            txn,
            invoice,
            sage_conn=sage_conn,
            applications=(Application(order.invno, applied),),
        )
    else:
        document = documents.build_cash_receipt(
            txn, None, sage_conn=sage_conn, applications=(), customer=order.custno
        )
    posting = processing.create_receipt_posting(txn, sage_conn, document)
    order.note(
        "receipt",
        f"cash receipt applied to invoice {order.invno}"
        if order.invno
        else f"cash receipt on account of {order.custno} (deposit)",
    )
    order.save()
    return posting


def send_receipt(order_id: int) -> str:
    """Send the order's cash receipt, then bring the order's state up to date."""
    order = StorefrontOrder.objects.filter(pk=order_id).first()
    if order is None or order.transaction_id is None:
        return "skipped"
    receipt = Posting.objects.filter(
        transaction_id=order.transaction_id, kind=Posting.Kind.CASH_RECEIPT
    ).first()
    if receipt is not None and receipt.state in (
        Posting.State.PENDING,
        Posting.State.FAILED,
    ):
        from integrations.posting import send_posting

        send_posting(receipt.pk)
    return sync_state(order)


def sync_state(order: StorefrontOrder) -> str:
    """An ordered order is paid once its receipt posted; in review if it waits."""
    if order.state != State.ORDERED or order.transaction_id is None:
        return order.state
    receipt = Posting.objects.filter(
        transaction_id=order.transaction_id, kind=Posting.Kind.CASH_RECEIPT
    ).first()
    if receipt is None:
        return order.state
    if receipt.state == Posting.State.POSTED:
        order.move_to(
            State.PAID,
            "paid",
            f"receipt {receipt.document_number}"
            + (f" applied to invoice {order.invno}" if order.invno else " on account"),
        )
        _apply_waiting_cash(order)
    elif receipt.state in (Posting.State.NEEDS_REVIEW, Posting.State.DEAD):
        order.state_reason = (
            f"The cash receipt waits in review: {receipt.last_error}"
        )[:2000]
        order.state = State.REVIEW
        order.note("review", order.state_reason, state=State.REVIEW)
        order.save()
    return order.state


def _apply_waiting_cash(order: StorefrontOrder) -> None:
    """Let waiting unapplied cash of the customer meet the new invoice (helper
    "unapplied"'s rule); absent or failing, the order is not held up."""
    config = settings_of(order.connection)
    if config is None or not order.invno:
        return
    try:
        from integrations.unapplied import apply_waiting_cash  # type: ignore[attr-defined]
    except ImportError:
        return
    try:
        apply_waiting_cash(config.sagepro, order.invno)
    except Exception:  # noqa: BLE001 - the order is paid either way
        logger.exception("apply_waiting_cash failed for invoice %s", order.invno)


# --- 4. waiting, stalls, retries --------------------------------------------------------


def sweep_orders(now: datetime | None = None) -> dict[str, int]:
    """Orders that waited longer than their connection's `wait_minutes` go to review;
    orders stalled while sending are advanced again; ordered ones catch up."""
    now = now or timezone.now()
    counts = {"expired": 0, "advanced": 0, "synced": 0}
    waiting = StorefrontOrder.objects.filter(
        state__in=[State.WAITING_PAYMENT, State.WAITING_ORDER],
        waiting_since__isnull=False,
    ).select_related("connection__storefront_settings", "transaction")
    for order in waiting:
        config = settings_of(order.connection)
        minutes = config.wait_minutes if config else 60
        if order.waiting_since and order.waiting_since <= now - timedelta(
            minutes=minutes
        ):
            order.open_review(_waited_reason(order, minutes), code="ORDER_WAIT_EXPIRED")
            counts["expired"] += 1
    counts["events"] = 0
    for event_id in StorefrontEvent.objects.filter(
        state=StorefrontEvent.State.QUEUED, received_at__lt=now - STALLED_AFTER
    ).values_list("pk", flat=True)[:500]:
        queue_task("process_event", event_id)
        counts["events"] += 1
    for order in StorefrontOrder.objects.filter(
        state=State.PROCESSING, updated_at__lt=now - STALLED_AFTER
    ):
        queue_task("advance_order", order.pk)
        counts["advanced"] += 1
    for order in StorefrontOrder.objects.filter(state=State.ORDERED):
        if sync_state(order) != State.ORDERED:
            counts["synced"] += 1
    # A PayTrace refund that arrived after the storefront's refunds/create.
    for order in StorefrontOrder.objects.filter(
        refunds__transaction__isnull=True, transaction__isnull=False
    ).distinct():
        link_refunds(order)
    return counts


def _waited_reason(order: StorefrontOrder, minutes: int) -> str:
    if order.state == State.WAITING_ORDER:
        txn = order.transaction
        return (
            f"PayTrace payment {txn.transaction_id if txn else '?'} names storefront "
            f"order {order.name}, which has not arrived after {minutes} minutes. "
            "Check the order in the storefront (and its webhook), then retry; or "
            "post the payment as a receipt by hand."
        )
    return (
        f"Storefront order {order.name} ({order.total} {order.currency}) has had "
        f"no PayTrace payment for {minutes} minutes (its invoice id should be "
        f"{order.name}). Check the payment in PayTrace, then retry."
    )


@dataclasses.dataclass(frozen=True)
class RetryPreview:
    """What retrying an order will send, shown before it is confirmed; the
    fingerprint is what the confirmation carries (a changed order is refused)."""

    order: StorefrontOrder
    can_retry: bool
    steps: list[str]
    fingerprint: str


def preview_retry(order: StorefrontOrder) -> RetryPreview:
    txn = order.transaction
    lines = list(order.lines.all())
    seen = "|".join(
        [
            str(order.pk),
            order.state,
            str(order.total),
            str(txn.amount if txn else ""),
            order.custno,
            order.updated_at.isoformat() if order.updated_at else "",
            *(f"{ln.sku}:{ln.quantity}:{ln.price}" for ln in lines),
        ]
    )
    fingerprint = hashlib.sha256(seen.encode()).hexdigest()[:20]
    if order.state != State.REVIEW:
        return RetryPreview(order, False, [], fingerprint)
    if txn is None:
        steps = ["The order waits for its PayTrace payment again."]
    elif not order.has_details:
        steps = ["The payment waits for its storefront order again."]
    else:
        steps = [
            f"Check the order again: its total {order.total} {order.currency} against "
            f"payment {txn.transaction_id} ({txn.amount} {txn.currency}), and each "
            "SKU against Sage Pro's items.",
            f"Sage Pro customer: {order.custno}"
            if order.custno
            else "Find the Sage Pro customer (mapping, e-mail) or create one.",
            "Send the sales order with "
            + ", ".join(f"{ln.quantity} × {ln.sku}" for ln in lines)
            + f" (tax {order.tax}, freight {order.freight}) and its invoice.",
            f"Post the cash receipt of {txn.amount} {txn.currency}, applied to that "
            "invoice.",
        ]
    return RetryPreview(order, True, steps, fingerprint)


def retry_order(order: StorefrontOrder, user: Any = None) -> str:
    """A reviewer fixed what stopped the order: close its item and go again."""
    with transaction.atomic():
        order = StorefrontOrder.objects.select_for_update().get(pk=order.pk)
        if order.state != State.REVIEW:
            return f"order {order.name} is not in review"
        item = order.review_item
        if item is not None and item.state == ReviewItem.State.OPEN:
            item.resolve(user, "Retried from the storefront order", "retry", {})
        posting = (
            order.transaction.postings.filter(kind=Posting.Kind.SALES_ORDER).first()
            if order.transaction
            else None
        )
        if posting is not None and posting.state == Posting.State.NEEDS_REVIEW:
            # Nothing reached Sage Pro: the document is made again from the order,
            # under a fresh key (the refused body is never sent again).
            posting.payload = {}
            posting.state = Posting.State.PENDING
            posting.attempts = 0
            posting.last_error, posting.last_error_code = "", ""
            posting.idempotency_key = f"{posting.idempotency_key.split('-r')[0][:100]}-r{timezone.now():%H%M%S%f}"
            posting.save()
        if order.transaction_id is None:
            order.waiting_since = timezone.now()
            order.move_to(State.WAITING_PAYMENT, "retried", f"by {user or 'system'}")
        elif not order.has_details:
            order.waiting_since = timezone.now()
            order.move_to(State.WAITING_ORDER, "retried", f"by {user or 'system'}")
        else:
            order.move_to(State.PROCESSING, "retried", f"by {user or 'system'}")
            queue_task("advance_order", order.pk)
    return f"order {order.name} retried"
