"""The PayTrace v1 connector and its record helpers.

Calls to `http://testserver/sandbox/paytrace` reach the sandbox views in-process (the
`http` fixture); the recorded-payload tests register a PayTrace host on the same mock.
"""

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import time_machine
from django.conf import settings
from django.core.cache import cache

from integrations.connectors.base import ConnectorError
from integrations.connectors.paytrace import (
    PaymentRecord,
    PayTraceConnector,
    normalize_record,
    parse_amount,
    parse_datetime,
    parse_silent_post,
)
from integrations.sandbox.credentials import paytrace_headers
from integrations.sandbox.paytrace.models import AccessToken

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "paytrace"
SANDBOX_URL = "http://testserver/sandbox/paytrace"
PAYTRACE_URL = "https://api.sandbox.paytrace.com"
LA = "America/Los_Angeles"
VISA = "4111111111111111"
DECLINED_CARD = "4000000000000002"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture_record(name: str = "export_by_id_settled.json") -> dict:
    return json.loads(fixture_text(name), parse_float=Decimal)["transactions"][0]


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def gateway(http):
    return PayTraceConnector(
        SANDBOX_URL,
        settings.SANDBOX_PAYTRACE_USERNAME,
        settings.SANDBOX_PAYTRACE_PASSWORD,
        "TESTINTEGRATOR",
        settings.SANDBOX_PAYTRACE_TIME_ZONE,
    )


def token_requests(http) -> int:
    return sum(1 for call in http.calls if call.request.url.endswith("/oauth/token"))


def sell(gateway, amount="25.00", card=VISA, **kwargs):
    return gateway.sale_keyed(
        amount=Decimal(amount),
        card_number=card,
        expiration_month=12,
        expiration_year=2030,
        csc="999",
        **kwargs,
    )


def settle(http) -> dict:
    return requests.post(
        f"{SANDBOX_URL}/_settle", headers=paytrace_headers(), timeout=5
    ).json()


# Pure helpers -------------------------------------------------------------------


def test_parse_datetime_converts_winter_time_from_pst():
    moment = parse_datetime("1/15/2025 2:07:09 PM", LA)
    assert moment == datetime(2025, 1, 15, 22, 7, 9, tzinfo=UTC)


def test_parse_datetime_converts_summer_time_from_pdt():
    moment = parse_datetime("7/15/2025 2:07:09 PM", LA)
    assert moment == datetime(2025, 7, 15, 21, 7, 9, tzinfo=UTC)


def test_parse_datetime_reads_the_repeated_hour_as_daylight_time():
    # 1:30 AM happens twice on 11/2/2025 in Los Angeles; fold=0 picks PDT (UTC-7).
    assert parse_datetime("11/2/2025 1:30:00 AM", LA) == datetime(
        2025, 11, 2, 8, 30, tzinfo=UTC
    )
    assert parse_datetime("11/2/2025 2:30:00 AM", LA) == datetime(
        2025, 11, 2, 10, 30, tzinfo=UTC
    )


def test_parse_datetime_handles_midnight_and_noon():
    assert parse_datetime("3/4/2025 12:00:00 AM", "UTC") == datetime(
        2025, 3, 4, 0, 0, tzinfo=UTC
    )
    assert parse_datetime("3/4/2025 12:00:00 PM", "UTC") == datetime(
        2025, 3, 4, 12, 0, tzinfo=UTC
    )


def test_parse_datetime_returns_none_for_empty_values():
    assert parse_datetime("", LA) is None
    assert parse_datetime(None, LA) is None


@pytest.mark.parametrize(
    "text", ["2025-03-04T14:07:09", "3/4/2025 14:07:09", "13/40/2025 1:00:00 PM"]
)
def test_parse_datetime_names_a_bad_value(text):
    with pytest.raises(ValueError, match=re.escape(text)):
        parse_datetime(text, LA)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (110, Decimal("110")),
        ("8.10", Decimal("8.10")),
        (Decimal("250.50"), Decimal("250.50")),
        (250.5, Decimal("250.5")),
        (0.1, Decimal("0.1")),
    ],
)
def test_parse_amount_reads_decimal(value, expected):
    amount = parse_amount(value)
    assert isinstance(amount, Decimal)
    assert amount == expected


