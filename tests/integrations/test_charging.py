"""Charging an invoice on a card on file (issue 15, item 2; acceptance 1-2): the
service `integrations.charging`, against the PayTrace and Sage Pro sandboxes."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from integrations import charging
from integrations.connectors.base import ConnectorError
from integrations.connectors.paytrace import PayTraceConnector
from integrations.models import MirroredInvoice, ReviewItem
from integrations.models.cards import CardOnFile
from integrations.models.charges import Charge
from integrations.sandbox.paytrace.models import Transaction as GatewaySale
from integrations.sandbox.sagepro.models import ArMast, CashReceipt
from mappings.models import PayerLink, normalise_payer_key
from tests.factories import make_user

pytestmark = pytest.mark.django_db

VISA = "4111111111111111"


def balance(invno):
    return ArMast.objects.get(invno=invno.rjust(10)).balance


def sales(reference=""):
    return GatewaySale.objects.filter(
        transaction_type=GatewaySale.Type.SALE, description__contains=reference
    )


def make_card(paytrace_conn, custno="ACME", vault_id="", number=VISA, **fields):
    """A vault profile in the PayTrace sandbox (keyed `customer/create`, test-only)
    and the portal's card on file for it."""
    vault_id = vault_id or f"{custno}-{CardOnFile.objects.count() + 1}"
    paytrace_conn.paytrace().post_v1(
        "customer/create",
        {
            "customer_id": vault_id,
            "credit_card": {
                "number": number,
                "expiration_month": 12,
                "expiration_year": 2030,
            },
            "billing_address": {"name": "Acme Corp"},
        },
    )
    values = {
        "paytrace": paytrace_conn,
        "sagepro": paytrace_conn.sagepro,
        "custno": custno,
        "vault_customer_id": vault_id,
        "brand": "Visa",
        "last4": number[-4:],
        "exp_month": 12,
        "exp_year": 2030,
        **fields,
    }
    card = CardOnFile.objects.create(**values)
    # As enrolment does (integrations.cards): the vault id names the customer.
    PayerLink.objects.create(
        connection=paytrace_conn,
        kind=PayerLink.Kind.CUSTOMER_ID,
        key=normalise_payer_key(PayerLink.Kind.CUSTOMER_ID, vault_id),
        custno=custno,
        source=PayerLink.Source.ADMIN,
    )
    return card


@pytest.fixture
def card(paytrace_conn, http, sage):
    return make_card(paytrace_conn)


@pytest.fixture
def finance():
    return make_user(username="fiona")


def charge(card, invno, amount, key="key-1", user=None, **kwargs):
    return charging.request_charge(
        card=card,
        invno=invno,
        amount=amount,  # text, as a caller might pass it: read strictly
        idempotency_key=key,
        key_scope=f"user:{user.pk if user else 0}",
        source=kwargs.pop("source", Charge.Source.API),
        requested_by=user,
        **kwargs,
    )


def test_it_charges_the_card_and_the_cash_is_applied_once(
    card, sage, finance, run_tasks
):
    invno = sage.seed_invoice("ACME", "100.00")

    outcome = charge(card, invno, "40.00", user=finance)

    first = outcome.charge
    assert outcome.replayed is False
    assert first.state == Charge.State.APPROVED
    assert first.transaction_id and first.approval_code
    assert first.requested_by == finance and first.requested_by_name == "fiona"
    assert first.invoice_balance == Decimal("100.00")
    assert first.balance_source == "sagepro"
    assert first.attempts == 1
    sale = sales(first.reference).get()
    assert sale.amount == Decimal("40.00") and sale.invoice_id == invno
    assert sale.customer_id == card.vault_customer_id

    run_tasks()  # the fed export record and the sandbox's relayed event
    again = charge(card, invno, "40.00", user=finance)
    run_tasks()
    charging.sweep_unknown()

    assert again.replayed is True and again.charge.pk == first.pk
    assert sales().count() == 1
    assert balance(invno) == Decimal("60.00")
    assert CashReceipt.objects.filter(deleted=False).count() == 1
    first.refresh_from_db()
    assert first.payment is not None
    assert first.payment.transaction_id == first.transaction_id


def test_the_same_key_with_another_amount_is_a_conflict(card, sage):
    invno = sage.seed_invoice("ACME", "100.00")
    first = charge(card, invno, "40.00").charge

    with pytest.raises(charging.IdempotencyConflict) as caught:
        charge(card, invno, "41.00")

    assert caught.value.charge == first
    assert "another customer, invoice or amount" in str(caught.value)
    assert Charge.objects.count() == 1 and sales().count() == 1


