"""The card enrolment pages (issue 15): the finance user's page in the admin, the
customer's link, the card list and a card's page.

The browser's part (the hosted fields in their iframe) is played by
`tests.support.protect.hosted_fields_token`, which posts the card to the sandbox's
tokenize endpoint exactly as the iframe does; these tests post what the page's script
would then post.
"""

import re
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from integrations import cards
from integrations.models import Connection
from integrations.models.cards import CardOnFile, EnrolmentLink
from integrations.roles import FINANCE_REVIEWER, INTEGRATION_ADMIN
from tests.factories import make_user
from tests.support.pansweep import new_pan, sweep_database
from tests.support.protect import hosted_fields_token

pytestmark = pytest.mark.django_db

ENROL = "/admin/integrations/cardonfile/enrol/"
SANDBOX_SCRIPT = "http://testserver/sandbox/paytrace/protect/js/protect.min.js"


@pytest.fixture
def setup(paytrace_conn, sagepro_conn, sage, http):
    return paytrace_conn


@pytest.fixture
def finance(setup):
    browser = Client()
    browser.force_login(make_user(group=FINANCE_REVIEWER))
    return browser


def enrol_form(connection, client, custno="ACME", number="4111111111111111", **fields):
    hpf_token, enc_key = hosted_fields_token(connection, client, number=number)
    return {
        "paytrace": str(connection.pk),
        "custno": custno,
        "billing_name": "Road Runner",
        "billing_zip": "97201",
        "email": "ap@acme.example",
        "hpf_token": hpf_token,
        "enc_key": enc_key,
        **fields,
    }


def csp(response):
    return dict(
        part.strip().split(" ", 1)
        for part in response["Content-Security-Policy"].split(";")
        if part.strip()
    )


# The finance user's page ----------------------------------------------------------------


def test_the_page_holds_the_hosted_fields_and_the_sandbox_script(finance, setup):
    response = finance.get(ENROL)

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="pt_hpf_form"' in page
    assert (
        f'<script src="{SANDBOX_SCRIPT}" referrerpolicy="no-referrer"></script>' in page
    )
    assert re.search(r'data-client-key="[^"]{8,}"', page)
    assert "<script>" not in page  # no inline script: the CSP allows none
    # The card is never one of the portal's own inputs.
    assert "cc_number" not in page and 'name="number"' not in page


def test_the_page_allows_scripts_and_frames_only_from_itself_and_paytrace(
    finance, setup
):
    response = finance.get(ENROL)

    policy = csp(response)
    assert policy["script-src"] == "'self' http://testserver"
    assert policy["frame-src"] == "'self' http://testserver"
    assert policy["default-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy["script-src"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"].replace(" ", "").split(",")


def test_a_production_connection_allows_only_paytraces_protect_origin(finance, setup):
    setup.is_active = False
    setup.save()
    Connection.objects.create(
        kind=Connection.Kind.PAYTRACE,
        name="PayTrace live",
        slug="paytrace-live",
        base_url="https://api.paytrace.com",
        username="u",
        password="p",
        sagepro=setup.sagepro,
    )

    response = finance.get(ENROL)

    assert response.status_code == 200
    policy = csp(response)
    assert policy["script-src"] == "'self' https://protect.paytrace.com"
    assert policy["frame-src"] == "'self' https://protect.paytrace.com"
    page = response.content.decode()
    assert 'src="https://protect.paytrace.com/js/protect.min.js"' in page
    # No network in tests: no client key, and the page says what to check.
    assert "Check the PayTrace connection" in page
    assert 'id="enrol-submit" value="Put the card on file" disabled' in page


def test_a_finance_user_puts_a_card_on_file(finance, setup, client):
    pan = new_pan()
    form = enrol_form(setup, client, number=pan)

    response = finance.post(ENROL, form, follow=True)

    card = CardOnFile.objects.get()
    assert response.redirect_chain[-1][0] == reverse(
        "admin:integrations_cardonfile_enrolled", args=[card.pk]
    )
    page = response.content.decode()
    assert f"•••• {pan[-4:]}" in page
    assert "Expires 12/30" in page
    assert "Acme Supply Co" in page
    assert reverse("admin:integrations_cardonfile_change", args=[card.pk]) in page
    assert card.created_by.groups.filter(name=FINANCE_REVIEWER).exists()
    assert (card.billing_name, card.email) == ("Road Runner", "ap@acme.example")
    assert sweep_database([pan]) == []


