"""The connector's vault, hosted-fields, by-customer and recurrence calls, against the
PayTrace sandbox through the `http` fixture."""

import json
import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from integrations.connectors.base import ConnectorError
from integrations.sandbox.credentials import paytrace_headers
from integrations.sandbox.paytrace.models import Recurrence, Transaction
from integrations.sandbox.paytrace.recurrence import run_due
from tests.support.protect import hosted_fields_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def paytrace(paytrace_conn, http):
    return paytrace_conn.paytrace()


@pytest.fixture
def profile(paytrace_conn, paytrace, client):
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)
    paytrace.create_customer_protect(
        customer_id="C-1",
        hpf_token=hpf_token,
        enc_key=enc_key,
        billing_address={"name": "Ada Lovelace", "zip": "98101"},
        email="ada@example.com",
    )
    return "C-1"


def test_hosted_fields_token_gives_what_a_browser_gets(paytrace_conn, client, http):
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)
    assert hpf_token and enc_key and hpf_token != enc_key


def test_hosted_fields_token_fails_the_test_on_a_bad_card(paytrace_conn, client, http):
    with pytest.raises(AssertionError, match="number"):
        hosted_fields_token(paytrace_conn, client, number="4111111111111112")


def test_create_and_export_a_profile(paytrace, profile):
    [record] = paytrace.export_customers("C-1")
    assert record["customer_id"] == "C-1"
    assert record["credit_card"]["masked_number"] == "************1111"
    assert record["credit_card"]["expiration_month"] == 12
    assert record["credit_card"]["expiration_year"] == 2030
    assert record["email"] == "ada@example.com"
    assert [r["customer_id"] for r in paytrace.export_customers()] == ["C-1"]


def test_a_used_customer_id_raises_171(paytrace_conn, paytrace, profile, client):
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)
    with pytest.raises(ConnectorError) as caught:
        paytrace.create_customer_protect(
            customer_id="C-1", hpf_token=hpf_token, enc_key=enc_key
        )
    assert caught.value.code == "171" and not caught.value.transient


def test_a_used_token_raises_a_clear_error(paytrace_conn, paytrace, client):
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)
    paytrace.create_customer_protect(
        customer_id="A", hpf_token=hpf_token, enc_key=enc_key
    )
    with pytest.raises(ConnectorError, match="used already") as caught:
        paytrace.create_customer_protect(
            customer_id="B", hpf_token=hpf_token, enc_key=enc_key
        )
    assert caught.value.code == "900"


def test_update_protect_update_and_delete(paytrace_conn, paytrace, profile, client):
    hpf_token, enc_key = hosted_fields_token(
        paytrace_conn, client, number="5454545454545454", month=4, year=2032
    )
    reply = paytrace.update_customer_protect(
        customer_id="C-1", hpf_token=hpf_token, enc_key=enc_key
    )
    assert reply["response_code"] == 161
    reply = paytrace.update_customer("C-1", email="new@example.com")
    assert reply["response_code"] == 161
    [record] = paytrace.export_customers("C-1")
    assert record["credit_card"]["masked_number"].endswith("5454")
    assert record["credit_card"]["expiration_year"] == 2032
    assert record["email"] == "new@example.com"
    assert paytrace.delete_customer("C-1")["response_code"] == 162
    with pytest.raises(ConnectorError) as caught:
        paytrace.export_customers("C-1")
    assert caught.value.code == "30"
    with pytest.raises(ConnectorError) as caught:
        paytrace.delete_customer("C-1")
    assert caught.value.code == "30"


def test_sale_by_customer_approves_and_declines(paytrace, profile):
    reply = paytrace.sale_by_customer(
        customer_id="C-1",
        amount=Decimal("12.5"),
        invoice_id="21003",
        description="Invoice 21003 charge ch_1",
        customer_reference_id="ch_1",
    )
    assert reply["success"] is True and reply["response_code"] == 101
    txn = Transaction.find(reply["transaction_id"])
    assert txn.amount == Decimal("12.50") and txn.customer_id == "C-1"
    declined = paytrace.sale_by_customer(customer_id="C-1", amount=Decimal("12.43"))
    assert declined["success"] is False and declined["response_code"] == 102
    assert declined["approval_message"].strip() == "PICK UP CARD - Lost or stolen"
    with pytest.raises(ConnectorError) as caught:
        paytrace.sale_by_customer(customer_id="NOPE", amount=Decimal("1"))
    assert caught.value.code == "30"


