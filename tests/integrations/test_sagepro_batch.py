"""`POST /cash-receipts/batch` in the sandbox, and the connector's batch post."""

import dataclasses
import json
from decimal import Decimal

import pytest
import requests
import responses
from django.conf import settings

from integrations.connectors import sagepro
from integrations.connectors.base import ConnectorError
from integrations.connectors.sagepro import BatchItemResult, SageProConnector
from integrations.models.failures import describe_failure, failure_code, is_transient
from integrations.sandbox.sagepro import views
from integrations.sandbox.sagepro.models import ArMast, CashReceipt
from integrations.sandbox.sagepro.seed import period_date, seed, seed_invoice

API = "/sandbox/sagepro/api/v1"
BASE_URL = f"http://testserver{API}"
AUTH = {"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"}


@pytest.fixture
def sandbox(db):
    seed()


@pytest.fixture
def gateway(http, sandbox):
    return SageProConnector(BASE_URL, settings.SANDBOX_SAGEPRO_API_KEY)


def post(client, path, body, **headers):
    return client.post(
        f"{API}{path}",
        body,
        content_type="application/json",
        headers={**AUTH, **headers},
    )


def set_fault(client, **body):
    assert post(client, "/_faults", body).status_code == 200


def body_for(invno, amount="10.00", reference="pt-1", **overrides):
    body = {
        "custno": "ACME",
        "date": period_date(0).isoformat(),
        "amount": amount,
        "method": "VISA",
        "reference": reference,
        "applications": [{"invno": invno, "amount": amount}] if invno else [],
    }
    body.update(overrides)
    return body


def item(key, body):
    return {"idempotency_key": key, "receipt": body}


def batch(client, *items):
    return post(client, "/cash-receipts/batch", {"receipts": list(items)})


def balance(invno):
    return ArMast.objects.get(invno=invno.rjust(10)).balance


def receipt_for(invno, amount, *, reference, custno="ACME"):
    return sagepro.CashReceipt(
        custno=custno,
        date=period_date(0),
        amount=Decimal(amount),
        method="VISA",
        reference=reference,
        applications=(sagepro.Application(invno, Decimal(amount)),) if invno else (),
    )


# --- the sandbox -------------------------------------------------------------------


def test_a_batch_posts_the_good_items_and_refuses_the_others(sandbox, client):
    open_invoice = seed_invoice("ACME", "100.00")
    other = seed_invoice("ACME", "50.00")
    paid = seed_invoice("ACME", "30.00", paidamt="30.00")
    earlier = post(
        client,
        "/cash-receipts",
        body_for(other, "20.00", "pt-old"),
        **{"Idempotency-Key": "k-old"},
    )
    assert earlier.status_code == 201

    response = batch(
        client,
        item("k1", body_for(open_invoice, "40.00", "pt-1")),
        item("k2", body_for(paid, "30.00", "pt-2")),
        item("k3", body_for(other, "5.00", "pt-old")),  # reference already posted
        item("k-old", body_for(other, "20.00", "pt-old")),  # a replay
    )

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["idempotency_key"] for r in results] == ["k1", "k2", "k3", "k-old"]
    assert [r["status"] for r in results] == [201, 422, 409, 200]
    assert results[0]["receipt"]["applied_amount"] == "40.00"
    assert results[1]["code"] == "INVOICE_NOT_OPEN"
    assert results[2]["code"] == "DUPLICATE_RECEIPT"
    assert results[3]["receipt"] == earlier.json()
    assert balance(open_invoice) == Decimal("60.00")
    assert balance(paid) == Decimal("0.00")
    assert balance(other) == Decimal("30.00")
    assert set(CashReceipt.objects.values_list("idemkey", flat=True)) == {"k1", "k-old"}


def test_a_refused_item_answers_what_the_single_call_answers(sandbox, client):
    paid = seed_invoice("ACME", "30.00", paidamt="30.00")
    body = body_for(paid, "30.00", "pt-9")

    single = post(client, "/cash-receipts", body, **{"Idempotency-Key": "k-single"})
    [in_batch] = batch(client, item("k-batch", body)).json()["results"]

    assert in_batch == {"idempotency_key": "k-batch", "status": 422, **single.json()}


