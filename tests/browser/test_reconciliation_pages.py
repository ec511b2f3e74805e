"""The reconciliation report and the cash-position dashboard, in a real browser."""

import csv
import random
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from integrations import reconciliation
from integrations.connectors.sagepro import CashReceipt
from integrations.models import (
    Event,
    GatewayStatus,
    PaymentStatus,
    Posting,
    SettlementBatch,
    SyncRun,
)
from tests.factories import (
    make_event,
    make_posting,
    make_review_item,
    make_transaction,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "controller-pass-2025"
DAYS = 30


def at(day, hour):
    return datetime.combine(
        day, time(hour), tzinfo=ZoneInfo(settings.BUSINESS_TIME_ZONE)
    )


@pytest.fixture
def payments(live_connections):
    """30 days of payments: most posted and settled, some in review, pending, dead,
    declined and refunded; one receipt missing in Sage Pro, one orphan receipt, and one
    settlement batch PayTrace reports 25.00 higher than the portal's transactions."""
    sagepro, paytrace = live_connections
    sage = sagepro.sage()
    rng = random.Random(30)
    today = reconciliation.business_today()
    first = today - timedelta(days=DAYS - 1)
    batches: dict[str, list] = {}
    number = 184_300_000
    for offset in range(DAYS):
        day = first + timedelta(days=offset)
        for slot in range(rng.randint(3, 6)):
            number += 1
            amount = Decimal(rng.randint(2_000, 180_000)) / 100
            created = at(day, 8 + slot)
            kind = rng.choices(
                ["posted", "review", "pending", "declined", "refund", "dead"],
                weights=[70, 8, 6, 8, 5, 3],
            )[0]
            if offset >= DAYS - 2 and kind == "posted":
                kind = "pending"  # the last two days are still being posted
            fields = {
                "transaction_id": str(number),
                "amount": amount,
                "created_at": created,
                "status_changed_at": created,
                "gateway_status": GatewayStatus.PENDING_SETTLEMENT,
                "settled_at": None,
            }
            if kind == "declined":
                fields.update(
                    gateway_status=GatewayStatus.DECLINED,
                    mapped_status=PaymentStatus.FAILED,
                )
            elif kind == "refund":
                fields.update(
                    transaction_type="REFUND",
                    gateway_status=GatewayStatus.REFUNDED,
                    mapped_status=PaymentStatus.REFUNDED,
                )
            elif offset < DAYS - 1:
                batch = f"{700 + offset}"
                fields.update(
                    gateway_status=GatewayStatus.SETTLED,
                    settled_at=at(day, 22),
                    batch_number=batch,
                )
            txn = make_transaction(paytrace, **fields)
            if txn.batch_number:
                batches.setdefault(txn.batch_number, []).append(txn)
            if kind == "posted":
                receipt = sage.post_cash_receipt(
                    f"key-{number}",
                    CashReceipt(
                        custno="ACME",
                        date=txn.posting_date(),
                        amount=amount,
                        method="VISA",
                        reference=txn.transaction_id,
                        applications=(),
                    ),
                )
                make_posting(
                    txn,
                    sagepro=sagepro,
                    state=Posting.State.POSTED,
                    document_number=receipt["receipt_no"],
                )
            elif kind == "review":
                make_review_item(txn, created_at=created)
            elif kind == "pending":
                make_posting(txn, sagepro=sagepro, state=Posting.State.FAILED)
            elif kind == "dead":
                make_posting(
                    txn,
                    sagepro=sagepro,
                    state=Posting.State.DEAD,
                    last_error="Sage Pro gateway unavailable [UNAVAILABLE] (HTTP 503)",
                )
    # One posted payment whose receipt someone deleted in Sage Pro.
    missing = Posting.objects.filter(state=Posting.State.POSTED).order_by("pk")[3]
    sage.call("DELETE", f"/cash-receipts/{missing.document_number}")
    # A receipt typed in Sage Pro for a PayTrace payment the portal never saw.
    sage.post_cash_receipt(
        "typed-by-hand",
        CashReceipt(
            custno="BLUEOX",
            date=today - timedelta(days=6),
            amount=Decimal("310.00"),
            method="VISA",
            reference="184299999",
            applications=(),
        ),
    )
    for number, txns in batches.items():
        net = sum(t.amount for t in txns)
        if number == "712":
            net += Decimal("25.00")  # PayTrace's figure differs from the portal's
        SettlementBatch.objects.create(
            connection=paytrace,
            batch_number=number,
            settled_at=txns[0].settled_at,
            transaction_count=len(txns),
            net_amount=net,
            sales_count=len(txns),
            sales_amount=net,
            transaction_ids=[t.transaction_id for t in txns],
        )
    now = timezone.now()
    for state, count in [
        (Event.State.PROCESSED, 40),
        (Event.State.QUEUED, 2),
        (Event.State.FAILED, 1),
        (Event.State.DEAD, 1),
    ]:
        for n in range(count):
            make_event(
                paytrace, state=state, received_at=now - timedelta(minutes=6 + n)
            )
    SyncRun.objects.create(
        connection=paytrace,
        kind=SyncRun.Kind.POLL,
        state=SyncRun.State.SUCCEEDED,
        started_at=now - timedelta(minutes=4),
        finished_at=now - timedelta(minutes=4),
    )
    return {"paytrace": paytrace, "first": first, "today": today, "missing": missing}


@pytest.fixture
def month_of_payments(payments):
    """The 30 days, reconciled."""
    run = reconciliation.reconcile(
        payments["paytrace"], payments["first"], payments["today"]
    )
    return {"run": run, "missing": payments["missing"]}


def sign_in(page, live_server):
    get_user_model().objects.create_superuser(
        "controller", "controller@example.com", PASSWORD
    )
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "controller")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_a_controller_reads_the_reconciliation_and_the_cash_position(
    live_server, browser_page, screenshot, month_of_payments
):
    page = browser_page
    run = month_of_payments["run"]
    missing = month_of_payments["missing"]
    assert run.ties_out is False
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/integrations/reconciliationrun/")
    assert "Does NOT tie out" in page.locator("#result_list").inner_text()
    page.click(f"#result_list a[href$='/reconciliationrun/{run.pk}/change/']")
    content = page.locator("#content").inner_text()
    assert "Missing in Sage Pro" in content
    assert missing.transaction.transaction_id in content
    assert "184299999" in content  # the orphan receipt
    batch = page.locator(".field-batch_table tr", has_text="712").inner_text()
    assert "-$25.00" in batch
    assert "NO" in batch
    screenshot("reconciliation")

    with page.expect_download() as info:
        page.click("a.portal-csv")
    path = info.value.path()
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(b["count"] for b in run.buckets.values())
    by_id = {row["transaction_id"]: row for row in rows}
    assert by_id[missing.transaction.transaction_id]["bucket"] == "missing_in_sage"
    assert by_id["184299999"]["bucket"] == "orphan_receipt"
    assert by_id["184299999"]["amount"] == "310.00"

    page.goto(f"{live_server.url}/admin/")
    page.click("text=Cash position dashboard")
    page.wait_for_url(f"{live_server.url}/dashboard/")
    assert page.locator("svg.dash-chart rect").count() > 60
    assert page.locator("#dash-last-poll").inner_text() == "4 min ago"
    assert "dead posting" in page.locator("#dash-dead-postings").inner_text()
    screenshot("dashboard")


