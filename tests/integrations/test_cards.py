"""Cards on file (issue 15): enrol through the hosted fields, replace, remove, expire.

The card goes to the PayTrace sandbox's hosted-fields stand-in (as a browser's iframe
would send it); the portal gets only the token pair, and keeps only the vault id,
brand, last four and expiry.
"""

import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, connections
from django.utils import timezone

from integrations import cards
from integrations.models.cards import CardOnFile, EnrolmentLink
from mappings.models import PayerLink
from tests.factories import make_user
from tests.support.pansweep import new_pan, sweep_database
from tests.support.protect import hosted_fields_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def enrol(client, paytrace_conn, sagepro_conn, sage, http):
    def _enrol(custno="ACME", number="4111111111111111", **kwargs):
        hpf_token, enc_key = hosted_fields_token(paytrace_conn, client, number=number)
        kwargs.setdefault("billing_name", "Wile E. Coyote")
        return cards.enrol_card(
            paytrace=paytrace_conn,
            sagepro=sagepro_conn,
            custno=custno,
            hpf_token=hpf_token,
            enc_key=enc_key,
            **kwargs,
        )

    return _enrol


def vault(paytrace_conn, vault_id=""):
    return paytrace_conn.paytrace().export_customers(vault_id)


def test_it_keeps_only_the_vault_id_brand_last_four_and_expiry(enrol, paytrace_conn):
    pan = new_pan()
    user = make_user()

    card = enrol(number=pan, billing_zip="97201", email="ap@acme.example", user=user)

    card.refresh_from_db()
    assert card.custno == "ACME"
    assert card.vault_customer_id.startswith("ACME-")
    assert len(card.vault_customer_id) <= 50
    assert card.last4 == pan[-4:]
    assert card.brand
    assert (card.exp_month, card.exp_year) == (12, 2030)
    assert card.created_by == user
    assert card.state == CardOnFile.State.ACTIVE
    [profile] = vault(paytrace_conn, card.vault_customer_id)
    assert profile["credit_card"]["masked_number"].endswith(pan[-4:])
    # Not a digit run of the number anywhere: portal tables, sandbox tables, tasks.
    assert sweep_database([pan]) == []


def test_it_links_the_vault_id_to_the_customer(enrol, paytrace_conn):
    card = enrol(custno="  acme ")

    link = PayerLink.objects.get(
        connection=paytrace_conn, kind=PayerLink.Kind.CUSTOMER_ID
    )
    assert link.key == card.vault_customer_id.upper()
    assert link.custno == "ACME"
    assert link.is_active


def test_two_cards_of_one_customer_get_different_vault_ids(enrol):
    first = enrol()
    second = enrol(number="5454545454545454")

    assert first.vault_customer_id != second.vault_customer_id
    assert second.brand == "MasterCard"


def test_an_unknown_customer_is_refused_before_paytrace_is_asked(enrol, paytrace_conn):
    with pytest.raises(cards.CardError, match="no customer NOSUCH") as caught:
        enrol(custno="NOSUCH")

    assert caught.value.field == "custno"
    assert not CardOnFile.objects.exists()
    assert vault(paytrace_conn) == []


@pytest.mark.parametrize(
    ("hpf_token", "enc_key"),
    [("", ""), ("x", "y"), ("<script>alert(1)</script>", "k" * 20), ("a" * 5000, "b")],
)
def test_garbage_tokens_get_a_clear_error(
    paytrace_conn, sagepro_conn, sage, http, hpf_token, enc_key
):
    with pytest.raises(cards.CardError, match="no usable token"):
        cards.enrol_card(
            paytrace=paytrace_conn,
            sagepro=sagepro_conn,
            custno="ACME",
            hpf_token=hpf_token,
            enc_key=enc_key,
        )


def test_a_token_paytrace_does_not_know_is_refused_with_the_fix(
    paytrace_conn, sagepro_conn, sage, http
):
    with pytest.raises(cards.CardError, match="enter the card again"):
        cards.enrol_card(
            paytrace=paytrace_conn,
            sagepro=sagepro_conn,
            custno="ACME",
            hpf_token="made-up-token-0123abcdef",
            enc_key="made-up-key-0123abcdef",
        )
    assert not CardOnFile.objects.exists()


def test_a_used_token_cannot_enrol_a_second_card(
    client, paytrace_conn, sagepro_conn, sage, http
):
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)
    args = {
        "paytrace": paytrace_conn,
        "sagepro": sagepro_conn,
        "custno": "ACME",
        "hpf_token": hpf_token,
        "enc_key": enc_key,
    }
    cards.enrol_card(**args)

    with pytest.raises(cards.CardError):
        cards.enrol_card(**args)
    assert CardOnFile.objects.count() == 1


def test_a_card_number_in_the_billing_name_is_refused_and_never_stored(
    client, paytrace_conn, sagepro_conn, sage, http
):
    pan = new_pan()
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)

    with pytest.raises(cards.CardError, match="looks like a card number") as caught:
        cards.enrol_card(
            paytrace=paytrace_conn,
            sagepro=sagepro_conn,
            custno="ACME",
            hpf_token=hpf_token,
            enc_key=enc_key,
            billing_name=f"Pay with {pan[:4]} {pan[4:8]} {pan[8:12]} {pan[12:]}",
        )
    assert caught.value.field == "billing_name"
    assert sweep_database([pan]) == []


