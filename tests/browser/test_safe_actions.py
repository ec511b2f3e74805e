"""Safe money actions in a real browser (issue 13): the outcome is shown before
anything is posted, another customer's invoice is refused without a tick and a note,
and a resolved item is reopened with a reason (or the reversal it needs is explained).

The payments come in through the webhook and the pipeline; the portal talks to the
Sage Pro sandbox on the live server.
"""

from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client

from integrations import review
from integrations.models import Posting, ReviewItem
from integrations.roles import FINANCE_REVIEWER
from integrations.sandbox.sagepro import seed
from integrations.sandbox.sagepro.models import CashReceipt
from tests.factories import make_user
from tests.queue import run_queued_tasks
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "reviewer-pass-2025"


@pytest.fixture
def pay(live_connections):
    _, paytrace = live_connections
    sender = Client()

    def _pay(invoice_id, amount, **fields):
        record = paytrace_record(
            invoice_id=invoice_id, amount=Decimal(amount), **fields
        )
        body = event_body("transaction.approved", record)
        response = post_event(
            sender, paytrace.slug, body, sign(body, settings.DEMO_WEBHOOK_SECRET)
        )
        assert response.status_code == 202
        run_queued_tasks()
        return str(record["transaction_id"])

    return _pay


@pytest.fixture
def rita():
    return make_user(
        group=FINANCE_REVIEWER, username="rita", first_name="Rita", password=PASSWORD
    )


def sign_in(page, live_server):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def item_page(live_server, item):
    return f"{live_server.url}/admin/integrations/reviewitem/{item.pk}/change/"


def test_an_apply_over_the_balance_shows_the_unapplied_cash_before_posting(
    live_server, browser_page, screenshot, pay, rita
):
    invno = seed.seed_invoice("DELTA", "151.61")
    txid = pay("see remittance", "515.65")
    item = ReviewItem.objects.get(transaction__transaction_id=txid)

    page = browser_page
    sign_in(page, live_server)
    page.goto(item_page(live_server, item))
    page.fill("#id_invoice_q", "151.61")
    page.click(".portal-invoice-search input[type=submit][value=Search]")
    page.wait_for_selector(".portal-search-result")
    assert invno in page.locator(".portal-search-results").inner_text()
    page.locator(".portal-search-result", has_text=invno).locator(
        "input.portal-search-apply"
    ).click()
    page.wait_for_selector(".portal-outcome")
    outcome = page.locator(".portal-outcome").inner_text()
    assert f"Apply $151.61 to invoice {invno}; $364.04 stays unapplied cash" in outcome
    assert "$515.65" in page.locator(".portal-outcome-amount").inner_text()
    lines = page.locator(".portal-outcome-lines tbody").inner_text()
    assert "DELTA" in lines and "$151.61" in lines and "$0.00" in lines
    assert "An overpayment review item for the $364.04" in outcome
    assert not Posting.objects.filter(transaction__transaction_id=txid).exists()
    screenshot("review-confirm-unapplied")

    page.click("input[type=submit][value='Confirm and post the receipt']")
    page.wait_for_selector(".messagelist")
    assert "364.04 stays unapplied cash" in page.locator(".messagelist").inner_text()
    run_queued_tasks()
    receipt = CashReceipt.objects.get(reference=txid, deleted=False)
    assert receipt.unapplied == Decimal("364.04")
    assert ReviewItem.objects.filter(
        transaction__transaction_id=txid,
        kind=ReviewItem.Kind.OVERPAYMENT,
        state=ReviewItem.State.OPEN,
    ).exists()


def test_another_customers_invoice_is_refused_without_the_tick_and_a_note(
    live_server, browser_page, screenshot, pay, rita
):
    theirs = seed.seed_invoice("BLUEOX", "151.61")
    txid = pay("see remittance", "515.65", customer_id="ACME")
    item = ReviewItem.objects.get(transaction__transaction_id=txid)

    page = browser_page
    sign_in(page, live_server)
    page.goto(item_page(live_server, item))
    assert "ACME" in page.locator(".portal-payer-customer").inner_text()
    form = page.locator("form.portal-invoice-apply")
    form.locator("input[name=invno]").fill(theirs)
    form.locator("input[type=submit]").click()
    page.wait_for_selector(".messagelist")
    said = page.locator(".messagelist").inner_text()
    assert "Invoice customer BLUEOX is not the payer's customer ACME" in said
    assert "tick" in said
    form = page.locator("form.portal-invoice-apply")
    assert form.locator("input[name=invno]").input_value() == theirs  # kept
    assert not Posting.objects.filter(transaction__transaction_id=txid).exists()
    screenshot("review-other-customer")

    form.locator("input[name=other_customer]").check()
    form.locator("input[name=other_note]").fill("BLUEOX is ACME's branch")
    form.locator("input[type=submit]").click()
    page.wait_for_selector(".portal-outcome")
    assert "Note: BLUEOX is ACME's branch" in (
        page.locator(".portal-outcome-notes").inner_text()
    )


