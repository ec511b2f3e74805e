"""Autopay in a real browser (issue 15, acceptance 5): "Run autopay now" shows what
would be charged, the confirmation runs it, and the run's page is the report (what was
charged, what failed and why, what was skipped and why).

Cards are enrolled through the sandbox's hosted fields; the portal charges them
through the PayTrace sandbox on the live server.
"""

import base64
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client

from integrations import cards
from integrations.models.autopay import AutopayRun, AutopaySettings
from integrations.models.cards import CardOnFile
from integrations.roles import FINANCE_REVIEWER
from integrations.sandbox.sagepro import seed
from tests.factories import make_user
from tests.support.protect import hosted_fields_token

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "autopay-report-2025"


def enrol(sagepro, paytrace, custno, state="ok"):
    hpf_token, enc_key = hosted_fields_token(paytrace, Client())
    card = cards.enrol_card(
        paytrace=paytrace,
        sagepro=sagepro,
        custno=custno,
        hpf_token=hpf_token,
        enc_key=enc_key,
        billing_name=custno.title(),
    )
    CardOnFile.objects.filter(pk=card.pk).update(autopay=True)
    if state != "ok":
        login = (
            f"{settings.SANDBOX_PAYTRACE_USERNAME}:{settings.SANDBOX_PAYTRACE_PASSWORD}"
        )
        response = Client().post(
            "/sandbox/paytrace/_card_state",
            {"customer_id": card.vault_customer_id, "state": state},
            content_type="application/json",
            HTTP_AUTHORIZATION="Basic " + base64.b64encode(login.encode()).decode(),
        )
        assert response.status_code == 200
    return card


def test_run_autopay_now_and_read_its_report(
    live_server, live_connections, browser_page, screenshot
):
    sagepro, paytrace = live_connections
    # The vault calls want an integrator id (the shared fixture predates them).
    paytrace.integrator_id = "TEST0001"
    paytrace.save()
    AutopaySettings.objects.create(
        sagepro=sagepro, enabled=True, finance_emails="finance@example.com"
    )
    month_ago = seed.today() - timedelta(days=30)
    seed.seed_customer("NORTH", "Northwind Traders", pterms="Net 30")
    seed.seed_customer("SOUTH", "Southgate Supply", pterms="Net 30")
    enrol(sagepro, paytrace, "NORTH")
    enrol(sagepro, paytrace, "SOUTH", state="lost_stolen")
    charged = seed.seed_invoice("NORTH", "1250.00", invdte=month_ago)
    soft = seed.seed_invoice("NORTH", "420.13", invdte=month_ago)  # .13: soft decline
    too_big = seed.seed_invoice("NORTH", "7500.00", invdte=month_ago)
    hard = seed.seed_invoice("SOUTH", "310.00", invdte=month_ago)
    seed.seed_invoice("SOUTH", "95.00", invdte=month_ago)

    page = browser_page
    make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/integrations/autopayrun/")
    page.click("#run-autopay-now")
    page.click("#autopay-preview")
    plan = page.locator("#autopay-plan").inner_text()
    assert "Would charge 4 invoices, $2,075.13" in plan
    assert too_big in plan and "above the autopay maximum" in plan
    assert not AutopayRun.objects.exists()  # the preview charged nothing

    page.click("#autopay-confirm-button")
    page.wait_for_selector("#autopay-headline")
    run = AutopayRun.objects.get()
    assert run.charged_amount == Decimal("1250.00")

    assert "$1,250.00" in page.locator("#charged-amount").inner_text()
    failed = page.locator("#autopay-failed").inner_text()
    assert soft in failed
    assert "Do not honor" in failed and "Declined, will be retried" in failed
    assert hard in failed and "Lost or stolen" in failed and "autopay stopped" in failed
    assert charged in page.locator("#autopay-charged").inner_text()
    skipped = page.locator("#autopay-skipped").inner_text()
    assert too_big in skipped and "autopay stopped on this card" in skipped
    screenshot("autopay-report")