def test_replacing_keeps_the_vault_id_and_shows_the_new_card(
    client, enrol, paytrace_conn, sagepro_conn
):
    card = enrol()
    card.autopay = True
    card.save()
    hpf_token, enc_key = hosted_fields_token(
        paytrace_conn, client, number="5454545454545454", month=3, year=2031
    )

    replaced = cards.enrol_card(
        paytrace=paytrace_conn,
        sagepro=sagepro_conn,
        custno="ACME",
        hpf_token=hpf_token,
        enc_key=enc_key,
        replaces=card,
    )

    assert replaced.pk == card.pk
    assert replaced.vault_customer_id == card.vault_customer_id
    replaced.refresh_from_db()
    assert (replaced.last4, replaced.exp_month, replaced.exp_year) == ("5454", 3, 2031)
    assert replaced.autopay
    assert CardOnFile.objects.count() == 1
    [profile] = vault(paytrace_conn, card.vault_customer_id)
    assert profile["credit_card"]["masked_number"].endswith("5454")


def test_a_card_is_replaced_only_for_its_own_customer(
    client, enrol, paytrace_conn, sagepro_conn
):
    card = enrol()
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)

    with pytest.raises(cards.CardError, match="belongs to customer ACME"):
        cards.enrol_card(
            paytrace=paytrace_conn,
            sagepro=sagepro_conn,
            custno="BLUEOX",
            hpf_token=hpf_token,
            enc_key=enc_key,
            replaces=card,
        )


def test_removing_deletes_the_profile_in_paytrace_and_stops_autopay(
    enrol, paytrace_conn
):
    card = enrol()
    card.autopay = True
    card.save()
    user = make_user()

    cards.remove_card(card, user)

    card.refresh_from_db()
    assert card.state == CardOnFile.State.REMOVED
    assert card.removed_by == user
    assert card.removed_at is not None
    assert not card.autopay
    assert card.autopay_stopped_reason
    assert vault(paytrace_conn) == []


def test_removing_a_card_paytrace_forgot_still_removes_it(enrol, paytrace_conn):
    card = enrol()
    paytrace_conn.paytrace().delete_customer(card.vault_customer_id)

    cards.remove_card(card, None)

    card.refresh_from_db()
    assert card.state == CardOnFile.State.REMOVED


def test_a_card_with_an_active_recurring_schedule_is_not_removed(enrol, paytrace_conn):
    from integrations.models.autopay import RecurringSchedule

    card = enrol()
    RecurringSchedule.objects.create(
        card=card,
        paytrace=paytrace_conn,
        custno=card.custno,
        amount=Decimal("10.00"),
        frequency=RecurringSchedule.Frequency.MONTHLY,
        start_date=timezone.localdate(),
        state=RecurringSchedule.State.ACTIVE,
    )

    with pytest.raises(cards.CardError, match="[Cc]ancel schedule"):
        cards.remove_card(card, None)

    card.refresh_from_db()
    assert card.state == CardOnFile.State.ACTIVE
    assert len(vault(paytrace_conn)) == 1


def _card(custno, month, year, **fields):
    from integrations.models import Connection

    paytrace = Connection.objects.get(kind=Connection.Kind.PAYTRACE)
    return CardOnFile.objects.create(
        paytrace=paytrace,
        sagepro=paytrace.sagepro,
        custno=custno,
        vault_customer_id=f"{custno}-{month}-{year}",
        brand="Visa",
        last4="1111",
        exp_month=month,
        exp_year=year,
        **fields,
    )


@time_machine.travel("2026-03-10 12:00:00+00:00", tick=False)
def test_expiring_cards_lists_those_within_the_window_and_the_expired(paytrace_conn):
    expired = _card("OLD", 2, 2026)
    this_month = _card("NOW", 3, 2026)
    april = _card("APR", 4, 2026)  # ends 2026-04-30, inside 60 days (2026-05-09)
    may = _card("MAY", 5, 2026)  # ends 2026-05-31, after the window
    _card("GONE", 1, 2026, state=CardOnFile.State.REMOVED)

    assert list(cards.expiring_cards()) == [expired, this_month, april]
    assert may in cards.expiring_cards(within_days=90)
    assert list(cards.expiring_cards(within_days=0)) == [expired]


def test_expiring_cards_at_a_month_end_take_that_month(paytrace_conn):
    card = _card("MAY", 5, 2026)

    assert list(cards.expiring_cards(within_days=1, today=date(2026, 5, 30))) == [card]
    assert list(cards.expiring_cards(within_days=0, today=date(2026, 5, 30))) == []


# Enrolment links ----------------------------------------------------------------------