def test_a_bad_item_is_refused_alone_with_its_field_errors(sandbox, client):
    invno = seed_invoice("ACME", "100.00")

    results = batch(
        client,
        {"receipt": body_for(invno, "1.00", "pt-a")},  # no key
        item("k-long", body_for(invno, "1.00", "pt-b"))
        | {"idempotency_key": "x" * 101},
        item("k-float", body_for(invno, "1.00", "pt-c") | {"amount": 1.5}),
        "not an object",
        item("k-good", body_for(invno, "1.00", "pt-d")),
    ).json()["results"]

    assert [r["status"] for r in results] == [400, 400, 400, 400, 201]
    assert {r["code"] for r in results[:4]} == {"VALIDATION_ERROR"}
    assert "idempotency_key" in results[0]["errors"]
    assert results[0]["idempotency_key"] is None
    assert "idempotency_key" in results[1]["errors"]
    assert "amount" in results[2]["errors"]
    assert "receipts.3" in results[3]["errors"]
    assert list(CashReceipt.objects.values_list("idemkey", flat=True)) == ["k-good"]


def test_the_same_key_twice_is_posted_then_replayed_or_refused(sandbox, client):
    invno = seed_invoice("ACME", "100.00")
    body = body_for(invno, "10.00", "pt-1")

    results = batch(
        client,
        item("k1", body),
        item("k1", body),
        item("k1", body | {"amount": "11.00"}),
    ).json()["results"]

    assert [r["status"] for r in results] == [201, 200, 409]
    assert results[1]["receipt"]["receipt_no"] == results[0]["receipt"]["receipt_no"]
    assert results[2]["code"] == "IDEMPOTENCY_CONFLICT"
    assert balance(invno) == Decimal("90.00")


@pytest.mark.parametrize(
    "body",
    [
        {"receipts": []},
        {
            "receipts": [
                item(f"k{n}", body_for("", "1.00", f"pt-{n}")) for n in range(101)
            ]
        },
        {"receipts": "k1"},
        {},
        [],
    ],
    ids=["empty", "over-100", "not-a-list", "no-receipts", "not-an-object"],
)
def test_a_batch_of_the_wrong_size_or_shape_is_refused_whole(sandbox, client, body):
    response = post(client, "/cash-receipts/batch", body)

    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert CashReceipt.objects.count() == 0


def test_a_batch_of_exactly_the_limit_is_posted(sandbox, client):
    items = [item(f"k{n}", body_for("", "1.00", f"pt-{n}")) for n in range(100)]

    response = post(client, "/cash-receipts/batch", {"receipts": items})

    assert {r["status"] for r in response.json()["results"]} == {201}
    assert CashReceipt.objects.count() == 100


def test_malformed_json_is_a_clear_400(sandbox, client):
    response = client.post(
        f"{API}/cash-receipts/batch",
        b"{not json",
        content_type="application/json",
        headers=AUTH,
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {"body": ["is not valid JSON"]}


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [("unavailable", 503, "UNAVAILABLE"), ("locked", 423, "RECORD_LOCKED")],
)
def test_a_fault_refuses_the_whole_batch(sandbox, client, mode, status, code):
    invno = seed_invoice("ACME", "100.00")
    set_fault(client, mode=mode, seconds=600)

    response = batch(client, item("k1", body_for(invno)))

    assert response.status_code == status
    assert response.json()["code"] == code
    assert "Retry-After" in response.headers
    assert CashReceipt.objects.count() == 0


def test_a_slow_batch_commits_every_item_before_it_sleeps(sandbox, client, monkeypatch):
    invno = seed_invoice("ACME", "100.00")
    seen = []
    monkeypatch.setattr(
        views, "pause", lambda s: seen.append((s, CashReceipt.objects.count()))
    )
    set_fault(client, mode="slow", seconds=60, delay=12)

    response = batch(
        client,
        item("k1", body_for(invno, "1.00", "pt-1")),
        item("k2", body_for(invno, "2.00", "pt-2")),
    )

    assert response.status_code == 200
    assert seen == [(12.0, 2)]


def test_the_batch_route_is_not_taken_for_a_receipt_number(sandbox, client):
    response = client.get(f"{API}/cash-receipts/batch", headers=AUTH)

    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


# --- the connector -----------------------------------------------------------------