def test_the_same_key_from_another_caller_is_another_charge(card, sage):
    invno = sage.seed_invoice("ACME", "100.00")
    charge(card, invno, "10.00", user=make_user(username="a"))
    charge(card, invno, "10.00", user=make_user(username="b"))
    assert Charge.objects.count() == 2 and sales().count() == 2


def test_amounts_written_differently_are_the_same_request(card, sage):
    invno = sage.seed_invoice("ACME", "100.00")
    charge(card, invno, "40.00")
    assert charge(card, invno, "40.0").replayed is True
    assert sales().count() == 1


def test_a_decline_is_recorded_with_its_reason_and_not_retried(card, sage, http):
    invno = sage.seed_invoice("ACME", "100.00")

    declined = charge(card, invno, "10.13").charge
    replay = charge(card, invno, "10.13")
    charging.sweep_unknown()

    assert declined.state == Charge.State.DECLINED
    assert "DECLINE" in declined.approval_message
    assert declined.decline_category == "soft"
    assert declined.response_code == 102
    assert replay.replayed and replay.charge.state == Charge.State.DECLINED
    assert sales().count() == 1
    assert balance(invno) == Decimal("100.00")
    by_customer = [c for c in http.calls if c.request.url.endswith("by_customer")]
    assert len(by_customer) == 1


def test_a_paytrace_refusal_fails_the_charge_with_the_reason(card, sage, http):
    invno = sage.seed_invoice("ACME", "100.00")
    card.paytrace.paytrace().delete_customer(card.vault_customer_id)

    failed = charge(card, invno, "10.00").charge

    assert failed.state == Charge.State.FAILED
    assert "PayTrace refused" in failed.error
    assert failed.finished_at is not None


@pytest.mark.parametrize(
    ("amount", "field", "words"),
    [
        ("0", "amount", "more than zero"),
        ("-5.00", "amount", "more than zero"),
        ("10.001", "amount", "two decimal places"),
        ("NaN", "amount", "finite"),
        ("Infinity", "amount", "finite"),
        ("1e400", "amount", "plain digits"),
        ("1_000", "amount", "plain digits"),
        ("١٢", "amount", "plain digits"),
        ("1000000000000.00", "amount", "at most"),
        ("100.01", "confirm_over_balance", "balance 100.00"),
    ],
)
def test_bad_amounts_are_refused_and_nothing_is_recorded(
    card, sage, http, amount, field, words
):
    invno = sage.seed_invoice("ACME", "100.00")
    with pytest.raises(charging.ChargeRefused) as caught:
        charge(card, invno, amount)
    assert caught.value.field == field
    assert words in caught.value.message
    assert not Charge.objects.exists() and not sales().exists()


def test_an_amount_above_the_balance_is_charged_when_confirmed(card, sage):
    invno = sage.seed_invoice("ACME", "100.00")
    done = charge(card, invno, "120.00", confirm_over_balance=True).charge
    assert done.state == Charge.State.APPROVED
    assert done.over_balance_confirmed is True


def test_invoices_that_cannot_be_charged_are_refused(card, sage, paytrace_conn):
    paid = sage.seed_invoice("ACME", "50.00", paidamt="50.00")
    other = sage.seed_invoice("BLUEOX", "50.00")
    for invno, words in (
        ("NOPE-1", "Sage Pro has no invoice NOPE-1"),
        (paid, "not open"),
        (other, "not customer ACME's"),
        ("", "Name the Sage Pro invoice"),
        ("x" * 21, "at most 20"),
    ):
        with pytest.raises(charging.ChargeRefused, match=words) as caught:
            charge(card, invno, "10.00", key=f"k-{invno[:5]}")
        assert caught.value.field == "invno"
    assert not Charge.objects.exists() and not sales().exists()


def test_removed_and_expired_cards_are_refused(card, sage):
    invno = sage.seed_invoice("ACME", "100.00")
    card.exp_year, card.exp_month = 2020, 1
    card.save()
    with pytest.raises(charging.ChargeRefused, match="expired") as caught:
        charge(card, invno, "10.00")
    assert caught.value.field == "customer_id"
    card.exp_year, card.state = 2030, CardOnFile.State.REMOVED
    card.save()
    with pytest.raises(charging.ChargeRefused, match="removed"):
        charge(card, invno, "10.00")
    assert not Charge.objects.exists()


