"""An integration admin tries the GL rules and previews a posting, in a real browser."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from integrations.models import PaymentTransaction, Posting
from integrations.sandbox.sagepro import seed
from integrations.sandbox.sagepro.models import CashReceipt
from mappings.models import FieldMapping, GlRule

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "admin-pass-2025"


@pytest.fixture
def setup(live_connections):
    sagepro, paytrace = live_connections
    paytrace.suspense_account = "9999-00"
    paytrace.save()
    GlRule.objects.create(
        connection=paytrace,
        name="Visa and Mastercard",
        priority=10,
        card_brands="VISA,MASTERCARD",
        account="1000-00",
    )
    GlRule.objects.create(
        connection=paytrace,
        name="Large payments",
        priority=20,
        amount_min=Decimal("5000.00"),
        account="2100-00",
    )
    GlRule.objects.create(
        connection=paytrace,
        name="American Express",
        priority=30,
        card_brands="AMEX",
        account="1100-00",
    )
    GlRule.objects.create(
        connection=paytrace,
        name="Web store",
        priority=40,
        channels="API",
        account="4000-00",
    )
    FieldMapping.objects.create(
        connection=paytrace,
        target_field="invno",
        source_path="invoice_id",
        transforms=[
            {"op": "strip_prefixes", "prefixes": ["INV-"]},
            {"op": "strip_leading_zeros"},
        ],
    )
    invno = seed.seed_invoice("ACME", "900.00")
    txn = PaymentTransaction.objects.create(
        connection=paytrace,
        transaction_id="184224410",
        transaction_type="SALE",
        amount=Decimal("412.80"),
        invoice_reference=f"INV-000{invno}",
        customer_reference="ACME",
        card_brand="American Express",
        card_last4="1005",
        channel="API",
        gateway_status="approved",
        mapped_status="Paid",
        status_code="Y",
        status_message="Pending Settlement",
        created_at=datetime.now(UTC),
        source_record={"invoice_id": f"INV-000{invno}", "amount": "412.80"},
    )
    get_user_model().objects.create_superuser(
        "ines", "ines@example.com", PASSWORD, first_name="Ines"
    )
    return {"paytrace": paytrace, "transaction": txn, "invno": invno}


def sign_in(page, live_server):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ines")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_an_admin_tests_the_gl_rules_and_previews_a_posting(
    live_server, browser_page, screenshot, setup
):
    page = browser_page
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/mappings/glrule/")
    page.click("text=Test rules")
    page.wait_for_selector("#gl-rule-test")
    page.select_option("select[name=connection]", str(setup["paytrace"].pk))
    page.fill("input[name=transaction_id]", "184224410")
    page.click("input[value='Run the rules']")
    result = page.locator("#gl-rule-result")
    result.wait_for()
    text = result.inner_text()
    assert "Account 1100-00" in text
    assert "card brand AMEX not in VISA,MASTERCARD" in text
    assert "amount 412.80 below 5000.00" in text
    assert "matched first" in text
    screenshot("gl-rule-tester")

    txn = setup["transaction"]
    page.goto(
        f"{live_server.url}/admin/integrations/paymenttransaction/{txn.pk}/change/"
    )
    page.click("text=Preview the Sage Pro document")
    payload = page.locator("#preview-payload")
    payload.wait_for()
    assert '"gl_account": "1100-00"' in payload.inner_text()
    assert f'"invno": "{setup["invno"]}"' in payload.inner_text()
    content = page.locator("#content").inner_text()
    assert "Valid:" in content
    assert "custno ← invoice.custno" in content
    assert "has no invoice" not in content
    assert "FieldMapping #" in content
    assert "Paid/post_receipt" in content
    screenshot("posting-preview")

    assert not Posting.objects.exists()
    assert not CashReceipt.objects.filter(reference="184224410").exists()
