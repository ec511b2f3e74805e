"""`POST /api/payments/charge` and `GET /api/payments/charges/<reference>` (issue 15,
acceptance 1-2, the API part)."""

import json
from decimal import Decimal

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations import charging
from integrations.models.cards import CardOnFile
from integrations.models.charges import Charge
from integrations.roles import FINANCE_REVIEWER
from portal.models import ApiToken
from tests.factories import make_user
from tests.integrations.test_charging import VISA, balance, make_card, sales

pytestmark = pytest.mark.django_db


@pytest.fixture
def card(paytrace_conn, http, sage):
    return make_card(paytrace_conn, vault_id="ACME-VAULT-1")


@pytest.fixture
def invno(sage):
    return sage.seed_invoice("ACME", "100.00")


def token_for(user):
    return ApiToken.objects.create_token(user)[1]


@pytest.fixture
def api():
    user = make_user(username="erp-bot", group=FINANCE_REVIEWER)
    return Client(headers={"Authorization": f"Token {token_for(user)}"})


def post(client, body, key="order-1", **headers):
    if key is not None:
        headers["Idempotency-Key"] = key
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(
        "/api/payments/charge", data, content_type="application/json", headers=headers
    )


def body(number, amount="40.00", **fields):
    return {"customer_id": "ACME-VAULT-1", "invno": number, "amount": amount, **fields}


def test_it_charges_201_then_replays_200_with_one_sale_and_the_cash_applied_once(
    api, card, invno, run_tasks
):
    first = post(api, body(invno))
    run_tasks()
    again = post(api, body(invno))
    run_tasks()

    assert first.status_code == 201, first.content
    charge = first.json()
    assert charge["state"] == "approved"
    assert charge["amount"] == "40.00" and charge["invno"] == invno
    assert charge["custno"] == "ACME" and charge["customer_id"] == "ACME-VAULT-1"
    assert charge["transaction_id"] and charge["approval_code"]
    assert charge["card"] == {"brand": "Visa", "last4": "1111", "expiry": "12/30"}
    assert charge["requested_by"] == "erp-bot"
    assert charge["reference"].startswith("PTL-")
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["reference"] == charge["reference"]
    assert sales().count() == 1
    assert balance(invno) == Decimal("60.00")


def test_the_same_key_with_another_body_is_409(api, card, invno):
    assert post(api, body(invno)).status_code == 201
    conflict = post(api, body(invno, amount="41.00"))
    assert conflict.status_code == 409
    assert "Idempotency-Key" in conflict.json()["errors"]
    assert sales().count() == 1


def test_a_decline_is_402_with_its_reason_and_a_replay_does_not_charge_again(
    api, card, invno
):
    declined = post(api, body(invno, amount="10.13"))
    replay = post(api, body(invno, amount="10.13"))

    assert declined.status_code == 402
    assert declined.json()["state"] == "declined"
    assert "DECLINE" in declined.json()["decline_reason"]
    assert declined.json()["decline_category"] == "soft"
    assert replay.status_code == 402
    assert sales().count() == 1


def test_an_unknown_outcome_is_202_with_where_to_look(api, card, invno, monkeypatch):
    from tests.integrations.test_charging import lose_the_answer

    lose_the_answer(monkeypatch, after_sending=False)
    answer = post(api, body(invno))
    assert answer.status_code == 202
    assert answer.json()["state"] == "unknown"
    assert answer["Location"] == f"/api/payments/charges/{answer.json()['reference']}"


def test_a_charge_is_read_by_its_reference(api, card, invno, run_tasks):
    made = post(api, body(invno)).json()
    run_tasks()

    read = api.get(made["url"])

    assert read.status_code == 200
    assert read.json()["reference"] == made["reference"]
    assert read.json()["payment_id"] is not None
    assert api.get("/api/payments/charges/PTL-NOSUCHONE").status_code == 404
    assert Client().get(made["url"]).status_code == 401


def test_over_the_balance_needs_the_confirmation(api, card, invno):
    refused = post(api, body(invno, amount="120.00"))
    assert refused.status_code == 422
    message = refused.json()["errors"]["confirm_over_balance"][0]
    assert "balance 100.00" in message
    confirmed = post(api, body(invno, amount="120.00", confirm_over_balance=True))
    assert confirmed.status_code == 201


def test_without_a_token_401_without_the_permission_403(card, invno):
    assert post(Client(), body(invno)).status_code == 401
    bad = Client(headers={"Authorization": "Token nope"})
    assert post(bad, body(invno)).status_code == 401
    viewer = Client(headers={"Authorization": f"Token {token_for(make_user())}"})
    assert post(viewer, body(invno)).status_code == 403
    assert not Charge.objects.exists()


