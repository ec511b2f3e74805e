"""Recurring billing (issue 15, item 4): schedules made in PayTrace from the portal,
listed with their next run, cancelled, synced; the charges they make arrive through
polling and post to the customer."""

import base64
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from integrations import cards, polling, recurring
from integrations.connectors.base import ConnectorError
from integrations.connectors.paytrace import PayTraceConnector
from integrations.models.autopay import RecurringSchedule
from integrations.models.cards import CardOnFile
from integrations.roles import FINANCE_REVIEWER
from integrations.sandbox.paytrace.models import Transaction as GatewaySale
from integrations.sandbox.sagepro.models import ArMast
from tests.factories import make_user
from tests.support.protect import hosted_fields_token

pytestmark = pytest.mark.django_db

State = RecurringSchedule.State
CUSTNO = "RECUR"


@pytest.fixture
def card(client, sage, sagepro_conn, paytrace_conn, http):
    sage.seed_customer(CUSTNO, "Recurring Co", pterms="Net 30")
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)
    return cards.enrol_card(
        paytrace=paytrace_conn,
        sagepro=sagepro_conn,
        custno=CUSTNO,
        hpf_token=hpf_token,
        enc_key=enc_key,
        billing_name="Recurring Co",
    )


def today():
    return recurring.business_today()


def make(card, **fields):
    values = {
        "card": card,
        "amount": "49.00",
        "frequency": "monthly",
        "start_date": today(),
        "user": None,
        **fields,
    }
    return recurring.create_schedule(**values)


def sandbox(client, path, body):
    login = f"{settings.SANDBOX_PAYTRACE_USERNAME}:{settings.SANDBOX_PAYTRACE_PASSWORD}"
    response = client.post(
        f"/sandbox/paytrace/{path}",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(login.encode()).decode(),
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_it_creates_a_schedule_in_paytrace(card, paytrace_conn):
    schedule = make(card, total_count=12, description="Support plan")

    assert schedule.state == State.ACTIVE, schedule.error
    assert schedule.recurrence_id
    assert schedule.next_run == today()
    assert schedule.custno == CUSTNO
    [remote] = paytrace_conn.paytrace().export_recurrences(card.vault_customer_id)
    assert str(remote["id"]) == schedule.recurrence_id
    assert Decimal(str(remote["amount"])) == Decimal("49.00")
    assert remote["total_count"] == 12


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"amount": "0"}, "amount", "more than zero"),
        ({"amount": "12.345"}, "amount", "whole cents"),
        ({"amount": "NaN"}, "amount", "more than zero"),
        ({"amount": 1.5}, "amount", "dollars and cents"),
        ({"amount": "1e9"}, "amount", "at most"),
        ({"frequency": "daily"}, "frequency", "monthly"),
        ({"start_date": "tomorrow"}, "start_date", "YYYY-MM-DD"),
        ({"total_count": -1}, "total_count", "until cancelled"),
        ({"total_count": "3"}, "total_count", "whole number"),
        ({"description": "x" * 256}, "description", "At most 255"),
        ({"invoice_reference": "4111111111111111"}, "invoice_reference", "card number"),
        (
            {"description": "Support plan, card 4111 1111 1111 1111"},
            "description",
            "card number",
        ),
    ],
)
def test_it_refuses_bad_requests_naming_the_field(card, fields, field, says):
    with pytest.raises(recurring.RecurringError, match=says) as refused:
        make(card, **fields)
    assert refused.value.field == field
    assert not RecurringSchedule.objects.exists()


def test_a_start_date_in_the_past_is_refused(card):
    with pytest.raises(recurring.RecurringError, match="in the past") as refused:
        make(card, start_date=today() - timedelta(days=1))
    assert refused.value.field == "start_date"


def test_a_removed_card_is_refused(card):
    CardOnFile.objects.filter(pk=card.pk).update(state=CardOnFile.State.REMOVED)
    card.refresh_from_db()
    with pytest.raises(recurring.RecurringError, match="removed"):
        make(card)


def test_a_refusal_is_recorded_as_failed(card):
    CardOnFile.objects.filter(pk=card.pk).update(vault_customer_id="NOBODY-1")
    card.refresh_from_db()

    schedule = make(card)

    assert schedule.state == State.FAILED
    assert "PayTrace refused" in schedule.error
    assert not schedule.recurrence_id


