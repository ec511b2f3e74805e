"""Autopay (issue 15, item 3; acceptance 2): which invoices a run charges, retries of
soft declines on the schedule, a hard decline stopping autopay, the report and its
e-mail, once per business day."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail

from integrations import autopay
from integrations.models import MirroredInvoice, ReviewItem
from integrations.models.autopay import AutopayAttempt, AutopayRun, AutopaySettings
from integrations.models.cards import CardOnFile
from integrations.models.charges import Charge

pytestmark = pytest.mark.django_db

Outcome = AutopayAttempt.Outcome
# 10:00 in Los Angeles (the business time zone) on 2026-12-15.
NOW = datetime(2026, 12, 15, 18, 0, tzinfo=UTC)
TODAY = date(2026, 12, 15)
CUSTNO = "AUTOP"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def shop(clock, sage, sagepro_conn, paytrace_conn, http):
    """A Net 30 customer and autopay switched on (charge on the due date, 7 days of
    catch-up, at most 5,000.00, retries after 1, 3 and 7 days)."""
    sage.seed_customer(
        CUSTNO, "Autopay Co", pterms="Net 30", email="ap@autopay.example"
    )
    AutopaySettings.objects.create(
        sagepro=sagepro_conn,
        enabled=True,
        finance_emails="finance@example.com\ncontroller@example.com",
    )
    return sage


def fake_card(paytrace_conn, sagepro_conn, custno=CUSTNO, **fields):
    """A card on file whose vault profile does not exist (planning only)."""
    fields = {
        "vault_customer_id": f"V-{custno}-{CardOnFile.objects.count()}",
        "brand": "Visa",
        "last4": "1111",
        "exp_month": 12,
        "exp_year": 2030,
        "autopay": True,
        **fields,
    }
    return CardOnFile.objects.create(
        paytrace=paytrace_conn, sagepro=sagepro_conn, custno=custno, **fields
    )


def invoice(shop, amount, days_ago, **fields):
    """An invoice dated `days_ago` days before today (Net 30: due 30 days later)."""
    return shop.seed_invoice(
        CUSTNO, amount, invdte=TODAY - timedelta(days=days_ago), **fields
    )


def planned(sagepro_conn, **kwargs):
    plan = autopay.plan_run(sagepro_conn, **kwargs)
    return {item.invno: item for item in plan.items}, plan


def past_charge(
    card, invno, attempt, state, *, days_ago=1, category="", amount="100.00"
):
    """An autopay charge made `days_ago` days ago (as an earlier run left it)."""
    return Charge.objects.create(
        reference=f"PTL-TEST{Charge.objects.count():08d}",
        key_scope="autopay",
        idempotency_key=f"autopay:{card.sagepro_id}:{invno}:{attempt}",
        request_fingerprint="x" * 64,
        source=Charge.Source.AUTOPAY,
        requested_by_name="autopay",
        card=card,
        paytrace=card.paytrace,
        sagepro=card.sagepro,
        custno=card.custno,
        invno=invno,
        amount=Decimal(amount),
        state=state,
        decline_category=category,
        approval_message="  DECLINE - Do not honor" if state == "declined" else "",
        created_at=NOW - timedelta(days=days_ago),
    )


# --- which invoices ----------------------------------------------------------------


def test_it_plans_invoices_whose_charge_day_is_today_or_within_catch_up(
    shop, sagepro_conn, paytrace_conn
):
    fake_card(paytrace_conn, sagepro_conn)
    due_today = invoice(shop, "100.00", 30)
    due_3_days_ago = invoice(shop, "110.00", 33)
    due_tomorrow = invoice(shop, "120.00", 29)
    due_8_days_ago = invoice(shop, "130.00", 38)

    items, plan = planned(sagepro_conn)

    assert items[due_today].to_charge and items[due_today].attempt == 1
    assert items[due_today].due_date == TODAY
    assert items[due_today].amount == Decimal("100.00")
    assert items[due_3_days_ago].to_charge
    assert due_tomorrow not in items
    assert due_8_days_ago not in items  # left for a person
    assert plan.total == Decimal("210.00")


def test_days_from_due_moves_the_charge_day(shop, sagepro_conn, paytrace_conn):
    AutopaySettings.objects.update(days_from_due=-3, catch_up_days=0)
    fake_card(paytrace_conn, sagepro_conn)
    due_in_3_days = invoice(shop, "100.00", 27)
    due_today = invoice(shop, "100.00", 30)  # its charge day was 3 days ago

    items, _ = planned(sagepro_conn)

    assert items[due_in_3_days].to_charge
    assert due_today not in items


def test_the_customers_terms_decide_the_due_date(shop, sagepro_conn, paytrace_conn):
    shop.seed_customer("COD1", "Cash Co", pterms="COD")
    shop.seed_customer("ODD1", "Odd Co", pterms="See contract")
    fake_card(paytrace_conn, sagepro_conn, custno="COD1")
    fake_card(paytrace_conn, sagepro_conn, custno="ODD1")
    cod = shop.seed_invoice("COD1", "50.00", invdte=TODAY)
    odd = shop.seed_invoice("ODD1", "60.00", invdte=TODAY - timedelta(days=30))
    AutopaySettings.objects.update(default_net_days=30)

    items, _ = planned(sagepro_conn)

    assert items[cod].to_charge and items[cod].due_date == TODAY
    assert items[odd].to_charge and "not understood" in items[odd].terms_rule


def test_it_skips_with_reasons(shop, sagepro_conn, paytrace_conn):
    card = fake_card(paytrace_conn, sagepro_conn)
    too_big = invoice(shop, "5000.01", 30)
    memo = invoice(shop, "-40.00", 30, artype="C")
    by_hand = invoice(shop, "70.00", 30)
    under_way = invoice(shop, "80.00", 30)
    paid = invoice(shop, "90.00", 30, paidamt="90.00")
    # The mirror still thinks it is open (it was paid since the last sync).
    MirroredInvoice.objects.create(
        connection=sagepro_conn,
        invno=paid,
        custno=CUSTNO,
        invamt=Decimal("90.00"),
        balance=Decimal("90.00"),
        invdte=TODAY - timedelta(days=30),
    )
    admin_charge = past_charge(card, by_hand, 1, Charge.State.APPROVED)
    Charge.objects.filter(pk=admin_charge.pk).update(
        key_scope="user:1", idempotency_key="admin-abc", source=Charge.Source.ADMIN
    )
    past_charge(card, under_way, 1, Charge.State.UNKNOWN)

    items, plan = planned(sagepro_conn)

    assert not plan.to_charge
    assert "above the autopay maximum of $5,000.00" in items[too_big].skip
    assert "credit memo" in items[memo].skip
    assert "already charged" in items[by_hand].skip
    assert "charged by a person" in items[by_hand].skip
    assert "under way" in items[under_way].skip
    assert "paid" in items[paid].skip


def test_an_expired_card_is_not_charged(shop, sagepro_conn, paytrace_conn):
    fake_card(paytrace_conn, sagepro_conn, exp_month=11, exp_year=2026)
    due = invoice(shop, "100.00", 30)

    items, _ = planned(sagepro_conn)

    assert "expired (11/26)" in items[due].skip


def test_cards_without_autopay_or_removed_are_left_alone(
    shop, sagepro_conn, paytrace_conn
):
    card = fake_card(paytrace_conn, sagepro_conn)
    invoice(shop, "100.00", 30)
    CardOnFile.objects.filter(pk=card.pk).update(autopay=False)
    assert autopay.plan_run(sagepro_conn).items == []
    CardOnFile.objects.filter(pk=card.pk).update(autopay=True, state="removed")
    assert autopay.plan_run(sagepro_conn).items == []


# --- which attempt -------------------------------------------------------------------


def test_a_soft_decline_waits_for_its_retry_day(shop, sagepro_conn, paytrace_conn):
    card = fake_card(paytrace_conn, sagepro_conn)
    yesterday = invoice(shop, "100.00", 31)
    today = invoice(shop, "100.00", 30)
    past_charge(card, yesterday, 1, "declined", days_ago=1, category="soft")
    past_charge(card, today, 1, "declined", days_ago=0, category="soft")

    items, _ = planned(sagepro_conn)

    # Retry days "1, 3, 7": the first retry is one day after the first decline.
    assert items[yesterday].to_charge and items[yesterday].attempt == 2
    assert not items[today].to_charge
    assert items[today].next_try_on == TODAY + timedelta(days=1)
    assert "next try on 2026-12-16" in items[today].skip


def test_after_the_last_retry_nothing_more_is_tried(shop, sagepro_conn, paytrace_conn):
    card = fake_card(paytrace_conn, sagepro_conn)
    due = invoice(shop, "100.00", 30)
    for n, days_ago in ((1, 11), (2, 10), (3, 7), (4, 0)):
        past_charge(card, due, n, "declined", days_ago=days_ago, category="soft")

    items, _ = planned(sagepro_conn)

    assert "no retries left after 4 tries" in items[due].skip


def test_a_hard_decline_is_never_retried_on_that_card_but_a_new_card_is_tried(
    shop, sagepro_conn, paytrace_conn
):
    card = fake_card(paytrace_conn, sagepro_conn)
    due = invoice(shop, "100.00", 32)
    past_charge(card, due, 1, "declined", days_ago=2, category="hard")

    items, _ = planned(sagepro_conn)
    assert "autopay does not charge this card again" in items[due].skip

    # A person stopped autopay on the old card, took a new one and switched it on.
    CardOnFile.objects.filter(pk=card.pk).update(autopay=False)
    fake_card(paytrace_conn, sagepro_conn, last4="4242")
    items, _ = planned(sagepro_conn)
    assert items[due].to_charge
    assert items[due].attempt == 2  # a new key: attempt 1's key is the old card's
    assert items[due].card.last4 == "4242"


def test_the_fingerprint_changes_with_what_would_be_charged(
    shop, sagepro_conn, paytrace_conn
):
    fake_card(paytrace_conn, sagepro_conn)
    invoice(shop, "100.00", 30)
    first = autopay.plan_run(sagepro_conn).fingerprint
    assert autopay.plan_run(sagepro_conn).fingerprint == first
    invoice(shop, "5.00", 30)
    assert autopay.plan_run(sagepro_conn).fingerprint != first


def test_without_settings_it_says_what_to_do(sagepro_conn):
    with pytest.raises(autopay.AutopayError, match="no autopay settings"):
        autopay.plan_run(sagepro_conn)


def test_finance_addresses_are_validated():
    assert autopay.finance_addresses("a@x.com, b@y.com\na@x.com") == [
        "a@x.com",
        "b@y.com",
    ]
    with pytest.raises(Exception, match="'nobody' is not an e-mail address"):
        autopay.finance_addresses("a@x.com\nnobody")
    # The report must not go to an address the storage net would mask (and never be
    # echoed back with the number in it).
    with pytest.raises(Exception, match="looks like a card number") as refused:
        autopay.finance_addresses("4111111111111111@example.com")
    assert "4111111111111111" not in str(refused.value)


# --- runs against the sandboxes ------------------------------------------------------


@pytest.fixture
def card(shop, client, paytrace_conn, sagepro_conn):
    """A card enrolled through the hosted fields (the sandbox's vault), on autopay."""
    from integrations import cards
    from tests.support.protect import hosted_fields_token

    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)
    enrolled = cards.enrol_card(
        paytrace=paytrace_conn,
        sagepro=sagepro_conn,
        custno=CUSTNO,
        hpf_token=hpf_token,
        enc_key=enc_key,
        billing_name="Autopay Co",
    )
    CardOnFile.objects.filter(pk=enrolled.pk).update(autopay=True)
    enrolled.refresh_from_db()
    return enrolled