def test_the_customers_name_is_looked_up_for_the_page(finance, setup):
    url = reverse("admin:integrations_cardonfile_customer")

    found = finance.get(url, {"paytrace": setup.pk, "custno": "acme"})
    missing = finance.get(url, {"paytrace": setup.pk, "custno": "NOSUCH"})
    hostile = finance.get(url, {"paytrace": "1; drop", "custno": "ACME"})

    assert found.json() == {"custno": "ACME", "company": "Acme Supply Co"}
    assert missing.status_code == 404
    assert "no customer NOSUCH" in missing.json()["error"]
    assert hostile.status_code == 400


def test_a_card_number_typed_into_the_name_is_refused_and_not_echoed(
    finance, setup, client
):
    pan = new_pan()
    form = enrol_form(setup, client, billing_name=pan)

    response = finance.post(ENROL, form)

    assert response.status_code == 200
    page = response.content.decode()
    assert "looks like a card number" in page
    assert pan not in page
    assert not CardOnFile.objects.exists()
    assert sweep_database([pan]) == []


def test_a_card_number_typed_into_the_customer_field_is_refused(finance, setup, client):
    pan = new_pan()

    response = finance.post(ENROL, enrol_form(setup, client, custno=pan[:16]))

    assert response.status_code == 200
    assert pan[:16] not in response.content.decode()
    assert not CardOnFile.objects.exists()


@pytest.mark.parametrize(
    "tokens",
    [
        {"hpf_token": "", "enc_key": ""},
        {"hpf_token": "garbage", "enc_key": "garbage"},
        {"hpf_token": "x" * 3000, "enc_key": "y"},
        {"hpf_token": "tok\u0000en-123456", "enc_key": "key-123456789"},
    ],
)
def test_garbage_tokens_get_a_form_error_not_a_500(finance, setup, client, tokens):
    form = {**enrol_form(setup, client), **tokens}

    response = finance.post(ENROL, form)

    assert response.status_code == 200
    assert "no usable token" in response.content.decode()
    assert not CardOnFile.objects.exists()


def test_a_token_paytrace_refuses_is_explained(finance, setup, client):
    form = {
        **enrol_form(setup, client),
        "hpf_token": "well-formed-but-unknown-1",
        "enc_key": "well-formed-but-unknown-2",
    }

    response = finance.post(ENROL, form)

    assert response.status_code == 200
    assert "PayTrace refused the card" in response.content.decode()


def test_an_unknown_customer_is_a_form_error(finance, setup, client):
    response = finance.post(ENROL, enrol_form(setup, client, custno="NOSUCH"))

    assert response.status_code == 200
    assert "Sage Pro has no customer NOSUCH" in response.content.decode()


@pytest.mark.parametrize(
    "fields",
    [
        {"billing_zip": "<script>"},
        {"email": "not an address"},
        {"billing_name": "x" * 500},
        {"paytrace": "999999"},
        {"paytrace": "abc"},
    ],
)
def test_hostile_fields_get_form_errors(finance, setup, client, fields):
    response = finance.post(ENROL, enrol_form(setup, client, **fields))

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not CardOnFile.objects.exists()


def test_the_page_needs_the_add_card_permission(setup):
    browser = Client()
    browser.force_login(make_user())

    assert browser.get(ENROL).status_code == 403
    anonymous = Client().get(ENROL)
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]


def test_add_card_on_file_opens_the_enrolment_page(finance, setup):
    response = finance.get(reverse("admin:integrations_cardonfile_add"))

    assert response.status_code == 302
    assert response["Location"] == ENROL


# A card's page ------------------------------------------------------------------------


@pytest.fixture
def card(finance, setup, client):
    finance.post(ENROL, enrol_form(setup, client))
    return CardOnFile.objects.get()