def test_the_connector_posts_a_batch_and_reads_each_result(gateway):
    invno = seed_invoice("ACME", "100.00")
    paid = seed_invoice("ACME", "30.00", paidamt="30.00")
    gateway.post_cash_receipt("k-old", receipt_for(invno, "10.00", reference="pt-0"))

    results = gateway.post_cash_receipts(
        [
            ("k1", receipt_for(invno, "40.00", reference="pt-1")),
            ("k2", receipt_for(paid, "30.00", reference="pt-2")),
            ("k-old", receipt_for(invno, "10.00", reference="pt-0")),
        ]
    )

    assert [r.idempotency_key for r in results] == ["k1", "k2", "k-old"]
    posted, refused, replayed = results
    assert posted.error is None
    assert posted.receipt["amount"] == Decimal("40.00")
    assert posted.receipt["applications"][0]["amount"] == Decimal("40.00")
    assert posted.receipt["date"] == period_date(0)
    assert posted.receipt["replayed"] is False
    assert replayed.receipt["replayed"] is True
    assert refused.receipt is None
    assert refused.error.code == "INVOICE_NOT_OPEN"
    assert balance(invno) == Decimal("50.00")


def test_a_refused_item_is_the_error_the_single_call_raises(gateway):
    paid = seed_invoice("ACME", "30.00", paidamt="30.00")
    invno = seed_invoice("ACME", "100.00")
    gateway.post_cash_receipt("k0", receipt_for(invno, "5.00", reference="pt-dup"))
    refused = [
        ("k1", receipt_for(paid, "30.00", reference="pt-1")),  # 422
        ("k2", receipt_for(invno, "5.00", reference="pt-dup")),  # 409
        ("k3", receipt_for(invno, "5.00", reference="pt-3", custno="NOBODY")),  # 422
        ("", receipt_for(invno, "5.00", reference="pt-4")),  # 400, no key
    ]

    in_batch = [r.error for r in gateway.post_cash_receipts(refused)]
    single = []
    for key, receipt in refused:
        with pytest.raises(ConnectorError) as caught:
            gateway.post_cash_receipt(key, receipt)
        single.append(caught.value)

    assert [e.code for e in in_batch] == [
        "INVOICE_NOT_OPEN",
        "DUPLICATE_RECEIPT",
        "CUSTOMER_NOT_FOUND",
        "VALIDATION_ERROR",
    ]
    for batch_error, single_error in zip(in_batch[:3], single[:3], strict=True):
        assert type(batch_error) is type(single_error)
        assert str(batch_error) == str(single_error)
        assert batch_error.status == single_error.status
        assert batch_error.detail == single_error.detail
        assert is_transient(batch_error) is is_transient(single_error) is False
        assert failure_code(batch_error) == failure_code(single_error)
        assert describe_failure(batch_error) == describe_failure(single_error)
    # A missing key is named as the item's field, not the single call's header.
    assert in_batch[3].status == single[3].status == 400
    assert "idempotency_key" in in_batch[3].detail["errors"]


def test_a_receipt_that_cannot_be_sent_does_not_sink_the_others(gateway):
    invno = seed_invoice("ACME", "100.00")
    good = receipt_for(invno, "1.00", reference="pt-bad")
    bad = dataclasses.replace(good, amount=Decimal("1.005"))
    undated = dataclasses.replace(good, date=None)

    results = gateway.post_cash_receipts(
        [
            ("k-bad", bad),
            ("k1", receipt_for(invno, "10.00", reference="pt-1")),
            ("k-undated", undated),
        ]
    )

    assert [r.idempotency_key for r in results] == ["k-bad", "k1", "k-undated"]
    assert results[1].receipt["applied_amount"] == Decimal("10.00")
    for refused in (results[0], results[2]):
        assert refused.receipt is None
        assert refused.error.code == "VALIDATION_ERROR"
        assert refused.error.transient is False
    assert list(CashReceipt.objects.values_list("idemkey", flat=True)) == ["k1"]


def test_a_batch_of_nothing_but_unsendable_receipts_makes_no_call(http, sandbox):
    gateway = SageProConnector(BASE_URL, settings.SANDBOX_SAGEPRO_API_KEY)
    undated = sagepro.CashReceipt("ACME", None, Decimal("1.00"), "VISA", "pt-1")

    [result] = gateway.post_cash_receipts([("k1", undated)])

    assert result.error.code == "VALIDATION_ERROR"
    assert len(http.calls) == 0
    assert gateway.post_cash_receipts([]) == []


