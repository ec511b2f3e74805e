"""The Sage Pro connector against the sandbox gateway, through the `http` bridge."""

import datetime
from decimal import Decimal

import pytest
import requests
import time_machine
from django.conf import settings
from django.utils import timezone

from integrations.connectors import sagepro
from integrations.connectors.base import ConnectorError, NotFoundError
from integrations.connectors.sagepro import SageProConnector, to_money
from integrations.sandbox.sagepro import views
from integrations.sandbox.sagepro.models import ZERO, ArCust, ArMast, CashReceipt
from integrations.sandbox.sagepro.seed import period_date, seed, seed_invoice

BASE_URL = "http://testserver/sandbox/sagepro/api/v1"


@pytest.fixture
def sandbox(db):
    seed()


@pytest.fixture
def gateway(http, sandbox):
    return SageProConnector(BASE_URL, settings.SANDBOX_SAGEPRO_API_KEY)


def receipt_for(
    invno, amount, applied=None, *, custno="ACME", reference="pt-1001", **kw
):
    return sagepro.CashReceipt(
        custno=custno,
        date=kw.pop("date", period_date(0)),
        amount=Decimal(amount),
        method="VISA",
        reference=reference,
        applications=(sagepro.Application(invno, Decimal(applied or amount)),)
        if invno
        else (),
        **kw,
    )


def assert_ledger_invariants():
    """INVAMT - PAIDAMT = BALANCE everywhere; ARCUST.BALANCE = sum of open balances."""
    for inv in ArMast.objects.all():
        assert inv.invamt - inv.paidamt == inv.balance, inv
    for customer in ArCust.objects.filter(deleted=False):
        open_total = sum(
            (
                inv.balance
                for inv in ArMast.objects.open().filter(
                    company=customer.company, custno=customer.custno
                )
            ),
            ZERO,
        )
        assert customer.balance == open_total, customer


def invoice_balance(invno):
    return ArMast.objects.get(invno=invno.rjust(10)).balance


def test_it_posts_a_receipt_that_reduces_the_invoice_balance(gateway):
    invno = seed_invoice("ACME", "100.00")
    before = gateway.get_customer("ACME")["balance"]

    result = gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))

    assert result["replayed"] is False
    assert result["receipt_no"]
    assert result["amount"] == Decimal("40.00")
    assert result["unapplied_amount"] == Decimal("0.00")
    assert result["applications"] == [
        {
            "invno": invno,
            "amount": Decimal("40.00"),
            "requested_amount": Decimal("40.00"),
        }
    ]
    invoice = gateway.get_invoice(invno)
    assert invoice["paidamt"] == Decimal("40.00")
    assert invoice["balance"] == Decimal("60.00")
    customer = gateway.get_customer("ACME")
    assert customer["balance"] == before - Decimal("40.00")
    assert customer["last_payment_date"] == period_date(0)
    assert customer["last_payment_amount"] == Decimal("40.00")
    assert_ledger_invariants()


def test_it_keeps_over_application_as_unapplied_cash(gateway):
    invno = seed_invoice("ACME", "100.00")

    result = gateway.post_cash_receipt("key-1", receipt_for(invno, "150.00"))

    assert result["applications"][0]["amount"] == Decimal("100.00")
    assert result["applications"][0]["requested_amount"] == Decimal("150.00")
    assert result["unapplied_amount"] == Decimal("50.00")
    assert invoice_balance(invno) == Decimal("0.00")
    assert gateway.get_invoice(invno)["status"] == "closed"
    assert_ledger_invariants()


def test_it_posts_a_payment_on_account_without_applications(gateway):
    result = gateway.post_cash_receipt("key-1", receipt_for(None, "25.00"))

    assert result["applications"] == []
    assert result["unapplied_amount"] == Decimal("25.00")
    assert_ledger_invariants()


def test_it_refuses_applications_that_exceed_the_receipt(gateway):
    invno = seed_invoice("ACME", "100.00")

    with pytest.raises(ConnectorError) as caught:
        gateway.post_cash_receipt("key-1", receipt_for(invno, "50.00", applied="60.00"))

    assert caught.value.code == "OVER_APPLICATION"
    assert caught.value.status == 422
    assert caught.value.transient is False
    assert invoice_balance(invno) == Decimal("100.00")


@pytest.mark.parametrize(
    ("offset", "code"),
    [
        (-2, "PERIOD_LOCKED"),
        (-6, "PERIOD_LOCKED"),  # permanently locked
        (-3, "PERIOD_CLOSED"),
        (1, "FUTURE_PERIOD"),
        (-24, "PERIOD_NOT_DEFINED"),
        (6, "PERIOD_NOT_DEFINED"),
    ],
)
def test_it_refuses_dates_outside_an_open_period(gateway, offset, code):
    invno = seed_invoice("ACME", "100.00")
    customer_before = ArCust.objects.get(custno="ACME  ").balance

    with pytest.raises(ConnectorError) as caught:
        gateway.post_cash_receipt(
            "key-1", receipt_for(invno, "40.00", date=period_date(offset))
        )

    assert caught.value.code == code
    assert caught.value.status == 422
    assert caught.value.transient is False
    assert CashReceipt.objects.count() == 0
    assert invoice_balance(invno) == Decimal("100.00")
    assert ArCust.objects.get(custno="ACME  ").balance == customer_before


