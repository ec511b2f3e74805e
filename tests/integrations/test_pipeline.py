"""A signed PayTrace event becomes one Sage Pro cash receipt, once, on the right invoice."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command

from integrations import processing, review
from integrations.models import Event, PaymentTransaction, Posting, ReviewItem
from integrations.sandbox.credentials import paytrace_headers
from integrations.sandbox.sagepro.models import ArMast, CashReceipt
from tests.webhooks import event_body, paytrace_record, paytrace_time, post_event, sign

pytestmark = pytest.mark.django_db
SLUG = "paytrace-sandbox"


@pytest.fixture
def deliver(client, paytrace_conn, secret, http, run_tasks):
    """Send a signed event and let a worker process everything queued."""

    def _deliver(event_type, record, *, body=None, headers=None, occurred_at=None):
        body = body or event_body(event_type, record, occurred_at)
        response = post_event(client, SLUG, body, headers or sign(body, secret))
        run_tasks()
        return response

    return _deliver


def set_fault(client, settings, mode, seconds=600):
    response = client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": mode, "seconds": seconds},
        content_type="application/json",
        headers={"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"},
    )
    assert response.status_code in (200, 201), response.content


def invoice(invno):
    return ArMast.objects.get(invno=invno.rjust(10))


def receipts_for(transaction_id):
    return CashReceipt.objects.filter(reference=str(transaction_id), deleted=False)


def test_an_approved_payment_posts_one_receipt_against_its_invoice(deliver, sage):
    invno = sage.seed_invoice("ACME", "400.00")
    record = paytrace_record(amount=Decimal("150.25"), invoice_id=invno)

    response = deliver("transaction.approved", record)

    assert response.status_code == 202
    txn = PaymentTransaction.objects.get(transaction_id=str(record["transaction_id"]))
    posting = txn.postings.get()
    assert posting.state == Posting.State.POSTED
    receipts = receipts_for(record["transaction_id"])
    assert receipts.count() == 1
    assert posting.document_number == receipts.get().rcptno.strip()
    assert invoice(invno).balance == Decimal("249.75")
    assert invoice(invno).paidamt == Decimal("150.25")
    assert txn.mapped_status == "Paid"
    assert txn.amount == Decimal("150.25")
    assert txn.card_last4 == "1111"
    assert Event.objects.get().state == Event.State.PROCESSED


def test_duplicates_and_later_events_never_post_a_second_receipt(deliver, sage, secret):
    invno = sage.seed_invoice("ACME", "90.00")
    record = paytrace_record(amount=Decimal("90.00"), invoice_id=invno)
    body = event_body("transaction.approved", record)
    headers = sign(body, secret)

    deliver("transaction.approved", record, body=body, headers=headers)
    again = deliver("transaction.approved", record, body=body, headers=headers)
    settled = {
        **record,
        "status_code": "GB812",
        "status_message": "GB812",
        "settled": paytrace_time(datetime.now(UTC)),
    }
    deliver("transaction.settled", settled)

    assert again.json()["status"] == "duplicate"
    assert receipts_for(record["transaction_id"]).count() == 1
    assert Posting.objects.count() == 1
    txn = PaymentTransaction.objects.get()
    assert txn.gateway_status == "settled"
    assert txn.batch_number == "812"
    assert txn.settled_at is not None
    assert invoice(invno).balance == Decimal("0.00")


def test_a_late_approved_never_moves_a_settled_payment_back(deliver, sage):
    invno = sage.seed_invoice("ACME", "50.00")
    now = datetime.now(UTC)
    settled = paytrace_record(
        amount=Decimal("50.00"),
        invoice_id=invno,
        status_code="GB9",
        status_message="GB9",
        settled=paytrace_time(now),
    )
    approved = {
        **settled,
        "status_code": "Y",
        "status_message": "Pending Settlement",
        "settled": "",
    }

    deliver("transaction.settled", settled, occurred_at=now)
    deliver("transaction.approved", approved, occurred_at=now - timedelta(hours=5))

    txn = PaymentTransaction.objects.get()
    assert txn.gateway_status == "settled"
    assert txn.status_code == "GB9"
    assert txn.history.filter(action="stale_event_ignored").count() == 1
    assert receipts_for(settled["transaction_id"]).count() == 1


def test_a_decline_is_recorded_as_failed_with_no_receipt(deliver, sage):
    record = paytrace_record(
        status_code="N", status_message="Declined", approval_code="", invoice_id="10001"
    )
    deliver("transaction.declined", record)

    txn = PaymentTransaction.objects.get()
    assert txn.mapped_status == "Failed"
    assert txn.gateway_status == "declined"
    assert not txn.postings.exists()
    assert not receipts_for(record["transaction_id"]).exists()


def test_an_unknown_invoice_opens_an_unmatched_item_visible_in_the_api(
    deliver, sage, client, django_user_model
):
    from integrations.roles import FINANCE_REVIEWER

    record = paytrace_record(invoice_id="99999999")
    deliver("transaction.approved", record)

    item = ReviewItem.objects.get(kind=ReviewItem.Kind.UNMATCHED)
    assert "99999999" in item.reason
    assert not receipts_for(record["transaction_id"]).exists()

    from django.contrib.auth.models import Group

    reviewer = django_user_model.objects.create_user(
        "rita", password="pw", is_staff=True
    )
    reviewer.groups.add(Group.objects.get(name=FINANCE_REVIEWER))
    client.force_login(reviewer)
    listed = client.get(
        "/api/review-items/",
        {"kind": "unmatched", "transaction_id": str(record["transaction_id"])},
    )
    assert listed.status_code == 200
    rows = listed.json()["results"]
    assert [row["kind"] for row in rows] == ["unmatched"]


def test_an_invoice_of_another_customer_is_not_matched(deliver, sage):
    invno = sage.seed_invoice("ACME", "80.00")
    deliver(
        "transaction.approved",
        paytrace_record(
            invoice_id=invno, customer_id="GLOBEX", amount=Decimal("80.00")
        ),
    )
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.UNMATCHED)
    assert "belongs to customer ACME" in item.reason
    assert invoice(invno).balance == Decimal("80.00")


def test_an_overpayment_applies_the_balance_and_keeps_the_rest_unapplied(deliver, sage):
    invno = sage.seed_invoice("ACME", "100.00")
    deliver(
        "transaction.approved",
        paytrace_record(invoice_id=invno, amount=Decimal("130.00")),
    )
    posting = Posting.objects.get()
    assert posting.state == Posting.State.POSTED
    assert posting.unapplied_amount == Decimal("30.00")
    assert invoice(invno).balance == Decimal("0.00")


def test_a_locked_period_is_a_validation_item_and_nothing_is_posted(deliver, sage):
    invno = sage.seed_invoice("ACME", "60.00")
    two_months_ago = datetime.now(UTC) - timedelta(days=62)
    record = paytrace_record(
        invoice_id=invno,
        amount=Decimal("60.00"),
        created={
            "through": "API",
            "at": paytrace_time(two_months_ago),
            "by": "apiuser",
            "from_ip": "",
        },
    )
    deliver("transaction.approved", record)

    posting = Posting.objects.get()
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert posting.last_error_code in {"PERIOD_LOCKED", "PERIOD_CLOSED"}
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.VALIDATION)
    assert item.error_code == posting.last_error_code
    assert not receipts_for(record["transaction_id"]).exists()
    assert invoice(invno).balance == Decimal("60.00")


def test_sage_pro_down_backs_off_then_posts_once_when_it_returns(
    deliver, sage, client, run_tasks, settings
):
    invno = sage.seed_invoice("ACME", "75.00")
    set_fault(client, settings, "unavailable")
    record = paytrace_record(invoice_id=invno, amount=Decimal("75.00"))
    deliver("transaction.approved", record)

    event = Event.objects.get()
    assert event.state == Event.State.FAILED  # the invoice lookup failed: retried later
    assert event.next_attempt_at > datetime.now(UTC)
    assert not receipts_for(record["transaction_id"]).exists()

    set_fault(client, settings, "none")
    assert processing.sweep()["events"] == 0  # not due yet
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2)):
        assert processing.sweep()["events"] == 1
        run_tasks()
    assert receipts_for(record["transaction_id"]).count() == 1
    assert Posting.objects.get().state == Posting.State.POSTED


def test_a_failed_post_is_retried_from_the_admin_action_once(
    deliver, sage, client, run_tasks, settings
):
    invno = sage.seed_invoice("ACME", "40.00")
    record = paytrace_record(invoice_id=invno, amount=Decimal("40.00"))
    # The invoice lookup succeeds, then the post meets a locked record.
    set_fault(client, settings, "locked")
    deliver("transaction.approved", record)
    posting = Posting.objects.get()
    assert posting.state == Posting.State.FAILED
    assert posting.last_error_code == "RECORD_LOCKED"
    assert posting.next_attempt_at is not None

    set_fault(client, settings, "none")
    assert review.retry_posting(posting) is True
    assert review.retry_posting(posting) is False  # the second press finds it pending
    run_tasks()
    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    assert receipts_for(record["transaction_id"]).count() == 1


def test_a_reviewer_applies_an_unmatched_payment_once(
    deliver, sage, run_tasks, django_user_model
):
    reviewer = django_user_model.objects.create_user("rita")
    invno = sage.seed_invoice("ACME", "210.00")
    record = paytrace_record(invoice_id="INV-NOPE", amount=Decimal("210.00"))
    deliver("transaction.approved", record)
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.UNMATCHED)

    with pytest.raises(review.ReviewError, match="not found"):
        review.apply_review_item(item, "77777777", reviewer)
    posting = review.apply_review_item(item, invno, reviewer)
    same = review.apply_review_item(item, invno, reviewer)  # pressed twice
    run_tasks()

    assert same.pk == posting.pk
    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    assert receipts_for(record["transaction_id"]).count() == 1
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED and item.resolved_by == reviewer
    assert item.decisions.get().action == "apply"
    with pytest.raises(review.ReviewError, match="already posted"):
        review.apply_review_item(item, invno, reviewer)


def test_a_silent_post_is_confirmed_by_lookup_before_it_posts(
    client, paytrace_conn, sage, http, run_tasks
):
    connector = paytrace_conn.paytrace()
    invno = sage.seed_invoice("ACME", "33.00")
    sale = connector.sale_keyed(
        amount=Decimal("33.00"),
        card_number="4111111111111111",
        expiration_month=12,
        expiration_year=2030,
        csc="123",
        invoice_id=invno,
        notify=False,
    )
    txid = sale["transaction_id"]
    parm_list = f"ORDERID~{invno}|TRANSACTIONID~{txid}|APPCODE~TAS123|APPMSG~APPROVED|AVSRESPONSE~Y|CSCRESPONSE~M|EMAIL~a@b.example|"
    response = client.post(
        f"/webhooks/paytrace/{SLUG}/silent-post/", {"parmList": parm_list}
    )
    assert response.status_code == 202
    run_tasks()
    assert receipts_for(txid).count() == 1

    forged = client.post(
        f"/webhooks/paytrace/{SLUG}/silent-post/",
        {"parmList": "TRANSACTIONID~599999999|APPMSG~APPROVED|"},
    )
    assert forged.status_code == 202
    run_tasks()
    assert not PaymentTransaction.objects.filter(transaction_id="599999999").exists()


def test_a_sandbox_payment_travels_the_whole_way(
    paytrace_conn, sage, http, run_tasks, client
):
    """PayTrace sandbox sale → its signed event → the portal's webhook → Sage Pro."""
    invno = sage.seed_invoice("ACME", "19.99")
    sale = paytrace_conn.paytrace().sale_keyed(
        amount=Decimal("19.99"),
        card_number="4111111111111111",
        expiration_month=12,
        expiration_year=2030,
        csc="123",
        invoice_id=invno,
    )
    run_tasks()  # the sandbox's delivery, then the portal's processing
    assert receipts_for(sale["transaction_id"]).count() == 1
    client.post("/sandbox/paytrace/_settle", headers=paytrace_headers())
    run_tasks()
    txn = PaymentTransaction.objects.get(transaction_id=str(sale["transaction_id"]))
    assert txn.gateway_status == "settled"
    assert receipts_for(sale["transaction_id"]).count() == 1


