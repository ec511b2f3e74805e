"""The Sage Pro sandbox gateway, driven over Django's test client."""

import datetime
import threading
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from integrations.sandbox.sagepro import keys, ledger, views
from integrations.sandbox.sagepro.models import (
    ArCust,
    ArMast,
    CashReceipt,
    CashReceiptLine,
    SycComp,
    SycDfis,
)
from integrations.sandbox.sagepro.seed import period_date, seed, seed_invoice

API = "/sandbox/sagepro/api/v1"
AUTH = {"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"}


@pytest.fixture
def sandbox(db):
    return seed()


def get(client, path, **headers):
    return client.get(f"{API}{path}", headers={**AUTH, **headers})


def post(client, path, body, **headers):
    return client.post(
        f"{API}{path}",
        body,
        content_type="application/json",
        headers={**AUTH, **headers},
    )


def receipt_body(invno="10001", amount="10.00", applied=None, **overrides):
    body = {
        "custno": "ACME",
        "date": period_date(0).isoformat(),
        "amount": amount,
        "method": "VISA",
        "reference": "pt-1",
        "applications": [{"invno": invno, "amount": applied or amount}],
    }
    body.update(overrides)
    return body


# --- seeding -----------------------------------------------------------------------


def test_seed_creates_the_demo_company(sandbox):
    assert sandbox["customers"] == 12
    assert ArMast.objects.open().filter(artype="").count() >= 50
    partial = ArMast.objects.open().exclude(paidamt=Decimal("0.00"))
    assert partial.exists()
    assert ArCust.objects.get(custno="HOLDCO").credstat == "H"
    assert ArCust.objects.get(custno="ZEROBL").balance == Decimal("0.00")
    memo = ArMast.objects.get(artype="C")
    assert memo.invamt < 0
    assert ArMast.objects.filter(invno="     10001").exists()
    assert ArCust.objects.filter(custno="ACME  ").exists()


def test_seed_is_idempotent_and_keeps_posted_payments(sandbox, client):
    post(client, "/cash-receipts", receipt_body(), **{"Idempotency-Key": "k1"})

    again = seed()

    assert set(again.values()) == {0}
    assert ArMast.objects.get(invno="     10001").paidamt >= Decimal("10.00")


def test_seed_computes_periods_relative_to_today(sandbox):
    company = SycComp.objects.get(compid="01")
    current = SycDfis.objects.get(yearprd=company.current_yearprd())
    assert current.bdate <= period_date(0) <= current.edate
    flags = {
        offset: SycDfis.objects.get(bdate=period_date(offset, day=1))
        for offset in (-4, -3, -2, -1, 0, 3)
    }
    assert flags[-4].permlck
    assert flags[-3].pclosed and not flags[-3].plocked
    assert flags[-2].plocked and not flags[-2].pclosed
    assert not (flags[-1].pclosed or flags[-1].plocked or flags[-1].permlck)
    assert not (flags[3].pclosed or flags[3].plocked)
    assert SycDfis.objects.count() == 16


def test_the_command_seeds_and_reports_what_it_made(db):
    out = StringIO()
    call_command("seed_sagepro_sandbox", stdout=out)
    assert "12 customers" in out.getvalue()

    call_command("seed_sagepro_sandbox", stdout=out)
    assert "0 customers" in out.getvalue()


# --- keys --------------------------------------------------------------------------


def test_keys_are_padded_the_sage_way():
    assert keys.pad_custno("acme") == "ACME  "
    assert keys.pad_invno(" 10045") == "     10045"
    assert keys.format_glacnt("400000") == "4000-00"
    assert keys.format_glacnt(" 4000-00 ") == "4000-00"
    with pytest.raises(keys.InvalidKeyError):
        keys.pad_custno("TOOLONG")


# --- auth, company, errors -------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
)
def test_it_refuses_missing_or_wrong_keys(sandbox, client, headers):
    response = client.get(f"{API}/customers/ACME", headers=headers)

    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"


def test_it_uses_company_01_by_default_and_refuses_unknown_companies(sandbox, client):
    assert get(client, "/customers/ACME").json()["company_id"] == "01"
    assert get(client, "/customers/ACME", **{"Sage-Company": "01"}).status_code == 200

    response = get(client, "/customers/ACME", **{"Sage-Company": "02"})

    assert response.status_code == 404
    assert response.json()["code"] == "COMPANY_NOT_FOUND"