@pytest.mark.parametrize(
    "key", ["", "   ", "k" * 201, "clé", "a\nb", "key 4111 1111 1111 1111", VISA]
)
def test_bad_and_card_like_keys_are_refused(card, sage, key):
    invno = sage.seed_invoice("ACME", "100.00")
    with pytest.raises(charging.ChargeRefused) as caught:
        charge(card, invno, "10.00", key=key)
    assert caught.value.field == "idempotency_key"
    assert not Charge.objects.exists()


def test_sage_pro_out_of_reach_falls_back_to_the_mirror_and_says_so(
    card, sage, paytrace_conn
):
    invno = sage.seed_invoice("ACME", "100.00")
    MirroredInvoice.objects.create(
        connection=card.sagepro, invno=invno, custno="ACME", balance=Decimal("80.00")
    )
    card.sagepro.base_url = "http://sage.invalid/api/v1"
    card.sagepro.save()

    done = charge(card, invno, "30.00").charge
    assert done.state == Charge.State.APPROVED
    assert done.balance_source == "mirror"
    assert done.invoice_balance == Decimal("80.00")

    with pytest.raises(charging.ChargeRefused, match="no invoice"):
        charge(card, "UNKNOWN9", "30.00", key="k2")


def lose_the_answer(monkeypatch, *, after_sending=True):
    """PayTrace's answer never arrives (a timeout): with the sale made, or not."""
    original = PayTraceConnector.sale_by_customer

    def timed_out(self, **kwargs):
        if after_sending:
            original(self, **kwargs)
        raise ConnectorError(
            "PayTrace did not answer in time",
            transient=True,
            code="TIMEOUT",
            outcome_unknown=True,
        )

    monkeypatch.setattr(PayTraceConnector, "sale_by_customer", timed_out)


def test_a_lost_answer_is_found_by_reference_and_never_charged_twice(
    card, sage, monkeypatch, run_tasks
):
    invno = sage.seed_invoice("ACME", "100.00")
    lose_the_answer(monkeypatch)

    unknown = charge(card, invno, "25.00").charge
    assert unknown.state == Charge.State.UNKNOWN
    monkeypatch.undo()

    replay = charge(card, invno, "25.00")  # looks it up at once: found
    assert replay.charge.state == Charge.State.APPROVED
    assert replay.charge.transaction_id == str(sales().get().transaction_id)
    assert charging.sweep_unknown()["looked_up"] == 0
    run_tasks()
    assert sales().count() == 1
    assert balance(invno) == Decimal("75.00")


def test_a_sale_that_never_reached_paytrace_is_sent_again_after_the_grace(
    card, sage, monkeypatch
):
    invno = sage.seed_invoice("ACME", "100.00")
    lose_the_answer(monkeypatch, after_sending=False)
    unknown = charge(card, invno, "25.00").charge
    monkeypatch.undo()

    assert charging.sweep_unknown()["settled"] == 0  # too soon to send again
    assert not sales().exists()
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert charging.sweep_unknown()["settled"] == 1

    unknown.refresh_from_db()
    assert unknown.state == Charge.State.APPROVED
    assert unknown.attempts == 2
    assert sales().count() == 1


def test_a_process_that_died_before_recording_the_answer_is_settled_by_the_sweep(
    card, sage, monkeypatch
):
    invno = sage.seed_invoice("ACME", "100.00")

    def die(charge, reply):
        raise KeyboardInterrupt  # not an Exception: nothing records the answer

    monkeypatch.setattr(charging, "_record_reply", die)
    with pytest.raises(KeyboardInterrupt):
        charge(card, invno, "25.00")
    monkeypatch.undo()
    stuck = Charge.objects.get()
    assert stuck.state == Charge.State.SENDING

    assert charge(card, invno, "25.00").charge.state == Charge.State.SENDING  # waits
    assert charging.sweep_unknown()["looked_up"] == 0  # in its grace
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert charging.sweep_unknown() == {
            "looked_up": 1,
            "settled": 1,
            "abandoned": 0,
            "linked": 0,
        }
    stuck.refresh_from_db()
    assert stuck.state == Charge.State.APPROVED
    assert stuck.attempts == 1
    assert sales().count() == 1


