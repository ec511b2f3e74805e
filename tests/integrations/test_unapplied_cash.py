"""Unapplied cash gets applied: from the review item (apply, refund, leave on account)
and by the automatic rule when a matching invoice appears later (issue 14, point 2)."""

import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone

from integrations import mirror, review, tasks, unapplied
from integrations.models import (
    MirroredInvoice,
    PaymentTransaction,
    Posting,
    ReviewItem,
)
from integrations.models.unapplied import UnappliedCashRule, UnappliedRefund
from integrations.sandbox.paytrace.models import Batch
from integrations.sandbox.paytrace.models import Transaction as GatewaySale
from integrations.sandbox.sagepro.models import ArMast, CashReceipt
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db


def balance(invno):
    return ArMast.objects.get(invno=invno.rjust(10)).balance


def receipt(txid):
    return CashReceipt.objects.get(reference=txid, deleted=False)


def item_for(txid, kind="overpayment"):
    return ReviewItem.objects.get(transaction__transaction_id=txid, kind=kind)


def applications():
    return Posting.objects.filter(kind=Posting.Kind.APPLICATION)


def fingerprint(response):
    return re.search(rb'name="confirm" value="([0-9a-f]+)"', response.content)[1]


@pytest.fixture
def overpaid(pay, sage):
    """A payment of 130.00 on a 100.00 invoice: 30.00 waits as unapplied cash."""
    first = sage.seed_invoice("ACME", "100.00")
    txid = pay(first, "130.00")
    assert receipt(txid).unapplied == Decimal("30.00")
    return txid


def test_overpayment_cash_is_applied_to_a_second_invoice_once(
    overpaid, sage, run_tasks, reviewer
):
    second = sage.seed_invoice("ACME", "50.00")
    item = item_for(overpaid)

    outcome = review.preview_apply_unapplied(item, [(second, None)])
    assert [
        (line.balance, line.applied, line.balance_after) for line in outcome.lines
    ] == [(Decimal("50.00"), Decimal("30.00"), Decimal("20.00"))]
    assert outcome.unapplied == Decimal("0.00")
    posting = review.apply_unapplied(
        item, [(second, None)], reviewer, expected=outcome.fingerprint
    )
    with pytest.raises(review.ReviewError):  # confirmed a second time
        review.apply_unapplied(
            item, [(second, None)], reviewer, expected=outcome.fingerprint
        )
    run_tasks()
    assert tasks.send_posting(posting.pk) == "skipped"  # a redelivered task

    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    assert applications().count() == 1
    assert balance(second) == Decimal("20.00")
    assert receipt(overpaid).unapplied == Decimal("0.00")
    assert receipt(overpaid).lines.count() == 2
    mirrored = MirroredInvoice.objects.get(invno=second.rjust(10).strip().upper())
    assert mirrored.balance == Decimal("20.00")
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert "nothing waits" in item.resolution
    txn = PaymentTransaction.objects.get(transaction_id=overpaid)
    assert unapplied.waiting_for(txn).amount == Decimal("0.00")


def test_the_item_page_previews_and_a_double_confirmation_applies_once(
    overpaid, sage, run_tasks, reviewer_client
):
    second = sage.seed_invoice("ACME", "50.00")
    item = item_for(overpaid)
    page = reviewer_client.get(
        reverse("admin:integrations_reviewitem_change", args=[item.pk])
    )
    assert b"Unapplied cash" in page.content
    assert b"$30.00" in page.content
    url = reverse(
        "admin:integrations_reviewitem_decide", args=[item.pk, "apply_unapplied"]
    )

    preview = reviewer_client.post(url, {"invno_1": second})
    assert preview.status_code == 200
    assert b"Balance before" in preview.content
    assert b"$20.00" in preview.content  # the second invoice's balance after
    assert not applications().exists()
    confirm = {"invno_1": second, "confirm": fingerprint(preview).decode()}
    first = reviewer_client.post(url, confirm)
    again = reviewer_client.post(url, confirm)
    run_tasks()

    assert first.status_code == 302
    assert again.status_code in (200, 302)
    assert applications().count() == 1
    assert balance(second) == Decimal("20.00")