def card_state(client, card, state):
    """Make the sandbox's vault profile answer ok / insufficient_funds / lost_stolen."""
    import base64

    from django.conf import settings

    login = f"{settings.SANDBOX_PAYTRACE_USERNAME}:{settings.SANDBOX_PAYTRACE_PASSWORD}"
    response = client.post(
        "/sandbox/paytrace/_card_state",
        {"customer_id": card.vault_customer_id, "state": state},
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(login.encode()).decode(),
    )
    assert response.status_code == 200, response.content


def sandbox_sales(invno):
    from integrations.sandbox.paytrace.models import Transaction as GatewaySale

    return GatewaySale.objects.filter(
        transaction_type=GatewaySale.Type.SALE, invoice_id=invno
    )


def balance(invno):
    from integrations.sandbox.sagepro.models import ArMast

    return ArMast.objects.get(invno=invno.rjust(10)).balance


def attempts_of(run):
    return {a.invno: a for a in run.attempts.all()}


def test_a_due_invoice_is_charged_once_and_its_cash_applied(
    card, shop, sagepro_conn, run_tasks
):
    due = invoice(shop, "100.00", 30)
    later = invoice(shop, "50.00", 10)

    [summary] = autopay.run_scheduled()
    run_tasks()

    run = AutopayRun.objects.get()
    assert run.state == AutopayRun.State.FINISHED, run.error
    assert "1 charged" in summary
    assert (run.charged_count, run.charged_amount) == (1, Decimal("100.00"))
    attempt = attempts_of(run)[due]
    assert attempt.outcome == Outcome.CHARGED and attempt.attempt == 1
    assert attempt.charge.source == Charge.Source.AUTOPAY
    assert attempt.charge.requested_by_name == "autopay"
    assert later not in attempts_of(run)
    assert sandbox_sales(due).count() == 1
    assert balance(due) == Decimal("0.00")

    # The schedule again the same day: nothing. A person's run: nothing charged.
    assert autopay.run_scheduled() == []
    again = autopay.run_autopay(sagepro_conn, trigger="manual")
    run_tasks()
    assert again.charged_count == 0
    assert sandbox_sales(due).count() == 1
    assert balance(due) == Decimal("0.00")


