"""Outages, timeouts and retries: back off on the documented schedule, post once."""

import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
import responses
import time_machine

from integrations import processing, review
from integrations.models import Posting, ReviewItem, failures
from integrations.sandbox.credentials import sagepro_headers
from integrations.sandbox.sagepro.models import CashReceipt
from tests import bridge
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


class _Edge(random.Random):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def uniform(self, a, b):
        return a if self.value == "low" else b


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        (1, 30),
        (2, 60),
        (3, 120),
        (4, 240),
        (5, 480),
        (6, 960),
        (7, 1920),
        (8, 3600),
        (12, 3600),
    ],
)
def test_the_backoff_schedule_doubles_from_30_s_to_an_hour_with_jitter(
    attempt, ceiling
):
    assert failures.backoff_delay(attempt, _Edge("high")) == timedelta(seconds=ceiling)
    assert failures.backoff_delay(attempt, _Edge("low")) == timedelta(
        seconds=ceiling / 2
    )
    for _ in range(50):
        delay = failures.backoff_delay(attempt).total_seconds()
        assert ceiling / 2 <= delay <= ceiling


def fault(client, mode):
    response = client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": mode, "seconds": 86400},
        content_type="application/json",
        headers=sagepro_headers(),
    )
    assert response.status_code in (200, 201)


def send(client, secret, record):
    body = event_body("transaction.approved", record)
    assert (
        post_event(client, "paytrace-sandbox", body, sign(body, secret)).status_code
        == 202
    )


def receipts(record):
    return CashReceipt.objects.filter(
        reference=str(record["transaction_id"]), deleted=False
    )


def test_a_posting_backs_off_goes_dead_and_retry_now_posts_it_once(
    client, paytrace_conn, secret, sage, http, run_tasks, settings
):
    settings.POSTING_MAX_ATTEMPTS = 4
    with time_machine.travel(T0, tick=False) as clock:
        invno = sage.seed_invoice("ACME", "45.00")
        record = paytrace_record(invoice_id=invno, amount=Decimal("45.00"))
        fault(client, "locked")  # Sage Pro answers every write with RECORD_LOCKED
        send(client, secret, record)
        run_tasks()

        posting = Posting.objects.get()
        for attempt in range(1, 4):
            assert posting.state == Posting.State.FAILED
            assert posting.attempts == attempt
            wait = (posting.next_attempt_at - datetime.now(UTC)).total_seconds()
            ceiling = 30 * 2 ** (attempt - 1)
            assert ceiling / 2 <= wait <= ceiling  # the documented schedule
            clock.shift(wait - 1)
            assert (
                processing.sweep()["postings"] == 0
            )  # not due yet: nothing hammers Sage Pro
            clock.shift(1)
            assert processing.sweep()["postings"] == 1
            run_tasks()
            posting.refresh_from_db()

        assert posting.state == Posting.State.DEAD
        assert posting.attempts == 4
        item = ReviewItem.objects.get(kind=ReviewItem.Kind.DEAD, posting=posting)
        assert "RECORD_LOCKED" in item.reason
        assert not receipts(record).exists()
        clock.shift(3600)
        assert (
            processing.sweep()["postings"] == 0
        )  # dead stays dead until a person acts

        fault(client, "none")
        assert [
            review.retry_posting(posting),
            review.retry_posting(posting),
        ] == [True, False]
        run_tasks()
    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    assert receipts(record).count() == 1
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED


def test_a_timeout_after_sage_pro_committed_never_posts_a_second_receipt(
    client, paytrace_conn, secret, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "64.00")
    record = paytrace_record(invoice_id=invno, amount=Decimal("64.00"))

    def commit_then_time_out(request):
        bridge._forward(request)  # Sage Pro writes the receipt...
        raise requests.ReadTimeout("read timed out")  # ...but the answer is lost

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        # responses uses the first matching registration once, then the next.
        mock.add_callback(
            "POST",
            re.compile(r"http://testserver/sandbox/sagepro/api/v1/cash-receipts"),
            callback=commit_then_time_out,
        )
        bridge.register(mock)
        send(client, secret, record)
        run_tasks()

        posting = Posting.objects.get()
        assert posting.state == Posting.State.FAILED
        assert posting.last_error_code == "TIMEOUT"
        assert receipts(record).count() == 1  # it did land

        with time_machine.travel(posting.next_attempt_at + timedelta(seconds=1)):
            assert processing.sweep()["postings"] == 1
            run_tasks()

    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    assert receipts(record).count() == 1
    assert posting.document_number == receipts(record).get().rcptno.strip()
    assert posting.transaction.history.filter(
        action="posted", detail__contains="idempotency key"
    ).exists()


def test_the_sweeper_queues_due_work_once_and_recovers_lost_tasks(
    client, paytrace_conn, secret, sage, http, run_tasks, settings
):
    from django_q.models import OrmQ

    from integrations.models import Event

    with time_machine.travel(T0, tick=False) as clock:
        invno = sage.seed_invoice("ACME", "52.00")
        record = paytrace_record(invoice_id=invno, amount=Decimal("52.00"))
        fault(client, "unavailable")
        send(client, secret, record)
        run_tasks()
        event = Event.objects.get()
        assert event.state == Event.State.FAILED

        clock.shift(3600)
        assert processing.sweep()["events"] == 1
        assert processing.sweep()["events"] == 0  # already queued: not queued again
        assert OrmQ.objects.count() == 1

        OrmQ.objects.all().delete()  # the task is lost (a broker purge, a crash)
        clock.shift(settings.WORK_LEASE_SECONDS + 1)
        assert processing.sweep()["events"] == 1  # queued too long ago: queued again
        fault(client, "none")
        run_tasks()
    assert receipts(record).count() == 1
    assert Event.objects.get().state == Event.State.PROCESSED
