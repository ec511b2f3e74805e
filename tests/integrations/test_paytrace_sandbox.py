"""The PayTrace v1 sandbox: its replies, its stored state and the events it sends."""

import json
import logging
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
import responses
import time_machine
from django.apps import apps
from django.conf import settings
from django.db import models
from django_q.models import OrmQ
from standardwebhooks.webhooks import Webhook

from integrations.sandbox.credentials import paytrace_headers
from integrations.sandbox.paytrace.models import (
    MAX_DELIVERY_ATTEMPTS,
    OutboundEvent,
    Transaction,
)
from tests import bridge
from tests.queue import queued_count

BASE = "/sandbox/paytrace"
VISA = "4111111111111111"
CARD_DIGITS = "4111111111111111"
RECORD_KEYS = {
    "transaction_id",
    "transaction_type",
    "amount",
    "tax_amount",
    "invoice_id",
    "customer_reference_id",
    "description",
    "customer_id",
    "receipt_emailed_to",
    "credit_card",
    "billing_address",
    "shipping_address",
    "approval_code",
    "approval_message",
    "avs_response",
    "csc_response",
    "status_code",
    "status_message",
    "created",
    "settled",
}
GATEWAY_TIME = re.compile(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M$")

pytestmark = pytest.mark.django_db


def get_token(client) -> str:
    reply = client.post(
        f"{BASE}/oauth/token",
        {
            "grant_type": "password",
            "username": settings.SANDBOX_PAYTRACE_USERNAME,
            "password": settings.SANDBOX_PAYTRACE_PASSWORD,
        },
    )
    assert reply.status_code == 200
    return reply.json()["access_token"]


@pytest.fixture
def api(client):
    """POST a v1 body with a fresh bearer token; return the Django response."""
    token = get_token(client)

    def post(path: str, body: dict, *, integrator: bool = True):
        if integrator:
            body = {"integrator_id": "TESTINTEGRATOR", **body}
        return client.post(
            f"{BASE}/v1/{path}",
            data=json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )

    return post


def sale_body(amount="25.00", number=VISA, **extra) -> dict:
    return {
        "amount": amount,
        "credit_card": {
            "number": number,
            "expiration_month": 9,
            "expiration_year": 2030,
        },
        "csc": "999",
        **extra,
    }


def sell(api, amount="25.00", number=VISA, **extra) -> dict:
    return json.loads(
        api("transactions/sale/keyed", sale_body(amount, number, **extra)).content
    )


def export(api, transaction_id: int) -> dict:
    reply = api("transactions/export/by_id", {"transaction_id": transaction_id})
    return json.loads(reply.content, parse_float=Decimal)["transactions"][0]


def settle(client, **body):
    return client.post(
        f"{BASE}/_settle",
        data=json.dumps(body),
        content_type="application/json",
        headers=paytrace_headers(),
    ).json()


class Receiver:
    """Stands in for the portal's webhook: records requests, answers from `outcomes`.

    Each delivery takes the next outcome (a status code or an exception); the last one
    repeats.
    """

    def __init__(self) -> None:
        self.requests: list = []
        self.outcomes: list = [204]

    def __call__(self, request):
        if request.url != settings.SANDBOX_PAYTRACE_WEBHOOK_URL:
            return bridge._forward(request)
        self.requests.append(request)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            return outcome
        return (
            outcome,
            {"Content-Type": "application/json"},
            b"" if outcome == 204 else b"{}",
        )


@pytest.fixture
def webhook(http):
    """Answer the portal's webhook URL here, whatever the real endpoint does."""
    receiver = Receiver()
    pattern = re.compile(re.escape(bridge.TESTSERVER) + r"/.*")
    http.replace(responses.CallbackResponse("POST", pattern, callback=receiver))
    return receiver


# Tokens --------------------------------------------------------------------------


def test_it_issues_a_bearer_token(client):
    reply = client.post(
        f"{BASE}/oauth/token",
        {
            "grant_type": "password",
            "username": settings.SANDBOX_PAYTRACE_USERNAME,
            "password": settings.SANDBOX_PAYTRACE_PASSWORD,
        },
    )
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 7200
    assert isinstance(body["created_at"], int)
    assert body["access_token"]


def test_it_refuses_bad_credentials(client):
    reply = client.post(
        f"{BASE}/oauth/token",
        {"grant_type": "password", "username": "demo-api-user", "password": "nope"},
    )
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_grant"
    assert reply.json()["error_description"]


@pytest.mark.parametrize("authorization", ["", "Bearer not-a-token", "Basic abc"])
def test_it_refuses_a_missing_or_unknown_token(client, authorization):
    reply = client.post(
        f"{BASE}/v1/transactions/export/by_id",
        data=json.dumps({"transaction_id": 500000001, "integrator_id": "X"}),
        content_type="application/json",
        headers={"Authorization": authorization} if authorization else {},
    )
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_token"


def test_it_refuses_an_expired_token(client):
    start = datetime(2025, 3, 4, 18, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        token = get_token(client)
        clock.shift(7201)
        reply = client.post(
            f"{BASE}/v1/transactions/export/by_id",
            data=json.dumps({"transaction_id": 500000001, "integrator_id": "X"}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_token"


# Sales ----------------------------------------------------------------------------


def test_a_sale_answers_with_the_v1_envelope(api):
    reply = sell(api)
    assert reply == {
        "success": True,
        "response_code": 101,
        "status_message": "Your transaction was successfully approved.",
        "transaction_id": reply["transaction_id"],
        "approval_code": reply["approval_code"],
        "approval_message": "  EXACT MATCH - Approved and completed",
        "avs_response": "No Match",
        "csc_response": "Match",
        "external_transaction_id": "",
        "masked_card_number": "xxxxxxxxxxxx1111",
    }
    assert isinstance(reply["transaction_id"], int)
    assert reply["transaction_id"] >= 500000001
    assert reply["approval_code"]


def test_transaction_ids_count_up(api):
    first = sell(api)["transaction_id"]
    assert sell(api, number="4000000000000002")["transaction_id"] == first + 1
    assert sell(api)["transaction_id"] == first + 2


def test_it_declines_cards_ending_0002_and_amounts_ending_13(api):
    for amount, number in [("25.00", "4000000000000002"), ("25.13", VISA)]:
        reply = api("transactions/sale/keyed", sale_body(amount, number))
        body = reply.json()
        assert reply.status_code == 400
        assert body["success"] is False
        assert body["response_code"] == 102
        assert body["approval_code"] == ""
        assert "Declined" in body["status_message"]
        assert body["transaction_id"] >= 500000001
        record = export(api, body["transaction_id"])
        assert record["status_code"] == "N"
        assert record["status_message"] == "Declined"


def test_it_accepts_the_amount_as_a_json_number(api):
    reply = api(
        "transactions/sale/keyed",
        {**sale_body(), "amount": 19.99, "tax_amount": "1.60"},
    )
    record = export(api, reply.json()["transaction_id"])
    assert record["amount"] == Decimal("19.99")
    assert record["tax_amount"] == "1.60"


def test_it_validates_the_card_and_the_amount(api):
    reply = api("transactions/sale/keyed", sale_body("0", "4111111111111112"))
    body = reply.json()
    assert reply.status_code == 400
    assert body["success"] is False
    assert set(body["errors"]) == {"35", "51"}
    assert Transaction.objects.count() == 0


def test_it_requires_the_integrator_id(api):
    body = api("transactions/sale/keyed", sale_body(), integrator=False).json()
    assert body["success"] is False
    assert body["errors"]
    assert Transaction.objects.count() == 0


def test_the_export_record_has_paytrace_fields_and_formats(api):
    with time_machine.travel(datetime(2025, 3, 4, 22, 7, 9, tzinfo=UTC), tick=False):
        sale = sell(
            api,
            amount="250.50",
            invoice_id="SO-10045",
            customer_reference_id="PO-7781",
            tax_amount="12.00",
            billing_address={"name": "Inland Supply Co", "zip": "99201"},
        )
        reply = api(
            "transactions/export/by_id", {"transaction_id": sale["transaction_id"]}
        )

    raw = reply.content.decode()
    envelope = json.loads(raw, parse_float=Decimal)
    assert envelope["success"] is True
    assert envelope["response_code"] == 1
    record = envelope["transactions"][0]
    assert set(record) == RECORD_KEYS
    assert '"amount":250.5,' in raw  # a JSON number, as PayTrace writes it
    assert record["transaction_id"] == sale["transaction_id"]
    assert record["transaction_type"] == "SALE"
    assert record["tax_amount"] == "12.00"
    assert record["credit_card"] == {
        "masked_number": "************1111",
        "expiration_month": 9,
        "expiration_year": 30,
    }
    assert record["billing_address"]["zip"] == "99201"
    assert record["status_code"] == "Y"
    assert record["status_message"] == "Pending Settlement"
    assert record["created"] == {
        "through": "API",
        "at": "3/4/2025 2:07:09 PM",
        "by": settings.SANDBOX_PAYTRACE_USERNAME,
        "from_ip": "127.0.0.1",
    }
    assert record["settled"] == ""


def test_export_by_id_reports_an_unknown_id_as_811(api):
    reply = api("transactions/export/by_id", {"transaction_id": 599999999})
    assert reply.json()["success"] is False
    assert list(reply.json()["errors"]) == ["811"]


def test_export_by_date_range_filters_by_type(api, client):
    approved = sell(api)["transaction_id"]
    declined = sell(api, number="4000000000000002")["transaction_id"]

    def ids(**filters):
        body = {"start_date": "01/01/2000", "end_date": "12/31/2099", **filters}
        reply = api("transactions/export/by_date_range", body).json()
        return [record["transaction_id"] for record in reply["transactions"]]

    assert ids() == [approved, declined]
    assert ids(transaction_type="DECLINED") == [declined]
    assert ids(transaction_type="PENDING") == [approved]
    assert ids(transaction_id=declined) == [declined]
    settle(client)
    assert ids(transaction_type="SETTLED") == [approved]


def test_export_by_date_range_refuses_bad_dates(api):
    reply = api("transactions/export/by_date_range", {"start_date": "2025-03-04"})
    assert reply.status_code == 400
    assert reply.json()["success"] is False


# Card data ------------------------------------------------------------------------


def test_it_never_stores_or_logs_the_card_number(api, client, caplog):
    caplog.set_level(logging.DEBUG)
    sell(api, invoice_id="SO-1")
    sell(api, number="4000000000000002")
    settle(client)

    text_fields = (models.CharField, models.TextField, models.JSONField)
    for model in apps.get_app_config("sandbox_paytrace").get_models():
        columns = [
            f.name for f in model._meta.concrete_fields if isinstance(f, text_fields)
        ]
        assert "csc" not in {f.name for f in model._meta.fields}
        if not columns:
            continue
        for row in model.objects.values_list(*columns):
            for value in row:
                assert CARD_DIGITS not in json.dumps(value), (model, value)
                assert "4000000000000002" not in json.dumps(value), (model, value)
    for payload in OrmQ.objects.values_list("payload", flat=True):
        assert CARD_DIGITS not in payload
    assert CARD_DIGITS not in caplog.text


# Events ---------------------------------------------------------------------------


def test_a_sale_queues_one_signed_event(api, webhook, run_tasks):
    sale = sell(api)

    assert queued_count() == 1
    event = OutboundEvent.objects.get()
    assert event.type == "transaction.approved"
    assert event.status == "pending"

    assert run_tasks() == 1
    [request] = webhook.requests
    body = request.body if isinstance(request.body, bytes) else request.body.encode()
    headers = dict(request.headers)
    assert headers["Content-Type"] == "application/json"
    assert headers["webhook-id"] == event.webhook_id
    assert headers["webhook-id"].startswith("msg_")
    payload = Webhook(settings.DEMO_WEBHOOK_SECRET).verify(body, headers)
    assert payload["type"] == "transaction.approved"
    assert payload["occurred_at"].endswith("Z")
    assert payload["data"] == export(api, sale["transaction_id"])
    event.refresh_from_db()
    assert event.status == "delivered"
    assert event.attempts == 1
    assert event.last_status == 204
    assert event.delivered_at is not None


def test_notify_false_queues_no_event(api):
    sell(api, notify=False)
    assert Transaction.objects.count() == 1
    assert OutboundEvent.objects.count() == 0
    assert queued_count() == 0


def test_a_decline_sends_a_declined_event(api):
    sell(api, number="4000000000000002")
    event = OutboundEvent.objects.get()
    assert event.type == "transaction.declined"
    assert json.loads(event.body)["data"]["status_code"] == "N"


def test_settle_puts_pending_sales_in_a_batch_and_sends_settled_events(api, client):
    first = sell(api)["transaction_id"]
    sell(api, number="4000000000000002")
    voided = sell(api)["transaction_id"]
    api("transactions/void", {"transaction_id": voided})
    OutboundEvent.objects.all().delete()

    result = settle(client)

    assert result["count"] == 1
    record = export(api, first)
    assert record["status_code"] == f"GB{result['batch_number']}"
    assert record["status_message"] == record["status_code"]
    assert GATEWAY_TIME.match(record["settled"])
    [event] = OutboundEvent.objects.all()
    assert event.type == "transaction.settled"
    assert json.loads(event.body)["data"]["status_code"] == record["status_code"]

    assert settle(client) == {"batch_number": None, "count": 0}
    sell(api)
    assert settle(client)["batch_number"] == result["batch_number"] + 1


def test_void_sends_a_voided_event(api):
    sale = sell(api, notify=False)
    reply = api("transactions/void", {"transaction_id": sale["transaction_id"]}).json()

    assert reply["success"] is True
    assert reply["response_code"] == 109
    record = export(api, sale["transaction_id"])
    assert (record["status_code"], record["status_message"]) == ("N", "Voided")
    assert OutboundEvent.objects.get().type == "transaction.voided"


def test_void_after_settlement_is_error_818(api, client):
    sale = sell(api)
    settle(client)
    reply = api("transactions/void", {"transaction_id": sale["transaction_id"]}).json()
    assert reply["success"] is False
    assert list(reply["errors"]) == ["818"]


def test_refund_before_settlement_is_error_817(api):
    sale = sell(api)
    reply = api(
        "transactions/refund/for_transaction",
        {"transaction_id": sale["transaction_id"]},
    ).json()
    assert reply["success"] is False
    assert list(reply["errors"]) == ["817"]


def test_refund_creates_a_refund_transaction_and_event(api, client):
    sale = sell(api, amount="100.00", invoice_id="SO-7")
    settle(client)
    OutboundEvent.objects.all().delete()

    reply = api(
        "transactions/refund/for_transaction",
        {"transaction_id": sale["transaction_id"], "amount": "30.00"},
    ).json()

    assert reply["success"] is True
    assert reply["response_code"] == 106
    assert reply["transaction_id"] != sale["transaction_id"]
    refund = Transaction.find(reply["transaction_id"])
    assert refund.original.transaction_id == sale["transaction_id"]
    [event] = OutboundEvent.objects.all()
    assert event.type == "transaction.refunded"
    data = json.loads(event.body, parse_float=Decimal)["data"]
    assert data["transaction_id"] == reply["transaction_id"]
    assert data["transaction_type"] == "REFUND"
    assert data["amount"] == Decimal("30")
    assert data["invoice_id"] == "SO-7"

    too_much = api(
        "transactions/refund/for_transaction",
        {"transaction_id": sale["transaction_id"], "amount": "70.01"},
    ).json()
    assert list(too_much["errors"]) == ["51"]
    rest = api(
        "transactions/refund/for_transaction",
        {"transaction_id": sale["transaction_id"]},
    ).json()
    assert export(api, rest["transaction_id"])["amount"] == Decimal("70")


# Delivery -------------------------------------------------------------------------


def test_delivery_retries_a_server_error_with_the_same_webhook_id(
    api, webhook, run_tasks
):
    webhook.outcomes = [503]
    sell(api)

    assert run_tasks() == MAX_DELIVERY_ATTEMPTS

    event = OutboundEvent.objects.get()
    assert event.status == "failed"
    assert event.attempts == MAX_DELIVERY_ATTEMPTS
    assert event.last_status == 503
    assert {r.headers["webhook-id"] for r in webhook.requests} == {event.webhook_id}


def test_delivery_retries_after_a_network_error(api, webhook, run_tasks):
    webhook.outcomes = [requests.ConnectionError("refused"), 200]
    sell(api)

    assert run_tasks() == 2

    event = OutboundEvent.objects.get()
    assert event.status == "delivered"
    assert event.attempts == 2
    assert event.last_status == 200
    assert event.last_error == ""


def test_delivery_gives_up_on_a_client_error(api, webhook, run_tasks):
    webhook.outcomes = [400]
    sell(api)

    assert run_tasks() == 1

    event = OutboundEvent.objects.get()
    assert event.status == "failed"
    assert event.attempts == 1
    assert event.last_status == 400


def test_delivering_twice_sends_once(api, webhook, run_tasks):
    from integrations.sandbox.paytrace.tasks import deliver_event

    sell(api)
    run_tasks()
    deliver_event(OutboundEvent.objects.get().pk)
    assert len(webhook.requests) == 1
