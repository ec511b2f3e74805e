"""The PayTrace sandbox's hosted fields, vault, sales by customer and recurring billing:
what each endpoint answers, and that no card number is ever kept."""

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps
from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.sandbox.credentials import paytrace_headers
from integrations.sandbox.paytrace import tasks
from integrations.sandbox.paytrace.models import (
    HostedFieldsToken,
    OutboundEvent,
    Recurrence,
    Transaction,
    VaultCustomer,
)
from integrations.sandbox.paytrace.recurrence import payment_date

BASE = "/sandbox/paytrace"
VISA = "4111111111111111"
DECLINING_VISA = "4000000000000002"
MASTERCARD = "5454545454545454"

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(client):
    reply = client.post(
        f"{BASE}/oauth/token",
        {
            "grant_type": "password",
            "username": settings.SANDBOX_PAYTRACE_USERNAME,
            "password": settings.SANDBOX_PAYTRACE_PASSWORD,
        },
    )
    return reply.json()["access_token"]


@pytest.fixture
def api(client, token):
    """POST a v1 body; return (status, decoded reply)."""

    def post(path, body=None, *, raw=None):
        data = raw if raw is not None else json.dumps({"integrator_id": "TEST", **body})
        response = client.post(
            f"{BASE}/v1/{path}",
            data=data,
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.status_code, json.loads(response.content, parse_float=Decimal)

    return post


@pytest.fixture
def hosted(client, api):
    """Tokenize a card through the hosted fields; return (hpf_token, enc_key)."""

    def tokenize(number=VISA, month="12", year="2030", csc="123"):
        _, reply = api("payment_fields/token/create", {})
        response = client.post(
            f"{BASE}/protect/tokenize",
            data=json.dumps(
                {
                    "clientKey": reply["clientKey"],
                    "number": number,
                    "expiration_month": month,
                    "expiration_year": year,
                    "csc": csc,
                }
            ),
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        return response.json()["hpf_token"], response.json()["enc_key"]

    return tokenize


@pytest.fixture
def enrol(api, hosted):
    def _enrol(customer_id="CUST-1", number=VISA, **card):
        hpf_token, enc_key = hosted(number, **card)
        status, reply = api(
            "customer/pt_protect_create",
            {
                "customer_id": customer_id,
                "hpf_token": hpf_token,
                "enc_key": enc_key,
                "billing_address": {"name": "Ada Lovelace", "zip": "98101"},
                "email": "ada@example.com",
            },
        )
        assert status == 200, reply
        return reply

    return _enrol


def sell(api, customer_id="CUST-1", amount="25.00", **extra):
    return api(
        "transactions/sale/by_customer",
        {"customer_id": customer_id, "amount": amount, **extra},
    )


def card_state(client, customer_id, state, headers=None):
    return client.post(
        f"{BASE}/_card_state",
        data=json.dumps({"customer_id": customer_id, "state": state}),
        content_type="application/json",
        headers=paytrace_headers() if headers is None else headers,
    )


def run_recurrences(client, today=None):
    body = {"today": today.strftime("%m/%d/%Y")} if today else {}
    response = client.post(
        f"{BASE}/_run_recurrences",
        data=json.dumps(body),
        content_type="application/json",
        headers=paytrace_headers(),
    )
    assert response.status_code == 200, response.content
    return json.loads(response.content, parse_float=Decimal)


def sandbox_text_values():
    """Every text and JSON value stored in the sandbox's tables."""
    config = apps.get_app_config("sandbox_paytrace")
    for model in config.get_models():
        text_fields = [
            f.name
            for f in model._meta.get_fields()
            if isinstance(f, models.CharField | models.TextField | models.JSONField)
        ]
        for row in model.objects.values_list(*text_fields):
            for value in row:
                yield json.dumps(value) if not isinstance(value, str) else value


# Hosted fields -------------------------------------------------------------------


def test_it_issues_a_client_key_to_a_bearer(api):
    status, reply = api("payment_fields/token/create", {})
    assert status == 200
    assert reply["success"] is True and reply["response_code"] == 1
    assert len(reply["clientKey"]) > 30


def test_a_client_key_needs_a_token_and_an_integrator_id(client, api):
    response = client.post(
        f"{BASE}/v1/payment_fields/token/create",
        data="{}",
        content_type="application/json",
    )
    assert response.status_code == 401
    status, reply = api("payment_fields/token/create", raw="{}")
    assert status == 400 and "integrator_id" in reply["errors"]["1"][0]


def test_it_serves_the_protect_script(client):
    response = client.get(f"{BASE}/protect/js/protect.min.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    body = response.content.decode()
    for name in ("window.PTPayment", "setup", "validate", "process", "pt_hpf_form"):
        assert name in body
    assert client.get(f"{BASE}/protect/js/other.js").status_code == 404


def test_the_hosted_fields_page_works_under_a_strict_csp(client, api):
    _, reply = api("payment_fields/token/create", {})
    response = client.get(f"{BASE}/protect/hpf", {"clientKey": reply["clientKey"]})
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    page = response.content.decode()
    for field in ("pt_cc_number", "pt_cc_exp_month", "pt_cc_exp_year", "pt_cc_csc"):
        assert f'id="{field}"' in page
    # No inline script or style: every <script> has a src, no style attributes.
    assert page.count("<script") == page.count("<script src=")
    assert "style=" not in page
    assert client.get(f"{BASE}/protect/js/hpf.js").status_code == 200


def test_the_hosted_fields_page_refuses_an_unknown_client_key(client):
    response = client.get(f"{BASE}/protect/hpf", {"clientKey": "nope"})
    assert response.status_code == 403
    assert "clientKey" in response.content.decode()


def test_tokenize_keeps_only_last_four_brand_and_expiry(hosted):
    hpf_token, enc_key = hosted(MASTERCARD, "7", "2031", "1234")
    row = HostedFieldsToken.objects.get()
    assert (row.card_last4, row.card_brand) == ("5454", "MasterCard")
    assert (row.expiration_month, row.expiration_year) == (7, 2031)
    assert row.used_at is None
    assert hpf_token not in row.digest and enc_key == row.enc_key
    assert not any(MASTERCARD in value for value in sandbox_text_values())


def test_tokenize_takes_a_form_too(client, api):
    _, reply = api("payment_fields/token/create", {})
    response = client.post(
        f"{BASE}/protect/tokenize",
        {
            "clientKey": reply["clientKey"],
            "number": "4111 1111 1111 1111",
            "expiration_month": "12",
            "expiration_year": "30",
            "csc": "123",
        },
    )
    assert response.status_code == 200
    assert HostedFieldsToken.objects.get().expiration_year == 2030


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"number": "4111111111111112"}, "number"),
        ({"number": "4111"}, "number"),
        ({"number": "٤١١١١١١١١١١١١١١١"}, "number"),
        ({"number": ["4111111111111111"]}, "number"),
        ({"expiration_month": "13"}, "expiration_month"),
        ({"expiration_month": "1", "expiration_year": "2020"}, "expiration_year"),
        ({"expiration_year": "2999"}, "expiration_year"),
        ({"expiration_year": {"y": 1}}, "expiration_year"),
        ({"csc": "12"}, "csc"),
        ({"csc": "12345"}, "csc"),
        ({"clientKey": "made-up"}, "clientKey"),
        ({"clientKey": 12}, "clientKey"),
    ],
)
def test_tokenize_refuses_bad_fields_naming_them(client, api, fields, bad):
    _, reply = api("payment_fields/token/create", {})
    body = {
        "clientKey": reply["clientKey"],
        "number": VISA,
        "expiration_month": "12",
        "expiration_year": "2030",
        "csc": "123",
        **fields,
    }
    response = client.post(
        f"{BASE}/protect/tokenize",
        data=json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert bad in [error["field"] for error in errors]
    assert "4111111111111112" not in response.content.decode()
    assert not HostedFieldsToken.objects.exists()


def test_tokenize_refuses_a_card_that_expired_last_month(client, api):
    last_month = timezone.localdate().replace(day=1) - timedelta(days=1)
    _, reply = api("payment_fields/token/create", {})
    response = client.post(
        f"{BASE}/protect/tokenize",
        data=json.dumps(
            {
                "clientKey": reply["clientKey"],
                "number": VISA,
                "expiration_month": str(last_month.month),
                "expiration_year": str(last_month.year),
                "csc": "123",
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "expired" in response.content.decode()


@pytest.mark.parametrize(
    "raw", [b"not json", b"[1, 2]", b'"text"', b"{" * 5000, b"\xff\xfe"]
)
def test_tokenize_answers_hostile_bodies_with_4xx(client, raw):
    response = client.post(
        f"{BASE}/protect/tokenize", data=raw, content_type="application/json"
    )
    assert 400 <= response.status_code < 500
    assert "errors" in response.json()


def test_a_client_key_lives_thirty_minutes(client, api):
    _, reply = api("payment_fields/token/create", {})
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        response = client.post(
            f"{BASE}/protect/tokenize",
            data=json.dumps(
                {
                    "clientKey": reply["clientKey"],
                    "number": VISA,
                    "expiration_month": "12",
                    "expiration_year": "2030",
                    "csc": "123",
                }
            ),
            content_type="application/json",
        )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "clientKey"


# Vault ------------------------------------------------------------------------------


def test_protect_create_makes_a_profile_from_a_token(api, enrol):
    reply = enrol("CUST-1")
    assert reply["success"] is True and reply["response_code"] == 160
    assert reply["customer_id"] == "CUST-1"
    profile = VaultCustomer.objects.get()
    assert (profile.card_last4, profile.card_brand) == ("1111", "Visa")
    assert (profile.expiration_month, profile.expiration_year) == (12, 2030)
    assert profile.billing_address["zip"] == "98101"
    assert HostedFieldsToken.objects.get().used_at is not None


def test_a_hosted_fields_token_is_single_use(api, hosted):
    hpf_token, enc_key = hosted()
    body = {"hpf_token": hpf_token, "enc_key": enc_key}
    assert api("customer/pt_protect_create", {"customer_id": "A", **body})[0] == 200
    status, reply = api("customer/pt_protect_create", {"customer_id": "B", **body})
    assert status == 400 and "used already" in reply["errors"]["900"][0]


def test_a_hosted_fields_token_lives_fifteen_minutes(api, hosted):
    hpf_token, enc_key = hosted()
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        status, reply = api(
            "customer/pt_protect_create",
            {"customer_id": "A", "hpf_token": hpf_token, "enc_key": enc_key},
        )
    assert status == 400 and "expired" in reply["errors"]["900"][0]


@pytest.mark.parametrize(
    "pair",
    [
        {"hpf_token": "made-up", "enc_key": "made-up"},
        {"hpf_token": None, "enc_key": "x"},
        {"hpf_token": ["x"], "enc_key": {"y": 1}},
        {},
    ],
)
def test_protect_create_refuses_a_token_it_did_not_issue(api, pair):
    status, reply = api("customer/pt_protect_create", {"customer_id": "A", **pair})
    assert status == 400 and "900" in reply["errors"]
    assert not VaultCustomer.objects.exists()


def test_protect_create_refuses_a_wrong_enc_key(api, hosted):
    hpf_token, _ = hosted()
    status, reply = api(
        "customer/pt_protect_create",
        {"customer_id": "A", "hpf_token": hpf_token, "enc_key": "other"},
    )
    assert status == 400 and "900" in reply["errors"]


def test_a_duplicate_customer_id_is_171_and_keeps_the_token(api, enrol, hosted):
    enrol("CUST-1")
    hpf_token, enc_key = hosted()
    body = {"hpf_token": hpf_token, "enc_key": enc_key}
    status, reply = api("customer/pt_protect_create", {"customer_id": "CUST-1", **body})
    assert status == 400 and list(reply["errors"]) == ["171"]
    # The refused call did not use up the token.
    assert (
        api("customer/pt_protect_create", {"customer_id": "CUST-2", **body})[0] == 200
    )


def test_protect_update_replaces_the_card(api, enrol, hosted):
    enrol("CUST-1")
    hpf_token, enc_key = hosted(MASTERCARD, "3", "2032")
    status, reply = api(
        "customer/pt_protect_update",
        {"customer_id": "CUST-1", "hpf_token": hpf_token, "enc_key": enc_key},
    )
    assert status == 200 and reply["response_code"] == 161
    profile = VaultCustomer.objects.get()
    assert (profile.card_last4, profile.expiration_year) == ("5454", 2032)
    assert profile.billing_address["zip"] == "98101"  # kept


def test_protect_update_of_an_unknown_profile_is_30(api, hosted):
    hpf_token, enc_key = hosted()
    status, reply = api(
        "customer/pt_protect_update",
        {"customer_id": "NOPE", "hpf_token": hpf_token, "enc_key": enc_key},
    )
    assert status == 400 and list(reply["errors"]) == ["30"]
    assert HostedFieldsToken.objects.get().used_at is None


def test_keyed_create_keeps_the_last_four_only(api):
    status, reply = api(
        "customer/create",
        {
            "customer_id": "KEYED-1",
            "credit_card": {
                "number": VISA,
                "expiration_month": "6",
                "expiration_year": "29",
            },
        },
    )
    assert status == 200 and reply["response_code"] == 160
    profile = VaultCustomer.objects.get()
    assert profile.created_through == "keyed"
    assert (profile.card_last4, profile.expiration_year) == ("1111", 2029)
    assert not any(VISA in value for value in sandbox_text_values())


@pytest.mark.parametrize(
    ("card", "code"),
    [
        ({"number": "4111111111111112"}, "35"),
        ({"number": 4111111111111111}, "35"),
        ({"expiration_month": 0}, "43"),
        ({"expiration_month": "x"}, "43"),
        ({"expiration_year": 1999}, "44"),
        ({"expiration_year": 10**30}, "44"),
    ],
)
def test_keyed_create_refuses_bad_card_fields(api, card, code):
    body = {
        "customer_id": "K",
        "credit_card": {
            "number": VISA,
            "expiration_month": 6,
            "expiration_year": 2030,
            **card,
        },
    }
    status, reply = api("customer/create", body)
    assert status == 400 and code in reply["errors"]
    assert "4111111111111112" not in json.dumps(reply)


def test_keyed_create_of_a_used_id_is_171(api, enrol):
    enrol("CUST-1")
    status, reply = api(
        "customer/create",
        {
            "customer_id": "CUST-1",
            "credit_card": {
                "number": VISA,
                "expiration_month": 6,
                "expiration_year": 2030,
            },
        },
    )
    assert status == 400 and list(reply["errors"]) == ["171"]


def test_update_changes_expiry_email_and_address(api, enrol):
    enrol("CUST-1")
    status, reply = api(
        "customer/update",
        {
            "customer_id": "CUST-1",
            "credit_card": {"expiration_month": 1, "expiration_year": 2033},
            "email": "new@example.com",
            "billing_address": {"name": "A. King", "zip": "10001"},
        },
    )
    assert status == 200 and reply["response_code"] == 161
    profile = VaultCustomer.objects.get()
    assert (profile.expiration_month, profile.expiration_year) == (1, 2033)
    assert profile.email == "new@example.com"
    assert profile.billing_address == {"name": "A. King", "zip": "10001"}
    assert profile.card_last4 == "1111"


def test_update_refuses_a_keyed_number_and_bad_fields(api, enrol):
    enrol("CUST-1")
    status, reply = api(
        "customer/update",
        {"customer_id": "CUST-1", "credit_card": {"number": MASTERCARD}},
    )
    assert status == 400 and "35" in reply["errors"]
    assert MASTERCARD not in json.dumps(reply)
    status, reply = api("customer/update", {"customer_id": "CUST-1", "email": "x"})
    assert status == 400 and "email" in reply["errors"]["1"][0]
    status, reply = api("customer/update", {"customer_id": "NOPE"})
    assert status == 400 and list(reply["errors"]) == ["30"]
    assert VaultCustomer.objects.get().card_last4 == "1111"


def test_delete_removes_the_profile_and_cancels_its_schedules(api, enrol):
    enrol("CUST-1")
    api(
        "recurrence/create",
        {
            "customer_id": "CUST-1",
            "recurrence": {
                "amount": "10.00",
                "start_date": "01/15/2030",
                "frequency": "monthly",
            },
        },
    )
    status, reply = api("customer/delete", {"customer_id": "CUST-1"})
    assert status == 200 and reply["response_code"] == 162
    assert not VaultCustomer.objects.exists()
    assert Recurrence.objects.get().status == "cancelled"
    status, reply = api("customer/delete", {"customer_id": "CUST-1"})
    assert status == 400 and list(reply["errors"]) == ["30"]


def test_export_lists_masked_profiles(api, enrol):
    enrol("CUST-1")
    enrol("CUST-2", MASTERCARD, month="5", year="2031")
    status, reply = api("customer/export", {})
    assert status == 200 and reply["success"] is True
    assert [c["customer_id"] for c in reply["customers"]] == ["CUST-1", "CUST-2"]
    card = reply["customers"][1]["credit_card"]
    assert card == {
        "masked_number": "************5454",
        "expiration_month": 5,
        "expiration_year": 2031,
        "card_type": "MasterCard",
    }
    assert reply["customers"][0]["email"] == "ada@example.com"
    assert reply["customers"][0]["billing_address"]["name"] == "Ada Lovelace"
    _, one = api("customer/export", {"customer_id": "CUST-2"})
    assert [c["customer_id"] for c in one["customers"]] == ["CUST-2"]
    status, reply = api("customer/export", {"customer_id": "NOPE"})
    assert status == 400 and list(reply["errors"]) == ["30"]


# Sales by customer --------------------------------------------------------------------


def test_a_sale_by_customer_charges_the_profile_card(api, enrol):
    enrol("CUST-1")
    status, reply = sell(
        api,
        amount="40.00",
        invoice_id="21003",
        description="Invoice 21003",
        customer_reference_id="PO-7",
        csc="123",
    )
    assert status == 200
    assert reply["success"] is True and reply["response_code"] == 101
    assert "masked_card_number" not in reply
    txn = Transaction.find(reply["transaction_id"])
    assert txn.customer_id == "CUST-1"
    assert (txn.card_last4, txn.card_brand, txn.expiration_year) == ("1111", "Visa", 30)
    assert (txn.invoice_id, txn.customer_reference_id) == ("21003", "PO-7")
    assert txn.amount == Decimal("40.00")
    assert [e.type for e in OutboundEvent.objects.filter(transaction=txn)] == [
        "transaction.approved"
    ]
    _, export = api("transactions/export/by_id", {"transaction_id": txn.transaction_id})
    assert export["transactions"][0]["customer_id"] == "CUST-1"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("10.13", "DECLINE - Do not honor"),
        ("10.51", "NSF - Insufficient funds"),
        ("10.43", "PICK UP CARD - Lost or stolen"),
    ],
)
def test_a_sale_by_customer_declines_by_the_cents(api, enrol, amount, message):
    enrol("CUST-1")
    status, reply = sell(api, amount=amount)
    assert status == 400
    assert reply["success"] is False and reply["response_code"] == 102
    assert reply["approval_message"].strip() == message
    assert "errors" not in reply
    txn = Transaction.find(reply["transaction_id"])
    assert txn.is_declined()
    assert OutboundEvent.objects.get(transaction=txn).type == "transaction.declined"


def test_a_card_enrolled_ending_0002_always_declines(api, enrol):
    enrol("CUST-1", DECLINING_VISA)
    _, reply = sell(api, amount="12.00")
    assert reply["response_code"] == 102
    assert reply["approval_message"].strip() == "DECLINE - Do not honor"


def test_an_expired_card_declines_hard(api, enrol):
    enrol("CUST-1")
    last_month = timezone.localdate().replace(day=1) - timedelta(days=1)
    status, _ = api(
        "customer/update",
        {
            "customer_id": "CUST-1",
            "credit_card": {
                "expiration_month": last_month.month,
                "expiration_year": last_month.year,
            },
        },
    )
    assert status == 200
    _, reply = sell(api)
    assert reply["response_code"] == 102
    assert reply["approval_message"].strip() == "EXPIRED CARD"


def test_card_state_declines_softly_then_recovers(api, client, enrol):
    enrol("CUST-1")
    assert card_state(client, "CUST-1", "insufficient_funds").status_code == 200
    _, reply = sell(api)
    assert reply["approval_message"].strip() == "NSF - Insufficient funds"
    assert card_state(client, "CUST-1", "ok").json()["state"] == "ok"
    _, reply = sell(api)
    assert reply["success"] is True


def test_card_state_lost_stolen_declines_hard(api, client, enrol):
    enrol("CUST-1")
    card_state(client, "CUST-1", "lost_stolen")
    _, reply = sell(api)
    assert reply["approval_message"].strip() == "PICK UP CARD - Lost or stolen"


def test_card_state_takes_a_bearer_and_refuses_bad_requests(client, token, enrol):
    enrol("CUST-1")
    bearer = {"Authorization": f"Bearer {token}"}
    assert card_state(client, "CUST-1", "ok", headers=bearer).status_code == 200
    assert card_state(client, "CUST-1", "ok", headers={}).status_code == 401
    response = card_state(client, "CUST-1", "broken")
    assert (
        response.status_code == 400
        and "insufficient_funds" in response.json()["errors"]["1"][0]
    )
    assert card_state(client, "NOPE", "ok").json()["errors"] == {
        "30": ["Customer ID NOPE was not found."]
    }
    response = client.post(
        f"{BASE}/_card_state",
        data="nope",
        content_type="application/json",
        headers=paytrace_headers(),
    )
    assert response.status_code == 400


def test_a_replaced_card_drops_the_old_cards_state(api, client, enrol, hosted):
    enrol("CUST-1")
    card_state(client, "CUST-1", "lost_stolen")
    hpf_token, enc_key = hosted(MASTERCARD)
    api(
        "customer/pt_protect_update",
        {"customer_id": "CUST-1", "hpf_token": hpf_token, "enc_key": enc_key},
    )
    assert sell(api)[1]["success"] is True


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"customer_id": "NOPE", "amount": "5.00"}, "30"),
        ({"customer_id": "CUST-1", "amount": "0"}, "51"),
        ({"customer_id": "CUST-1", "amount": "-5"}, "51"),
        ({"customer_id": "CUST-1", "amount": "5.001"}, "51"),
        ({"customer_id": "CUST-1", "amount": "1e9"}, "51"),
        ({"customer_id": "CUST-1", "amount": "NaN"}, "51"),
        ({"customer_id": "CUST-1", "amount": True}, "51"),
        ({"customer_id": "CUST-1", "amount": {"v": 1}}, "51"),
        ({"customer_id": "CUST-1", "amount": "5", "csc": "12"}, "148"),
        ({"customer_id": "CUST-1", "amount": "5", "invoice_id": {"a": 1}}, "1"),
        ({"customer_id": "CUST-1", "amount": "5", "description": ["x"]}, "1"),
        ({"customer_id": ["CUST-1"], "amount": "5"}, "30"),
        ({"customer_id": "x" * 500, "amount": "5"}, "30"),
        ({"customer_id": "CUST-1\x00", "amount": "5"}, "30"),
        ({"amount": "5"}, "30"),
    ],
)
def test_a_sale_by_customer_refuses_bad_requests(api, enrol, body, code):
    enrol("CUST-1")
    status, reply = api("transactions/sale/by_customer", body)
    assert status == 400 and code in reply["errors"]
    assert not Transaction.objects.exists()


