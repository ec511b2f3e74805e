"""Unapplied cash in a real browser (issue 14): an overpayment's waiting cash applied to
a second invoice of the customer, its outcome shown before anything is posted.

The payment comes in through the webhook and the pipeline; the portal talks to the
Sage Pro sandbox on the live server.
"""

from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client

from integrations.models import Posting, ReviewItem
from integrations.roles import FINANCE_REVIEWER
from integrations.sandbox.sagepro import seed
from integrations.sandbox.sagepro.models import ArMast, CashReceipt
from tests.factories import make_user
from tests.queue import run_queued_tasks
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "unapplied-cash-2025"


@pytest.fixture
def pay(live_connections):
    _, paytrace = live_connections

    def _pay(invoice_id, amount):
        record = paytrace_record(invoice_id=invoice_id, amount=Decimal(amount))
        body = event_body("transaction.approved", record)
        response = post_event(
            Client(), paytrace.slug, body, sign(body, settings.DEMO_WEBHOOK_SECRET)
        )
        assert response.status_code == 202
        run_queued_tasks()
        return str(record["transaction_id"])

    return _pay


def sign_in(page, live_server):
    make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_an_overpayment_is_applied_to_a_second_invoice_after_its_preview(
    live_server, browser_page, screenshot, pay
):
    first = seed.seed_invoice("DELTA", "400.00")
    second = seed.seed_invoice("DELTA", "212.40")
    txid = pay(first, "515.65")
    item = ReviewItem.objects.get(
        transaction__transaction_id=txid, kind=ReviewItem.Kind.OVERPAYMENT
    )

    page = browser_page
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/admin/integrations/reviewitem/{item.pk}/change/")
    assert "$115.65" in page.locator(".portal-unapplied-waiting").inner_text()
    page.locator(".portal-unapplied-invoice", has_text=second).locator(
        "input.portal-apply-unapplied"
    ).click()
    page.wait_for_selector(".portal-outcome")
    outcome = page.locator(".portal-outcome").inner_text()
    assert (
        "Apply $115.65 of the unapplied cash of receipt" in outcome
        and f"to invoice {second}; nothing waits after it" in outcome
    )
    lines = page.locator(".portal-outcome-lines tbody").inner_text()
    assert "$212.40" in lines and "$115.65" in lines and "$96.75" in lines
    assert "application of the receipt's unapplied cash" in outcome
    assert not Posting.objects.filter(kind=Posting.Kind.APPLICATION).exists()
    screenshot("apply-unapplied-cash")

    page.click("input[type=submit][value='Confirm and apply the unapplied cash']")
    page.wait_for_selector(".messagelist")
    assert "queued for Sage Pro" in page.locator(".messagelist").inner_text()
    run_queued_tasks()
    assert ArMast.objects.get(invno=second.rjust(10)).balance == Decimal("96.75")
    assert CashReceipt.objects.get(reference=txid, deleted=False).unapplied == 0
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
