"""PayTrace sends no webhooks of its own: the poll finds what nobody announced."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connections

from integrations import polling
from integrations.models import (
    Event,
    Lease,
    PaymentTransaction,
    Posting,
    SettlementBatch,
    SyncRun,
)
from integrations.sandbox.credentials import paytrace_headers
from integrations.sandbox.sagepro.models import CashReceipt

CARD = {
    "card_number": "4111111111111111",
    "expiration_month": 12,
    "expiration_year": 2030,
    "csc": "123",
}


def receipts(txid):
    return CashReceipt.objects.filter(reference=str(txid), deleted=False)


def sale(connection, invno, amount, *, notify):
    return connection.paytrace().sale_keyed(
        amount=Decimal(amount), invoice_id=invno, notify=notify, **CARD
    )["transaction_id"]


@pytest.mark.django_db
def test_a_payment_nobody_announced_is_found_by_the_next_poll_and_posted(
    paytrace_conn, sage, http, run_tasks
):
    invno = sage.seed_invoice("ACME", "70.00")
    txid = sale(paytrace_conn, invno, "70.00", notify=False)
    run_tasks()
    assert not Event.objects.exists()  # no webhook went out

    run = polling.poll(paytrace_conn)
    run_tasks()

    assert run.state == SyncRun.State.SUCCEEDED
    assert (run.fetched, run.new) == (1, 1)
    assert receipts(txid).count() == 1
    assert (
        PaymentTransaction.objects.get(transaction_id=str(txid)).postings.get().state
        == Posting.State.POSTED
    )

    again = polling.poll(paytrace_conn)
    run_tasks()
    assert (again.unchanged, again.new, again.changed) == (1, 0, 0)
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_a_payment_announced_by_webhook_and_found_by_the_poll_posts_once(
    paytrace_conn, sage, http, run_tasks, client
):
    invno = sage.seed_invoice("ACME", "81.00")
    txid = sale(paytrace_conn, invno, "81.00", notify=True)
    # The poll runs before the worker has processed the webhook's event.
    run = polling.poll(paytrace_conn)
    assert run.new == 1
    run_tasks()
    assert receipts(txid).count() == 1

    client.post(
        "/sandbox/paytrace/_settle",
        {"notify": False},
        content_type="application/json",
        headers=paytrace_headers(),
    )
    run = polling.poll(paytrace_conn)  # the settlement nobody announced
    run_tasks()
    assert run.changed == 1
    txn = PaymentTransaction.objects.get(transaction_id=str(txid))
    assert txn.gateway_status == "settled"
    assert receipts(txid).count() == 1
    assert Posting.objects.count() == 1


@pytest.mark.django_db
def test_the_settlement_sweep_records_batches_with_their_totals(
    paytrace_conn, sage, http, run_tasks, client
):
    a = sale(paytrace_conn, sage.seed_invoice("ACME", "10.00"), "10.00", notify=False)
    b = sale(paytrace_conn, sage.seed_invoice("ACME", "32.50"), "32.50", notify=False)
    client.post(
        "/sandbox/paytrace/_settle",
        {"notify": False},
        content_type="application/json",
        headers=paytrace_headers(),
    )

    run = polling.sweep_settlements(paytrace_conn, polling.gateway_today(paytrace_conn))
    run_tasks()

    assert run.state == SyncRun.State.SUCCEEDED
    batch = SettlementBatch.objects.get()
    assert batch.transaction_count == 2
    assert batch.net_amount == Decimal("42.50")
    assert batch.transaction_ids == sorted([str(a), str(b)])
    assert batch.settled_at is not None
    assert receipts(a).count() == 1 and receipts(b).count() == 1


@pytest.mark.django_db
def test_a_poll_that_cannot_reach_paytrace_is_recorded_and_lets_go_of_its_lease(
    paytrace_conn, http
):
    paytrace_conn.base_url = "http://paytrace.invalid"
    paytrace_conn.save()
    run = polling.poll(paytrace_conn)
    assert run.state == SyncRun.State.FAILED
    assert "could not be reached" in run.error
    assert not Lease.objects.exists()


@pytest.mark.django_db
def test_a_run_is_skipped_while_another_holds_the_lease(paytrace_conn, http):
    assert Lease.acquire(f"paytrace-poll:{paytrace_conn.pk}", "someone-else", 60)
    run = polling.poll(paytrace_conn)
    assert run.state == SyncRun.State.SKIPPED
    assert run.fetched == 0


@pytest.mark.django_db
def test_backfill_reads_day_by_day_with_progress(
    paytrace_conn, sage, http, run_tasks, capsys
):
    sale(paytrace_conn, sage.seed_invoice("ACME", "15.00"), "15.00", notify=False)
    since = polling.gateway_today(paytrace_conn) - timedelta(days=4)
    call_command("poll_paytrace", "--since", since.isoformat())
    out = capsys.readouterr().out
    assert "5/5 days" in out
    assert "1 new" in out
    assert SyncRun.objects.get().kind == SyncRun.Kind.BACKFILL


@pytest.mark.django_db
def test_backfill_refuses_a_bad_date_with_the_fix(paytrace_conn):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("poll_paytrace", "--since", "11/01/2026")


@pytest.mark.django_db(transaction=True)
def test_two_polls_started_at_the_same_time_do_the_work_once(paytrace_conn, sage, http):
    invno = sage.seed_invoice("ACME", "66.00")
    sale(paytrace_conn, invno, "66.00", notify=False)
    barrier = threading.Barrier(2)
    runs = []

    def run_poll():
        try:
            barrier.wait()
            runs.append(polling.poll(paytrace_conn))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run_poll) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    states = sorted(r.state for r in runs)
    assert Event.objects.count() == 1
    assert sum(r.new for r in runs) == 1
    # Either the second saw the lease and skipped, or it ran after the first finished
    # and found nothing new: the work is done once either way.
    assert states in (["skipped", "succeeded"], ["succeeded", "succeeded"])