def test_a_soft_decline_is_retried_on_the_schedule(
    card, shop, client, clock, run_tasks
):
    """Acceptance 2: day 0 declined, day 1 not yet due, day 2 charged."""
    AutopaySettings.objects.update(retry_days="2, 3")
    due = invoice(shop, "100.00", 30)
    card_state(client, card, "insufficient_funds")

    autopay.run_scheduled()
    day0 = AutopayRun.objects.get()
    attempt = attempts_of(day0)[due]
    assert attempt.outcome == Outcome.SOFT_DECLINE
    assert "Insufficient funds" in attempt.reason
    assert attempt.next_try_on == TODAY + timedelta(days=2)
    assert day0.failed_count == 1
    assert sandbox_sales(due).count() == 1
    assert not ReviewItem.objects.exists()
    assert CardOnFile.objects.get(pk=card.pk).autopay

    clock.move_to(NOW + timedelta(days=1))
    autopay.run_scheduled()
    day1 = AutopayRun.objects.get(run_date=TODAY + timedelta(days=1))
    assert attempts_of(day1)[due].outcome == Outcome.SKIPPED
    assert "next try on" in attempts_of(day1)[due].reason
    assert sandbox_sales(due).count() == 1  # nothing tried

    card_state(client, card, "ok")
    clock.move_to(NOW + timedelta(days=2))
    autopay.run_scheduled()
    run_tasks()
    day2 = AutopayRun.objects.get(run_date=TODAY + timedelta(days=2))
    attempt = attempts_of(day2)[due]
    assert attempt.outcome == Outcome.CHARGED
    assert attempt.attempt == 2
    assert sandbox_sales(due).count() == 2  # the declined one and the approved one
    assert balance(due) == Decimal("0.00")


