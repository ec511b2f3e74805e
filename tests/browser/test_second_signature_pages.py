"""A finance manager's second signature, in a real browser (issue 16): a reviewer asks
to correct a stopped receipt and cannot sign it herself; a finance manager finds it
waiting from the review queue, reads what will be sent, and signs it; the receipt
reaches Sage Pro with the correction."""

from decimal import Decimal

import pytest

from integrations.roles import FINANCE_MANAGER, FINANCE_REVIEWER
from tests.factories import make_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "second-signature-2026"


def sign_in(page, live_server, username):
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def stopped_payment(paytrace):
    """A $25.00 payment whose receipt stopped on an inactive GL account; its item."""
    from django.conf import settings
    from django.test import Client

    from integrations.models import ReviewItem
    from integrations.sandbox.sagepro import seed
    from mappings.models import GlRule
    from tests.queue import run_queued_tasks
    from tests.webhooks import event_body, paytrace_record, post_event, sign

    GlRule.objects.create(
        connection=paytrace, name="Old bank", priority=1, account="6900-00"
    )
    record = paytrace_record(
        amount=Decimal("25.00"), invoice_id=seed.seed_invoice("ACME", "500.00")
    )
    body = event_body("transaction.approved", record)
    response = post_event(
        Client(), paytrace.slug, body, sign(body, settings.DEMO_WEBHOOK_SECRET)
    )
    assert response.status_code == 202
    run_queued_tasks()
    return ReviewItem.objects.get(
        transaction__transaction_id=str(record["transaction_id"]),
        kind=ReviewItem.Kind.VALIDATION,
    )


def test_a_manager_signs_a_reviewers_correction_the_reviewer_cannot_sign(
    live_server, browser_page, screenshot, live_connections
):
    from integrations.sandbox.sagepro.models import CashReceipt
    from tests.queue import run_queued_tasks

    item = stopped_payment(live_connections[1])
    make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)
    make_user(group=FINANCE_MANAGER, username="max", password=PASSWORD)
    item_url = f"{live_server.url}/admin/integrations/reviewitem/{item.pk}/change/"
    page = browser_page

    # The reviewer asks for the correction.
    sign_in(page, live_server, "rita")
    page.goto(item_url)
    page.click("input[type=submit][value='Correct values and retry…']")
    page.fill("#id_gl_account", "1100-00")
    page.click("input[type=submit][value='Request the correction']")
    page.wait_for_selector(".portal-outcome")
    assert "A finance manager other than you signs the correction" in (
        page.locator(".portal-outcome").inner_text()
    )
    page.click("input[type=submit][value='Confirm: request the correction']")
    said = page.locator(".messagelist").inner_text()
    assert "awaiting a finance manager's second signature" in said
    assert "Nothing was sent to Sage Pro" in said

    # She cannot sign her own.
    page.goto(item_url)
    waiting = page.locator(".portal-override-waiting")
    assert "Awaiting a finance manager's second signature" in waiting.inner_text()
    assert "You requested this correction" in waiting.inner_text()
    assert waiting.locator("input[value='Sign and send']").count() == 0
    run_queued_tasks()
    assert not CashReceipt.objects.filter(reference=item.transaction.transaction_id)

    # The manager finds it from the review queue and signs it.
    sign_in(page, live_server, "max")
    page.goto(f"{live_server.url}/admin/integrations/reviewitem/")
    page.click("a.portal-overrides-link")
    listed = page.locator("#result_list").inner_text()
    assert "gl_account → 1100-00" in listed
    assert "rita" in listed
    page.click(f"text=Review item {item.pk} (sign here)")
    waiting = page.locator(".portal-override-waiting")
    shown = waiting.inner_text()
    assert "rita asked" in shown
    assert "gl_account → 1100-00" in shown
    assert "The amount stays $25.00" in shown
    screenshot("override-awaiting-signature")
    waiting.locator("input[value='Sign and send']").click()
    said = page.locator(".messagelist").inner_text()
    assert "signed the correction of gl_account → 1100-00 requested by rita" in said
    decisions = page.locator(".portal-decisions").inner_text()
    assert "requested by rita, signed by max" in decisions

    run_queued_tasks()
    receipt = CashReceipt.objects.get(reference=item.transaction.transaction_id)
    assert (receipt.glacnt.strip(), receipt.amount) == ("1100-00", Decimal("25.00"))
