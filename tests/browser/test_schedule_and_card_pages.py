"""The rest of issue 15's pages in a real browser: a recurring schedule is previewed,
created in the PayTrace sandbox, listed with its next run and cancelled; a card on
file gets a customer enrolment link, cannot be removed while a schedule charges it,
and is removed after its confirmation (and deleted in PayTrace's vault)."""

from decimal import Decimal

import pytest
from django.test import Client
from playwright.sync_api import expect

from integrations import cards
from integrations.models.autopay import RecurringSchedule
from integrations.models.cards import CardOnFile, EnrolmentLink
from integrations.roles import FINANCE_REVIEWER
from integrations.sandbox.paytrace.models import Recurrence, VaultCustomer
from tests.factories import make_user
from tests.support.protect import hosted_fields_token

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "schedule-pages-2026"


def sign_in(page, live_server):
    make_user(group=FINANCE_REVIEWER, username="sam", password=PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "sam")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_a_schedule_is_created_listed_and_cancelled_and_its_card_removed(
    live_server, live_connections, browser_page, screenshot
):
    sagepro, paytrace = live_connections
    hpf_token, enc_key = hosted_fields_token(paytrace, Client())
    card = cards.enrol_card(
        paytrace=paytrace,
        sagepro=sagepro,
        custno="ACME",
        hpf_token=hpf_token,
        enc_key=enc_key,
        billing_name="Acme Supply",
    )
    page = browser_page
    sign_in(page, live_server)

    # Add: the form, its preview, the confirmation.
    page.goto(f"{live_server.url}/admin/integrations/recurringschedule/add/")
    page.select_option("#id_card", str(card.pk))
    page.fill("#id_amount", "49.00")
    page.select_option("#id_frequency", "monthly")
    page.fill("#id_total_count", "12")
    page.fill("#id_description", "Support plan")
    page.click("#preview-schedule")
    summary = page.locator("#schedule-summary").inner_text()
    assert "$49.00" in summary and "monthly" in summary.lower() and "1111" in summary
    assert not RecurringSchedule.objects.exists()  # the preview made nothing
    screenshot("recurring-schedule-preview")
    page.click("#confirm-schedule")
    expect(page.locator(".messagelist")).to_contain_text("PayTrace made the schedule")
    schedule = RecurringSchedule.objects.get()
    assert schedule.state == RecurringSchedule.State.ACTIVE
    assert schedule.amount == Decimal("49.00") and schedule.next_run is not None
    assert Recurrence.objects.get().status == "active"

    # The list shows it with its next run.
    page.goto(f"{live_server.url}/admin/integrations/recurringschedule/")
    row = page.locator("#result_list tbody tr").first
    assert "ACME" in row.inner_text()
    assert f"{schedule.next_run:%Y}" in row.inner_text()

    # The card cannot be removed while the schedule charges it.
    page.goto(f"{live_server.url}/admin/integrations/cardonfile/{card.pk}/remove/")
    expect(page.locator(".errornote")).to_contain_text("Cancel")
    assert page.locator("#confirm").count() == 0

    # Cancel the schedule, after its confirmation.
    page.goto(
        f"{live_server.url}/admin/integrations/recurringschedule/{schedule.pk}/change/"
    )
    page.click("#cancel-schedule")
    page.click("#confirm-cancel")
    schedule.refresh_from_db()
    assert schedule.state == RecurringSchedule.State.CANCELLED
    assert Recurrence.objects.get().status == "cancelled"

    # A customer enrolment link for the card: shown once.
    page.goto(f"{live_server.url}/admin/integrations/cardonfile/{card.pk}/change/")
    page.click("#send-link")
    page.click("#make-link")
    url = page.locator("#enrolment-url").input_value()
    assert "/pay/cards/" in url
    link = EnrolmentLink.objects.get()
    assert link.card == card and link.is_usable()
    assert url.rsplit("/pay/cards/", 1)[1].strip("/") not in link.digest

    # Now the card can be removed; PayTrace's profile goes too.
    page.goto(f"{live_server.url}/admin/integrations/cardonfile/{card.pk}/change/")
    page.click("#remove-card")
    page.click("#confirm")
    card.refresh_from_db()
    assert card.state == CardOnFile.State.REMOVED and not card.autopay
    assert not VaultCustomer.objects.filter(customer_id=card.vault_customer_id).exists()