def test_a_lost_answer_is_settled_by_the_sync(card, paytrace_conn, monkeypatch):
    real = PayTraceConnector.create_recurrence

    def made_then_timed_out(self, **kwargs):
        real(self, **kwargs)
        raise ConnectorError("read timed out", transient=True, outcome_unknown=True)

    monkeypatch.setattr(PayTraceConnector, "create_recurrence", made_then_timed_out)
    schedule = make(card)
    assert schedule.state == State.UNKNOWN

    recurring.sync_connection(paytrace_conn)

    schedule.refresh_from_db()
    assert schedule.state == State.ACTIVE
    assert schedule.recurrence_id
    assert schedule.error == ""
    assert RecurringSchedule.objects.count() == 1


def test_a_schedule_paytrace_never_made_becomes_failed(
    card, paytrace_conn, monkeypatch
):
    import time_machine

    def timed_out(self, **kwargs):
        raise ConnectorError("connect timeout", transient=True, outcome_unknown=True)

    monkeypatch.setattr(PayTraceConnector, "create_recurrence", timed_out)
    schedule = make(card)
    recurring.sync_connection(paytrace_conn)
    schedule.refresh_from_db()
    assert schedule.state == State.UNKNOWN  # too soon to tell

    with time_machine.travel(schedule.created_at + timedelta(minutes=10)):
        recurring.sync_connection(paytrace_conn)
    schedule.refresh_from_db()
    assert schedule.state == State.FAILED
    assert "never made" in schedule.error


def test_cancel_stops_the_schedule_in_paytrace(card, paytrace_conn):
    schedule = make(card)
    user = make_user(group=FINANCE_REVIEWER)

    recurring.cancel_schedule(schedule, user)

    schedule.refresh_from_db()
    assert schedule.state == State.CANCELLED
    assert schedule.cancelled_by == user
    assert schedule.next_run is None
    [remote] = paytrace_conn.paytrace().export_recurrences(card.vault_customer_id)
    assert remote["status"] == "cancelled"
    with pytest.raises(recurring.RecurringError, match="already cancelled"):
        recurring.cancel_schedule(schedule, user)


def test_charges_arrive_through_polling_and_post_to_the_invoice(
    card, sage, client, paytrace_conn, run_tasks
):
    invno = sage.seed_invoice(CUSTNO, "120.00")
    schedule = make(card, amount="40.00", total_count=3, invoice_reference=invno)
    on_account = make(card, amount="15.00", frequency="weekly")

    made = sandbox(client, "_run_recurrences", {})
    assert made["count"] == 2
    polling.poll(paytrace_conn)
    run_tasks()

    assert ArMast.objects.get(invno=invno.rjust(10)).balance == Decimal("80.00")
    sales = GatewaySale.objects.filter(customer_id=card.vault_customer_id)
    assert sales.count() == 2
    assert recurring.sync_all()
    schedule.refresh_from_db()
    on_account.refresh_from_db()
    assert schedule.charges_made == 1
    assert schedule.next_run > today()
    assert on_account.next_run == today() + timedelta(days=7)
    from integrations.models import PaymentTransaction

    payments = PaymentTransaction.objects.filter(amount__in=["40.00", "15.00"])
    assert payments.count() == 2


def test_the_sync_lists_schedules_made_outside_the_portal(card, paytrace_conn):
    paytrace_conn.paytrace().create_recurrence(
        customer_id=card.vault_customer_id,
        recurrence={
            "amount": "10.00",
            "start_date": today().strftime("%m/%d/%Y"),
            "frequency": "quarterly",
            "total_count": 0,
        },
    )

    recurring.sync_connection(paytrace_conn)

    [schedule] = RecurringSchedule.objects.all()
    assert schedule.state == State.ACTIVE
    assert schedule.custno == CUSTNO
    assert schedule.frequency == "quarterly"


# --- the admin -----------------------------------------------------------------------


@pytest.fixture
def reviewer_client():
    browser = Client()
    browser.force_login(make_user(group=FINANCE_REVIEWER))
    return browser


def form_data(card, **fields):
    return {
        "card": card.pk,
        "amount": "49.00",
        "frequency": "monthly",
        "start_date": today().isoformat(),
        "total_count": "0",
        "description": "",
        "invoice_reference": "",
        **fields,
    }


