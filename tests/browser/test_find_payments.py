"""A finance reviewer finds a payment by its amount and by its card's last four, in a
browser: the search box of the review queue and of the payment list."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.models import ReviewItem
from integrations.roles import FINANCE_REVIEWER
from tests.factories import (
    make_connection,
    make_review_item,
    make_transaction,
    make_user,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "reviewer-pass-2025"
QUEUE = "/admin/integrations/reviewitem/"
PAYMENTS = "/admin/integrations/paymenttransaction/"


@pytest.fixture
def queue():
    """A queue of 60 open items (two pages), one of them the payment being looked
    for: $67.22 on a card ending 4242, from Inland Supply Co."""
    connection = make_connection()
    now = timezone.now()
    for n in range(59):
        txn = make_transaction(
            connection,
            amount=Decimal(100 + n) + Decimal("0.45"),
            card_last4=f"{1000 + n}",
            customer_reference=f"C{n:03d}",
            created_at=now - timedelta(hours=n + 2),
            source_record={"billing_address": {"name": f"Payer {n}"}},
        )
        make_review_item(txn, created_at=now - timedelta(hours=n + 1))
    wanted = make_transaction(
        connection,
        transaction_id="500067220",
        amount=Decimal("67.22"),
        card_last4="4242",
        customer_reference="INLAND",
        invoice_reference="PO 7781",
        created_at=now - timedelta(minutes=30),
        source_record={
            "billing_address": {"name": "Inland Supply Co"},
            "receipt_emailed_to": "ap@inland.example",
        },
    )
    make_review_item(
        wanted,
        kind=ReviewItem.Kind.VALIDATION,
        reason="Sage Pro refused the receipt: Sage Pro refused POST /cash-receipts: "
        "no customer 'INLAND' [CUSTOMER_NOT_FOUND] (HTTP 422) (field custno: INLAND)",
        error_code="CUSTOMER_NOT_FOUND",
        created_at=now - timedelta(minutes=20),
    )
    make_user(
        group=FINANCE_REVIEWER, username="rita", first_name="Rita", password=PASSWORD
    )
    return wanted


def sign_in(page, live_server, next_url):
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}{next_url}")


def search(page, term):
    page.fill("#searchbar", term)
    page.press("#searchbar", "Enter")
    page.wait_for_load_state("load")


def test_a_reviewer_finds_a_payment_in_the_queue_by_its_amount(
    live_server, browser_page, screenshot, queue
):
    page = browser_page
    sign_in(page, live_server, QUEUE)
    # Fifty a page, with the totals of everything the filters select above the list.
    assert page.locator("#result_list tbody tr").count() == 50
    assert "60 items" in page.locator("#list-totals").inner_text()

    search(page, "$67.22")

    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    row = rows.first.inner_text()
    assert "500067220" in row
    assert "$67.22" in row
    assert "INLAND" in row
    assert "Inland Supply Co" in row
    assert "Sent and refused: Sage Pro has no customer INLAND." in row
    totals = page.locator("#list-totals").inner_text()
    assert "1 item" in totals and "$67.22" in totals
    # The amount is right-aligned in its cell.
    align = page.locator("td.field-amount .money").first.evaluate(
        "el => getComputedStyle(el).textAlign"
    )
    assert align == "right"
    screenshot("search-amount")

    # The plain reason leads the item's page; the recorded text is one click away.
    page.click("#result_list tbody th a")
    assert page.locator("#reason-plain").inner_text() == (
        "Sent and refused: Sage Pro has no customer INLAND."
    )
    technical = page.locator("#reason-technical pre")
    assert not technical.is_visible()
    page.click("#reason-technical summary")
    assert "[CUSTOMER_NOT_FOUND] (HTTP 422)" in technical.inner_text()


def test_a_reviewer_finds_a_payment_by_its_cards_last_four(
    live_server, browser_page, screenshot, queue
):
    page = browser_page
    sign_in(page, live_server, PAYMENTS)

    search(page, "4242")

    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    row = rows.first.inner_text()
    assert "500067220" in row
    assert "•••• 4242" in row
    assert "In review" in row  # an open item holds it, not "Paid"
    assert "$67.22" in row
    screenshot("search-last4")

    # The same payment in the queue, by last four and its payer's e-mail.
    page.goto(f"{live_server.url}{QUEUE}?q=4242")
    assert "500067220" in page.locator("#result_list").inner_text()
    page.goto(f"{live_server.url}{QUEUE}?q=ap@inland.example")
    assert page.locator("#result_list tbody tr").count() == 1
