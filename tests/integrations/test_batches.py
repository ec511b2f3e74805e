"""Workers drain events in batches and post receipts in batches; the mirror may be stale.

Each test compares what a finance team sees (receipts in Sage Pro, invoice balances,
posting states, review items) with what the one-at-a-time path gives, or with what
fresh data calls for.
"""

from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from integrations import mirror, processing
from integrations.connectors.sagepro import Application, CashReceipt
from integrations.models import Event, PaymentTransaction, Posting, ReviewItem
from integrations.sandbox.credentials import sagepro_headers
from integrations.sandbox.sagepro.models import ArMast
from integrations.sandbox.sagepro.models import CashReceipt as SageReceipt
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db
SLUG = "paytrace-sandbox"


@pytest.fixture
def send(client, paytrace_conn, secret, http):
    """Deliver signed events without processing them."""

    def _send(*records):
        for record in records:
            body = event_body("transaction.approved", record)
            response = post_event(client, SLUG, body, sign(body, secret))
            assert response.status_code == 202, response.content
        return records

    return _send


def gateway_calls(http, method, fragment):
    return [
        c
        for c in http.calls
        if c.request.method == method and fragment in c.request.url
    ]


def receipts_for(record):
    return SageReceipt.objects.filter(
        reference=str(record["transaction_id"]), deleted=False
    )


def balance(invno):
    return ArMast.objects.get(invno=invno.rjust(10)).balance


def pay_behind_the_portals_back(sagepro_conn, invno, amount):
    """A Sage Pro user applies a payment to the invoice: the mirror does not know."""
    sagepro_conn.sage().post_cash_receipt(
        f"outside-{invno}-{amount}",
        CashReceipt(
            custno="ACME",
            date=timezone.localdate(),
            amount=Decimal(amount),
            method="CHECK",
            reference=f"CHK{invno}",
            applications=(Application(invno, Decimal(amount)),),
        ),
    )


def test_a_drain_posts_a_batch_with_one_gateway_write_and_no_reads(
    send, sage, sagepro_conn, http, run_tasks
):
    invoices = [sage.seed_invoice("ACME", "50.00") for _ in range(5)]
    mirror.sync(sagepro_conn)
    records = send(
        *(
            paytrace_record(invoice_id=invno, amount=Decimal("50.00"))
            for invno in invoices
        )
    )
    http.calls.reset()

    run_tasks()

    assert all(receipts_for(r).count() == 1 for r in records)
    assert all(balance(invno) == 0 for invno in invoices)
    assert set(Posting.objects.values_list("state", flat=True)) == {"posted"}
    assert Event.objects.filter(state=Event.State.PROCESSED).count() == 5
    assert len(gateway_calls(http, "POST", "/cash-receipts/batch")) == 1
    assert gateway_calls(http, "POST", "/cash-receipts") == gateway_calls(
        http, "POST", "/cash-receipts/batch"
    )
    assert gateway_calls(http, "GET", "/invoices") == []  # matched on the mirror
    assert not ReviewItem.objects.exists()


def outcome_of(record):
    txn = PaymentTransaction.objects.get(transaction_id=str(record["transaction_id"]))
    posting = txn.postings.get()
    items = sorted(
        (i.kind, i.error_code) for i in ReviewItem.objects.filter(transaction=txn)
    )
    return posting.state, items


@pytest.mark.parametrize("path", ["batch", "one at a time"])
def test_one_refused_receipt_in_a_batch_is_routed_as_the_single_call_routes_it(
    send, sage, sagepro_conn, run_tasks, path
):
    """A receipt whose PayTrace reference Sage Pro already holds (409 DUPLICATE_RECEIPT)
    goes to review; the others in the batch post."""
    good = [sage.seed_invoice("ACME", "20.00") for _ in range(2)]
    bad = sage.seed_invoice("ACME", "20.00")
    refused = paytrace_record(invoice_id=bad, amount=Decimal("20.00"))
    sagepro_conn.sage().post_cash_receipt(
        "keyed-elsewhere",
        CashReceipt(
            custno="ACME",
            date=timezone.localdate(),
            amount=Decimal("20.00"),
            method="VISA",
            reference=str(refused["transaction_id"]),
        ),
    )
    records = send(
        paytrace_record(invoice_id=good[0], amount=Decimal("20.00")),
        refused,
        paytrace_record(invoice_id=good[1], amount=Decimal("20.00")),
    )
    if path == "batch":
        run_tasks()
    else:
        for event in Event.objects.order_by("pk"):
            processing.process_event(event.pk)

    assert outcome_of(records[0]) == ("posted", [])
    assert outcome_of(records[2]) == ("posted", [])
    assert outcome_of(refused) == (
        "needs_review",
        [(ReviewItem.Kind.VALIDATION, "DUPLICATE_RECEIPT")],
    )
    assert receipts_for(refused).count() == 1  # only the one posted elsewhere
    assert balance(bad) == Decimal("20.00")


