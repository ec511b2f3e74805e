"""Putting a card on file in a real browser (issue 15): a finance user types the card
into the hosted fields (the PayTrace sandbox's Protect.js stand-in, in its iframe),
and the portal keeps only the vault id, brand, last four and expiry.

The page runs under its own Content-Security-Policy; any violation the browser reports
fails the test.
"""

import pytest

from integrations import cards
from integrations.models.cards import CardOnFile
from integrations.roles import FINANCE_REVIEWER
from tests.factories import make_user
from tests.support.pansweep import sweep_database

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "cards-on-file-2025"
PAN = "4111111111111111"


@pytest.fixture
def paytrace(live_connections):
    """The live server's PayTrace sandbox connection, with the integrator id every v1
    call carries."""
    _, connection = live_connections
    connection.integrator_id = "TEST0001"
    connection.save()
    return connection


def sign_in(page, live_server):
    make_user(group=FINANCE_REVIEWER, username="fiona", password=PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "fiona")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def watch_csp(page):
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    return violations


def test_a_card_is_put_on_file_through_the_hosted_fields(
    live_server, paytrace, browser_page, screenshot
):
    page = browser_page
    violations = watch_csp(page)
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/integrations/cardonfile/")
    page.click("#add-card")
    page.wait_for_selector("#pt_hpf_form iframe")
    page.fill("#id_custno", "ACME")
    page.press("#id_custno", "Tab")
    # (Not wait_for_function: the page's CSP forbids the eval it uses.)
    page.wait_for_selector("#customer-name:has-text('Acme Supply Co')")
    page.fill("#id_billing_name", "Road Runner")
    page.fill("#id_billing_zip", "97201")
    page.fill("#id_email", "ap@acme.example")
    fields = page.frame_locator("#pt_hpf_form iframe")
    fields.locator("#pt_cc_number").fill(PAN)
    fields.locator("#pt_cc_exp_month").fill("12")
    fields.locator("#pt_cc_exp_year").fill("2030")
    fields.locator("#pt_cc_csc").fill("123")
    page.wait_for_selector("#enrol-submit:not([disabled])")
    screenshot("card-enrolment-form")
    page.click("#enrol-submit")

    page.wait_for_selector("#enrolled-card")
    card_text = page.inner_text("#enrolled-card")
    assert "1111" in card_text
    assert "Expires 12/30" in card_text
    assert "Acme Supply Co" in card_text
    screenshot("card-enrolment")
    card = CardOnFile.objects.get()
    assert (card.custno, card.last4, card.exp_month, card.exp_year) == (
        "ACME",
        "1111",
        12,
        2030,
    )
    assert sweep_database([PAN]) == []
    assert violations == []


def test_a_wrong_card_number_is_caught_by_the_hosted_fields(
    live_server, paytrace, browser_page
):
    page = browser_page
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/admin/integrations/cardonfile/enrol/")
    page.wait_for_selector("#pt_hpf_form iframe")
    page.fill("#id_custno", "ACME")
    fields = page.frame_locator("#pt_hpf_form iframe")
    fields.locator("#pt_cc_number").fill("4111111111111112")
    fields.locator("#pt_cc_exp_month").fill("12")
    fields.locator("#pt_cc_exp_year").fill("2030")
    fields.locator("#pt_cc_csc").fill("123")
    page.wait_for_selector("#enrol-submit:not([disabled])")

    page.click("#enrol-submit")

    page.wait_for_selector("#card-errors:not(.enrol-hidden)")
    assert page.inner_text("#card-errors").strip()
    assert not CardOnFile.objects.exists()


def test_the_expiring_cards_are_one_click_from_the_list(
    live_server, paytrace, browser_page, screenshot
):
    from django.utils import timezone

    today = timezone.localdate()
    for custno, last4, month, year in (
        ("ACME", "4242", today.month, today.year),
        ("BLUEOX", "0005", 1, today.year - 1),
        ("CASCAD", "4444", 12, today.year + 3),
    ):
        CardOnFile.objects.create(
            paytrace=paytrace,
            sagepro=paytrace.sagepro,
            custno=custno,
            vault_customer_id=f"{custno}-0000{last4}",
            brand="Visa",
            last4=last4,
            exp_month=month,
            exp_year=year,
        )
        cards.customer_name(paytrace.sagepro, custno)  # mirrored: the list names it
    page = browser_page
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/admin/integrations/cardonfile/")

    page.click("#expiring-cards")

    page.wait_for_url("**expiry=soon**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    text = page.inner_text("#result_list")
    assert "(expired)" in text and "(soon)" in text
    assert "CASCAD" not in text
    assert "Acme Supply Co" in text
    screenshot("card-expiring")


def test_a_customer_puts_a_card_on_file_from_a_link(
    live_server, paytrace, browser_page, screenshot
):
    _, path = cards.create_enrolment_link(
        paytrace=paytrace, sagepro=paytrace.sagepro, custno="ACME", user=None
    )
    page = browser_page
    violations = watch_csp(page)

    page.goto(f"{live_server.url}{path}")
    page.wait_for_selector("#pt_hpf_form iframe")
    assert page.inner_text("#company") == "Acme Supply Co"
    page.fill("#id_billing_name", "Acme Accounts Payable")
    fields = page.frame_locator("#pt_hpf_form iframe")
    fields.locator("#pt_cc_number").fill("5454545454545454")
    fields.locator("#pt_cc_exp_month").fill("6")
    fields.locator("#pt_cc_exp_year").fill("2031")
    fields.locator("#pt_cc_csc").fill("321")
    page.wait_for_selector("#enrol-submit:not([disabled])")
    screenshot("card-enrolment-link")
    page.click("#enrol-submit")

    page.wait_for_selector("#saved-card")
    assert "ending 5454" in page.inner_text("#saved-card")
    card = CardOnFile.objects.get()
    assert (card.custno, card.last4) == ("ACME", "5454")
    page.goto(f"{live_server.url}{path}")
    assert "used already" in page.inner_text("main")
    assert sweep_database(["5454545454545454"]) == []
    assert violations == []
