"""A finance reviewer's day, in a real browser: sign in, read the lists, open an action."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.models import Connection, GatewayStatus, PaymentStatus, Posting
from integrations.roles import FINANCE_REVIEWER
from tests.factories import (
    make_connection,
    make_posting,
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
UNMATCHED_REASON = "Invoice 0000010999 was not found in Sage Pro."


@pytest.fixture
def payments():
    now = timezone.now()
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO, name="Sage Pro company 01")
    paytrace = make_connection(name="PayTrace production", sagepro=sagepro)
    posted = make_transaction(
        paytrace,
        transaction_id="184223301",
        amount=Decimal("150.25"),
        invoice_reference="0000010021",
        customer_reference="ACME",
        card_last4="1111",
        created_at=now - timedelta(hours=6),
    )
    make_posting(
        posted,
        sagepro=sagepro,
        state=Posting.State.POSTED,
        document_number="R000001234",
    )
    declined = make_transaction(
        paytrace,
        transaction_id="184223302",
        amount=Decimal("89.00"),
        invoice_reference="0000010022",
        customer_reference="BLUEOX",
        card_last4="0002",
        gateway_status=GatewayStatus.DECLINED,
        mapped_status=PaymentStatus.FAILED,
        created_at=now - timedelta(hours=5),
    )
    unmatched = make_transaction(
        paytrace,
        transaction_id="184223303",
        amount=Decimal("412.80"),
        invoice_reference="0000010999",
        customer_reference="CASCAD",
        card_last4="4242",
        created_at=now - timedelta(hours=3),
    )
    item = make_review_item(
        unmatched, reason=UNMATCHED_REASON, created_at=now - timedelta(hours=3)
    )
    return {
        "posted": posted,
        "declined": declined,
        "unmatched": unmatched,
        "item": item,
    }


def sign_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def column(page, name):
    """The texts of one changelist column (Django marks cells `field-<name>`)."""
    return page.locator(f"#result_list .field-{name}").all_inner_texts()


def test_a_reviewer_reads_transactions_and_the_review_queue(
    live_server, browser_page, screenshot, payments
):
    page = browser_page
    make_user(
        group=FINANCE_REVIEWER, username="rita", first_name="Rita", password=PASSWORD
    )

    sign_in(page, live_server, "rita")
    assert "Payments portal" in page.title()

    page.goto(f"{live_server.url}/admin/integrations/paymenttransaction/")
    headers = page.locator("#result_list thead").inner_text()
    for heading in ("TRANSACTION ID", "AMOUNT", "STATUS", "SAGE PRO RECEIPT"):
        assert heading in headers.upper()
    assert column(page, "transaction_id") == ["184223303", "184223302", "184223301"]
    assert column(page, "amount_display") == ["$412.80", "$89.00", "$150.25"]
    assert column(page, "status") == ["In review", "Failed", "Posted"]
    assert column(page, "document_number") == ["-", "-", "R000001234"]
    assert "•••• 1111" in column(page, "card")
    screenshot("transactions")

    page.goto(f"{live_server.url}/admin/integrations/reviewitem/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    row = rows.first.inner_text()
    assert "No matching open invoice" in row
    assert "184223303" in row
    assert "$412.80" in row
    assert UNMATCHED_REASON in row
    assert "3 h" in row
    screenshot("review-queue")

    page.check("#result_list tbody input.action-select")
    page.select_option("select[name=action]", "apply_to_invoice")
    page.click("button[name=index]")
    page.wait_for_selector("input[name=invno]")
    assert "Apply to an invoice" in page.locator("#content").inner_text()
    assert UNMATCHED_REASON in page.locator(".portal-selected").inner_text()
    page.fill("input[name=invno]", "0000010021")
    screenshot("review-apply")