def test_soft_declines_stop_after_the_last_retry_and_open_a_review_item(
    card, shop, client, clock
):
    AutopaySettings.objects.update(retry_days="1")
    due = invoice(shop, "100.00", 30)
    card_state(client, card, "insufficient_funds")

    autopay.run_scheduled()
    clock.move_to(NOW + timedelta(days=1))
    autopay.run_scheduled()
    clock.move_to(NOW + timedelta(days=2))
    autopay.run_scheduled()

    outcomes = [
        a.outcome for a in AutopayAttempt.objects.filter(invno=due).order_by("pk")
    ]
    assert outcomes == [
        Outcome.SOFT_DECLINE,
        Outcome.RETRIES_EXHAUSTED,
        Outcome.SKIPPED,
    ]
    assert sandbox_sales(due).count() == 2
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.CHARGE)
    assert due in item.reason and "declined 2 times" in item.reason


def test_a_hard_decline_stops_autopay_and_is_never_retried(
    card, shop, client, clock, sagepro_conn
):
    due = invoice(shop, "100.00", 30)
    other = invoice(shop, "75.00", 31)
    card_state(client, card, "lost_stolen")

    run = autopay.run_autopay(sagepro_conn)

    outcomes = {a.invno: a.outcome for a in run.attempts.all()}
    hard = [invno for invno, o in outcomes.items() if o == Outcome.HARD_DECLINE]
    assert len(hard) == 1  # the first one; the other is not tried on the card
    [stopped_too] = [invno for invno in (due, other) if invno not in hard]
    assert outcomes[stopped_too] == Outcome.SKIPPED
    assert sandbox_sales(hard[0]).count() == 1
    assert sandbox_sales(stopped_too).count() == 0
    card.refresh_from_db()
    assert not card.autopay
    assert card.autopay_stopped_at is not None
    assert "Lost or stolen" in card.autopay_stopped_reason
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.CHARGE)
    assert item.transaction is None
    assert item.charge.invno == hard[0]
    for words in (CUSTNO, hard[0], card.last4, "Lost or stolen", "enrolment link"):
        assert words in item.reason

    # Later runs leave it alone, also when someone switches autopay back on (then
    # only the invoice never tried on the card is tried).
    clock.move_to(NOW + timedelta(days=1))
    autopay.run_scheduled()
    assert Charge.objects.count() == 1
    CardOnFile.objects.filter(pk=card.pk).update(autopay=True)
    clock.move_to(NOW + timedelta(days=2))
    autopay.run_scheduled()
    assert sandbox_sales(hard[0]).count() == 1
    assert ReviewItem.objects.filter(charge__invno=hard[0]).count() == 1
    last = AutopayRun.objects.get(run_date=TODAY + timedelta(days=2))
    assert (
        "autopay does not charge this card again" in attempts_of(last)[hard[0]].reason
    )


