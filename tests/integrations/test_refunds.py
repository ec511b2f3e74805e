"""Refunds and voids post their reversal in Sage Pro, exactly once (issue 14 point 1).

End to end: signed PayTrace events in through the webhook, the pipeline, the Sage Pro
sandbox's credit memos, receipt reversals, invoices and GL batches out.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from integrations import processing, refunds
from integrations.models import PaymentTransaction, Posting, ReviewItem
from integrations.models.refunds import PendingReversal, RefundFee
from integrations.sandbox.sagepro.credit_models import CreditMemo
from integrations.sandbox.sagepro.models import ArMast, CashReceipt, SycDfis
from integrations.sandbox.sagepro.orders_models import GlBatch
from mappings.gl import Purpose
from mappings.models import GlRule
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db
SLUG = "paytrace-sandbox"
REFUND_ACCOUNT = "4900-00"


@pytest.fixture
def deliver(client, paytrace_conn, secret, http, run_tasks):
    """Send a signed event (the same body and id again when `again`), then let a
    worker process everything queued."""
    sent = {}

    def _deliver(event_type, record, *, again=None):
        if again is not None:
            body, headers = sent[again]
        else:
            body = event_body(event_type, record)
            headers = sign(body, secret)
            sent[record["transaction_id"], event_type] = (body, headers)
        response = post_event(client, SLUG, body, headers)
        assert response.status_code in (200, 202), response.content
        run_tasks()
        return response

    return _deliver


@pytest.fixture
def refund_rule(paytrace_conn):
    return GlRule.objects.create(
        connection=paytrace_conn,
        name="Refunds",
        account=REFUND_ACCOUNT,
        purpose=Purpose.REFUND,
    )


def sale_record(invno, amount, **fields):
    return paytrace_record(amount=Decimal(amount), invoice_id=invno, **fields)


def refund_record(sale, amount, *, named=True, **fields):
    record = {
        **paytrace_record(),
        **{k: sale[k] for k in ("invoice_id", "customer_id", "credit_card")},
        "transaction_type": "REFUND",
        "amount": Decimal(amount),
        "approval_code": "",
        "status_code": "Y",
        "status_message": "Pending Settlement",
        **fields,
    }
    if named:
        record["original_transaction_id"] = str(sale["transaction_id"])
    return record


def txn(record):
    return PaymentTransaction.objects.get(transaction_id=str(record["transaction_id"]))


def memos():
    return CreditMemo.objects.filter(deleted=False).order_by("pk")


def invoice(invno):
    return ArMast.objects.get(invno=invno.rjust(10), deleted=False)


def assert_books_balance():
    """Every GL batch balances, line by line and in total, in an open period."""
    for batch in GlBatch.objects.filter(deleted=False):
        lines = list(batch.lines.all())
        assert lines, batch
        assert sum(line.gldamnt for line in lines) == sum(
            line.glcamnt for line in lines
        )
        assert batch.drtotal == batch.crtotal
        period = SycDfis.objects.filter(
            compid=batch.company,
            bdate__lte=batch.gldate,
            edate__gte=batch.gldate,
            deleted=False,
        ).get()
        assert not (period.pclosed or period.plocked or period.permlck)


def test_partial_refunds_add_up_and_one_too_many_is_refused(deliver, sage, refund_rule):
    invno = sage.seed_invoice("ACME", "150.00")
    sale = sale_record(invno, "150.00")
    deliver("transaction.approved", sale)
    assert invoice(invno).balance == Decimal("0.00")

    first = refund_record(sale, "60.00")
    second = refund_record(sale, "40.00")
    third = refund_record(sale, "80.00")
    for record in (first, second, third):
        deliver("transaction.refunded", record)

    assert [m.amount for m in memos()] == [Decimal("60.00"), Decimal("40.00")]
    receipt_no = txn(sale).postings.get().document_number
    for memo, record in zip(memos(), (first, second), strict=True):
        assert memo.rcptno.strip() == receipt_no
        assert memo.reference == str(record["transaction_id"])
        assert memo.invno.strip() == invno
        assert memo.refacnt.strip() == REFUND_ACCOUNT
        assert txn(record).original == txn(sale)
        assert txn(record).postings.get().state == Posting.State.POSTED
    # The invoice the sale paid is not reopened by a refund.
    assert invoice(invno).balance == Decimal("0.00")
    refused = txn(third)
    assert not refused.postings.exists()
    item = ReviewItem.objects.get(transaction=refused, kind=ReviewItem.Kind.REFUND)
    assert item.reason.startswith(
        f"Refund {third['transaction_id']} of $80.00 is more than what remains of "
        f"sale {sale['transaction_id']} ($150.00, $100.00 already refunded: $50.00 "
        "remains)"
    )
    assert GlBatch.objects.filter(deleted=False).count() == 2
    assert_books_balance()


def test_every_delivery_repeated_changes_nothing(deliver, sage, refund_rule):
    invno = sage.seed_invoice("ACME", "150.00")
    sale = sale_record(invno, "150.00")
    deliver("transaction.approved", sale)
    first, second = refund_record(sale, "60.00"), refund_record(sale, "40.00")
    for record in (first, second):
        deliver("transaction.refunded", record)
    for record in (sale, first, second):
        kind = "transaction.approved" if record is sale else "transaction.refunded"
        deliver(kind, record, again=(record["transaction_id"], kind))
        deliver(kind, record)  # the same record under a new webhook id

    assert memos().count() == 2
    assert Posting.objects.filter(kind=Posting.Kind.CREDIT_MEMO).count() == 2
    assert CashReceipt.objects.filter(deleted=False).count() == 1
    assert not ReviewItem.objects.filter(kind=ReviewItem.Kind.REFUND).exists()
    assert_books_balance()


def test_a_refund_before_its_sale_waits_and_posts_when_the_receipt_does(
    deliver, sage, refund_rule
):
    invno = sage.seed_invoice("ACME", "150.00")
    sale = sale_record(invno, "150.00")
    early = refund_record(sale, "60.00")
    late_too_big = refund_record(sale, "100.00")

    deliver("transaction.refunded", early)
    deliver("transaction.refunded", late_too_big)
    assert not memos().exists()
    waiting = PendingReversal.objects.get(transaction=txn(early))
    assert waiting.state == PendingReversal.State.WAITING
    assert waiting.reason == f"waiting for sale {sale['transaction_id']}"

    deliver("transaction.approved", sale)
    deliver("transaction.refunded", early)  # redelivered after: nothing new

    assert [m.amount for m in memos()] == [Decimal("60.00")]
    assert PendingReversal.objects.get(transaction=txn(early)).state == "done"
    item = ReviewItem.objects.get(
        transaction=txn(late_too_big), kind=ReviewItem.Kind.REFUND
    )
    assert "$60.00 already refunded: $90.00 remains" in item.reason
    assert invoice(invno).balance == Decimal("0.00")
    assert_books_balance()


def test_a_refund_without_the_sales_id_links_by_invoice_customer_and_card(
    deliver, sage, refund_rule
):
    invno = sage.seed_invoice("ACME", "90.00")
    sale = sale_record(invno, "90.00")
    deliver("transaction.approved", sale)
    refund = refund_record(sale, "25.00", named=False)

    deliver("transaction.refunded", refund)

    assert txn(refund).original == txn(sale)
    assert [m.amount for m in memos()] == [Decimal("25.00")]
    assert "linked_to_sale" in set(txn(refund).history.values_list("action", flat=True))


def test_a_refund_whose_sale_never_comes_goes_to_review_after_the_wait(
    deliver, sage, refund_rule, settings
):
    settings.REFUND_WAIT_MINUTES = 30
    sale = sale_record("10001", "50.00")
    refund = refund_record(sale, "50.00")
    deliver("transaction.refunded", refund)

    processing.sweep()
    assert not ReviewItem.objects.filter(kind=ReviewItem.Kind.REFUND).exists()
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        processing.sweep()

    item = ReviewItem.objects.get(kind=ReviewItem.Kind.REFUND)
    assert f"waiting for sale {sale['transaction_id']}" in item.reason
    assert "30 minutes" in item.reason
    assert not memos().exists()


def test_no_refund_account_asks_for_a_rule_and_posts_once_there_is_one(
    deliver, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "40.00")
    sale = sale_record(invno, "40.00")
    deliver("transaction.approved", sale)
    refund = refund_record(sale, "10.00")

    deliver("transaction.refunded", refund)

    item = ReviewItem.objects.get(kind=ReviewItem.Kind.REFUND)
    assert "Add a refund GL rule" in item.reason
    assert not memos().exists()

    processing.sweep()  # still no account: nothing changes
    GlRule.objects.create(
        connection=item.transaction.connection,
        name="Refunds",
        account=REFUND_ACCOUNT,
        purpose=Purpose.REFUND,
    )
    processing.sweep()
    run_tasks()

    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert [m.amount for m in memos()] == [Decimal("10.00")]


def test_a_refund_fee_is_posted_with_its_own_account(deliver, sage, refund_rule):
    RefundFee.objects.create(connection=refund_rule.connection, amount="1.50")
    GlRule.objects.create(
        connection=refund_rule.connection,
        name="Refund fees",
        account="6100-00",
        purpose=Purpose.REFUND_FEE,
    )
    invno = sage.seed_invoice("ACME", "100.00")
    sale = sale_record(invno, "100.00")
    deliver("transaction.approved", sale)

    deliver("transaction.refunded", refund_record(sale, "20.00"))

    memo = memos().get()
    assert (memo.feeamt, memo.feeacnt.strip()) == (Decimal("1.50"), "6100-00")
    assert_books_balance()


def test_sage_pros_over_refund_is_routed_to_a_refund_item(
    deliver, sage, refund_rule, monkeypatch
):
    invno = sage.seed_invoice("ACME", "100.00")
    sale = sale_record(invno, "100.00")
    deliver("transaction.approved", sale)
    # The portal's own sum misses a memo someone posted in Sage Pro by hand.
    monkeypatch.setattr(refunds, "refunded_total", lambda *a, **k: Decimal("0.00"))
    deliver("transaction.refunded", refund_record(sale, "70.00"))
    deliver("transaction.refunded", refund_record(sale, "70.00"))

    assert memos().count() == 1
    refused = Posting.objects.get(
        kind=Posting.Kind.CREDIT_MEMO, state=Posting.State.NEEDS_REVIEW
    )
    assert refused.last_error_code == "OVER_REFUND"
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.REFUND)
    assert item.error_code == "OVER_REFUND"
    assert "is more than what remains of sale" in item.reason


# --- voids -----------------------------------------------------------------------------


def voided(record):
    return {**record, "status_code": "N", "status_message": "Voided"}


def test_a_void_after_posting_reverses_the_receipt_once(deliver, sage):
    invno = sage.seed_invoice("ACME", "80.00")
    sale = sale_record(invno, "80.00")
    deliver("transaction.approved", sale)
    assert invoice(invno).balance == Decimal("0.00")

    deliver("transaction.voided", voided(sale))
    deliver(
        "transaction.voided",
        voided(sale),
        again=(sale["transaction_id"], "transaction.voided"),
    )
    deliver("transaction.voided", voided(sale))

    receipt = CashReceipt.objects.get(reference=str(sale["transaction_id"]))
    assert receipt.reversed
    assert invoice(invno).balance == Decimal("80.00")
    reversal = txn(sale).postings.get(kind=Posting.Kind.RECEIPT_REVERSAL)
    assert reversal.state == Posting.State.POSTED
    assert reversal.document_number == receipt.rcptno.strip()
    assert txn(sale).postings.count() == 2


def test_a_void_before_posting_cancels_the_receipt_and_posts_nothing(
    deliver, sage, client, settings
):
    invno = sage.seed_invoice("ACME", "80.00")
    sale = sale_record(invno, "80.00")
    # Sage Pro's tables are locked: the receipt waits to be retried.
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "locked", "seconds": 600},
        content_type="application/json",
        headers={"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"},
    )
    deliver("transaction.approved", sale)
    receipt = txn(sale).postings.get()
    assert receipt.state == Posting.State.FAILED

    # The void waits for the receipt's retry; the sweeper asks Sage Pro by key,
    # finds no receipt, and cancels it.
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "none"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"},
    )
    deliver("transaction.voided", voided(sale))
    processing.sweep(timezone.now() + timedelta(hours=1))

    receipt.refresh_from_db()
    assert receipt.state == Posting.State.CANCELLED
    assert not CashReceipt.objects.filter(
        reference=str(sale["transaction_id"])
    ).exists()
    assert invoice(invno).balance == Decimal("80.00")
    assert not txn(sale).postings.filter(kind=Posting.Kind.RECEIPT_REVERSAL).exists()
    assert "receipt_cancelled" in set(
        txn(sale).history.values_list("action", flat=True)
    )


def test_a_void_of_a_never_sent_receipt_cancels_it_and_closes_its_items(
    paytrace_conn, sagepro_conn
):
    from tests.factories import make_posting, make_review_item

    sale = PaymentTransaction.objects.create(
        connection=paytrace_conn,
        transaction_id="700001",
        transaction_type="SALE",
        amount=Decimal("12.00"),
        gateway_status="voided",
        mapped_status="Voided",
    )
    receipt = make_posting(
        sale, sagepro=sagepro_conn, state=Posting.State.NEEDS_REVIEW, not_sent=True
    )
    item = make_review_item(sale, kind=ReviewItem.Kind.VALIDATION, posting=receipt)

    outcome = refunds.decide_reversal(sale)

    receipt.refresh_from_db()
    item.refresh_from_db()
    assert outcome == "voided before posting: receipt posting cancelled"
    assert receipt.state == Posting.State.CANCELLED
    assert item.state == ReviewItem.State.RESOLVED


def test_a_void_while_the_receipt_is_being_sent_waits_for_that_send(
    paytrace_conn, sagepro_conn
):
    from tests.factories import make_posting

    sale = PaymentTransaction.objects.create(
        connection=paytrace_conn,
        transaction_id="700002",
        transaction_type="SALE",
        amount=Decimal("12.00"),
        gateway_status="voided",
        mapped_status="Voided",
    )
    receipt = make_posting(
        sale,
        sagepro=sagepro_conn,
        state=Posting.State.IN_PROGRESS,
        attempts=1,
        started_at=timezone.now(),
    )

    assert refunds.decide_reversal(sale).startswith("waiting")
    receipt.refresh_from_db()
    assert receipt.state == Posting.State.IN_PROGRESS

    # The send finishes: posted. The hook decides the void: a reversal.
    receipt.mark_posted({"receipt_no": "000321"})
    refunds.after_receipt(receipt)

    reversal = sale.postings.get(kind=Posting.Kind.RECEIPT_REVERSAL)
    assert reversal.payload["receipt_no"] == "000321"
    assert PendingReversal.objects.get(transaction=sale).state == "done"


def test_a_refunds_amount_is_read_without_its_sign():
    assert refunds.refund_amount(
        PaymentTransaction(amount=Decimal("-25.00"))
    ) == Decimal("25.00")


# --- exactly once: outage, crash, a site that does not take credit memos ------------------


def set_fault(client, settings, mode, seconds=600):
    response = client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": mode, "seconds": seconds},
        content_type="application/json",
        headers={"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"},
    )
    assert response.status_code in (200, 201), response.content


def test_a_credit_memo_waits_out_an_outage_and_posts_once(
    deliver, sage, refund_rule, client, settings, run_tasks
):
    invno = sage.seed_invoice("ACME", "100.00")
    sale = sale_record(invno, "100.00")
    deliver("transaction.approved", sale)
    set_fault(client, settings, "unavailable")

    refund = refund_record(sale, "30.00")
    deliver("transaction.refunded", refund)
    memo = txn(refund).postings.get()
    assert memo.state == Posting.State.FAILED
    assert memo.last_error_code == "UNAVAILABLE"

    set_fault(client, settings, "none")
    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        processing.sweep()
        run_tasks()

    memo.refresh_from_db()
    assert memo.state == Posting.State.POSTED
    assert memos().count() == 1
    assert memo.document_number == memos().get().memono.strip()


def test_a_worker_that_lost_sage_pros_answer_finds_the_memo_by_key(
    deliver, sage, refund_rule, monkeypatch, run_tasks
):
    from integrations.connectors.base import ConnectorError
    from integrations.connectors.sagepro import SageProConnector

    invno = sage.seed_invoice("ACME", "100.00")
    sale = sale_record(invno, "100.00")
    deliver("transaction.approved", sale)
    real = SageProConnector.post_credit_memo

    def written_then_lost(self, key, body):
        real(self, key, body)  # Sage Pro commits the memo ...
        raise ConnectorError(  # ... and the answer never reaches the worker
            "read timed out", transient=True, code="TIMEOUT", outcome_unknown=True
        )

    monkeypatch.setattr(SageProConnector, "post_credit_memo", written_then_lost)
    refund = refund_record(sale, "30.00")
    deliver("transaction.refunded", refund)
    assert txn(refund).postings.get().state == Posting.State.FAILED

    monkeypatch.setattr(SageProConnector, "post_credit_memo", real)
    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        processing.sweep()
        run_tasks()

    memo = txn(refund).postings.get()
    assert memo.state == Posting.State.POSTED
    assert memos().count() == 1
    assert memo.document_number == memos().get().memono.strip()
    assert "idempotency key" in txn(refund).history.filter(action="posted").get().detail


def test_a_site_whose_agent_does_not_take_credit_memos_says_so(
    deliver, sage, refund_rule, monkeypatch
):
    from integrations.connectors.base import NOT_SUPPORTED_AT_SITE, ConnectorError
    from integrations.connectors.sagepro import SageProConnector

    def not_here(self, key, body):
        raise ConnectorError(
            "not supported", transient=False, code=NOT_SUPPORTED_AT_SITE, status=501
        )

    monkeypatch.setattr(SageProConnector, "post_credit_memo", not_here)
    invno = sage.seed_invoice("ACME", "100.00")
    sale = sale_record(invno, "100.00")
    deliver("transaction.approved", sale)
    refund = refund_record(sale, "30.00")
    deliver("transaction.refunded", refund)

    item = ReviewItem.objects.get(kind=ReviewItem.Kind.UNSUPPORTED_DOCUMENT)
    assert "credit memo" in item.reason
    assert "by hand" in item.reason
    assert txn(refund).postings.get().state == Posting.State.NEEDS_REVIEW


# --- the status map ------------------------------------------------------------------------


def test_the_default_map_reverses_voids_and_refund_transactions():
    from mappings.status import DEFAULT_RULES, Action, StatusFacts, map_status

    def action(**facts):
        return map_status(StatusFacts(**facts), DEFAULT_RULES).action

    assert action(event_type="transaction.refunded", transaction_type="REFUND") == (
        Action.REVERSE
    )
    assert action(event_type="transaction.voided", transaction_type="SALE") == (
        Action.REVERSE
    )
    assert action(status_code="N", status_message="Voided") == Action.REVERSE


def test_the_migration_switches_only_the_rows_equal_to_the_old_defaults(paytrace_conn):
    from importlib import import_module

    from django.apps import apps

    from mappings.models import StatusMap

    migration = import_module("integrations.migrations.0016_refunds")
    rows = StatusMap.objects.filter(connection=paytrace_conn)
    rows.filter(priority__in=[5, 20, 80]).update(action="record_only")
    rows.filter(priority=80).update(status_message_pattern="*VOIDED*")  # edited

    migration.reverse_by_default(apps, None)

    actions = dict(rows.values_list("priority", "action"))
    assert (actions[5], actions[20], actions[80]) == (
        "reverse",
        "reverse",
        "record_only",
    )


# --- the pages -----------------------------------------------------------------------------


def test_a_refunds_page_shows_its_sale_memo_and_what_remains(
    deliver, sage, refund_rule, reviewer_client
):
    invno = sage.seed_invoice("ACME", "150.00")
    sale = sale_record(invno, "150.00")
    deliver("transaction.approved", sale)
    refund = refund_record(sale, "60.00")
    deliver("transaction.refunded", refund)
    memo_no = memos().get().memono.strip()

    page = reviewer_client.get(
        f"/admin/integrations/paymenttransaction/{txn(refund).pk}/change/"
    )
    sale_page = reviewer_client.get(
        f"/admin/integrations/paymenttransaction/{txn(sale).pk}/change/"
    )

    text = page.content.decode()
    assert page.status_code == 200
    assert f"PayTrace {sale['transaction_id']}</a>" in text
    assert memo_no in text
    assert f"Dr {REFUND_ACCOUNT} (refunds)" in text
    assert "$90.00 remains" in text
    assert str(refund["transaction_id"]) in sale_page.content.decode()
    assert "Refunds and voids" in sale_page.content.decode()


def test_reconciliation_files_the_sale_and_each_refund_in_its_bucket(
    deliver, sage, refund_rule, paytrace_conn
):
    from integrations import reconciliation

    invno = sage.seed_invoice("ACME", "150.00")
    sale = sale_record(invno, "150.00")
    deliver("transaction.approved", sale)
    posted = [refund_record(sale, "60.00"), refund_record(sale, "40.00")]
    refused = refund_record(sale, "80.00")
    waiting = refund_record(sale_record("10002", "20.00"), "20.00")
    for record in (*posted, refused, waiting):
        deliver("transaction.refunded", record)

    today = reconciliation.business_today()
    run = reconciliation.reconcile(paytrace_conn, today, today)

    buckets = dict(run.lines.values_list("transaction_id", "bucket"))
    assert buckets[str(sale["transaction_id"])] == "posted"
    assert [buckets[str(r["transaction_id"])] for r in posted] == [
        "refund_posted",
        "refund_posted",
    ]
    assert buckets[str(refused["transaction_id"])] == "refund_in_review"
    assert buckets[str(waiting["transaction_id"])] == "refund_waiting"
    # It ties out: PayTrace's net (150 of sales − 200 of refunds) against Sage Pro's
    # (150 of receipts − 100 of credit memos), the difference being exactly the two
    # refunds not posted (the one refused, the one waiting for its sale).
    net = run.headline["net"]
    assert (net["paytrace_net"], net["sage_net"]) == ("-50.00", "50.00")
    assert net["difference"] == "-100.00"
    assert net["refunds_not_posted"] == {"count": 2, "amount": "-100.00"}


# --- how a refund finds its sale ----------------------------------------------------------


def test_the_sandboxs_refund_event_names_its_sale_and_the_export_does_not():
    import json

    from django.utils import timezone as tz

    from integrations.sandbox.paytrace.models import OutboundEvent, Transaction

    sale = Transaction.create_sale(
        approved=True,
        amount=Decimal("100.00"),
        card_last4="1111",
        expiration_month=9,
        expiration_year=28,
    )
    sale.settled_at = tz.now()
    refund = sale.refund(Decimal("30.00"))

    body = json.loads(OutboundEvent.objects.get(transaction=refund).body)
    assert body["data"]["original_transaction_id"] == sale.transaction_id
    assert "original_transaction_id" not in refund.as_record()


def test_a_refund_the_portal_asked_for_links_to_its_sale(
    deliver, sage, refund_rule, django_capture_on_commit_callbacks
):
    invno = sage.seed_invoice("ACME", "100.00")
    sale = sale_record(invno, "100.00")
    deliver("transaction.approved", sale)
    # Nothing in the refund's record points at the sale: another invoice reference.
    refund = refund_record(sale, "45.00", named=False, invoice_id="on account")

    deliver("transaction.refunded", refund)
    assert txn(refund).pending_reversal.reason.startswith("waiting for its sale")

    with django_capture_on_commit_callbacks(execute=True):
        refunds.expect_refund(
            txn(sale), str(refund["transaction_id"]), Decimal("45.00"), None
        )
    deliver(
        "transaction.refunded",
        refund,
        again=(refund["transaction_id"], "transaction.refunded"),
    )

    assert txn(refund).original == txn(sale)
    assert [m.amount for m in memos()] == [Decimal("45.00")]


def test_a_refund_that_fits_two_sales_goes_to_review(deliver, sage, refund_rule):
    invno = sage.seed_invoice("ACME", "200.00")
    one, two = sale_record(invno, "50.00"), sale_record(invno, "50.00")
    deliver("transaction.approved", one)
    deliver("transaction.approved", two)

    deliver("transaction.refunded", refund_record(one, "20.00", named=False))

    item = ReviewItem.objects.get(kind=ReviewItem.Kind.REFUND)
    assert item.error_code == "AMBIGUOUS_SALE"
    assert str(one["transaction_id"]) in item.reason
    assert str(two["transaction_id"]) in item.reason
    assert not memos().exists()


def test_a_malformed_original_transaction_id_is_refused_at_the_edge(
    client, paytrace_conn, secret
):
    record = {**paytrace_record(), "original_transaction_id": "4111111111111111"}
    body = event_body("transaction.refunded", record)

    response = post_event(client, SLUG, body, sign(body, secret))

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "data": {
            "original_transaction_id": [
                "looks like a card number; PayTrace transaction ids never do"
            ]
        }
    }


def test_a_void_of_a_payment_waiting_in_review_closes_its_item(deliver, sage):
    sale = sale_record("NO-SUCH-INVOICE", "33.00")
    deliver("transaction.approved", sale)
    item = ReviewItem.objects.get(transaction=txn(sale), kind=ReviewItem.Kind.UNMATCHED)

    deliver("transaction.voided", voided(sale))

    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert not txn(sale).postings.exists()
    assert not CashReceipt.objects.filter(
        reference=str(sale["transaction_id"])
    ).exists()


@pytest.mark.parametrize(
    "refunds_first", [False, True], ids=["sale-first", "refunds-first"]
)
def test_acceptance_in_any_order_with_every_delivery_repeated(
    deliver, sage, refund_rule, refunds_first
):
    invno = sage.seed_invoice("ACME", "150.00")
    sale = sale_record(invno, "150.00")
    first, second = refund_record(sale, "60.00"), refund_record(sale, "40.00")
    too_much = refund_record(sale, "80.00")
    steps = [("transaction.refunded", r) for r in (first, second, too_much)]
    steps.insert(len(steps) if refunds_first else 0, ("transaction.approved", sale))

    for kind, record in steps:
        deliver(kind, record)
        deliver(kind, record, again=(record["transaction_id"], kind))
    for kind, record in steps:
        deliver(kind, record)  # each again, under a new webhook id

    assert sorted(m.amount for m in memos()) == [Decimal("40.00"), Decimal("60.00")]
    assert CashReceipt.objects.filter(deleted=False).count() == 1
    assert invoice(invno).balance == Decimal("0.00")
    assert not txn(too_much).postings.exists()
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.REFUND)
    assert item.transaction == txn(too_much)
    assert "$100.00 already refunded: $50.00 remains" in item.reason
    assert GlBatch.objects.filter(deleted=False).count() == 2
    assert_books_balance()


def test_a_reversal_whose_answer_was_lost_is_found_and_not_sent_twice(
    deliver, sage, monkeypatch, run_tasks
):
    from integrations.connectors.base import ConnectorError
    from integrations.connectors.sagepro import SageProConnector

    invno = sage.seed_invoice("ACME", "80.00")
    sale = sale_record(invno, "80.00")
    deliver("transaction.approved", sale)
    real = SageProConnector.reverse_cash_receipt
    calls = []

    def reversed_then_lost(self, key, receipt_no, body):
        calls.append(key)
        real(self, key, receipt_no, body)
        raise ConnectorError(
            "read timed out", transient=True, code="TIMEOUT", outcome_unknown=True
        )

    monkeypatch.setattr(SageProConnector, "reverse_cash_receipt", reversed_then_lost)
    deliver("transaction.voided", voided(sale))
    reversal = txn(sale).postings.get(kind=Posting.Kind.RECEIPT_REVERSAL)
    assert reversal.state == Posting.State.FAILED

    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        processing.sweep()
        run_tasks()

    reversal.refresh_from_db()
    assert reversal.state == Posting.State.POSTED
    assert len(calls) == 1  # found by the receipt's key, not sent again
    assert invoice(invno).balance == Decimal("80.00")


def test_a_voided_refund_cancels_its_unsent_memo_or_asks_for_a_hand_reversal(
    paytrace_conn, sagepro_conn
):
    from tests.factories import make_posting

    sale = PaymentTransaction.objects.create(
        connection=paytrace_conn,
        transaction_id="700010",
        transaction_type="SALE",
        amount=Decimal("50.00"),
    )

    def voided_refund(transaction_id, memo_state, attempts):
        refund = PaymentTransaction.objects.create(
            connection=paytrace_conn,
            transaction_id=transaction_id,
            transaction_type="REFUND",
            amount=Decimal("20.00"),
            gateway_status="refunded",
            status_message="Voided",
            original=sale,
        )
        make_posting(
            refund,
            sagepro=sagepro_conn,
            kind=Posting.Kind.CREDIT_MEMO,
            state=memo_state,
            attempts=attempts,
            document_number="CM9" if memo_state == Posting.State.POSTED else "",
        )
        return refund

    unsent = voided_refund("700011", Posting.State.PENDING, 0)
    posted = voided_refund("700012", Posting.State.POSTED, 1)

    assert refunds.decide_reversal(unsent) == "refund voided: credit memo cancelled"
    assert unsent.postings.get().state == Posting.State.CANCELLED
    assert refunds.decide_reversal(posted).startswith("review")
    item = ReviewItem.objects.get(transaction=posted, kind=ReviewItem.Kind.REFUND)
    assert "credit memo CM9" in item.reason
    assert refunds.refunded_total(sale) == Decimal("20.00")  # the posted one counts


def test_a_batch_of_receipts_with_nothing_waiting_costs_one_query():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from integrations import refunds
    from tests.factories import make_posting

    postings = [make_posting(state=Posting.State.POSTED) for _ in range(3)]

    with CaptureQueriesContext(connection) as queries:
        refunds.after_receipts(postings)

    assert len(queries) == 1