def test_the_connector_refuses_more_than_the_limit(http, sandbox):
    gateway = SageProConnector(BASE_URL, settings.SANDBOX_SAGEPRO_API_KEY)
    items = [
        (f"k{n}", receipt_for("", "1.00", reference=f"pt-{n}")) for n in range(101)
    ]

    with pytest.raises(ValueError, match="at most 100"):
        gateway.post_cash_receipts(items)
    assert len(http.calls) == 0


@pytest.mark.parametrize(
    ("mode", "code", "status"),
    [("unavailable", "UNAVAILABLE", 503), ("locked", "RECORD_LOCKED", 423)],
)
def test_a_whole_batch_fault_raises_like_the_single_call(
    gateway, client, mode, code, status
):
    set_fault(client, mode=mode, seconds=600)

    with pytest.raises(ConnectorError) as caught:
        gateway.post_cash_receipts([("k1", receipt_for("", "1.00", reference="pt-1"))])

    assert caught.value.code == code
    assert caught.value.status == status
    assert caught.value.transient is True


def test_a_timed_out_batch_is_safe_to_send_again(gateway, client, monkeypatch):
    invno = seed_invoice("ACME", "100.00")
    items = [
        ("k1", receipt_for(invno, "10.00", reference="pt-1")),
        ("k2", receipt_for(invno, "20.00", reference="pt-2")),
    ]
    set_fault(client, mode="slow", seconds=60)

    def client_gives_up(seconds):
        raise requests.Timeout("read timed out")

    monkeypatch.setattr(views, "pause", client_gives_up)
    with pytest.raises(ConnectorError) as caught:
        gateway.post_cash_receipts(items)
    assert caught.value.outcome_unknown is True
    assert caught.value.transient is True

    monkeypatch.setattr(views, "pause", lambda seconds: None)
    again = gateway.post_cash_receipts(items)

    assert [r.receipt["replayed"] for r in again] == [True, True]
    assert gateway.find_cash_receipts(idempotency_key="k2")[0]["amount"] == Decimal(
        "20.00"
    )
    assert balance(invno) == Decimal("70.00")


def batch_answer(results):
    def answer(request):
        return 200, {}, json.dumps({"results": results})

    return answer


def test_a_locked_or_unavailable_item_is_transient():
    gateway = SageProConnector("https://agent.example/api/v1", "key")
    results = [
        {"idempotency_key": "k1", "status": 423, "detail": "ARMAST is locked"},
        {"idempotency_key": "k2", "status": 503, "code": "UNAVAILABLE", "detail": "x"},
        {
            "idempotency_key": "k3",
            "status": 422,
            "code": "PERIOD_LOCKED",
            "detail": "y",
        },
    ]
    with responses.RequestsMock() as mock:
        mock.add_callback(
            "POST",
            "https://agent.example/api/v1/cash-receipts/batch",
            callback=batch_answer(results),
        )
        out = gateway.post_cash_receipts(
            [(f"k{n}", receipt_for("", "1.00", reference=f"pt-{n}")) for n in (1, 2, 3)]
        )

    assert [(r.error.code, r.error.status, r.error.transient) for r in out] == [
        ("RECORD_LOCKED", 423, True),
        ("UNAVAILABLE", 503, True),
        ("PERIOD_LOCKED", 422, False),
    ]
    assert all(isinstance(r, BatchItemResult) and r.receipt is None for r in out)


@pytest.mark.parametrize(
    "results",
    [
        [],
        [{"idempotency_key": "other", "status": 201, "receipt": {}}],
        [{"idempotency_key": "k1"}],
        "nonsense",
    ],
    ids=["too-few", "wrong-key", "no-status", "not-a-list"],
)
def test_results_that_do_not_match_the_batch_are_an_unknown_outcome(results):
    gateway = SageProConnector("https://agent.example/api/v1", "key")
    with responses.RequestsMock() as mock:
        mock.add_callback(
            "POST",
            "https://agent.example/api/v1/cash-receipts/batch",
            callback=batch_answer(results),
        )
        with pytest.raises(ConnectorError) as caught:
            gateway.post_cash_receipts([("k1", receipt_for("", "1.00", reference="p"))])

    assert caught.value.code == "BAD_RESPONSE"
    assert caught.value.outcome_unknown is True
    assert caught.value.transient is True