def test_a_refused_charge_is_reported_and_not_retried(
    shop, sagepro_conn, paytrace_conn, clock
):
    # A card whose vault profile PayTrace does not know: PayTrace refuses the sale.
    fake_card(paytrace_conn, sagepro_conn)
    due = invoice(shop, "100.00", 30)

    run = autopay.run_autopay(sagepro_conn)

    attempt = attempts_of(run)[due]
    assert attempt.outcome == Outcome.FAILED
    assert "PayTrace refused" in attempt.reason
    assert ReviewItem.objects.filter(charge=attempt.charge).count() == 1
    clock.move_to(NOW + timedelta(days=1))
    later = autopay.run_autopay(sagepro_conn)
    assert attempts_of(later)[due].outcome == Outcome.SKIPPED
    assert Charge.objects.count() == 1


def test_the_report_is_emailed_once(card, shop, client, sagepro_conn, run_tasks):
    charged = invoice(shop, "100.00", 30)
    declined = invoice(shop, "20.13", 31)  # the sandbox declines .13 (soft)
    too_big = invoice(shop, "6000.00", 30)

    autopay.run_scheduled()
    autopay.run_scheduled()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == ["controller@example.com", "finance@example.com"]
    assert "1 charged ($100.00), 1 failed, 1 skipped" in message.subject
    text = message.body
    for words in (
        charged,
        declined,
        too_big,
        "Do not honor",
        "above the autopay maximum",
    ):
        assert words in text
    html, kind = message.alternatives[0]
    assert kind == "text/html" and declined in html
    run = AutopayRun.objects.get()
    assert run.emailed_at is not None
    assert run.emailed_to == "finance@example.com, controller@example.com"


def test_a_run_while_another_holds_the_lease_is_skipped(card, shop, sagepro_conn):
    from integrations.models import Lease

    due = invoice(shop, "100.00", 30)
    assert Lease.acquire(autopay.lease_name(sagepro_conn), "someone", 60)

    run = autopay.run_autopay(sagepro_conn)

    assert run.state == AutopayRun.State.SKIPPED
    assert sandbox_sales(due).count() == 0
    assert not mail.outbox


def test_the_same_attempt_twice_charges_once(card, shop, sagepro_conn):
    """Without the lease: the idempotency key alone keeps a second run from charging."""
    from integrations.models import Lease

    due = invoice(shop, "100.00", 30)
    plan = autopay.plan_run(sagepro_conn)
    first = autopay.run_autopay(sagepro_conn)
    Lease.objects.all().delete()
    # A second run that planned before the first one charged: same attempt, same key.
    run = AutopayRun.objects.create(sagepro=sagepro_conn, run_date=TODAY)
    autopay._carry_out(run, plan, AutopaySettings.objects.get())

    assert attempts_of(first)[due].outcome == Outcome.CHARGED
    second = attempts_of(run)[due]
    assert second.outcome == Outcome.SKIPPED
    assert "another autopay run made attempt 1" in second.reason
    assert second.charge == attempts_of(first)[due].charge
    assert sandbox_sales(due).count() == 1