def test_over_application_and_another_customers_invoice_are_refused_in_the_preview(
    overpaid, sage
):
    second = sage.seed_invoice("ACME", "50.00")
    others = sage.seed_invoice("BLUEOX", "50.00")
    item = item_for(overpaid)

    with pytest.raises(review.ReviewError, match=r"more than the \$30.00"):
        review.preview_apply_unapplied(item, [(second, Decimal("40.00"))])
    with pytest.raises(review.AnotherCustomerError, match="BLUEOX"):
        review.preview_apply_unapplied(item, [(others, None)])
    with pytest.raises(review.ReviewError, match=r"more than the \$30.00"):
        review.apply_unapplied(item, [(second, Decimal("30.01"))])
    assert not applications().exists()


def test_leaving_the_cash_on_account_needs_a_reason_and_resolves_the_item(
    overpaid, reviewer
):
    item = item_for(overpaid)
    with pytest.raises(review.ReviewError, match="why"):
        review.leave_on_account(item, "  ", reviewer)

    review.leave_on_account(item, "Customer asked to keep it as credit", reviewer)

    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert "keep it as credit" in item.resolution
    assert item.decisions.get().action == "leave_on_account"
    assert not applications().exists()


# --- refunds through PayTrace -------------------------------------------------------


@pytest.fixture
def gateway_overpaid(client, paytrace_conn, secret, http, run_tasks, sage):
    """A real PayTrace sandbox sale of 130.00 on a 100.00 invoice, delivered to the
    portal: 30.00 waits as unapplied cash."""
    invno = sage.seed_invoice("ACME", "100.00")
    sale = paytrace_conn.paytrace().sale_keyed(
        amount=Decimal("130.00"),
        card_number="4111111111111111",
        expiration_month=12,
        expiration_year=2030,
        csc="999",
        invoice_id=invno,
        notify=False,
    )
    record = paytrace_record(
        transaction_id=sale["transaction_id"], invoice_id=invno, amount="130.00"
    )
    body = event_body("transaction.approved", record)
    assert (
        post_event(client, "paytrace-sandbox", body, sign(body, secret)).status_code
        == 202
    )
    run_tasks()
    return str(sale["transaction_id"])


def refund_calls(http):
    return sum(
        1 for call in http.calls if call.request.url.endswith("refund/for_transaction")
    )


def test_a_refund_of_unapplied_cash_calls_paytrace_once_and_is_expected(
    gateway_overpaid, http, reviewer
):
    from integrations.models.refunds import ExpectedRefund

    Batch.settle_pending(notify=False)
    item = item_for(gateway_overpaid)
    outcome = review.preview_refund_unapplied(item, None)
    assert outcome.unapplied == Decimal("0.00")
    with pytest.raises(review.ReviewError, match="more than"):
        review.preview_refund_unapplied(item, Decimal("30.01"))

    refund = review.refund_unapplied(item, None, reviewer, expected=outcome.fingerprint)
    with pytest.raises(review.ReviewError):
        review.refund_unapplied(item, None, reviewer, expected=outcome.fingerprint)

    assert refund_calls(http) == 1
    assert refund.state == UnappliedRefund.State.REFUNDED
    gateway_refund = GatewaySale.objects.get(original__isnull=False)
    assert gateway_refund.amount == Decimal("30.00")
    assert refund.refund_transaction_id == str(gateway_refund.transaction_id)
    expected = ExpectedRefund.objects.get()
    assert expected.refund_transaction_id == refund.refund_transaction_id
    assert expected.amount == Decimal("30.00")
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    txn = PaymentTransaction.objects.get(transaction_id=gateway_overpaid)
    assert unapplied.waiting_for(txn).amount == Decimal("0.00")


def test_paytrace_refuses_an_unsettled_sale_and_the_cash_still_waits(
    gateway_overpaid, http, reviewer
):
    item = item_for(gateway_overpaid)

    with pytest.raises(review.ReviewError, match="not settled yet.*817"):
        review.refund_unapplied(item, Decimal("10.00"), reviewer)

    assert UnappliedRefund.objects.get().state == UnappliedRefund.State.REFUSED
    txn = PaymentTransaction.objects.get(transaction_id=gateway_overpaid)
    assert unapplied.waiting_for(txn).amount == Decimal("30.00")
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


# --- the automatic rule ----------------------------------------------------------------