def test_find_by_reference_finds_a_charge_whose_answer_was_lost(paytrace, profile):
    reply = paytrace.sale_by_customer(
        customer_id="C-1",
        amount=Decimal("20.00"),
        invoice_id="21003",
        description="Invoice 21003 charge ch_abc123",
    )
    paytrace.sale_by_customer(
        customer_id="C-1", amount=Decimal("5.00"), description="Other"
    )
    today = timezone.localdate()
    found = paytrace.find_by_reference(
        "ch_abc123", today - timedelta(days=1), today + timedelta(days=1)
    )
    assert [r["transaction_id"] for r in found] == [reply["transaction_id"]]
    assert found[0]["amount"] == Decimal("20")
    found = paytrace.find_by_reference(
        "ch_abc123",
        today - timedelta(days=1),
        today + timedelta(days=1),
        customer_id="C-2",
    )
    assert found == []


def test_recurrence_calls(paytrace, profile, client):
    reply = paytrace.create_recurrence(
        customer_id="C-1",
        recurrence={
            "amount": Decimal("15.00"),
            "start_date": "03/01/2030",
            "frequency": "monthly",
            "total_count": 0,
            "description": "Hosting",
            "invoice_id": "R-1",
        },
    )
    schedule_id = reply["recurrence"]["id"]
    assert reply["recurrence"]["next_date"] == "03/01/2030"
    paytrace.update_recurrence(schedule_id, {"amount": "17.00"})
    [schedule] = paytrace.export_recurrences("C-1")
    assert schedule["amount"] == Decimal("17") and schedule["status"] == "active"
    response = client.post(
        "/sandbox/paytrace/_run_recurrences",
        data=json.dumps({"today": "03/01/2030"}),
        content_type="application/json",
        headers=paytrace_headers(),
    )
    assert response.json()["count"] == 1
    [charge] = paytrace.export_recurrence_approved("C-1")
    assert charge["amount"] == Decimal("17")
    assert charge["invoice_id"] == "R-1"
    assert charge["description"] == f"Hosting (recurring {schedule_id})"
    paytrace.delete_recurrence(str(schedule_id))
    assert paytrace.export_recurrences()[0]["status"] == "cancelled"
    with pytest.raises(ConnectorError) as caught:
        paytrace.delete_recurrence("999999")
    assert caught.value.code == "901"


@pytest.mark.postgres
@pytest.mark.skipif(
    db_connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
)
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_make_each_payment_once(paytrace, profile):
    paytrace.create_recurrence(
        customer_id="C-1",
        recurrence={
            "amount": "9.00",
            "start_date": "01/01/2030",
            "frequency": "weekly",
            "total_count": 4,
        },
    )
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def run() -> None:
        try:
            barrier.wait()
            counts.append(len(run_due(date(2030, 2, 1), notify=False)))
        finally:
            db_connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 4
    assert Transaction.objects.filter(recurrence__isnull=False).count() == 4
    assert Recurrence.objects.get().status == "finished"


@pytest.mark.postgres
@pytest.mark.skipif(
    db_connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
)
@pytest.mark.django_db(transaction=True)
def test_a_token_used_twice_at_once_makes_one_profile(paytrace_conn, client, http):
    from integrations.sandbox.paytrace.models import VaultCustomer

    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def enrol(customer_id: str) -> None:
        try:
            barrier.wait()
            paytrace_conn.paytrace().create_customer_protect(
                customer_id=customer_id, hpf_token=hpf_token, enc_key=enc_key
            )
            outcomes.append("160")
        except ConnectorError as exc:
            outcomes.append(exc.code)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=enrol, args=(f"R-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["160", "900"]
    assert VaultCustomer.objects.count() == 1