# --- the admin -----------------------------------------------------------------------


def reviewer_browser():
    from django.test import Client

    from integrations.roles import FINANCE_REVIEWER
    from tests.factories import make_user

    browser = Client()
    browser.force_login(make_user(group=FINANCE_REVIEWER))
    return browser


def test_run_now_previews_then_charges_on_confirm(card, shop, sagepro_conn, run_tasks):
    import re

    from django.urls import reverse

    due = invoice(shop, "100.00", 30)
    too_big = invoice(shop, "9000.00", 30)
    browser = reviewer_browser()
    url = reverse("admin:integrations_autopayrun_run")

    preview = browser.get(url, {"sagepro": sagepro_conn.pk})
    assert preview.status_code == 200
    assert b"Would charge 1 invoice, $100.00" in preview.content
    assert due.encode() in preview.content and too_big.encode() in preview.content
    assert b"above the autopay maximum" in preview.content
    assert not Charge.objects.exists()  # the preview charges nothing

    confirmed = re.search(rb'name="confirmed" value="([0-9a-f]+)"', preview.content)[1]
    invoice(shop, "30.00", 30)  # something new is due since the preview
    stale = browser.post(
        url, {"sagepro": sagepro_conn.pk, "confirmed": confirmed.decode()}
    )
    assert b"changed since the preview" in stale.content
    assert not Charge.objects.exists()

    confirmed = re.search(rb'name="confirmed" value="([0-9a-f]+)"', stale.content)[1]
    done = browser.post(
        url, {"sagepro": sagepro_conn.pk, "confirmed": confirmed.decode()}
    )
    assert done.status_code == 302
    run = AutopayRun.objects.get()
    assert run.trigger == "manual" and run.started_by is not None
    assert run.charged_count == 2
    # A second click on the same confirmation charges nothing more.
    browser.post(url, {"sagepro": sagepro_conn.pk, "confirmed": confirmed.decode()})
    assert sandbox_sales(due).count() == 1

    report = browser.get(done["Location"])
    assert report.status_code == 200
    for words in (due.encode(), b"$130.00", b"above the autopay maximum", b"1111"):
        assert words in report.content
    listing = browser.get(reverse("admin:integrations_autopayrun_changelist"))
    assert b"Run autopay now" in listing.content and b"$130.00" in listing.content


def test_run_now_needs_the_permission(shop, sagepro_conn):
    from django.test import Client
    from django.urls import reverse

    from tests.factories import make_user

    browser = Client()
    browser.force_login(make_user())
    url = reverse("admin:integrations_autopayrun_run")
    assert browser.get(url, {"sagepro": sagepro_conn.pk}).status_code == 403
    assert (
        browser.post(url, {"sagepro": sagepro_conn.pk, "confirmed": "x"}).status_code
        == 403
    )


def test_settings_form_validates_retry_days_and_emails(shop, sagepro_conn):
    from integrations.admin.autopay import AutopaySettingsForm

    data = {
        "sagepro": sagepro_conn.pk,
        "enabled": "on",
        "days_from_due": "0",
        "catch_up_days": "7",
        "default_net_days": "30",
        "max_amount": "5000.00",
        "retry_days": "1, x",
        "finance_emails": "a@x.com, nobody",
    }
    instance = AutopaySettings.objects.get()
    form = AutopaySettingsForm(data, instance=instance)
    assert not form.is_valid()
    assert "'x' is not a number of days" in form.errors["retry_days"][0]
    assert "'nobody' is not an e-mail address" in form.errors["finance_emails"][0]

    form = AutopaySettingsForm(
        {
            **data,
            "retry_days": "2;5",
            "finance_emails": "a@x.com, b@y.com",
            "max_amount": "0",
        },
        instance=instance,
    )
    assert not form.is_valid() and "more than zero" in form.errors["max_amount"][0]
    form = AutopaySettingsForm(
        {**data, "retry_days": "2;5", "finance_emails": "a@x.com, b@y.com"},
        instance=instance,
    )
    assert form.is_valid(), form.errors
    saved = form.save()
    assert saved.retry_days == "2, 5"
    assert saved.finance_emails == "a@x.com\nb@y.com"


# --- the edges -----------------------------------------------------------------------