def test_the_rule_applies_waiting_cash_to_a_matching_new_invoice_once(
    pay, sage, sagepro_conn, run_tasks
):
    UnappliedCashRule.objects.create(sagepro=sagepro_conn)  # exact amount
    mirror.sync(sagepro_conn)
    txid = pay(sage.seed_invoice("ACME", "100.00"), "130.00")
    other = sage.seed_invoice("ACME", "45.00")  # not the amount: left alone
    later = sage.seed_invoice("ACME", "30.00")

    mirror.sync(sagepro_conn)
    run_tasks()
    mirror.sync(sagepro_conn)
    run_tasks()

    posting = applications().get()
    assert posting.state == Posting.State.POSTED
    assert posting.payload["applications"] == [
        {"invno": later.strip(), "amount": "30.00"}
    ]
    assert balance(later) == Decimal("0.00")
    assert balance(other) == Decimal("45.00")
    assert receipt(txid).unapplied == Decimal("0.00")
    history = PaymentTransaction.objects.get(transaction_id=txid).history
    assert "unapplied cash rule" in history.get(action="unapplied_rule").detail


def test_the_rule_leaves_cash_alone_when_off_or_for_another_customer(
    pay, sage, sagepro_conn, run_tasks
):
    rule = UnappliedCashRule.objects.create(sagepro=sagepro_conn, enabled=False)
    pay(sage.seed_invoice("ACME", "100.00"), "130.00")
    acme = sage.seed_invoice("ACME", "30.00")
    globex = sage.seed_invoice("BLUEOX", "30.00")

    assert unapplied.apply_waiting_cash(sagepro_conn, acme) is None
    rule.enabled = True
    rule.save()
    assert unapplied.apply_waiting_cash(sagepro_conn, globex) is None
    first = unapplied.apply_waiting_cash(sagepro_conn, acme)
    again = unapplied.apply_waiting_cash(sagepro_conn, acme)

    assert first is not None and again == first
    assert applications().count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
)
def test_two_workers_applying_the_same_waiting_cash_make_one_application(
    pay, sage, sagepro_conn, run_tasks
):
    UnappliedCashRule.objects.create(
        sagepro=sagepro_conn, amount_mode=UnappliedCashRule.AmountMode.UP_TO_BALANCE
    )
    pay(sage.seed_invoice("ACME", "100.00"), "130.00")
    invno = sage.seed_invoice("ACME", "80.00")
    barrier = threading.Barrier(2)
    results, errors = [None, None], []

    def worker(i):
        try:
            barrier.wait()
            posting = unapplied.apply_waiting_cash(sagepro_conn, invno)
            results[i] = posting.pk if posting else None
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    run_tasks()

    assert not errors, errors
    assert results[0] == results[1] is not None
    assert applications().get().state == Posting.State.POSTED
    assert balance(invno) == Decimal("50.00")


# --- the finance pages -----------------------------------------------------------------


def test_the_unapplied_cash_list_shows_what_waits_and_drops_what_is_applied(
    overpaid, sage, run_tasks, reviewer, reviewer_client
):
    url = reverse("admin:integrations_unappliedcash_changelist")
    page = reviewer_client.get(url)
    assert page.status_code == 200
    assert overpaid.encode() in page.content
    assert b"$30.00" in page.content
    assert b"Paid more than the invoice balance" in page.content

    second = sage.seed_invoice("ACME", "30.00")
    review.apply_unapplied(item_for(overpaid), [(second, None)], reviewer)
    run_tasks()

    assert overpaid.encode() not in reviewer_client.get(url).content