@pytest.mark.parametrize("value", ["", "abc", None, True, "NaN", [1]])
def test_parse_amount_refuses_non_amounts(value):
    with pytest.raises(ValueError):
        parse_amount(value)


def test_normalize_record_reads_a_settled_export_record():
    record = normalize_record(fixture_record(), LA)

    assert isinstance(record, PaymentRecord)
    assert record.transaction_id == "500000123"
    assert record.transaction_type == "SALE"
    assert record.amount == Decimal("250.50")
    assert str(record.amount) == "250.50"
    assert record.tax_amount == Decimal("12.00")
    assert record.currency == "USD"
    assert record.invoice_id == "SO-10045"
    assert record.customer_reference_id == "PO-7781"
    assert record.card_last4 == "1111"
    assert record.card_brand == ""  # the export masks the leading digits
    assert record.approval_code == "TAS123"
    assert record.approval_message == "EXACT MATCH - Approved and completed"
    assert record.status_code == "GB812"
    assert record.batch_number == "812"
    assert record.response_code is None
    assert record.channel == "API"
    # 3/4/2025 is before the DST switch (3/9/2025): PST, UTC-8.
    assert record.created_at == datetime(2025, 3, 4, 22, 7, 9, tzinfo=UTC)
    assert record.settled_at == datetime(2025, 3, 5, 4, 15, tzinfo=UTC)
    assert record.is_settled()


def test_normalize_record_uses_daylight_time_in_summer():
    raw = fixture_record()
    raw["created"]["at"] = "7/4/2025 2:07:09 PM"
    raw["settled"] = ""
    raw["status_code"] = raw["status_message"] = "Y"

    record = normalize_record(raw, LA)

    assert record.created_at == datetime(2025, 7, 4, 21, 7, 9, tzinfo=UTC)
    assert record.settled_at is None
    assert record.batch_number == ""
    assert not record.is_settled()


def test_normalize_record_rounds_amounts_half_up():
    raw = {**fixture_record(), "amount": Decimal("10.005"), "tax_amount": "0.125"}
    record = normalize_record(raw, LA)
    assert record.amount == Decimal("10.01")
    assert record.tax_amount == Decimal("0.13")


def test_normalize_record_survives_missing_optional_fields():
    record = normalize_record({"transaction_id": 500000001, "amount": 110}, LA)

    assert record.transaction_id == "500000001"
    assert record.amount == Decimal("110.00")
    assert record.tax_amount is None
    assert record.card_last4 == ""
    assert record.created_at is None
    assert record.settled_at is None
    assert record.channel == ""


def test_normalize_record_names_the_brand_when_the_bin_is_shown():
    raw = fixture_record()
    raw["credit_card"]["masked_number"] = "541333******0011"
    raw["tax_amount"] = ""
    record = normalize_record(raw, LA)
    assert record.card_brand == "MasterCard"
    assert record.card_last4 == "0011"
    assert record.tax_amount is None


def test_parse_silent_post_splits_pairs():
    fields = parse_silent_post(
        "ORDERID~SO-10045|TRANSACTIONID~500000123|APPCODE~TAS123|"
        "APPMSG~  EXACT MATCH - Approved and completed|CANAME~|NOTE~a~b|"
    )
    assert fields == {
        "ORDERID": "SO-10045",
        "TRANSACTIONID": "500000123",
        "APPCODE": "TAS123",
        "APPMSG": "  EXACT MATCH - Approved and completed",
        "CANAME": "",
        "NOTE": "a~b",
    }


def test_parse_silent_post_tolerates_a_missing_last_pipe():
    assert parse_silent_post("ORDERID~1|CUSTOMERID~C-9") == {
        "ORDERID": "1",
        "CUSTOMERID": "C-9",
    }
    assert parse_silent_post("") == {}


# Recorded payloads ----------------------------------------------------------------


@pytest.fixture
def recorded(http):
    http.add(
        "POST",
        f"{PAYTRACE_URL}/oauth/token",
        json={"access_token": "tok-1", "token_type": "bearer", "expires_in": 7200},
    )
    return PayTraceConnector(PAYTRACE_URL, "apiuser", "secret", "INTEGRATOR1")