# Card numbers where none belongs ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("transactions/sale/by_customer", {"customer_id": VISA, "amount": "5"}),
        (
            "transactions/sale/by_customer",
            {"customer_id": "CUST-1", "amount": "5", "description": f"card {VISA}"},
        ),
        (
            "transactions/sale/by_customer",
            {
                "customer_id": "CUST-1",
                "amount": "5",
                "invoice_id": "4111-1111-1111-1111",
            },
        ),
        (
            "customer/update",
            {"customer_id": "CUST-1", "billing_address": {"name": VISA}},
        ),
        ("customer/update", {"customer_id": "CUST-1", "email": f"{VISA}@example.com"}),
        (
            "customer/create",
            {
                "customer_id": "K2",
                "email": VISA,
                "credit_card": {
                    "number": VISA,
                    "expiration_month": 1,
                    "expiration_year": 2030,
                },
            },
        ),
        (
            "recurrence/create",
            {
                "customer_id": "CUST-1",
                "recurrence": {
                    "amount": "5",
                    "start_date": "01/01/2030",
                    "frequency": "monthly",
                    "description": f"card {VISA}",
                },
            },
        ),
    ],
)
def test_a_card_number_in_another_field_is_refused(api, enrol, path, body):
    enrol("CUST-1")
    status, reply = api(path, body)
    assert status == 400
    assert "card number" in reply["errors"]["1"][0]
    assert VISA not in json.dumps(reply) and "4111-1111" not in json.dumps(reply)
    assert not any(VISA in value for value in sandbox_text_values())