def test_it_accepts_the_previous_open_period(gateway):
    invno = seed_invoice("ACME", "100.00")

    result = gateway.post_cash_receipt(
        "key-1", receipt_for(invno, "40.00", date=period_date(-1))
    )

    assert result["date"] == period_date(-1)


def test_it_replays_the_same_key_and_body_without_writing_again(gateway):
    invno = seed_invoice("ACME", "100.00")
    first = gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))

    again = gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))

    assert again["replayed"] is True
    assert again["receipt_no"] == first["receipt_no"]
    assert again["created_at"] == first["created_at"]
    assert CashReceipt.objects.count() == 1
    assert invoice_balance(invno) == Decimal("60.00")


def test_it_refuses_the_same_key_with_a_different_body(gateway):
    invno = seed_invoice("ACME", "100.00")
    gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))

    with pytest.raises(ConnectorError) as caught:
        gateway.post_cash_receipt("key-1", receipt_for(invno, "41.00"))

    assert caught.value.code == "IDEMPOTENCY_CONFLICT"
    assert caught.value.status == 409
    assert caught.value.transient is False
    assert invoice_balance(invno) == Decimal("60.00")


def test_it_refuses_a_second_receipt_for_the_same_paytrace_transaction(gateway):
    invno = seed_invoice("ACME", "100.00")
    first = gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))

    with pytest.raises(ConnectorError) as caught:
        gateway.post_cash_receipt("key-2", receipt_for(invno, "40.00"))

    assert caught.value.code == "DUPLICATE_RECEIPT"
    assert caught.value.status == 409
    assert caught.value.transient is False
    assert first["receipt_no"] in caught.value.detail["detail"]
    assert CashReceipt.objects.count() == 1


@pytest.mark.parametrize("key", ["ab123", "AB123", "     AB123", " ab123  "])
def test_it_finds_an_invoice_by_padded_unpadded_or_lower_case_number(gateway, key):
    seed_invoice("ACME", "10.00", invno="AB123")
    assert ArMast.objects.filter(invno="     AB123").exists()

    invoice = gateway.get_invoice(key)

    assert invoice["invno"] == "AB123"
    assert invoice["custno"] == "ACME"


@pytest.mark.parametrize("key", ["10001", "     10001", "10001 "])
def test_it_finds_a_seeded_invoice_by_any_padding(gateway, key):
    assert gateway.get_invoice(key)["invno"] == "10001"


@pytest.mark.parametrize("custno", ["ACME", "acme", "ACME  ", " Acme"])
def test_it_finds_a_customer_by_any_case_or_padding(gateway, custno):
    customer = gateway.get_customer(custno)

    assert customer["custno"] == "ACME"
    assert customer["company"] == "Acme Supply Co"


def test_it_applies_receipts_with_lower_case_keys(gateway):
    invno = seed_invoice("ACME", "100.00", invno="xy9")

    result = gateway.post_cash_receipt(
        "key-1", receipt_for(f"  {invno.lower()}", "30.00", custno="acme")
    )

    assert result["custno"] == "ACME"
    assert result["applications"][0]["invno"] == "XY9"
    assert invoice_balance("XY9") == Decimal("70.00")


def test_it_reports_missing_invoices_and_customers(gateway):
    assert gateway.get_invoice("99999") is None
    assert gateway.get_invoice("10059") is None  # soft-deleted in the seed
    with pytest.raises(NotFoundError) as caught:
        gateway.get_customer("NOBODY")
    assert caught.value.code == "CUSTOMER_NOT_FOUND"


def test_it_lists_only_open_invoices_of_the_customer(gateway):
    invoices = gateway.list_open_invoices("IRONWD")

    assert invoices
    assert {inv["custno"] for inv in invoices} == {"IRONWD"}
    assert all(inv["balance"] != Decimal("0.00") for inv in invoices)
    memo = [inv for inv in invoices if inv["artype"] == "C"]
    assert memo and memo[0]["balance"] == Decimal("-75.00")
    assert gateway.list_open_invoices("ZEROBL") == []


def test_it_returns_money_as_decimal_and_dates_as_dates(gateway):
    seed_invoice("ACME", "12.30", invno="M1", invdte=datetime.date(2025, 3, 4))

    invoice = gateway.get_invoice("M1")

    assert invoice["invamt"] == Decimal("12.30")
    assert isinstance(invoice["invamt"], Decimal)
    assert str(invoice["balance"]) == "12.30"
    assert invoice["invdte"] == datetime.date(2025, 3, 4)
    customer = gateway.get_customer("ZEROBL")
    assert isinstance(customer["balance"], Decimal)
    assert customer["balance"] == Decimal("0.00")
    assert customer["last_payment_date"] is None


