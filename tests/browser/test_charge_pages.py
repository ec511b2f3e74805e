"""Charging an invoice on a card on file in a real browser (issue 15, acceptance 5):
the invoice's "Charge card on file" confirmation, an amount above the balance that
needs its tick, and the approved result. The portal talks to both sandboxes on the
live server."""

from decimal import Decimal

import pytest

from integrations.models import MirroredInvoice
from integrations.models.charges import Charge
from integrations.roles import FINANCE_REVIEWER
from integrations.sandbox.paytrace.models import Transaction as GatewaySale
from integrations.sandbox.sagepro import seed
from tests.factories import make_user
from tests.integrations.test_charging import make_card

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "charge-card-2026"


def sign_in(page, live_server):
    make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_an_invoice_is_charged_on_the_card_on_file_after_its_confirmation(
    live_server, live_connections, browser_page, screenshot
):
    sagepro, paytrace = live_connections
    paytrace.integrator_id = "TEST0001"
    paytrace.save()
    card = make_card(paytrace, custno="DELTA", vault_id="DELTA-0001")
    invno = seed.seed_invoice("DELTA", "212.40")
    MirroredInvoice.objects.create(
        connection=sagepro,
        invno=invno,
        custno="DELTA",
        invamt=Decimal("212.40"),
        balance=Decimal("212.40"),
    )

    page = browser_page
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/admin/integrations/mirroredinvoice/?card=yes")
    page.get_by_role("link", name="Charge card on file").click()
    page.wait_for_selector("#charge-form")
    assert "$212.40" in page.locator("#charge-balance").inner_text()
    assert (
        "Visa ending 1111, expires 12/30" in page.locator("#charge-cards").inner_text()
    )
    assert page.locator("#id_amount").input_value() == "212.40"

    page.fill("#id_amount", "250.00")
    page.click("#update-preview")
    page.wait_for_selector("#charge-over-balance")
    assert (
        "more than the balance $212.40"
        in page.locator("#charge-over-balance").inner_text()
    )
    page.check("#id_confirm_over_balance")
    screenshot("charge-card-on-file")

    page.fill("#id_amount", "212.40")
    page.click("#update-preview")
    page.wait_for_selector("#charge-summary")
    assert (
        f"Charge $212.40 on Visa ending 1111 for invoice {invno}"
        in page.locator("#charge-summary").inner_text()
    )
    page.dblclick("#confirm-charge")
    page.wait_for_selector("#charge-outcome")
    assert "Approved" in page.locator("#charge-outcome").inner_text()

    assert Charge.objects.get().card == card
    assert GatewaySale.objects.filter(invoice_id=invno).count() == 1