ENDPOINTS = [
    "payment_fields/token/create",
    "customer/pt_protect_create",
    "customer/pt_protect_update",
    "customer/create",
    "customer/update",
    "customer/delete",
    "customer/export",
    "transactions/sale/by_customer",
    "recurrence/create",
    "recurrence/update",
    "recurrence/delete",
    "recurrence/export",
    "recurrence/export_approved",
]
HOSTILE = [
    "not json",
    "[]",
    "null",
    json.dumps({"integrator_id": "T", "customer_id": 12}),
    json.dumps({"integrator_id": "T", "customer_id": {"$gt": ""}}),
    json.dumps({"integrator_id": "T", "customer_id": "CUST-1", "recurrence": []}),
    json.dumps(
        {
            "integrator_id": "T",
            "customer_id": "CUST-1",
            "recurrence": {"id": "1e999", "amount": 1e308, "start_date": 5},
        }
    ),
    json.dumps(
        {"integrator_id": "T", "customer_id": "CUST-1", "recurrence": {"id": 2**80}}
    ),
    json.dumps({"integrator_id": "T", "customer_id": "CUST-1", "amount": "9" * 400}),
    json.dumps({"integrator_id": "T", "customer_id": "CUST-1", "credit_card": "4111"}),
    json.dumps({"integrator_id": "T", "customer_id": "\ud800"}),
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_answers_hostile_bodies_without_a_5xx(api, enrol, path):
    enrol("CUST-1")
    for raw in HOSTILE:
        status, reply = api(path, raw=raw)
        assert status < 500, (path, raw, reply)
        assert "success" in reply


# Recurring billing ---------------------------------------------------------------------


def create_schedule(api, **fields):
    recurrence = {
        "amount": "30.00",
        "start_date": "01/31/2030",
        "frequency": "monthly",
        "total_count": 3,
        "description": "Support plan",
        "invoice_id": "R-100",
        **fields,
    }
    return api("recurrence/create", {"customer_id": "CUST-1", "recurrence": recurrence})


def test_a_schedule_is_created_and_exported(api, enrol):
    enrol("CUST-1")
    status, reply = create_schedule(api)
    assert status == 200 and reply["success"] is True
    schedule = reply["recurrence"]
    assert schedule["next_date"] == "01/31/2030" and schedule["status"] == "active"
    _, export = api("recurrence/export", {"customer_id": "CUST-1"})
    assert export["recurrences"] == [
        {
            "id": schedule["id"],
            "customer_id": "CUST-1",
            "amount": Decimal("30"),
            "frequency": "monthly",
            "start_date": "01/31/2030",
            "next_date": "01/31/2030",
            "total_count": 3,
            "repeat_count": 0,
            "status": "active",
            "description": "Support plan",
            "invoice_id": "R-100",
        }
    ]
    assert api("recurrence/export", {})[1]["recurrences"][0]["id"] == schedule["id"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"frequency": "daily"}, "1"),
        ({"start_date": "2030-01-31"}, "1"),
        ({"start_date": "02/30/2030"}, "1"),
        ({"total_count": -1}, "1"),
        ({"total_count": "many"}, "1"),
        ({"amount": "0"}, "51"),
        ({"amount": "12.345"}, "51"),
    ],
)
def test_create_refuses_bad_schedule_fields(api, enrol, fields, code):
    enrol("CUST-1")
    status, reply = create_schedule(api, **fields)
    assert status == 400 and code in reply["errors"]
    assert not Recurrence.objects.exists()