def test_replace_keeps_the_vault_id(finance, setup, client, card):
    url = reverse("admin:integrations_cardonfile_replace", args=[card.pk])
    page = finance.get(url)
    assert page.status_code == 200
    assert "same id" in page.content.decode()
    assert csp(page)["script-src"] == "'self' http://testserver"

    form = enrol_form(setup, client, number="5454545454545454", custno="BLUEOX")
    response = finance.post(url, form)

    assert response.status_code == 302
    card.refresh_from_db()
    assert card.last4 == "5454"
    assert card.custno == "ACME"  # the customer field is fixed when replacing
    assert CardOnFile.objects.count() == 1
    [profile] = setup.paytrace().export_customers(card.vault_customer_id)
    assert profile["credit_card"]["masked_number"].endswith("5454")


def test_the_card_page_offers_replace_link_and_remove(finance, card):
    response = finance.get(
        reverse("admin:integrations_cardonfile_change", args=[card.pk])
    )

    page = response.content.decode()
    assert 'id="replace-card"' in page
    assert 'id="send-link"' in page
    assert 'id="remove-card"' in page
    # Read-only but for autopay.
    assert 'name="autopay"' in page
    assert 'name="last4"' not in page and 'name="custno"' not in page


def test_remove_asks_first_then_deletes_in_paytrace(finance, setup, card):
    url = reverse("admin:integrations_cardonfile_remove", args=[card.pk])

    confirm = finance.get(url)
    assert "Confirm: remove the card" in confirm.content.decode()
    card.refresh_from_db()
    assert card.state == CardOnFile.State.ACTIVE

    response = finance.post(url, {"confirm": str(card.pk)})

    assert response.status_code == 302
    card.refresh_from_db()
    assert card.state == CardOnFile.State.REMOVED
    assert setup.paytrace().export_customers() == []


def test_remove_needs_the_change_permission(setup, card):
    browser = Client()
    viewer = make_user()
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_cardonfile"))
    browser.force_login(viewer)

    url = reverse("admin:integrations_cardonfile_remove", args=[card.pk])
    assert browser.post(url, {"confirm": str(card.pk)}).status_code == 403
    card.refresh_from_db()
    assert card.state == CardOnFile.State.ACTIVE


def test_autopay_is_turned_on_and_a_second_card_is_refused_not_crashed(
    finance, setup, client, card
):
    change = reverse("admin:integrations_cardonfile_change", args=[card.pk])
    assert finance.post(change, {"autopay": "on"}).status_code == 302
    card.refresh_from_db()
    assert card.autopay
    finance.post(ENROL, enrol_form(setup, client, number="5454545454545454"))
    second = CardOnFile.objects.exclude(pk=card.pk).get()

    response = finance.post(
        reverse("admin:integrations_cardonfile_change", args=[second.pk]),
        {"autopay": "on"},
    )

    assert response.status_code == 200
    assert "already pays ACME" in response.content.decode()
    second.refresh_from_db()
    assert not second.autopay


def test_turning_autopay_off_records_who(finance, card):
    card.autopay = True
    card.save()
    change = reverse("admin:integrations_cardonfile_change", args=[card.pk])

    finance.post(change, {})

    card.refresh_from_db()
    assert not card.autopay
    assert card.autopay_stopped_reason.startswith("Turned off by")


def test_the_list_shows_customer_names_and_finds_expiring_cards(finance, setup, card):
    soon = CardOnFile.objects.create(
        paytrace=setup,
        sagepro=setup.sagepro,
        custno="ACME",
        vault_customer_id="ACME-SOON",
        brand="Visa",
        last4="4242",
        exp_month=timezone.localdate().month,
        exp_year=timezone.localdate().year,
    )
    changelist = reverse("admin:integrations_cardonfile_changelist")

    page = finance.get(changelist).content.decode()
    assert "Acme Supply Co" in page
    assert 'href="?expiry=soon"' in page
    expiring = finance.get(changelist, {"expiry": "soon"}).context["cl"].result_list
    assert list(expiring) == [soon]
    found = finance.get(changelist, {"q": card.last4}).context["cl"].result_list
    assert card in list(found)


# The customer's link ------------------------------------------------------------------


@pytest.fixture
def link_url(finance, setup):
    response = finance.post(
        reverse("admin:integrations_cardonfile_send_link"),
        {
            "paytrace": setup.pk,
            "custno": "ACME",
            "email": "ap@acme.example",
            "hours": 72,
        },
    )
    assert response.status_code == 200
    url = response.context["url"]
    assert url.startswith("http://testserver/pay/cards/")
    return url.removeprefix("http://testserver")