def test_startup_check_refuses_a_timeout_not_below_retry(settings):
    from django.core.management.base import SystemCheckError

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 90, "retry": 90}
    with pytest.raises(SystemCheckError, match="integrations.E001"):
        call_command("check")


def test_secrets_are_ciphertext_in_the_database(paytrace_conn, secret):
    from django.db import connection as db

    with db.cursor() as cursor:
        cursor.execute(
            "SELECT password FROM integrations_connection WHERE id = %s",
            [paytrace_conn.pk],
        )
        (stored,) = cursor.fetchone()
        cursor.execute("SELECT secret FROM integrations_webhooksecret")
        (stored_secret,) = cursor.fetchone()
    assert stored.startswith("fernet:") and paytrace_conn.password not in stored
    assert stored_secret.startswith("fernet:") and secret not in stored_secret
    paytrace_conn.refresh_from_db()
    assert paytrace_conn.active_webhook_secrets() == [secret]


def test_an_unmapped_status_waits_for_a_map_row_then_a_retry_posts_it(
    deliver, sage, paytrace_conn, run_tasks, django_user_model
):
    from mappings.models import StatusMap

    StatusMap.objects.filter(
        connection=paytrace_conn, event_type="transaction.approved"
    ).update(is_active=False)
    invno = sage.seed_invoice("ACME", "27.00")
    record = paytrace_record(
        invoice_id=invno,
        amount=Decimal("27.00"),
        status_code="Q",
        status_message="Queued at processor",
    )
    deliver("transaction.approved", record)

    item = ReviewItem.objects.get(kind=ReviewItem.Kind.UNMAPPED_STATUS)
    assert "status_code Q" in item.reason
    assert not Posting.objects.exists()

    StatusMap.objects.create(
        connection=paytrace_conn,
        priority=1,
        status_code_pattern="Q",
        gateway_status="approved",
        payment_status="Paid",
        action="post_receipt",
    )
    review.retry_review_item(item, django_user_model.objects.create_user("ivy"))
    run_tasks()

    assert receipts_for(record["transaction_id"]).count() == 1
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert not ReviewItem.objects.filter(
        kind=ReviewItem.Kind.UNMAPPED_STATUS, state="open"
    ).exists()