def test_create_for_an_unknown_profile_is_30(api):
    status, reply = create_schedule(api)
    assert status == 400 and list(reply["errors"]) == ["30"]


def test_recurring_payments_run_when_due_and_finish(api, client, enrol):
    enrol("CUST-1")
    _, reply = create_schedule(api)
    schedule_id = reply["recurrence"]["id"]
    assert run_recurrences(client, date(2030, 1, 30))["count"] == 0
    ran = run_recurrences(client, date(2030, 1, 31))
    assert ran["count"] == 1 and ran["payments"][0]["approved"] is True
    txn = Transaction.find(ran["payments"][0]["transaction_id"])
    assert txn.created_through == "RECURRING"
    assert txn.invoice_id == "R-100"
    assert txn.description == f"Support plan (recurring {schedule_id})"
    assert txn.customer_id == "CUST-1" and txn.amount == Decimal("30.00")
    assert OutboundEvent.objects.filter(transaction=txn).exists()
    # Running again the same day makes nothing more.
    assert run_recurrences(client, date(2030, 1, 31))["count"] == 0
    _, export = api("recurrence/export", {})
    assert export["recurrences"][0]["next_date"] == "02/28/2030"
    assert export["recurrences"][0]["repeat_count"] == 1
    # Two months later: the two remaining payments, then the schedule is finished.
    ran = run_recurrences(client, date(2030, 4, 1))
    assert [p["scheduled_on"] for p in ran["payments"]] == ["02/28/2030", "03/31/2030"]
    _, export = api("recurrence/export", {})
    assert export["recurrences"][0]["status"] == "finished"
    assert export["recurrences"][0]["next_date"] == ""
    assert run_recurrences(client, date(2031, 1, 1))["count"] == 0
    _, approved = api("recurrence/export_approved", {"customer_id": "CUST-1"})
    assert len(approved["transactions"]) == 3
    assert {t["created"]["through"] for t in approved["transactions"]} == {"RECURRING"}