def test_a_batch_sage_pro_cannot_take_backs_off_and_posts_once_later(
    client, send, sage, sagepro_conn, run_tasks, settings
):
    invoices = [sage.seed_invoice("ACME", "30.00") for _ in range(3)]
    mirror.sync(sagepro_conn)  # matching needs no gateway; the post does
    records = send(
        *(paytrace_record(invoice_id=i, amount=Decimal("30.00")) for i in invoices)
    )
    fault = {"mode": "unavailable", "seconds": 600}
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        fault,
        content_type="application/json",
        headers=sagepro_headers(),
    )
    run_tasks()
    states = set(Posting.objects.values_list("state", flat=True))
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "none"},
        content_type="application/json",
        headers=sagepro_headers(),
    )
    Posting.objects.update(next_attempt_at=None)
    for posting in Posting.objects.all():
        processing.send_posting(posting.pk)

    assert states == {"failed"}
    assert Event.objects.filter(state=Event.State.PROCESSED).count() == 3
    assert all(receipts_for(r).count() == 1 for r in records)
    assert set(Posting.objects.values_list("state", flat=True)) == {"posted"}


@pytest.mark.parametrize("stale", [True, False])
def test_an_invoice_paid_behind_the_portals_back_is_never_applied_twice(
    send, sage, sagepro_conn, run_tasks, stale
):
    """The mirror says open; Sage Pro says paid. The gateway refuses, the portal reads
    the invoice again and decides as fresh data calls for: the same as a fresh mirror."""
    invno = sage.seed_invoice("ACME", "100.00")
    mirror.sync(sagepro_conn)
    pay_behind_the_portals_back(sagepro_conn, invno, "100.00")
    if not stale:
        mirror.sync(sagepro_conn)
    (record,) = send(paytrace_record(invoice_id=invno, amount=Decimal("100.00")))

    run_tasks()

    assert receipts_for(record).count() == 1
    receipt = receipts_for(record).get()
    assert receipt.applied == 0 and receipt.unapplied == Decimal("100.00")
    assert balance(invno) == 0
    assert ArMast.objects.get(invno=invno.rjust(10)).paidamt == Decimal("100.00")
    posting = Posting.objects.get()
    assert posting.state == Posting.State.POSTED
    kinds = set(ReviewItem.objects.values_list("kind", flat=True))
    assert kinds == {ReviewItem.Kind.POSSIBLE_DUPLICATE}
    assert mirror_balance(sagepro_conn, invno) == 0


@pytest.mark.parametrize("stale", [True, False])
def test_an_invoice_part_paid_behind_the_portals_back_is_an_overpayment(
    send, sage, sagepro_conn, run_tasks, stale
):
    invno = sage.seed_invoice("ACME", "100.00")
    mirror.sync(sagepro_conn)
    pay_behind_the_portals_back(sagepro_conn, invno, "60.00")
    if not stale:
        mirror.sync(sagepro_conn)
    (record,) = send(paytrace_record(invoice_id=invno, amount=Decimal("100.00")))

    run_tasks()

    receipt = receipts_for(record).get()
    assert receipt.applied == Decimal("40.00")
    assert receipt.unapplied == Decimal("60.00")
    assert balance(invno) == 0
    assert Posting.objects.get().state == Posting.State.POSTED
    kinds = set(ReviewItem.objects.values_list("kind", flat=True))
    assert kinds == {ReviewItem.Kind.OVERPAYMENT}
    assert mirror_balance(sagepro_conn, invno) == 0


def mirror_balance(sagepro_conn, invno):
    return sagepro_conn.mirror().get_invoice(invno)["balance"]


def test_an_event_whose_web_process_died_before_waking_a_worker_is_still_posted(
    send, sage, sagepro_conn, run_tasks, settings
):
    """With coalesced wake-ups, the event commits before any task is queued. If the
    web process dies in between, the sweeper queues a drain for it."""
    from datetime import timedelta

    import time_machine
    from django_q.models import OrmQ

    settings.DRAIN_WAKE_SECONDS = 0.2
    invno = sage.seed_invoice("ACME", "64.00")
    with mock.patch("integrations.queueing._waker.request"):  # the process dies
        (record,) = send(paytrace_record(invoice_id=invno, amount=Decimal("64.00")))
    assert OrmQ.objects.count() == 0
    assert processing.sweep()["drains"] == 0  # not yet: a wake-up may be on its way

    with time_machine.travel(timezone.now() + timedelta(seconds=11)):
        assert processing.sweep()["drains"] == 1
        assert processing.sweep()["drains"] == 0  # once
        run_tasks()

    assert receipts_for(record).count() == 1
    assert Posting.objects.get().state == Posting.State.POSTED


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_events_wakes_the_workers_a_few_times_not_once_per_event(
    send, sage, settings
):
    """After the events commit, the web process queues one drain per wake-up interval
    from a background thread: a burst of 20 events costs a few task rows, not 20."""
    import time

    from django_q.models import OrmQ

    settings.DRAIN_WAKE_SECONDS = 5
    invoices = [sage.seed_invoice("ACME", "10.00") for _ in range(20)]
    send(*(paytrace_record(invoice_id=i, amount=Decimal("10.00")) for i in invoices))

    deadline = time.monotonic() + 10
    while OrmQ.objects.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Event.objects.filter(state=Event.State.QUEUED).count() == 20
    assert 1 <= OrmQ.objects.count() <= 2