def test_a_reviewer_runs_month_end_with_the_button_and_reads_the_headline(
    live_server, browser_page, screenshot, payments
):
    from integrations import monthend
    from integrations.models import ReconciliationRun
    from integrations.roles import FINANCE_REVIEWER
    from tests.factories import make_user
    from tests.queue import run_queued_tasks

    page = browser_page
    make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.click("#home-month-end")
    page.click("#start-month-end")
    first, last = monthend.last_month()
    assert page.locator("#id_month").input_value() == f"{first:%Y-%m}"
    page.click("#start-run")
    page.wait_for_selector("#run-progress")
    assert "Waiting for a worker" in page.locator("#run-progress").inner_text()

    # The worker's turn (the page keeps refreshing itself meanwhile).
    assert run_queued_tasks() == 1
    run = ReconciliationRun.objects.get()
    assert run.state == ReconciliationRun.State.DONE
    assert (run.date_from, run.date_to) == (first, last)
    assert run.created_by.username == "rita"
    page.wait_for_selector("#month-end-headline", timeout=20_000)

    head = run.headline
    assert page.locator("#paytrace-total").inner_text() == (
        f"${Decimal(head['paytrace_total']):,.2f}"
    )
    assert page.locator("#sage-total").inner_text() == (
        f"${Decimal(head['sage_total']):,.2f}"
    )
    explanations = page.locator("#explanations").inner_text()
    assert "Waiting in review" in explanations
    assert "Pending (not posted yet)" in explanations
    # Batches exist, so every tie-out has an answer.
    assert "unknown" not in page.locator(".field-batch_table").inner_text()
    screenshot("month-end-report")

    page.click("#explanations a:has-text('Waiting in review')")
    page.wait_for_url("**/admin/integrations/reconciliationline/?*explains=in_review*")
    page.wait_for_selector("#result_list")
    assert (
        page.locator("#result_list tbody tr").count()
        == (head["explained"]["in_review"]["count"])
    )
    page.go_back()
    page.wait_for_selector("#download-csv")
    with page.expect_download() as info:
        page.click("#download-csv")
    with open(info.value.path(), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(b["count"] for b in run.buckets.values())