def test_a_declined_recurring_payment_counts_but_is_not_approved(api, client, enrol):
    enrol("CUST-1")
    create_schedule(api, amount="30.51", total_count=0)
    ran = run_recurrences(client, date(2030, 1, 31))
    assert ran["payments"][0]["approved"] is False
    assert ran["payments"][0]["approval_message"] == "NSF - Insufficient funds"
    _, approved = api("recurrence/export_approved", {"customer_id": "CUST-1"})
    assert approved["transactions"] == []
    sell(api, amount="5.00")  # a sale by hand is not a schedule's
    assert (
        api("recurrence/export_approved", {"customer_id": "CUST-1"})[1]["transactions"]
        == []
    )


def test_update_and_delete_a_schedule(api, client, enrol):
    enrol("CUST-1")
    _, reply = create_schedule(api)
    schedule_id = reply["recurrence"]["id"]
    status, reply = api(
        "recurrence/update",
        {
            "recurrence": {
                "id": schedule_id,
                "amount": "45.00",
                "frequency": "weekly",
                "start_date": "02/01/2030",
            }
        },
    )
    assert status == 200
    assert reply["recurrence"]["amount"] == Decimal("45")
    assert reply["recurrence"]["next_date"] == "02/01/2030"
    status, reply = api("recurrence/delete", {"recurrence": {"id": schedule_id}})
    assert status == 200 and reply["recurrence"]["status"] == "cancelled"
    assert run_recurrences(client, date(2031, 1, 1))["count"] == 0
    status, reply = api(
        "recurrence/update", {"recurrence": {"id": schedule_id, "amount": "1"}}
    )
    assert status == 400 and "cancelled" in reply["errors"]["1"][0]
    for path in ("recurrence/update", "recurrence/delete"):
        status, reply = api(path, {"recurrence": {"id": 999999}})
        assert status == 400 and list(reply["errors"]) == ["901"]