def test_the_unapplied_cash_list_reads_each_page_in_the_same_queries(
    pay, sage, reviewer_client
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("admin:integrations_unappliedcash_changelist")

    def overpay(n):
        for _ in range(n):
            pay(sage.seed_invoice("ACME", "100.00"), "130.00")
        with CaptureQueriesContext(connection) as queries:
            page = reviewer_client.get(url)
        assert page.content.count(b"$30.00") >= n
        return len(queries)

    few = overpay(1)
    many = overpay(4)  # five rows now

    assert many == few


def test_an_integration_admin_sets_up_the_rule(admin_client, sagepro_conn):
    add = reverse("admin:integrations_unappliedcashrule_add")
    assert b"Always the same customer" in admin_client.get(add).content
    response = admin_client.post(
        add,
        {
            "sagepro": sagepro_conn.pk,
            "enabled": "on",
            "amount_mode": "up_to_balance",
            "max_age_days": "30",
        },
    )
    assert response.status_code == 302
    rule = UnappliedCashRule.objects.get()
    assert rule.amount_mode == UnappliedCashRule.AmountMode.UP_TO_BALANCE
    assert rule.max_age_days == 30


def test_the_rule_leaves_cash_older_than_its_maximum_age(
    pay, sage, sagepro_conn, run_tasks
):
    UnappliedCashRule.objects.create(sagepro=sagepro_conn, max_age_days=5)
    txid = pay(sage.seed_invoice("ACME", "100.00"), "130.00")
    Posting.objects.filter(transaction__transaction_id=txid).update(
        posted_at=timezone.now() - timedelta(days=6)
    )

    assert (
        unapplied.apply_waiting_cash(sagepro_conn, sage.seed_invoice("ACME", "30.00"))
        is None
    )
    assert not applications().exists()


def test_a_refusal_by_sage_pro_gives_the_cash_back_for_a_reviewer(
    overpaid, sage, run_tasks, reviewer
):
    second = sage.seed_invoice("ACME", "50.00")
    item = item_for(overpaid)
    posting = review.apply_unapplied(item, [(second, None)], reviewer)
    ArMast.objects.filter(invno=second.rjust(10)).update(balance=0, paidamt=50)

    run_tasks()

    posting.refresh_from_db()
    assert posting.state == Posting.State.CANCELLED
    txn = PaymentTransaction.objects.get(transaction_id=overpaid)
    assert unapplied.waiting_for(txn).amount == Decimal("30.00")
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN
    assert "refused to apply" in item.reason


def test_cash_put_on_account_is_applied_later_from_its_resolved_item(
    pay, sage, run_tasks, reviewer, reviewer_client
):
    txid = pay("NO-SUCH-INVOICE", "75.00", customer_id="ACME")
    item = item_for(txid, "unmatched")
    review.post_on_account(item, reviewer, "ACME")
    run_tasks()
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    invno = sage.seed_invoice("ACME", "75.00")

    page = reviewer_client.get(
        reverse("admin:integrations_reviewitem_change", args=[item.pk])
    )
    assert b"Apply unapplied cash" in page.content
    url = reverse(
        "admin:integrations_reviewitem_decide", args=[item.pk, "apply_unapplied"]
    )
    preview = reviewer_client.post(url, {"invno_1": invno})
    assert not applications().exists()
    reviewer_client.post(
        url, {"invno_1": invno, "confirm": fingerprint(preview).decode()}
    )
    run_tasks()

    assert applications().get().state == Posting.State.POSTED
    assert balance(invno) == Decimal("0.00")
    assert receipt(txid).unapplied == Decimal("0.00")
    assert item.decisions.filter(action="apply_unapplied").count() == 1


@pytest.mark.parametrize(
    ("decision", "data"),
    [
        ("apply_unapplied", {"invno_1": "", "amount_1": "5.00"}),
        ("apply_unapplied", {"invno_1": "NOPE-404", "amount_1": "NaN"}),
        ("apply_unapplied", {"invno_1": "x" * 500}),
        ("apply_unapplied", {"invno_1": "NOPE-404"}),
        ("refund_unapplied", {"amount": "-1"}),
        ("refund_unapplied", {"amount": "1e9999"}),
        ("refund_unapplied", {"amount": "30.001"}),
        ("leave_on_account", {"reason": ""}),
        ("leave_on_account", {"reason": "\x00" * 10}),
    ],
)
def test_malformed_decisions_are_refused_with_a_reason_never_a_5xx(
    overpaid, reviewer_client, decision, data
):
    item = item_for(overpaid)
    url = reverse("admin:integrations_reviewitem_decide", args=[item.pk, decision])

    response = reviewer_client.post(url, data)

    assert response.status_code == 200
    assert b"errornote" in response.content or b"error" in response.content
    assert not applications().exists()
    assert not UnappliedRefund.objects.exists()
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


def test_an_item_closed_by_its_applied_cash_cannot_be_reopened_here(
    overpaid, sage, run_tasks, reviewer
):
    item = item_for(overpaid)
    review.apply_unapplied(item, [(sage.seed_invoice("ACME", "30.00"), None)], reviewer)
    run_tasks()
    item.refresh_from_db()

    with pytest.raises(review.ReviewError, match="reverse the application"):
        review.reopen_review_item(item, "wrong invoice", reviewer)
