"""An integration admin asks for mapping suggestions in the admin and accepts one."""

import pytest

from integrations.models import Connection
from mappings.models import FieldMapping, SuggestionFeedback
from tests.factories import make_connection, make_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "mapping-admin-pass-2025"


def sign_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def row(page, target_field):
    return page.locator(f"#suggestions tr[data-target={target_field}]")


def test_an_admin_accepts_a_suggested_mapping(live_server, browser_page, screenshot):
    page = browser_page
    make_user(username="ines", is_superuser=True, password=PASSWORD)
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO, name="Sage Pro company 01")
    paytrace = make_connection(name="PayTrace production", sagepro=sagepro)

    sign_in(page, live_server, "ines")
    page.goto(f"{live_server.url}/admin/mappings/fieldmapping/")
    page.click("text=Suggest mappings…")
    page.wait_for_selector("#id_sample")
    # The connection list offers the source, not the Sage Pro side.
    options = " | ".join(page.locator("#id_connection option").all_inner_texts())
    assert "PayTrace production" in options
    assert "Sage Pro company 01" not in options
    assert '"invoice_id": "SO-10045"' in page.input_value("#id_sample")

    page.select_option("#id_connection", str(paytrace.pk))
    page.select_option("#id_document", "cash_receipt")
    page.click("input[name=suggest]")
    page.wait_for_selector("#suggestions")

    invno = row(page, "invno")
    assert invno.locator("input").input_value() == "invoice_id"
    assert float(invno.locator(".confidence-value").inner_text()) >= 0.8
    assert "invoice_id" in invno.locator(".reasons").inner_text()
    assert row(page, "amount").locator("input").input_value() == "amount"
    assert row(page, "date").locator("input").input_value() == "created.at"
    assert "value looks like an amount" in row(page, "amount").inner_text()

    invno.locator("button.accept-button").click()
    page.wait_for_selector(".messagelist")
    assert "Mapped invno ← invoice_id." in page.locator(".messagelist").inner_text()
    assert "✓ mapped" in row(page, "invno").inner_text()

    mapping = FieldMapping.objects.get(
        connection=paytrace, document="cash_receipt", target_field="invno"
    )
    assert mapping.source_path == "invoice_id"
    assert SuggestionFeedback.objects.filter(
        target_field="invno", source_path="invoice_id", accepted=True
    ).exists()

    row(page, "custno").locator("button.reject-button").click()
    page.wait_for_selector(".messagelist")
    assert row(page, "custno").locator("input").input_value() == (
        "customer_reference_id"
    )
    screenshot("mapping-suggestions")