def test_a_charge_nobody_can_settle_goes_to_a_person_after_half_an_hour(
    card, sage, monkeypatch, admin_client
):
    invno = sage.seed_invoice("ACME", "100.00")
    lose_the_answer(monkeypatch)
    unknown = charge(card, invno, "25.00").charge
    card.paytrace.base_url = "http://paytrace.invalid"
    card.paytrace.save()

    with time_machine.travel(timezone.now() + timedelta(minutes=10)):
        charging.sweep_unknown()
    assert not ReviewItem.objects.exists()
    for minutes in (31, 36):
        with time_machine.travel(timezone.now() + timedelta(minutes=minutes)):
            charging.sweep_unknown()

    item = ReviewItem.objects.get()
    assert item.kind == ReviewItem.Kind.CHARGE and item.charge == unknown
    assert unknown.reference in item.reason and invno in item.reason
    unknown.refresh_from_db()
    assert unknown.state == Charge.State.UNKNOWN
    assert "Looking it up failed" in unknown.error
    # The review item's page names the charge, its card and invoice, and links to it.
    page = admin_client.get(f"/admin/integrations/reviewitem/{item.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"/admin/integrations/charge/{unknown.pk}/change/" in text
    assert "•••• 1111" in text and invno in text


def test_a_charge_recorded_but_never_sent_is_given_up_by_the_sweep(card, sage):
    invno = sage.seed_invoice("ACME", "100.00")
    abandoned = Charge.objects.create(
        reference="PTL-ABANDONEDAAAA",
        key_scope="user:0",
        idempotency_key="old",
        request_fingerprint="x",
        source=Charge.Source.API,
        card=card,
        paytrace=card.paytrace,
        sagepro=card.sagepro,
        custno="ACME",
        invno=invno,
        amount=Decimal("5.00"),
        created_at=timezone.now() - timedelta(minutes=20),
    )
    assert charging.sweep_unknown()["abandoned"] == 1
    abandoned.refresh_from_db()
    assert abandoned.state == Charge.State.FAILED
    assert "nothing was charged" in abandoned.error
    assert not sales().exists()


def test_the_preview_reads_the_balance_and_names_every_problem(card, sage):
    invno = sage.seed_invoice("ACME", "100.00")
    preview = charging.preview_charge(card, invno, None)
    assert preview.amount == Decimal("100.00") and not preview.problems
    assert preview.invoice.balance == Decimal("100.00")
    assert not preview.over_balance

    over = charging.preview_charge(card, invno, "150.00")
    assert over.over_balance and not over.problems

    bad = charging.preview_charge(card, "NOPE", "1.001")
    assert {p.field for p in bad.problems} == {"invno", "amount"}
    assert not Charge.objects.exists() and not sales().exists()

    charge(card, invno, "10.00")
    assert [c.amount for c in charging.preview_charge(card, invno, None).earlier] == [
        Decimal("10.00")
    ]


# --- the admin: open invoices and "Charge card on file" ----------------------------


@pytest.fixture
def reviewer_browser():
    from django.test import Client

    from integrations.roles import FINANCE_REVIEWER

    browser = Client()
    browser.force_login(
        make_user(username="rita", group=FINANCE_REVIEWER, is_staff=True)
    )
    return browser


def mirrored(card, invno, balance_=Decimal("100.00")):
    return MirroredInvoice.objects.create(
        connection=card.sagepro,
        invno=invno,
        custno="ACME",
        invamt=balance_,
        balance=balance_,
    )


def charge_url(invoice):
    return f"/admin/integrations/mirroredinvoice/{invoice.pk}/charge/"


def form_of(page):
    import re

    text = page.content.decode()
    return {
        "card": re.search(r'name="card" value="(\d+)"[^>]*checked', text)[1],
        "amount": re.search(r'name="amount" value="([^"]*)"', text)[1],
        "key": re.search(r'name="key" value="([^"]*)"', text)[1],
        "previewed": re.search(r'name="previewed" value="([^"]*)"', text)[1],
    }


def test_the_open_invoices_list_shows_open_ones_and_which_have_a_card(
    card, sage, reviewer_browser
):
    paid = mirrored(card, "P1", Decimal("0.00"))
    open_ = mirrored(card, sage.seed_invoice("ACME", "100.00"))
    MirroredInvoice.objects.create(
        connection=card.sagepro, invno="B1", custno="BLUEOX", balance=Decimal("9.00")
    )

    page = reviewer_browser.get("/admin/integrations/mirroredinvoice/")
    with_card = reviewer_browser.get("/admin/integrations/mirroredinvoice/?card=yes")

    assert page.status_code == 200
    assert b"Open invoices" in page.content
    assert open_.invno.encode() in page.content and b"B1" in page.content
    assert f">{paid.invno}<".encode() not in page.content
    assert charge_url(open_).encode() in page.content
    assert b">B1<" not in with_card.content


def test_the_confirmation_previews_then_a_double_submit_charges_once(
    card, sage, reviewer_browser, run_tasks
):
    invno = sage.seed_invoice("ACME", "100.00")
    invoice = mirrored(card, invno, Decimal("90.00"))  # the copy is stale

    page = reviewer_browser.get(charge_url(invoice))
    assert page.status_code == 200
    assert b"read from Sage Pro just now" in page.content
    assert b"Visa ending 1111, expires 12/30" in page.content
    fields = form_of(page)
    assert fields["amount"] == "100.00"  # the fresh balance, not the copy's
    assert fields["key"].startswith("admin-")

    confirm = {**fields, "confirm": "Confirm charge"}
    first = reviewer_browser.post(charge_url(invoice), confirm)
    second = reviewer_browser.post(charge_url(invoice), confirm)
    run_tasks()

    assert b"Approved:" in first.content
    assert b"nothing new was charged" in second.content
    assert sales().count() == 1
    made = Charge.objects.get()
    assert made.source == Charge.Source.ADMIN and made.requested_by_name == "rita"
    assert balance(invno) == Decimal("0.00")


def test_an_amount_above_the_balance_needs_the_tick(card, sage, reviewer_browser):
    invno = sage.seed_invoice("ACME", "100.00")
    invoice = mirrored(card, invno)
    fields = form_of(reviewer_browser.get(charge_url(invoice)))

    preview = reviewer_browser.post(
        charge_url(invoice), {**fields, "amount": "120.00", "preview": "1"}
    )
    assert b"is more than the balance $100.00" in preview.content
    fields = form_of(preview)
    refused = reviewer_browser.post(charge_url(invoice), {**fields, "confirm": "1"})
    assert b"confirm the amount above the balance" in refused.content
    assert not Charge.objects.exists()

    done = reviewer_browser.post(
        charge_url(invoice),
        {**fields, "confirm": "1", "confirm_over_balance": "on"},
    )
    assert b"Approved:" in done.content
    assert Charge.objects.get().amount == Decimal("120.00")


def test_a_confirmation_for_another_amount_than_previewed_shows_the_preview_again(
    card, sage, reviewer_browser
):
    invoice = mirrored(card, sage.seed_invoice("ACME", "100.00"))
    fields = form_of(reviewer_browser.get(charge_url(invoice)))

    page = reviewer_browser.post(
        charge_url(invoice), {**fields, "amount": "10.00", "confirm": "1"}
    )

    assert b"changed since the preview" in page.content
    assert not Charge.objects.exists()


def test_a_declined_charge_shows_its_reason(card, sage, reviewer_browser):
    invoice = mirrored(card, sage.seed_invoice("ACME", "100.00"))
    fields = form_of(reviewer_browser.get(charge_url(invoice)))
    fields = form_of(
        reviewer_browser.post(
            charge_url(invoice), {**fields, "amount": "10.13", "preview": "1"}
        )
    )
    page = reviewer_browser.post(charge_url(invoice), {**fields, "confirm": "1"})
    assert b"Declined:" in page.content and b"DECLINE" in page.content
    listing = reviewer_browser.get("/admin/integrations/charge/?state=declined")
    assert b"DECLINE - Do not honor (soft)" in listing.content
    detail = reviewer_browser.get(
        f"/admin/integrations/charge/{Charge.objects.get().pk}/change/"
    )
    assert detail.status_code == 200 and b"Attempts" in detail.content


def test_charging_needs_the_permission(card, sage):
    from django.test import Client

    invoice = mirrored(card, sage.seed_invoice("ACME", "100.00"))
    viewer = make_user(username="val", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_mirroredinvoice"))
    browser = Client()
    browser.force_login(viewer)
    assert browser.get(charge_url(invoice)).status_code == 403
    assert browser.post(charge_url(invoice), {"confirm": "1"}).status_code == 403
    assert not Charge.objects.exists()


def test_hostile_confirmations_are_form_errors_never_a_charge(
    card, sage, reviewer_browser
):
    invoice = mirrored(card, sage.seed_invoice("ACME", "100.00"))
    fields = form_of(reviewer_browser.get(charge_url(invoice)))
    for bad in (
        {"key": VISA},
        {"key": "k" * 500},
        {"amount": "NaN"},
        {"amount": "1e9999"},
        {"amount": VISA},
        {"card": "999999"},
        {"card": VISA},
    ):
        page = reviewer_browser.post(
            charge_url(invoice), {**fields, **bad, "confirm": "1"}
        )
        assert page.status_code == 200
        assert VISA not in page.content.decode()
    assert not Charge.objects.exists() and not sales().exists()