def test_run_recurrences_needs_the_sandbox_user_and_a_date(client):
    response = client.post(f"{BASE}/_run_recurrences")
    assert response.status_code == 401
    response = client.post(
        f"{BASE}/_run_recurrences",
        data=json.dumps({"today": "tomorrow"}),
        content_type="application/json",
        headers=paytrace_headers(),
    )
    assert response.status_code == 400


def test_the_task_runs_the_due_schedules(api, enrol):
    enrol("CUST-1")
    create_schedule(api, start_date="01/15/2030")
    assert tasks.run_recurrences("01/15/2030") == 1
    assert tasks.run_recurrences("01/15/2030") == 0


@pytest.mark.parametrize(
    ("start", "frequency", "number", "expected"),
    [
        (date(2030, 1, 31), "monthly", 1, date(2030, 2, 28)),
        (date(2032, 1, 31), "monthly", 1, date(2032, 2, 29)),
        (date(2030, 1, 31), "monthly", 2, date(2030, 3, 31)),
        (date(2030, 11, 30), "quarterly", 1, date(2031, 2, 28)),
        (date(2032, 2, 29), "annually", 1, date(2033, 2, 28)),
        (date(2030, 1, 1), "weekly", 3, date(2030, 1, 22)),
        (date(2030, 1, 1), "biweekly", 2, date(2030, 1, 29)),
    ],
)
def test_payment_dates(start, frequency, number, expected):
    assert payment_date(start, frequency, number) == expected


