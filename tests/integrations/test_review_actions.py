"""Matching in the pipeline, and what reviewers do with what it cannot place."""

from decimal import Decimal

import pytest

from integrations import review
from integrations.models import Posting, ReviewItem
from integrations.sandbox.sagepro.models import ArMast, CashReceipt
from mappings.models import MatchingRule
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db


@pytest.fixture
def pay(client, paytrace_conn, secret, http, run_tasks):
    def _pay(invoice_id, amount, **fields):
        record = paytrace_record(
            invoice_id=invoice_id, amount=Decimal(amount), **fields
        )
        body = event_body("transaction.approved", record)
        assert (
            post_event(client, "paytrace-sandbox", body, sign(body, secret)).status_code
            == 202
        )
        run_tasks()
        return str(record["transaction_id"])

    return _pay


def balance(invno):
    return ArMast.objects.get(invno=invno.rjust(10)).balance


def receipt(txid):
    return CashReceipt.objects.get(reference=txid, deleted=False)


def item_for(txid, kind):
    return ReviewItem.objects.get(transaction__transaction_id=txid, kind=kind)


def test_a_second_genuine_payment_of_a_paid_invoice_is_kept_as_unapplied_cash(
    pay, sage
):
    invno = sage.seed_invoice("ACME", "80.00")
    pay(invno, "80.00", credit_card={"masked_number": "************4242"})
    second = pay(invno, "80.00", credit_card={"masked_number": "************1111"})

    assert receipt(second).unapplied == Decimal("80.00")
    assert "already paid" in item_for(second, "possible_duplicate").reason
    assert balance(invno) == Decimal("0.00")


def test_the_same_card_amount_and_invoice_under_two_ids_is_a_possible_duplicate(
    pay, sage
):
    invno = sage.seed_invoice("ACME", "200.00")
    first = pay(invno, "50.00")
    second = pay(invno, "50.00")

    assert receipt(first).applied == Decimal("50.00")
    assert receipt(second).unapplied == Decimal("50.00")  # never silently dropped
    assert first in item_for(second, "possible_duplicate").reason
    assert balance(invno) == Decimal("150.00")


def test_an_overpayment_posts_the_balance_and_opens_an_overpayment_item(pay, sage):
    invno = sage.seed_invoice("ACME", "100.00")
    txid = pay(invno, "130.00")
    assert receipt(txid).unapplied == Decimal("30.00")
    assert "30.00" in item_for(txid, "overpayment").reason


def test_with_a_strict_rule_an_underpayment_waits_for_a_reviewer(
    pay, sage, paytrace_conn, run_tasks, django_user_model
):
    MatchingRule.objects.create(
        connection=paytrace_conn,
        name="exact amounts",
        tolerance_type="fixed",
        tolerance_value=Decimal("0.50"),
        allow_partial=False,  # the standard rule applies partial payments
    )
    invno = sage.seed_invoice("ACME", "100.00")
    txid = pay(invno, "90.00")
    item = item_for(txid, "underpayment")
    assert not Posting.objects.exists()

    review.apply_review_item(item, invno, django_user_model.objects.create_user("rev"))
    run_tasks()
    assert balance(invno) == Decimal("10.00")


def test_a_reviewer_splits_a_payment_across_invoices(
    pay, sage, run_tasks, django_user_model
):
    a, b = sage.seed_invoice("ACME", "60.00"), sage.seed_invoice("ACME", "70.00")
    txid = pay("NO-SUCH-INVOICE", "100.00")
    item = item_for(txid, "unmatched")
    reviewer = django_user_model.objects.create_user("rev")

    with pytest.raises(review.ReviewError, match="more than invoice"):
        review.apply_review_item_split(item, [(a, Decimal("61.00"))], reviewer)
    posting = review.apply_review_item_split(
        item, [(a, Decimal("60.00")), (b, None)], reviewer
    )
    again = review.apply_review_item_split(
        item, [(a, Decimal("60.00")), (b, None)], reviewer
    )
    run_tasks()

    assert again.pk == posting.pk
    assert (balance(a), balance(b)) == (Decimal("0.00"), Decimal("30.00"))
    assert receipt(txid).lines.count() == 2
    assert item_for(txid, "unmatched").decisions.get().detail["allocations"] == [
        [a, "60.00"],
        [b, "40.00"],
    ]


def test_a_split_across_two_customers_is_refused(pay, sage, django_user_model):
    a, b = sage.seed_invoice("ACME", "60.00"), sage.seed_invoice("BLUEOX", "70.00")
    item = item_for(pay("NOPE", "100.00"), "unmatched")
    with pytest.raises(review.ReviewError, match="different customers"):
        review.apply_review_item_split(item, [(a, None), (b, None)])


def test_a_reviewer_posts_a_payment_on_account(pay, sage, run_tasks):
    txid = pay("", "45.00")
    item = item_for(txid, "unmatched")
    review.post_on_account(item, custno="acme")
    run_tasks()
    assert receipt(txid).unapplied == Decimal("45.00")
    assert receipt(txid).custno.strip() == "ACME"
    with pytest.raises(review.ReviewError):
        review.post_on_account(item_for(pay("", "46.00"), "unmatched"), custno="NOBODY")


def test_marking_a_duplicate_and_notes_are_recorded(pay, sage, django_user_model):
    item = item_for(pay("NOPE", "12.00"), "unmatched")
    reviewer = django_user_model.objects.create_user("rev")
    review.annotate_review_item(item, "Customer says they paid twice", reviewer)
    review.mark_duplicate(item, reviewer, "refund at the gateway")
    review.mark_duplicate(item, reviewer, "refund at the gateway")  # pressed twice

    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert [d.action for d in item.decisions.all()] == ["note", "mark_duplicate"]
    assert not Posting.objects.exists()


def test_candidates_rank_the_referenced_invoice_first_with_its_parts(
    pay, sage, paytrace_conn
):
    # A rule comparing references as written sends the payment to a person (the
    # standard rule would read the reference and apply it).
    MatchingRule.objects.create(
        connection=paytrace_conn, name="as written", reference_mode="exact"
    )
    target = sage.seed_invoice("ACME", "33.00")
    txid = pay(
        f"INV-{int(target):010d}", "33.00", customer_id="ACME"
    )  # a reference Sage Pro cannot find as is
    from integrations.models import PaymentTransaction

    found = review.invoice_candidates(
        PaymentTransaction.objects.get(transaction_id=txid)
    )
    assert len(found) == 3
    assert found[0].invoice.invno == target
    assert found[0].reference_match == "normalized"
    assert found[0].parts["amount"] == 1.0
