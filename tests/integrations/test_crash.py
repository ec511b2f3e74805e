"""Workers killed outright (SIGKILL) in the middle of posting: real `qcluster` processes.

The web side runs in this process (pytest-django's live server, serving the Sage Pro
sandbox); the cluster runs in its own process group against the same test database.
"""

from decimal import Decimal

import pytest
from django.db import connection

from integrations import mirror
from integrations.models import Posting, ReviewItem
from integrations.sandbox.credentials import sagepro_headers
from integrations.sandbox.sagepro.models import CashReceipt
from tests.support import cluster
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{settings['USER'] or 'postgres'}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    return f"sqlite:///{settings['NAME']}"


@pytest.fixture
def live_sage(paytrace_conn, sage, live_server):
    """Point the Sage Pro connection at the live server so another process can reach it."""
    sage_conn = paytrace_conn.sagepro
    sage_conn.base_url = f"{live_server.url}/sandbox/sagepro/api/v1"
    sage_conn.save()
    return sage_conn


def deliver(client, secret, record):
    body = event_body("transaction.approved", record)
    assert (
        post_event(client, "paytrace-sandbox", body, sign(body, secret)).status_code
        == 202
    )


def receipts(record):
    return CashReceipt.objects.filter(
        reference=str(record["transaction_id"]), deleted=False
    )


def test_a_cluster_killed_after_sage_pro_committed_posts_exactly_once(
    client, secret, live_sage, sage
):
    invno = sage.seed_invoice("ACME", "88.00")
    # Sage Pro commits each receipt, then takes 2 s to answer: the window to kill in.
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "slow", "seconds": 120, "delay": 2},
        content_type="application/json",
        headers=sagepro_headers(),
    )
    record = paytrace_record(invoice_id=invno, amount=Decimal("88.00"))
    deliver(client, secret, record)

    first = cluster.start(database_url())
    try:
        cluster.wait_for(
            lambda: receipts(record).exists(), 30, "Sage Pro to commit the receipt"
        )
        assert Posting.objects.get().state == Posting.State.IN_PROGRESS
        cluster.kill(first)  # the answer never arrives: outcome unknown
    finally:
        cluster.stop(first)
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "none"},
        content_type="application/json",
        headers=sagepro_headers(),
    )

    second = cluster.start(database_url())
    try:
        cluster.wait_for(
            lambda: Posting.objects.get().state == Posting.State.POSTED,
            60,
            "the posting to be recovered",
        )
    finally:
        cluster.stop(second)

    posting = Posting.objects.get()
    assert receipts(record).count() == 1
    assert posting.document_number == receipts(record).get().rcptno.strip()
    assert posting.attempts == 2
    assert posting.transaction.history.filter(
        action="posted", detail__contains="found by idempotency key"
    ).exists()


def test_a_posting_that_kills_its_worker_every_time_ends_dead(
    client, secret, live_sage, sage, settings
):
    invno = sage.seed_invoice("ACME", "12.00")
    record = paytrace_record(invoice_id=invno, amount=Decimal("12.00"))
    deliver(client, secret, record)

    process = cluster.start(database_url(), die_on_post=True, POSTING_MAX_ATTEMPTS="3")
    try:
        cluster.wait_for(
            lambda: Posting.objects.filter(state=Posting.State.DEAD).exists(),
            90,
            "the posting to go dead",
        )
    finally:
        cluster.stop(process)

    posting = Posting.objects.get()
    assert posting.attempts == 3
    assert not receipts(record).exists()
    assert ReviewItem.objects.filter(
        kind=ReviewItem.Kind.DEAD, posting=posting, state="open"
    ).exists()


def test_a_cluster_killed_mid_batch_posts_every_payment_once_after_restart(
    client, secret, live_sage, sage
):
    """Five payments drained together: Sage Pro commits the whole batch, the cluster
    dies before it hears back. After a restart each is posted once, found by key."""
    records = [
        paytrace_record(
            invoice_id=sage.seed_invoice("ACME", "41.00"), amount=Decimal("41.00")
        )
        for _ in range(5)
    ]
    mirror.sync(live_sage)  # matching reads the mirror; only the post is slow
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "slow", "seconds": 120, "delay": 2},
        content_type="application/json",
        headers=sagepro_headers(),
    )
    for record in records:
        deliver(client, secret, record)

    first = cluster.start(database_url())
    try:
        cluster.wait_for(
            lambda: all(receipts(r).exists() for r in records),
            30,
            "Sage Pro to commit the batch",
        )
        assert set(Posting.objects.values_list("state", flat=True)) == {
            Posting.State.IN_PROGRESS
        }
        cluster.kill(first)
    finally:
        cluster.stop(first)
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "none"},
        content_type="application/json",
        headers=sagepro_headers(),
    )

    second = cluster.start(database_url())
    try:
        cluster.wait_for(
            lambda: Posting.objects.filter(state=Posting.State.POSTED).count() == 5,
            90,
            "every posting to be recovered",
        )
    finally:
        cluster.stop(second)

    assert all(receipts(r).count() == 1 for r in records)
    assert Posting.objects.count() == 5
    assert set(Posting.objects.values_list("attempts", flat=True)) == {2}
    assert not ReviewItem.objects.exists()