def test_it_answers_unknown_resources_with_404_codes(sandbox, client):
    assert get(client, "/customers/NOBODY").json()["code"] == "CUSTOMER_NOT_FOUND"
    assert get(client, "/invoices/424242").json()["code"] == "INVOICE_NOT_FOUND"
    assert get(client, "/invoices/10059").status_code == 404  # soft-deleted
    assert get(client, "/cash-receipts/999").json()["code"] == "RECEIPT_NOT_FOUND"
    assert get(client, "/gl-accounts/1050-00").json()["code"] == "ACCOUNT_NOT_FOUND"


def test_money_travels_as_two_place_strings(sandbox, client):
    seed_invoice("ACME", "12.3", invno="M1")

    body = get(client, "/invoices/M1").json()

    assert body["invamt"] == "12.30"
    assert body["paidamt"] == "0.00"
    assert body["balance"] == "12.30"


def test_it_lists_invoices_by_customer_and_status(sandbox, client):
    open_items = get(client, "/invoices?custno=zerobl&status=open").json()["results"]
    everything = get(client, "/invoices?custno=ZEROBL").json()["results"]
    all_open = get(client, "/invoices?status=open").json()["results"]

    assert open_items == []
    assert [inv["status"] for inv in everything] == ["closed"]
    assert len(all_open) >= 50
    assert "10059" not in {inv["invno"] for inv in all_open}
    assert get(client, "/invoices?status=weird").status_code == 400


def test_gl_accounts_are_found_with_or_without_the_dash(sandbox, client):
    assert get(client, "/gl-accounts/400000").json()["glacnt"] == "4000-00"
    assert get(client, "/gl-accounts/4000-00").json()["gldesc"] == "Sales"
    inactive = get(client, "/gl-accounts/6900-00").json()
    assert inactive["glstat"] == "I"
    assert inactive["active"] is False


# --- cash receipts ---------------------------------------------------------------


def test_it_requires_an_idempotency_key(sandbox, client):
    response = post(client, "/cash-receipts", receipt_body())

    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert "Idempotency-Key" in response.json()["errors"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": "0.00"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": 10.5}, "amount"),  # a JSON number, not a decimal string
        ({"amount": "10.005"}, "amount"),
        ({"date": "05/01/2025"}, "date"),
        ({"custno": "TOOLONGX"}, "custno"),
        ({"reference": ""}, "reference"),
        (
            {"applications": [{"invno": "10001", "amount": "0"}]},
            "applications.0.amount",
        ),
    ],
)
def test_it_validates_the_receipt_body(sandbox, client, overrides, field):
    response = post(
        client,
        "/cash-receipts",
        receipt_body(**overrides),
        **{"Idempotency-Key": "k1"},
    )

    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert field in response.json()["errors"]
    assert CashReceipt.objects.count() == 0


def test_it_refuses_invoices_of_other_customers_and_settled_invoices(sandbox, client):
    other = ArMast.objects.open().exclude(custno="ACME  ").first().invno.strip()
    paid = seed_invoice("ACME", "10.00", paidamt="10.00")

    wrong_customer = post(
        client, "/cash-receipts", receipt_body(invno=other), **{"Idempotency-Key": "a"}
    )
    settled = post(
        client, "/cash-receipts", receipt_body(invno=paid), **{"Idempotency-Key": "b"}
    )

    assert wrong_customer.status_code == 422
    assert wrong_customer.json()["code"] == "INVOICE_NOT_FOUND"
    assert settled.status_code == 422
    assert settled.json()["code"] == "INVOICE_NOT_OPEN"


def test_it_refuses_unknown_customers(sandbox, client):
    response = post(
        client,
        "/cash-receipts",
        receipt_body(custno="NOBODY", applications=[]),
        **{"Idempotency-Key": "k1"},
    )

    assert response.status_code == 422
    assert response.json()["code"] == "CUSTOMER_NOT_FOUND"


def test_held_customers_may_still_pay(sandbox, client):
    invno = seed_invoice("HOLDCO", "50.00")

    response = post(
        client,
        "/cash-receipts",
        receipt_body(invno=invno, custno="HOLDCO", amount="50.00"),
        **{"Idempotency-Key": "k1"},
    )

    assert response.status_code == 201


def test_a_replay_with_different_number_formatting_is_still_a_replay(sandbox, client):
    first = post(
        client,
        "/cash-receipts",
        receipt_body(amount="10.5"),
        **{"Idempotency-Key": "k"},
    )
    again = post(
        client,
        "/cash-receipts",
        receipt_body(amount="10.50", invno="     10001", custno="acme"),
        **{"Idempotency-Key": "k"},
    )

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()