def test_it_finds_receipts_by_key_and_by_reference(gateway):
    invno = seed_invoice("ACME", "100.00")
    posted = gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))
    gateway.post_cash_receipt("key-2", receipt_for(None, "5.00", reference="pt-2"))

    by_key = gateway.find_cash_receipts(idempotency_key="key-1")
    by_reference = gateway.find_cash_receipts(reference="pt-1001")

    assert [r["receipt_no"] for r in by_key] == [posted["receipt_no"]]
    assert [r["receipt_no"] for r in by_reference] == [posted["receipt_no"]]
    assert by_key[0]["amount"] == Decimal("40.00")
    assert gateway.find_cash_receipts(reference="pt-unknown") == []


def test_it_lists_gl_accounts_and_periods(gateway):
    accounts = {a["glacnt"]: a for a in gateway.list_gl_accounts()}
    periods = gateway.list_periods()

    assert accounts["1100-00"]["active"] is True
    assert accounts["6900-00"]["active"] is False
    assert "1050-00" not in accounts  # deleted
    current = [p for p in periods if p["current"]]
    assert len(current) == 1
    assert current[0]["bdate"] <= period_date(0) <= current[0]["edate"]
    assert isinstance(current[0]["bdate"], datetime.date)


def test_it_treats_unavailable_as_transient_until_the_window_passes(gateway, client):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        set_fault(client, "unavailable", 60)

        with pytest.raises(ConnectorError) as caught:
            gateway.get_customer("ACME")
        assert caught.value.transient is True
        assert caught.value.code == "UNAVAILABLE"
        assert caught.value.status == 503

        traveller.shift(datetime.timedelta(seconds=61))
        assert gateway.get_customer("ACME")["custno"] == "ACME"


def test_it_treats_record_locks_as_transient_until_the_window_passes(gateway, client):
    invno = seed_invoice("ACME", "100.00")
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        set_fault(client, "locked", 30)

        with pytest.raises(ConnectorError) as caught:
            gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))
        assert caught.value.transient is True
        assert caught.value.code == "RECORD_LOCKED"
        assert caught.value.status == 423
        assert CashReceipt.objects.count() == 0
        assert gateway.get_invoice(invno)["balance"] == Decimal("100.00")  # reads work

        traveller.shift(datetime.timedelta(seconds=31))
        result = gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))
        assert result["replayed"] is False


def test_a_timeout_leaves_a_committed_receipt_that_can_be_found(
    gateway, client, monkeypatch
):
    invno = seed_invoice("ACME", "100.00")
    set_fault(client, "slow", 60)

    def client_gives_up(seconds):
        raise requests.Timeout("read timed out")

    monkeypatch.setattr(views, "pause", client_gives_up)
    with pytest.raises(ConnectorError) as caught:
        gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))

    assert caught.value.code == "TIMEOUT"
    assert caught.value.transient is True
    assert caught.value.outcome_unknown is True
    monkeypatch.setattr(views, "pause", lambda seconds: None)
    found = gateway.find_cash_receipts(idempotency_key="key-1")
    assert len(found) == 1
    again = gateway.post_cash_receipt("key-1", receipt_for(invno, "40.00"))
    assert again["replayed"] is True
    assert again["receipt_no"] == found[0]["receipt_no"]
    assert invoice_balance(invno) == Decimal("60.00")


def test_it_refuses_a_wrong_api_key(http, sandbox):
    gateway = SageProConnector(BASE_URL, "not-the-key")

    with pytest.raises(ConnectorError) as caught:
        gateway.get_customer("ACME")

    assert caught.value.status == 401
    assert caught.value.code == "UNAUTHORIZED"
    assert caught.value.transient is False
    assert "not-the-key" not in str(caught.value)
    assert "not-the-key" not in repr(gateway)


def test_it_reports_an_unknown_company(http, sandbox):
    gateway = SageProConnector(
        BASE_URL, settings.SANDBOX_SAGEPRO_API_KEY, company_id="02"
    )

    with pytest.raises(NotFoundError) as caught:
        gateway.get_invoice("10001")

    assert caught.value.code == "COMPANY_NOT_FOUND"


def test_it_sends_money_as_two_place_strings_and_refuses_floats():
    assert to_money(Decimal("12.3")) == "12.30"
    assert to_money(Decimal("5")) == "5.00"
    with pytest.raises(ValueError):
        to_money(Decimal("12.345"))
    with pytest.raises(TypeError):
        to_money(12.3)


def set_fault(client, mode, seconds):
    response = client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": mode, "seconds": seconds},
        content_type="application/json",
        headers={"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["mode"] == mode


@pytest.mark.parametrize("key", ["N/A", "10045/10046", "a/b/c"])
def test_an_invoice_number_with_a_slash_is_simply_not_found(gateway, key):
    """A customer's reference such as "N/A" is asked for as it is: not found."""
    assert gateway.get_invoice(key) is None
