"""A refund's page in a real browser: its sale (a link), its credit memo (number,
amount, GL accounts, state) and what remains of the sale; the sale's page lists its
refunds."""

from decimal import Decimal

import pytest

from integrations.models import Connection, Posting, ReviewItem
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

PASSWORD = "refund-pages-2025"


def sign_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def refund(paytrace, sale, transaction_id, amount):
    return make_transaction(
        paytrace,
        transaction_id=transaction_id,
        transaction_type="REFUND",
        gateway_status="refunded",
        mapped_status="Refunded",
        amount=Decimal(amount),
        invoice_reference=sale.invoice_reference,
        customer_reference=sale.customer_reference,
        original=sale,
    )


def memo(txn, sagepro, amount, state, number=""):
    return make_posting(
        txn,
        sagepro=sagepro,
        kind=Posting.Kind.CREDIT_MEMO,
        state=state,
        document_number=number,
        payload={
            "custno": "ACME",
            "amount": amount,
            "receipt_no": "000412",
            "invno": "10045",
            "refund_account": "4900-00",
            "cash_account": "1100-00",
            "reference": txn.transaction_id,
        },
    )


def test_a_refund_shows_its_sale_its_credit_memo_and_what_remains(
    live_server, browser_page, screenshot
):
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO, name="Sage Pro company 01")
    paytrace = make_connection(name="PayTrace production", sagepro=sagepro)
    sale = make_transaction(
        paytrace,
        transaction_id="118822719",
        amount=Decimal("150.00"),
        invoice_reference="10045",
    )
    make_posting(
        sale,
        sagepro=sagepro,
        state=Posting.State.POSTED,
        document_number="000412",
        gl_account="1100-00",
    )
    first = refund(paytrace, sale, "118822725", "60.00")
    memo(first, sagepro, "60.00", Posting.State.POSTED, "CM000031")
    second = refund(paytrace, sale, "118822728", "40.00")
    memo(second, sagepro, "40.00", Posting.State.PENDING)
    too_much = refund(paytrace, sale, "118822731", "80.00")
    make_review_item(
        too_much,
        kind=ReviewItem.Kind.REFUND,
        reason="Refund 118822731 of $80.00 is more than what remains of sale "
        "118822719 ($150.00, $100.00 already refunded: $50.00 remains).",
        error_code="OVER_REFUND",
    )
    make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)

    page = browser_page
    sign_in(page, live_server, "rita")
    page.goto(
        f"{live_server.url}/admin/integrations/paymenttransaction/{first.pk}/change/"
    )
    panel = page.locator(".portal-refunds")
    text = panel.inner_text()
    assert "Refund of a sale" in text
    assert "PayTrace 118822719" in text
    memo_text = page.locator("#refund-credit-memo").inner_text()
    assert "CM000031" in memo_text
    assert "$60.00" in memo_text
    assert "Posted" in memo_text
    assert "Dr 4900-00 (refunds) / Cr 1100-00 (cash)" in text
    assert "000412" in text
    totals = page.locator("#refund-totals").inner_text()
    assert "Sale $150.00" in totals
    assert "refunded $100.00" in totals
    assert "$50.00 remains" in totals
    panel.scroll_into_view_if_needed()
    screenshot("refund-detail")

    page.click("#refund-sale-link")
    page.wait_for_url(f"**/paymenttransaction/{sale.pk}/change/")
    listed = page.locator(".portal-refund-list").inner_text()
    for transaction_id in ("118822725", "118822728", "118822731"):
        assert transaction_id in listed
    assert "CM000031" in listed
    assert "not posted" in listed  # the refused one has no credit memo