# Refunds and voids of vault sales --------------------------------------------------


def settle(client):
    return client.post(
        f"{BASE}/_settle",
        data="{}",
        content_type="application/json",
        headers=paytrace_headers(),
    ).json()


def test_refund_and_void_rules_hold_for_vault_sales(api, client, enrol):
    enrol("CUST-1")
    _, sale = sell(api, amount="50.00")
    sale_id = sale["transaction_id"]
    status, reply = api(
        "transactions/refund/for_transaction", {"transaction_id": sale_id}
    )
    assert status == 400 and list(reply["errors"]) == ["817"]
    settle(client)
    status, reply = api("transactions/void", {"transaction_id": sale_id})
    assert status == 400 and list(reply["errors"]) == ["818"]
    status, reply = api(
        "transactions/refund/for_transaction",
        {"transaction_id": sale_id, "amount": "30.00"},
    )
    assert status == 200 and reply["response_code"] == 106
    status, reply = api(
        "transactions/refund/for_transaction",
        {"transaction_id": sale_id, "amount": "20.01"},
    )
    assert status == 400 and list(reply["errors"]) == ["51"]
    assert "20.00" in reply["errors"]["51"][0]


def test_voiding_a_declined_sale_or_a_voided_one_says_why(api, enrol):
    enrol("CUST-1")
    _, declined = sell(api, amount="5.13")
    status, reply = api(
        "transactions/void", {"transaction_id": declined["transaction_id"]}
    )
    assert status == 400 and "was declined" in reply["errors"]["58"][0]
    _, sale = sell(api, amount="5.00")
    assert (
        api("transactions/void", {"transaction_id": sale["transaction_id"]})[0] == 200
    )
    status, reply = api("transactions/void", {"transaction_id": sale["transaction_id"]})
    assert status == 400 and "voided already" in reply["errors"]["58"][0]


