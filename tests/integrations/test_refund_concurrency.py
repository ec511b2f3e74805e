"""Refunds under real threads: the same refund event processed by several workers at
once makes one credit memo; two refunds of one sale that together exceed it never
both post. The row locks (refund, then its sale) are what keeps it so."""

from decimal import Decimal

import pytest
from django.test import Client

from integrations import processing
from integrations.models import Event, Posting, ReviewItem
from integrations.sandbox.sagepro.credit_models import CreditMemo
from mappings.gl import Purpose
from mappings.models import GlRule
from tests.support.threads import POSTGRES_ONLY, run_at_once
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = POSTGRES_ONLY
SLUG = "paytrace-sandbox"


@pytest.fixture
def sold(paytrace_conn, sage, http, run_tasks, client, secret):
    """A posted $150.00 sale and a refund GL rule; returns the sale's record."""
    GlRule.objects.create(
        connection=paytrace_conn,
        name="Refunds",
        account="4900-00",
        purpose=Purpose.REFUND,
    )
    invno = sage.seed_invoice("ACME", "150.00")
    sale = paytrace_record(amount=Decimal("150.00"), invoice_id=invno)
    body = event_body("transaction.approved", sale)
    post_event(client, SLUG, body, sign(body, secret))
    run_tasks()
    assert Posting.objects.get().state == Posting.State.POSTED
    return sale


def refund_of(sale, amount):
    return {
        **paytrace_record(invoice_id=sale["invoice_id"]),
        "transaction_type": "REFUND",
        "amount": Decimal(amount),
        "original_transaction_id": str(sale["transaction_id"]),
    }


def store(record, secret, copies=1):
    """The refund's event stored `copies` times (each a new webhook id, as a poll and
    the relay would); returns the event ids, nothing processed yet."""
    body = event_body("transaction.refunded", record)
    for _ in range(copies):
        response = post_event(Client(), SLUG, body, sign(body, secret))
        assert response.status_code == 202
    return list(
        Event.objects.filter(transaction_id=str(record["transaction_id"])).values_list(
            "pk", flat=True
        )
    )


def test_the_same_refund_processed_by_four_workers_at_once_makes_one_memo(
    sold, secret, run_tasks
):
    refund = refund_of(sold, "60.00")
    events = store(refund, secret, copies=4)
    assert len(events) == 4

    run_at_once(4, lambda i: processing.process_event(events[i]))
    run_tasks()

    assert Posting.objects.filter(kind=Posting.Kind.CREDIT_MEMO).count() == 1
    assert CreditMemo.objects.filter(deleted=False).count() == 1
    assert CreditMemo.objects.get().amount == Decimal("60.00")


def test_two_refunds_that_together_exceed_the_sale_never_both_post(
    sold, secret, run_tasks
):
    first, second = refund_of(sold, "100.00"), refund_of(sold, "80.00")
    events = store(first, secret) + store(second, secret)

    run_at_once(2, lambda i: processing.process_event(events[i]))
    run_tasks()

    memos = CreditMemo.objects.filter(deleted=False)
    assert memos.count() == 1
    assert memos.get().amount in (Decimal("100.00"), Decimal("80.00"))
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.REFUND)
    assert "is more than what remains of sale" in item.reason