def test_a_lost_answer_is_reported_unknown_and_not_retried_by_autopay(
    card, shop, sagepro_conn, clock, monkeypatch
):
    from integrations.connectors.base import ConnectorError
    from integrations.connectors.paytrace import PayTraceConnector

    due = invoice(shop, "100.00", 30)
    real = PayTraceConnector.sale_by_customer

    def approved_then_lost(self, **kwargs):
        real(self, **kwargs)
        raise ConnectorError("read timed out", transient=True, outcome_unknown=True)

    monkeypatch.setattr(PayTraceConnector, "sale_by_customer", approved_then_lost)
    run = autopay.run_autopay(sagepro_conn)
    monkeypatch.undo()

    attempt = attempts_of(run)[due]
    assert attempt.outcome == Outcome.UNKNOWN
    assert attempt.charge.reference in attempt.reason
    assert run.failed_count == 1
    clock.move_to(NOW + timedelta(days=1))
    later = autopay.run_autopay(sagepro_conn)
    assert "under way" in attempts_of(later)[due].reason
    assert sandbox_sales(due).count() == 1


def test_without_sage_pro_it_plans_from_the_mirror_and_says_so(
    shop, sagepro_conn, paytrace_conn, monkeypatch
):
    from integrations.connectors.base import ConnectorError
    from integrations.connectors.sagepro import SageProConnector

    fake_card(paytrace_conn, sagepro_conn)
    MirroredInvoice.objects.create(
        connection=sagepro_conn,
        invno="M100",
        custno=CUSTNO,
        invamt=Decimal("80.00"),
        balance=Decimal("80.00"),
        invdte=TODAY - timedelta(days=30),
    )

    def down(self, *args, **kwargs):
        raise ConnectorError("connection refused", transient=True)

    monkeypatch.setattr(SageProConnector, "list_open_invoices", down)
    monkeypatch.setattr(SageProConnector, "get_customer", down)

    items, plan = planned(sagepro_conn)

    assert items["M100"].to_charge
    assert "Sage Pro did not answer for AUTOP" in plan.notes[0]


def test_a_disabled_connection_is_not_run_by_the_schedule(shop, sagepro_conn):
    AutopaySettings.objects.update(enabled=False)
    assert autopay.run_scheduled() == []
    assert not AutopayRun.objects.exists()


def test_a_run_that_breaks_is_failed_emailed_once_and_tried_again(
    card, shop, monkeypatch, clock
):
    invoice(shop, "100.00", 30)

    def broken(*args, **kwargs):
        raise RuntimeError("the mirror is on fire")

    monkeypatch.setattr(autopay, "plan_run", broken)
    autopay.run_scheduled()
    clock.move_to(NOW + timedelta(hours=1))
    autopay.run_scheduled()

    runs = AutopayRun.objects.all()
    assert [r.state for r in runs] == [AutopayRun.State.FAILED] * 2
    assert "the mirror is on fire" in runs[0].error
    assert len(mail.outbox) == 1
    assert "stopped with an error" in mail.outbox[0].subject

    monkeypatch.undo()
    clock.move_to(NOW + timedelta(hours=2))
    autopay.run_scheduled()
    assert AutopayRun.objects.filter(state=AutopayRun.State.FINISHED).count() == 1


@pytest.mark.parametrize(
    "query",
    [
        {"sagepro": "999999"},
        {"sagepro": "abc"},
        {"sagepro": "4111111111111111"},
        {"sagepro": ["1", "2"]},
        {},
    ],
)
def test_run_now_refuses_hostile_input_without_charging(shop, sagepro_conn, query):
    from django.urls import reverse

    browser = reviewer_browser()
    url = reverse("admin:integrations_autopayrun_run")
    got = browser.get(url, query)
    posted = browser.post(url, {**query, "confirmed": "0" * 64})
    assert got.status_code == 200 and posted.status_code == 200
    assert not Charge.objects.exists() and not AutopayRun.objects.exists()


def test_the_report_page_needs_the_view_permission(shop, sagepro_conn):
    from django.test import Client
    from django.urls import reverse

    from tests.factories import make_user

    run = AutopayRun.objects.create(sagepro=sagepro_conn, run_date=TODAY)
    browser = Client()
    browser.force_login(make_user())
    url = reverse("admin:integrations_autopayrun_change", args=[run.pk])
    assert browser.get(url).status_code in (302, 403)
    assert reviewer_browser().get(url).status_code == 200