def test_the_add_form_previews_then_creates_on_confirm(card, reviewer_client):
    url = reverse("admin:integrations_recurringschedule_add")
    assert reviewer_client.get(url).status_code == 200

    preview = reviewer_client.post(url, form_data(card))
    assert preview.status_code == 200
    assert b"Create schedule: $49.00 monthly from" in preview.content
    assert b"Visa" in preview.content or card.last4.encode() in preview.content
    assert not RecurringSchedule.objects.exists()

    confirmed = re.search(rb'name="confirmed" value="([0-9a-f]+)"', preview.content)[1]
    done = reviewer_client.post(
        url, {**form_data(card), "confirmed": confirmed.decode()}
    )
    assert done.status_code == 302
    schedule = RecurringSchedule.objects.get()
    assert schedule.state == State.ACTIVE
    assert schedule.created_by.groups.filter(name=FINANCE_REVIEWER).exists()

    # A stale confirmation (the amount changed) creates nothing, shows it again.
    again = reviewer_client.post(
        url, {**form_data(card, amount="50.00"), "confirmed": confirmed.decode()}
    )
    assert b"changed since the preview" in again.content
    assert RecurringSchedule.objects.count() == 1

    listing = reviewer_client.get(
        reverse("admin:integrations_recurringschedule_changelist")
    )
    assert b"$49.00" in listing.content and b"Sync from PayTrace" in listing.content


def test_the_add_form_names_bad_fields(card, reviewer_client):
    url = reverse("admin:integrations_recurringschedule_add")
    past = (today() - timedelta(days=3)).isoformat()
    response = reviewer_client.post(url, form_data(card, start_date=past, amount="abc"))
    assert response.status_code == 200
    assert b"Enter a number" in response.content
    response = reviewer_client.post(url, form_data(card, start_date=past))
    assert b"in the past" in response.content
    assert not RecurringSchedule.objects.exists()


def test_cancel_asks_first(card, reviewer_client):
    schedule = make(card)
    page = reverse("admin:integrations_recurringschedule_change", args=[schedule.pk])
    assert b"Cancel schedule" in reviewer_client.get(page).content
    url = reverse("admin:integrations_recurringschedule_cancel", args=[schedule.pk])
    ask = reviewer_client.get(url)
    assert b"Yes, cancel the schedule" in ask.content
    schedule.refresh_from_db()
    assert schedule.state == State.ACTIVE
    assert reviewer_client.post(url).status_code == 302
    schedule.refresh_from_db()
    assert schedule.state == State.CANCELLED


def test_sync_button(card, reviewer_client):
    make(card)
    response = reviewer_client.post(
        reverse("admin:integrations_recurringschedule_sync"), follow=True
    )
    assert b"paytrace-sandbox: updated 1" in response.content.lower()


def test_people_without_the_permission_cannot(card):
    browser = Client()
    browser.force_login(make_user())
    schedule = make(card)
    assert (
        browser.get(reverse("admin:integrations_recurringschedule_add")).status_code
        == 403
    )
    url = reverse("admin:integrations_recurringschedule_cancel", args=[schedule.pk])
    assert browser.post(url).status_code == 403
    assert (
        browser.post(reverse("admin:integrations_recurringschedule_sync")).status_code
        == 403
    )
    schedule.refresh_from_db()
    assert schedule.state == State.ACTIVE


@pytest.mark.parametrize(
    "fields",
    [
        {"card": "999999"},
        {"card": "abc"},
        {"amount": "NaN"},
        {"amount": "-5"},
        {"amount": "1" * 40},
        {"frequency": "hourly"},
        {"start_date": "2026-02-30"},
        {"total_count": "1e3"},
        {"invoice_reference": "4111 1111 1111 1111"},
        {"description": "\x00"},
    ],
)
def test_the_add_form_refuses_hostile_input(card, reviewer_client, fields):
    url = reverse("admin:integrations_recurringschedule_add")
    response = reviewer_client.post(
        url, {**form_data(card), **fields, "confirmed": "x"}
    )
    assert response.status_code == 200
    assert b"errorlist" in response.content or b"errornote" in response.content
    assert not RecurringSchedule.objects.exists()


def test_a_card_number_typed_into_the_form_is_refused_and_not_shown_back(
    card, reviewer_client
):
    url = reverse("admin:integrations_recurringschedule_add")
    typed = "Support plan 4111 1111 1111 1111"
    response = reviewer_client.post(url, {**form_data(card), "description": typed})
    assert response.status_code == 200
    page = response.content.decode()
    assert "looks like a card number" in page
    assert "4111 1111 1111 1111" not in page
    assert not RecurringSchedule.objects.exists()


def test_cancel_of_a_missing_schedule_is_404(reviewer_client):
    url = reverse("admin:integrations_recurringschedule_cancel", args=[424242])
    assert reviewer_client.post(url).status_code == 404