def test_receipt_numbers_come_from_the_counter(sandbox, client):
    numbers = [
        post(
            client,
            "/cash-receipts",
            receipt_body(reference=f"pt-{i}", applications=[]),
            **{"Idempotency-Key": f"k{i}"},
        ).json()["receipt_no"]
        for i in range(3)
    ]

    assert numbers == ["000001", "000002", "000003"]
    assert CashReceipt.objects.filter(rcptno="    000002").exists()


def test_deleting_a_receipt_reverses_its_applications(sandbox, client):
    invno = seed_invoice("ACME", "100.00")
    balance_before = ArCust.objects.get(custno="ACME  ").balance
    posted = post(
        client,
        "/cash-receipts",
        receipt_body(invno=invno, amount="40.00"),
        **{"Idempotency-Key": "k1"},
    ).json()

    response = client.delete(
        f"{API}/cash-receipts/{posted['receipt_no']}", headers=AUTH
    )

    assert response.status_code == 200
    assert response.json()["deleted"] is True
    assert ArMast.objects.get(invno=invno.rjust(10)).balance == Decimal("100.00")
    assert ArCust.objects.get(custno="ACME  ").balance == balance_before
    assert not CashReceiptLine.objects.filter(deleted=False).exists()
    assert get(client, "/cash-receipts?idempotency_key=k1").json()["results"] == []
    # The key and the reference are free again.
    again = post(
        client,
        "/cash-receipts",
        receipt_body(invno=invno, amount="40.00"),
        **{"Idempotency-Key": "k1"},
    )
    assert again.status_code == 201
    assert again.json()["receipt_no"] != posted["receipt_no"]


def test_the_sandbox_can_create_invoices(sandbox, client):
    response = post(client, "/invoices", {"custno": "acme", "invamt": "99.95"})

    assert response.status_code == 201
    invoice = response.json()
    assert invoice["invno"].isdigit()
    assert invoice["balance"] == "99.95"
    assert ArMast.objects.filter(invno=invoice["invno"].rjust(10)).exists()
    duplicate = post(
        client, "/invoices", {"custno": "ACME", "invamt": "1.00", "invno": "10001"}
    )
    assert duplicate.status_code == 409


# --- faults --------------------------------------------------------------------------


def test_faults_are_stored_shown_and_expire(sandbox, client):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        post(client, "/_faults", {"mode": "unavailable", "seconds": 10})

        shown = get(client, "/_faults").json()
        refused = get(client, "/customers/ACME")
        assert shown["mode"] == "unavailable"
        assert refused.status_code == 503
        assert refused.json()["code"] == "UNAVAILABLE"
        assert refused.headers["Retry-After"] == "11"

        traveller.shift(datetime.timedelta(seconds=11))
        assert get(client, "/_faults").json()["mode"] == "none"
        assert get(client, "/customers/ACME").status_code == 200


def test_none_clears_a_fault(sandbox, client):
    post(client, "/_faults", {"mode": "locked", "seconds": 600})
    post(client, "/_faults", {"mode": "none"})

    response = post(
        client, "/cash-receipts", receipt_body(), **{"Idempotency-Key": "k"}
    )

    assert response.status_code == 201


def test_a_locked_fault_refuses_writes_only(sandbox, client):
    post(client, "/_faults", {"mode": "locked", "seconds": 600})

    write = post(client, "/cash-receipts", receipt_body(), **{"Idempotency-Key": "k"})
    read = get(client, "/invoices/10001")

    assert write.status_code == 423
    assert write.json()["code"] == "RECORD_LOCKED"
    assert read.status_code == 200
    assert CashReceipt.objects.count() == 0


def test_a_slow_fault_commits_before_it_sleeps(sandbox, client, monkeypatch):
    seen = []

    def record(seconds):
        seen.append((seconds, CashReceipt.objects.count()))

    monkeypatch.setattr(views, "pause", record)
    post(client, "/_faults", {"mode": "slow", "seconds": 60, "delay": 12})

    response = post(
        client, "/cash-receipts", receipt_body(), **{"Idempotency-Key": "k"}
    )

    assert response.status_code == 201
    assert seen == [(12.0, 1)]