def test_export_by_id_reads_a_recorded_reply(http, recorded):
    http.add(
        "POST",
        f"{PAYTRACE_URL}/v1/transactions/export/by_id",
        body=fixture_text("export_by_id_settled.json"),
        content_type="application/json",
    )

    record = recorded.export_by_id(500000123)

    assert record["amount"] == Decimal("250.50")
    assert isinstance(record["amount"], Decimal)
    assert record["transaction_id"] == 500000123
    sent = json.loads(http.calls[-1].request.body)
    assert sent == {"transaction_id": 500000123, "integrator_id": "INTEGRATOR1"}
    assert http.calls[-1].request.headers["Authorization"] == "Bearer tok-1"


def test_export_by_id_returns_none_for_an_unknown_id(http, recorded):
    http.add(
        "POST",
        f"{PAYTRACE_URL}/v1/transactions/export/by_id",
        body=fixture_text("export_by_id_not_found.json"),
        status=400,
        content_type="application/json",
    )
    assert recorded.export_by_id(500009999) is None


def test_a_server_error_is_transient(http, recorded):
    http.add("POST", f"{PAYTRACE_URL}/v1/transactions/export/by_id", status=503)
    with pytest.raises(ConnectorError) as caught:
        recorded.export_by_id(1)
    assert caught.value.transient


def test_the_token_cache_key_hides_the_password():
    connector = PayTraceConnector(PAYTRACE_URL, "apiuser", "s3cret-pw", "I1")
    assert "s3cret-pw" not in connector.token_cache_key
    assert "apiuser" not in connector.token_cache_key
    assert "s3cret-pw" not in repr(connector)


# Against the sandbox --------------------------------------------------------------


@pytest.mark.django_db
def test_it_fetches_one_token_for_several_calls(http, gateway):
    sale = sell(gateway)
    gateway.export_by_id(sale["transaction_id"])
    gateway.export_by_date_range(date(2025, 1, 1), date(2025, 1, 31))

    assert token_requests(http) == 1


@pytest.mark.django_db
def test_it_renews_the_token_near_expiry(http, gateway):
    start = datetime(2025, 3, 4, 18, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        sell(gateway)
        clock.move_to(start + timedelta(seconds=7200 - 400))
        sell(gateway)
        assert token_requests(http) == 1

        clock.move_to(start + timedelta(seconds=7200 - 240))
        sell(gateway)
        assert token_requests(http) == 2


@pytest.mark.django_db
def test_it_retries_once_with_a_new_token_when_the_token_is_refused(http, gateway):
    sell(gateway)
    AccessToken.objects.update(expires_at=datetime(2000, 1, 1, tzinfo=UTC))

    reply = sell(gateway)

    assert reply["success"] is True
    assert token_requests(http) == 2


@pytest.mark.django_db
def test_bad_credentials_raise_a_permanent_error(http):
    connector = PayTraceConnector(SANDBOX_URL, "nobody", "wrong", "I1")
    with pytest.raises(ConnectorError) as caught:
        connector.export_by_id(500000001)
    assert caught.value.code == "invalid_grant"
    assert not caught.value.transient


@pytest.mark.django_db
def test_export_by_id_returns_amounts_as_decimal(gateway):
    sale = sell(gateway, amount="250.50", invoice_id="SO-10045")

    record = gateway.export_by_id(sale["transaction_id"])

    assert record["amount"] == Decimal("250.50")
    assert isinstance(record["amount"], Decimal)
    assert record["invoice_id"] == "SO-10045"


@pytest.mark.django_db
def test_export_by_id_reads_a_whole_amount_as_decimal(gateway):
    sale = sell(gateway, amount="110.00")
    record = gateway.export_by_id(sale["transaction_id"])
    assert isinstance(record["amount"], Decimal)
    assert record["amount"] == Decimal("110.00")


@pytest.mark.django_db
def test_export_by_id_returns_none_for_an_unknown_id_in_the_sandbox(gateway):
    assert gateway.export_by_id(599999999) is None


@pytest.mark.django_db
def test_sale_keyed_approves_a_good_card(gateway):
    reply = sell(gateway, amount="42.00")

    assert reply["success"] is True
    assert reply["response_code"] == 101
    assert reply["approval_code"]
    assert reply["masked_card_number"] == "xxxxxxxxxxxx1111"
    assert reply["transaction_id"] >= 500000001


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("card", "amount"), [(DECLINED_CARD, "42.00"), (VISA, "42.13"), (VISA, "0.13")]
)
def test_sale_keyed_returns_a_decline(gateway, card, amount):
    reply = sell(gateway, amount=amount, card=card)

    assert reply["success"] is False
    assert reply["response_code"] == 102
    assert reply["approval_code"] == ""
    assert "Declined" in reply["status_message"]
    record = gateway.export_by_id(reply["transaction_id"])
    assert record["status_code"] == "N"
    assert "Declined" in record["status_message"]