def test_the_link_is_shown_once_and_mailed(link_url, mailoutbox):
    [mail] = mailoutbox
    assert link_url in mail.body
    assert mail.to == ["ap@acme.example"]
    link = EnrolmentLink.objects.get()
    assert link_url.strip("/").rsplit("/", 1)[-1] not in link.digest


def test_the_link_page_names_the_company_only(link_url):
    response = Client().get(link_url)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Acme Supply Co" in page
    assert "ACME" not in page  # not the customer number
    assert 'id="pt_hpf_form"' in page
    assert csp(response)["script-src"] == "'self' http://testserver"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cache-Control"] == "no-store"


def test_a_customer_puts_a_card_on_file_once(link_url, setup, client):
    pan = new_pan()
    hpf_token, enc_key = hosted_fields_token(setup, client, number=pan)
    customer = Client()

    response = customer.post(
        link_url,
        {
            "billing_name": "Acme AP",
            "billing_zip": "97201",
            "hpf_token": hpf_token,
            "enc_key": enc_key,
        },
    )

    assert response.status_code == 200
    assert f"ending {pan[-4:]}" in response.content.decode()
    card = CardOnFile.objects.get()
    assert card.custno == "ACME"
    assert card.created_by is None
    assert card.email == "ap@acme.example"  # the link's address
    again = customer.get(link_url)
    assert again.status_code == 410
    assert "used already or has expired" in again.content.decode()
    assert "Acme" not in again.content.decode()
    assert sweep_database([pan]) == []


def test_an_unknown_link_is_404_and_an_expired_one_410(link_url):
    unknown = Client().get("/pay/cards/not-a-real-secret/")
    assert unknown.status_code == 404
    assert "not known" in unknown.content.decode()

    with time_machine.travel(timezone.now() + timedelta(hours=73)):
        expired = Client().get(link_url)
    assert expired.status_code == 410


def test_a_hostile_link_submission_is_refused_without_echo(link_url):
    pan = new_pan()

    response = Client().post(
        link_url, {"billing_name": pan, "hpf_token": pan, "enc_key": "k" * 20}
    )

    assert response.status_code == 200
    assert pan not in response.content.decode()
    assert not CardOnFile.objects.exists()
    assert EnrolmentLink.objects.get().is_usable()
    assert sweep_database([pan]) == []


def test_a_link_needs_the_add_link_permission(setup):
    browser = Client()
    browser.force_login(make_user())

    response = browser.post(
        reverse("admin:integrations_cardonfile_send_link"),
        {"paytrace": setup.pk, "custno": "ACME", "hours": 72},
    )

    assert response.status_code == 403
    assert not EnrolmentLink.objects.exists()


def test_the_link_list_is_read_only(setup):
    cards.create_enrolment_link(
        paytrace=setup, sagepro=setup.sagepro, custno="ACME", user=None
    )
    browser = Client()
    browser.force_login(make_user(group=INTEGRATION_ADMIN))

    page = browser.get(reverse("admin:integrations_enrolmentlink_changelist"))

    assert page.status_code == 200
    assert "ACME" in page.content.decode()
    link = EnrolmentLink.objects.get()
    assert link.digest not in page.content.decode()
    change = browser.get(
        reverse("admin:integrations_enrolmentlink_change", args=[link.pk])
    )
    assert link.digest not in change.content.decode()
    assert 'name="custno"' not in change.content.decode()


def test_a_card_number_is_not_echoed_by_the_link_form_or_the_address(finance, setup):
    pan = new_pan()

    refused = finance.post(
        reverse("admin:integrations_cardonfile_send_link"),
        {"paytrace": setup.pk, "custno": pan, "email": pan, "hours": 72},
    )
    prefilled = finance.get(
        reverse("admin:integrations_cardonfile_send_link"), {"custno": pan}
    )
    enrol_page = finance.get(ENROL, {"custno": pan})

    assert refused.status_code == 200
    assert "looks like a card number" in refused.content.decode()
    for response in (refused, prefilled, enrol_page):
        assert pan not in response.content.decode()
        assert pan[:16] not in response.content.decode()
    assert not EnrolmentLink.objects.exists()