# No card number anywhere -------------------------------------------------------------


def test_enrolment_and_sales_leave_no_card_number_in_the_sandbox(api, client, enrol):
    numbers = [VISA, MASTERCARD, DECLINING_VISA, "378282246310005", "6011111111111117"]
    for index, number in enumerate(numbers):
        enrol(f"CUST-{index}", number, csc="1234" if number.startswith("3") else "123")
        sell(api, customer_id=f"CUST-{index}", amount="10.00")
        sell(api, customer_id=f"CUST-{index}", amount="10.13")
    api(
        "customer/create",
        {
            "customer_id": "KEYED",
            "credit_card": {
                "number": "5105105105105100",
                "expiration_month": 1,
                "expiration_year": 2031,
            },
        },
    )
    create_schedule(api, start_date="01/01/2030")
    run_recurrences(client, date(2030, 1, 1))
    stored = list(sandbox_text_values())
    assert stored
    for number in [*numbers, "5105105105105100"]:
        assert not any(number in value for value in stored), number
        assert not any(number[:-4] in value for value in stored), number
    assert {p.card_last4 for p in VaultCustomer.objects.all()} == {
        "1111",
        "5454",
        "0002",
        "0005",
        "1117",
        "5100",
    }


def test_the_try_page_loads_the_stand_in_under_a_strict_policy(client):
    response = client.get(f"{BASE}/protect/try")
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-src 'self'" in csp
    page = response.content.decode()
    assert "protect/js/protect.min.js" in page and 'id="pt_hpf_form"' in page
    assert page.count("<script") == page.count("<script src=")
    key = page.split('data-client-key="')[1].split('"')[0]
    assert client.get(f"{BASE}/protect/hpf", {"clientKey": key}).status_code == 200


def test_no_card_number_reaches_the_log(api, client, enrol, caplog):
    caplog.set_level("DEBUG")
    enrol("CUST-1")
    _, reply = api("payment_fields/token/create", {})
    client.post(
        f"{BASE}/protect/tokenize",
        data=json.dumps(
            {
                "clientKey": reply["clientKey"],
                "number": "4111111111111112",
                "expiration_month": "12",
                "expiration_year": "2030",
                "csc": "123",
            }
        ),
        content_type="application/json",
    )
    sell(api, amount="10.13")
    api("customer/update", {"customer_id": "CUST-1", "credit_card": {"number": VISA}})
    api("transactions/sale/by_customer", {"customer_id": VISA, "amount": "5"})
    assert VISA not in caplog.text and "4111111111111112" not in caplog.text


def test_the_sandbox_admin_lists_the_new_records_without_card_data(
    admin_client, api, client, enrol
):
    enrol("CUST-1")
    create_schedule(api, start_date="01/01/2030")
    run_recurrences(client, date(2030, 1, 1))
    for model in ("vaultcustomer", "recurrence", "hostedfieldstoken", "clientkey"):
        response = admin_client.get(f"/admin/sandbox_paytrace/{model}/")
        assert response.status_code == 200, model
        assert VISA not in response.content.decode()
    profile = VaultCustomer.objects.get()
    page = admin_client.get(
        f"/admin/sandbox_paytrace/vaultcustomer/{profile.pk}/change/"
    ).content.decode()
    assert "1111" in page and VISA not in page
    token = HostedFieldsToken.objects.get()
    page = admin_client.get(
        f"/admin/sandbox_paytrace/hostedfieldstoken/{token.pk}/change/"
    ).content.decode()
    assert token.enc_key not in page and token.digest not in page