@pytest.mark.django_db
def test_a_validation_error_carries_the_error_code_and_the_errors(gateway):
    with pytest.raises(ConnectorError) as caught:
        sell(gateway, card="4111111111111112")
    assert caught.value.code == "35"
    assert caught.value.detail == {"35": ["Please provide a valid Credit Card Number."]}
    assert not caught.value.transient
    assert "4111111111111112" not in str(caught.value)


@pytest.mark.django_db
def test_void_after_settlement_fails_with_818(http, gateway):
    sale = sell(gateway)
    settle(http)
    with pytest.raises(ConnectorError) as caught:
        gateway.void(sale["transaction_id"])
    assert caught.value.code == "818"


@pytest.mark.django_db
def test_refund_before_settlement_fails_with_817(gateway):
    sale = sell(gateway)
    with pytest.raises(ConnectorError) as caught:
        gateway.refund(sale["transaction_id"])
    assert caught.value.code == "817"


@pytest.mark.django_db
def test_void_then_refund_after_settlement(http, gateway):
    voided = sell(gateway)
    assert gateway.void(voided["transaction_id"])["response_code"] == 109

    sale = sell(gateway, amount="100.00")
    settle(http)
    reply = gateway.refund(sale["transaction_id"], Decimal("40.00"))

    assert reply["response_code"] == 106
    refund = gateway.export_by_id(reply["transaction_id"])
    assert refund["transaction_type"] == "REFUND"
    assert refund["amount"] == Decimal("40.00")
    assert gateway.export_by_id(voided["transaction_id"])["status_message"] == "Voided"


@pytest.mark.django_db
def test_export_by_date_range_filters_on_the_gateway_date(gateway):
    # 06:30 UTC on 3/5 is 10:30 PM on 3/4 in Los Angeles; 08:30 UTC is 12:30 AM 3/5.
    with time_machine.travel(datetime(2025, 3, 5, 6, 30, tzinfo=UTC), tick=False):
        late = sell(gateway, invoice_id="LATE-3-4")
    with time_machine.travel(datetime(2025, 3, 5, 8, 30, tzinfo=UTC), tick=False):
        early = sell(gateway, invoice_id="EARLY-3-5")
        on_4th = gateway.export_by_date_range(date(2025, 3, 4), date(2025, 3, 4))
        on_5th = gateway.export_by_date_range(date(2025, 3, 5), date(2025, 3, 5))
        both = gateway.export_by_date_range(date(2025, 3, 1), date(2025, 3, 31))
        by_text = gateway.export_by_date_range(
            date(2025, 3, 1), date(2025, 3, 31), including_text="EARLY"
        )

    assert [r["transaction_id"] for r in on_4th] == [late["transaction_id"]]
    assert [r["transaction_id"] for r in on_5th] == [early["transaction_id"]]
    assert len(both) == 2
    assert [r["invoice_id"] for r in by_text] == ["EARLY-3-5"]
    assert on_4th[0]["created"]["at"] == "3/4/2025 10:30:00 PM"
    normalized = normalize_record(on_4th[0], settings.SANDBOX_PAYTRACE_TIME_ZONE)
    assert normalized.created_at == datetime(2025, 3, 5, 6, 30, tzinfo=UTC)
