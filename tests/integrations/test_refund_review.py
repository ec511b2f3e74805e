"""A reviewer settles a refund item: links the refund to its sale, or decides it again
once its cause is fixed; each shows what will post first (issue 14, follow-up)."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from integrations import review
from integrations.models import PaymentTransaction, Posting, ReviewDecision, ReviewItem
from integrations.sandbox.sagepro.credit_models import CreditMemo
from mappings.gl import Purpose
from mappings.models import GlRule
from tests.factories import make_connection, make_transaction
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db
SLUG = "paytrace-sandbox"
REFUND_ACCOUNT = "4900-00"


@pytest.fixture
def deliver(client, paytrace_conn, secret, http, run_tasks):
    def _deliver(event_type, record):
        body = event_body(event_type, record)
        response = post_event(client, SLUG, body, sign(body, secret))
        assert response.status_code in (200, 202), response.content
        run_tasks()

    return _deliver


@pytest.fixture
def refund_rule(paytrace_conn):
    return GlRule.objects.create(
        connection=paytrace_conn,
        name="Refunds",
        account=REFUND_ACCOUNT,
        purpose=Purpose.REFUND,
    )


def sale_record(invno, amount):
    return paytrace_record(amount=Decimal(amount), invoice_id=invno)


def refund_record(sale, amount, *, named=True):
    record = {
        **paytrace_record(),
        **{k: sale[k] for k in ("invoice_id", "customer_id", "credit_card")},
        "transaction_type": "REFUND",
        "amount": Decimal(amount),
        "approval_code": "",
        "status_code": "Y",
        "status_message": "Pending Settlement",
    }
    if named:
        record["original_transaction_id"] = str(sale["transaction_id"])
    return record


def txn(record):
    return PaymentTransaction.objects.get(transaction_id=str(record["transaction_id"]))


def memos():
    return CreditMemo.objects.filter(deleted=False).order_by("pk")


def refund_item(record):
    return ReviewItem.objects.get(transaction=txn(record), kind=ReviewItem.Kind.REFUND)


def decide_url(item, decision):
    return reverse("admin:integrations_reviewitem_decide", args=[item.pk, decision])


def fingerprint(response):
    found = re.search(rb'name="confirm" value="([0-9a-f]+)"', response.content)
    assert found, response.content.decode()[:2000]
    return found[1].decode()


@pytest.fixture
def ambiguous(deliver, sage, refund_rule):
    """Two sales of 50.00 on one invoice, and a refund of 20.00 that fits both."""
    invno = sage.seed_invoice("ACME", "200.00")
    one, two = sale_record(invno, "50.00"), sale_record(invno, "50.00")
    deliver("transaction.approved", one)
    deliver("transaction.approved", two)
    refund = refund_record(one, "20.00", named=False)
    deliver("transaction.refunded", refund)
    assert refund_item(refund).error_code == "AMBIGUOUS_SALE"
    return one, two, refund


def test_an_ambiguous_refund_linked_by_a_reviewer_posts_one_credit_memo(
    ambiguous, reviewer_client, run_tasks
):
    one, two, refund = ambiguous
    item = refund_item(refund)
    page = reviewer_client.get(
        reverse("admin:integrations_reviewitem_change", args=[item.pk])
    )
    assert page.status_code == 200
    assert b"Link to a sale and decide" in page.content
    for sale in (one, two):
        assert str(sale["transaction_id"]).encode() in page.content
    url = decide_url(item, "link_sale")
    data = {"sale": str(two["transaction_id"])}

    preview = reviewer_client.post(url, data)
    assert preview.status_code == 200
    text = preview.content.decode()
    receipt_no = txn(two).postings.get(kind=Posting.Kind.CASH_RECEIPT).document_number
    assert f"credit memo of $20.00 against receipt {receipt_no}" in text
    assert "already refunded $0.00; remains $50.00, $30.00 after this refund" in text
    assert f"Dr refund account {REFUND_ACCOUNT} $20.00" in text
    assert txn(refund).original is None
    assert not memos().exists()

    confirm = {**data, "confirm": fingerprint(preview)}
    first = reviewer_client.post(url, confirm)
    again = reviewer_client.post(url, confirm)
    run_tasks()

    assert first.status_code == 302
    assert again.status_code in (200, 302)
    assert [m.amount for m in memos()] == [Decimal("20.00")]
    assert memos().get().rcptno.strip() == receipt_no.strip()
    assert Posting.objects.filter(kind=Posting.Kind.CREDIT_MEMO).count() == 1
    assert txn(refund).original == txn(two)
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert item.resolved_by is not None
    assert ReviewDecision.objects.filter(item=item, action="link_sale").count() == 1
    history = set(txn(refund).history.values_list("action", flat=True))
    assert {"linked_to_sale", "review_link_sale", "credit_memo_posted"} <= history


def test_a_link_over_what_remains_or_to_a_wrong_sale_is_refused_in_the_preview(
    ambiguous, deliver, reviewer_client
):
    one, two, refund = ambiguous
    other_refund = refund_record(one, "40.00")
    deliver("transaction.refunded", other_refund)  # sale one: 10.00 remains
    assert [m.amount for m in memos()] == [Decimal("40.00")]
    item = refund_item(refund)

    with pytest.raises(review.ReviewError, match=r"\$10.00 remains"):
        review.preview_link_sale(item, str(one["transaction_id"]))
    response = reviewer_client.post(
        decide_url(item, "link_sale"), {"sale": str(one["transaction_id"])}
    )
    assert response.status_code == 200
    assert b"is more than what remains of sale" in response.content
    assert b'name="confirm"' not in response.content

    another = make_transaction(make_connection(), transaction_id="99000001")
    with pytest.raises(review.ReviewError, match="own PayTrace account"):
        review.preview_link_sale(item, "99000001")
    with pytest.raises(review.ReviewError, match="not a sale"):
        review.preview_link_sale(item, str(other_refund["transaction_id"]))
    for bad in ("", "no-such-sale", "x" * 41, str(refund["transaction_id"])):
        response = reviewer_client.post(decide_url(item, "link_sale"), {"sale": bad})
        assert response.status_code == 200
    assert another.original is None
    assert memos().count() == 1
    assert txn(refund).original is None
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


def test_a_missing_refund_account_fixed_then_decide_again_posts(
    deliver, sage, reviewer_client, run_tasks, paytrace_conn
):
    invno = sage.seed_invoice("ACME", "40.00")
    sale = sale_record(invno, "40.00")
    deliver("transaction.approved", sale)
    refund = refund_record(sale, "10.00")
    deliver("transaction.refunded", refund)
    item = refund_item(refund)
    assert item.error_code == "NO_REFUND_ACCOUNT"
    url = decide_url(item, "decide_refund")

    refused = reviewer_client.post(url, {})
    assert refused.status_code == 200
    assert b"has no refund account" in refused.content
    assert b'name="confirm"' not in refused.content

    GlRule.objects.create(
        connection=paytrace_conn,
        name="Refunds",
        account=REFUND_ACCOUNT,
        purpose=Purpose.REFUND,
    )
    preview = reviewer_client.post(url, {})
    assert preview.status_code == 200
    assert b"credit memo of $10.00 against receipt" in preview.content
    assert not memos().exists()
    confirm = {"confirm": fingerprint(preview)}
    assert reviewer_client.post(url, confirm).status_code == 302
    assert reviewer_client.post(url, confirm).status_code in (200, 302)
    run_tasks()

    assert [m.amount for m in memos()] == [Decimal("10.00")]
    assert memos().get().refacnt.strip() == REFUND_ACCOUNT
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert ReviewDecision.objects.filter(item=item, action="decide_refund").count() == 1