def test_the_fault_endpoint_is_never_faulted_and_needs_the_key(sandbox, client):
    post(client, "/_faults", {"mode": "unavailable", "seconds": 600})

    shown = get(client, "/_faults")
    refused = client.post(
        f"{API}/_faults", {"mode": "none"}, content_type="application/json"
    )
    cleared = post(client, "/_faults", {"mode": "none"})

    assert shown.status_code == 200
    assert shown.json()["mode"] == "unavailable"
    assert refused.status_code == 401
    assert cleared.json()["mode"] == "none"
    assert post(client, "/_faults", {"mode": "explode"}).status_code == 400


# --- concurrency -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_posts_cannot_pay_the_same_balance_twice():
    seed()
    invno = seed_invoice("ACME", "100.00")
    company = SycComp.objects.get(compid="01")
    barrier = threading.Barrier(2)
    outcomes = []

    def pay(n):
        try:
            barrier.wait()
            body = receipt_body(invno=invno, amount="100.00", reference=f"pt-{n}")
            ledger.post_cash_receipt(company, f"key-{n}", body)
            outcomes.append("posted")
        except ledger.GatewayError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["INVOICE_NOT_OPEN", "posted"]
    invoice = ArMast.objects.get(invno=invno.rjust(10))
    assert invoice.balance == Decimal("0.00")
    assert invoice.paidamt == Decimal("100.00")


def test_a_receipts_gl_account_is_kept_and_read_back(http, sage):
    from decimal import Decimal

    from django.conf import settings

    from integrations.connectors import sagepro
    from integrations.connectors.sagepro import SageProConnector
    from integrations.sandbox.sagepro.seed import today

    sage_api = SageProConnector(
        "http://testserver/sandbox/sagepro/api/v1", settings.SANDBOX_SAGEPRO_API_KEY
    )
    invno = sage.seed_invoice("ACME", "20.00")
    receipt = sagepro.CashReceipt(
        custno="ACME",
        date=today(),
        amount=Decimal("20.00"),
        method="CARD",
        reference="777000111",
        applications=(sagepro.Application(invno, Decimal("20.00")),),
        gl_account="110000",
    )
    posted = sage_api.post_cash_receipt("key-gl-1", receipt)
    found = sage_api.find_cash_receipts(reference="777000111")
    assert posted["gl_account"] == "1100-00"
    assert [r["gl_account"] for r in found] == ["1100-00"]


# --- seeded invoices with order and PO numbers (issue 11) ----------------------------


def test_the_sandbox_stores_an_invoices_order_and_po_numbers(sandbox, client):
    response = post(
        client,
        "/invoices",
        {
            "custno": "ACME",
            "invamt": "250.00",
            "invno": "88001",
            "ornum": " 5100123 ",
            "ponum": "4500123456",
        },
    )

    assert response.status_code == 201
    assert response.json()["ornum"] == "5100123"
    assert response.json()["ponum"] == "4500123456"
    stored = ArMast.objects.get(invno="     88001")
    assert stored.ornum == "   5100123"  # C10, right-justified like the seeded ones
    assert stored.ponum == "4500123456"
    assert get(client, "/invoices/88001").json()["ornum"] == "5100123"


def test_order_and_po_numbers_are_optional(sandbox, client):
    response = post(
        client, "/invoices", {"custno": "ACME", "invamt": "5.00", "ornum": None}
    )

    assert response.status_code == 201
    assert response.json()["ornum"] == ""
    assert response.json()["ponum"] == ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ornum", 5100123, "must be a string"),
        ("ornum", "51001234567", "must be at most 10 characters"),
        ("ponum", ["PO-1"], "must be a string"),
        ("ponum", "P" * 21, "must be at most 20 characters"),
    ],
)
def test_a_bad_order_or_po_number_is_refused_by_name(
    sandbox, client, field, value, message
):
    before = ArMast.objects.count()

    response = post(
        client,
        "/invoices",
        {"custno": "ACME", "invamt": "5.00", "invno": "88002", field: value},
    )

    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["errors"] == {field: [message]}
    assert ArMast.objects.count() == before


def test_seed_invoice_takes_order_and_po_numbers(sandbox):
    invno = seed_invoice("BLUEOX", "75.00", "88003", ornum="5100999", ponum="MNT-2291")

    stored = ArMast.objects.get(invno=invno.rjust(10))
    assert stored.ornum == "   5100999"
    assert stored.ponum == "MNT-2291"
    with pytest.raises(keys.InvalidKeyError, match="ponum"):
        seed_invoice("BLUEOX", "75.00", "88004", ponum="P" * 21)
    assert not ArMast.objects.filter(invno="     88004").exists()