def test_a_link_keeps_only_the_digest_of_its_secret(
    paytrace_conn, sagepro_conn, sage, http
):
    user = make_user()

    link, path = cards.create_enrolment_link(
        paytrace=paytrace_conn, sagepro=sagepro_conn, custno="acme", user=user
    )

    secret = path.rstrip("/").rsplit("/", 1)[-1]
    assert path == f"/pay/cards/{secret}/"
    assert len(secret) >= 40
    link.refresh_from_db()
    assert link.digest == cards.link_digest(secret) != secret
    assert link.custno == "ACME"
    assert link.created_by == user
    assert timedelta(hours=71) < link.expires_at - timezone.now() <= timedelta(hours=72)
    assert cards.find_link(secret) == link
    assert cards.find_link(secret + "x") is None
    assert not EnrolmentLink.objects.filter(digest__contains=secret).exists()


def test_a_link_for_an_unknown_customer_is_refused(
    paytrace_conn, sagepro_conn, sage, http
):
    with pytest.raises(cards.CardError, match="no customer"):
        cards.create_enrolment_link(
            paytrace=paytrace_conn, sagepro=sagepro_conn, custno="NOSUCH", user=None
        )


def test_a_link_enrols_once(client, paytrace_conn, sagepro_conn, sage, http):
    link, _ = cards.create_enrolment_link(
        paytrace=paytrace_conn, sagepro=sagepro_conn, custno="ACME", user=None
    )
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)

    card = cards.enrol_by_link(link, hpf_token=hpf_token, enc_key=enc_key)

    link.refresh_from_db()
    assert link.used_at is not None
    assert link.result == card
    assert not link.is_usable()
    again = hosted_fields_token(paytrace_conn, client)
    with pytest.raises(cards.CardError, match="used already"):
        cards.enrol_by_link(link, hpf_token=again[0], enc_key=again[1])
    assert CardOnFile.objects.count() == 1


def test_a_refused_card_leaves_the_link_usable(paytrace_conn, sagepro_conn, sage, http):
    link, _ = cards.create_enrolment_link(
        paytrace=paytrace_conn, sagepro=sagepro_conn, custno="ACME", user=None
    )

    with pytest.raises(cards.CardError):
        cards.enrol_by_link(link, hpf_token="not-a-real-token-1", enc_key="nope-nope-1")

    link.refresh_from_db()
    assert link.is_usable()


def test_an_expired_link_does_not_enrol(
    client, paytrace_conn, sagepro_conn, sage, http
):
    link, _ = cards.create_enrolment_link(
        paytrace=paytrace_conn, sagepro=sagepro_conn, custno="ACME", user=None, hours=1
    )
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)

    later = timezone.now() + timedelta(hours=2)
    with (
        time_machine.travel(later),
        pytest.raises(cards.CardError, match="expired"),
    ):
        cards.enrol_by_link(link, hpf_token=hpf_token, enc_key=enc_key)
    assert not CardOnFile.objects.exists()


def test_a_replacing_link_replaces_its_card(enrol, client, paytrace_conn, sagepro_conn):
    card = enrol()
    link, _ = cards.create_enrolment_link(
        paytrace=paytrace_conn,
        sagepro=sagepro_conn,
        custno="ACME",
        card=card,
        user=None,
    )
    hpf_token, enc_key = hosted_fields_token(
        paytrace_conn, client, number="5454545454545454"
    )

    replaced = cards.enrol_by_link(link, hpf_token=hpf_token, enc_key=enc_key)

    assert replaced.pk == card.pk
    assert replaced.last4 == "5454"


# The script and its origin ------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "script"),
    [
        (
            "http://testserver/sandbox/paytrace",
            "http://testserver/sandbox/paytrace/protect/js/protect.min.js",
        ),
        (
            "https://api.sandbox.paytrace.com",
            "https://protect.sandbox.paytrace.com/js/protect.min.js",
        ),
        ("https://api.paytrace.com", "https://protect.paytrace.com/js/protect.min.js"),
    ],
)
def test_the_page_loads_the_script_of_the_connections_environment(base_url, script):
    from integrations.models import Connection

    connection = Connection(kind=Connection.Kind.PAYTRACE, base_url=base_url)

    assert cards.protect_script_url(connection) == script


# Under real threads (PostgreSQL) --------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
)
def test_one_link_submitted_twice_at_once_puts_one_card_on_file(
    client, paytrace_conn, sagepro_conn, sage, http
):
    link, _ = cards.create_enrolment_link(
        paytrace=paytrace_conn, sagepro=sagepro_conn, custno="ACME", user=None
    )
    tokens = [hosted_fields_token(paytrace_conn, client) for _ in range(4)]
    barrier = threading.Barrier(len(tokens))
    outcomes = []

    def submit(pair):
        try:
            barrier.wait()
            row = EnrolmentLink.objects.get(pk=link.pk)
            outcomes.append(
                cards.enrol_by_link(row, hpf_token=pair[0], enc_key=pair[1])
            )
        except cards.CardError as exc:
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit, args=(pair,)) for pair in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    made = [o for o in outcomes if isinstance(o, CardOnFile)]
    assert len(made) == 1
    assert all("used already" in str(o) for o in outcomes if o not in made)
    assert CardOnFile.objects.count() == 1
    assert len(paytrace_conn.paytrace().export_customers()) == 1
    assert EnrolmentLink.objects.get().result == made[0]