@pytest.mark.parametrize(
    "key", [None, "", "k" * 201, "clé", "tab\there", f"order {VISA}"]
)
def test_a_missing_or_bad_idempotency_key_is_400(api, card, invno, key):
    answer = post(api, body(invno), key=key)
    assert answer.status_code == 400
    assert "Idempotency-Key" in answer.json()["errors"]
    assert VISA not in answer.content.decode()
    assert not Charge.objects.exists()


def test_an_unknown_vault_id_is_404(api, card, invno):
    answer = post(api, body(invno, customer_id="NOBODY"))
    assert answer.status_code == 404
    assert "customer_id" in answer.json()["errors"]


def test_a_removed_card_is_422(api, card, invno):
    CardOnFile.objects.filter(pk=card.pk).update(state=CardOnFile.State.REMOVED)
    answer = post(api, body(invno))
    assert answer.status_code == 422
    assert "removed" in answer.json()["errors"]["customer_id"][0]


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ("not json", 400, "non_field_errors"),
        ("[1, 2]", 400, "non_field_errors"),
        ("null", 400, "non_field_errors"),
        ("[" * 100000, 400, "non_field_errors"),
        (
            '{"customer_id": "ACME-VAULT-1", "invno": "X", "amount": 12.34}',
            422,
            "amount",
        ),
        ('{"customer_id": "ACME-VAULT-1", "invno": "X", "amount": NaN}', 422, "amount"),
        ('{"customer_id": "ACME-VAULT-1", "invno": "X"}', 422, "amount"),
        ('{"customer_id": 5, "invno": "X", "amount": "1.00"}', 422, "customer_id"),
        (
            '{"customer_id": "ACME-VAULT-1", "invno": ["X"], "amount": "1"}',
            422,
            "invno",
        ),
    ],
)
def test_hostile_bodies_are_4xx_and_nothing_is_stored(
    api, card, invno, payload, status, field
):
    answer = post(api, payload)
    assert answer.status_code == status, answer.content
    assert field in answer.json()["errors"]
    assert not Charge.objects.exists() and not sales().exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": "1e999"}, "amount"),
        ({"amount": "99999999999999999999.00"}, "amount"),
        ({"amount": "-1.00"}, "amount"),
        ({"amount": "0.001"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": {"value": "1"}}, "amount"),
        ({"amount": "١٢"}, "amount"),
        ({"amount": VISA}, "amount"),
        ({"customer_id": VISA}, "customer_id"),
        ({"customer_id": "x" * 10000}, "customer_id"),
        ({"invno": VISA}, "invno"),
        ({"invno": "NOPE"}, "invno"),
        ({"invno": "\x00"}, "invno"),
        ({"confirm_over_balance": "yes"}, "confirm_over_balance"),
        ({"card_number": VISA}, "non_field_errors"),
    ],
)
def test_wrong_fields_are_refused_naming_the_field_without_echoing_card_data(
    api, card, invno, http, fields, field
):
    calls_before = len(http.calls)
    answer = post(api, body(invno, **fields))
    assert answer.status_code in (404, 422), answer.content
    assert all(VISA not in c.request.url for c in http.calls[calls_before:])
    assert field in answer.json()["errors"]
    assert VISA not in answer.content.decode()
    assert not Charge.objects.exists() and not sales().exists()


def test_an_integer_amount_is_exact_and_accepted(api, card, invno):
    answer = post(api, body(invno, amount=25))
    assert answer.status_code == 201
    assert answer.json()["amount"] == "25.00"


def test_the_schema_documents_the_charge_endpoint(api):
    staff = make_user(username="staffer", is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(staff)
    schema = browser.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    operation = schema.json()["paths"]["/api/payments/charge"]["post"]
    assert {"201", "200", "402", "409", "422"} <= set(operation["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])


def test_the_service_names_the_autopay_helper_uses_exist():
    assert charging.request_charge and charging.ChargeRefused
    assert charging.IdempotencyConflict and charging.ChargeOutcome
    assert charging.sweep_unknown and charging.preview_charge


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from([VISA, "ACME-VAULT-1", "10.00", "-1", "1e5", "NaN"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
BODIES = (
    st.fixed_dictionaries(
        {},
        optional={
            "customer_id": JSON_VALUES,
            "invno": JSON_VALUES,
            "amount": JSON_VALUES,
            "confirm_over_balance": JSON_VALUES,
        },
    )
    | JSON_VALUES
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payload=BODIES, key=st.text(max_size=40) | st.just(VISA))
def test_generated_hostile_bodies_are_never_a_5xx_and_store_nothing(
    api, card, payload, key
):
    try:
        raw = json.dumps(payload, allow_nan=True)
        headers = {"Idempotency-Key": key}
        answer = api.post(
            "/api/payments/charge",
            raw,
            content_type="application/json",
            headers=headers,
        )
    except ValueError:  # a header Django's client cannot send (a newline)
        return
    assert answer.status_code < 500, answer.content
    assert VISA not in answer.content.decode()
    assert not Charge.objects.exists()