def test_a_reviewer_reopens_a_dismissed_item_and_reads_why_a_posted_one_cannot(
    live_server, browser_page, screenshot, pay, rita
):
    dismissed = ReviewItem.objects.get(
        transaction__transaction_id=pay("see remittance", "42.00")
    )
    review.dismiss_review_item(dismissed, "looked like a test charge", rita)
    invno = seed.seed_invoice("ACME", "33.00")
    posted = ReviewItem.objects.get(
        transaction__transaction_id=pay("see remittance", "33.00")
    )
    review.apply_review_item(posted, invno, rita)
    run_queued_tasks()
    number = Posting.objects.get(transaction=posted.transaction).document_number

    page = browser_page
    sign_in(page, live_server)
    page.goto(item_page(live_server, dismissed))
    page.click("#content .object-tools a.portal-reopen-link")
    page.wait_for_selector("textarea[name=reason]")
    page.fill("textarea[name=reason]", "The customer confirmed it is a real payment")
    screenshot("review-reopen")
    page.click("input[type=submit][value=Reopen]")
    page.wait_for_selector(".messagelist")
    assert "reopened" in page.locator(".messagelist").inner_text()
    assert page.locator(".portal-state").inner_text() == "Open"
    assert "Reopened: The customer confirmed it is a real payment" in (
        page.locator(".portal-decisions").inner_text()
    )

    page.goto(item_page(live_server, posted))
    page.click("#content .object-tools a.portal-reopen-link")
    page.wait_for_selector(".portal-reversal-needed")
    text = page.locator(".portal-reversal-needed").inner_text()
    assert f"posted receipt {number} for $33.00" in text
    assert f"reverse receipt {number} in Sage Pro" in text
    assert page.locator("textarea[name=reason]").count() == 0
    screenshot("review-reopen-posted")


def test_the_history_button_opens_the_payments_history(
    live_server, browser_page, pay, rita
):
    txid = pay("see remittance", "18.00")
    item = ReviewItem.objects.get(transaction__transaction_id=txid)

    page = browser_page
    sign_in(page, live_server)
    page.goto(item_page(live_server, item))
    page.click("#content .object-tools a.historylink")
    page.wait_for_selector("#history-group")
    assert txid in page.locator("#content").inner_text()


def test_a_bulk_action_shows_each_outcome_and_the_total_before_it_happens(
    live_server, browser_page, screenshot, pay, rita
):
    txids = [pay("see remittance", "888.23"), pay("see remittance", "12.50")]

    page = browser_page
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/admin/integrations/reviewitem/")
    for box in page.locator("#result_list tbody input.action-select").all():
        box.check()
    page.select_option("select[name=action]", "mark_duplicate")
    page.click("button[name=index]")
    page.wait_for_selector("textarea[name=note]")
    assert page.locator("textarea[name=note]").get_attribute("required") is not None
    page.fill("textarea[name=note]", "charged twice, refunded at the gateway")
    page.click("input[type=submit][value='Mark as duplicate']")
    page.wait_for_selector(".portal-outcomes")
    outcomes = page.locator(".portal-outcomes").inner_text()
    for txid in txids:
        assert txid in outcomes
    assert "Mark as a duplicate: charged twice, refunded at the gateway" in outcomes
    assert "not booked in Sage Pro at all" in outcomes
    assert "Total of the payments: $900.73" in outcomes
    assert not ReviewItem.objects.filter(state=ReviewItem.State.RESOLVED).exists()
    screenshot("review-bulk-confirm")

    page.click("input[type=submit][value='Confirm: mark as duplicate']")
    page.wait_for_selector(".messagelist")
    assert (
        "Marked 2 payments as duplicate." in page.locator(".messagelist").inner_text()
    )
    assert ReviewItem.objects.filter(state=ReviewItem.State.RESOLVED).count() == 2
