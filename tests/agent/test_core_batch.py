"""POST /cash-receipts/batch and the date listing (contract 4.3a and 7)."""

import pytest

from sagepro_agent.store.base import Locked
from tests.agent.test_core_support import (
    check_invariants,
    env_fixture,  # noqa: F401
    menv_fixture,  # noqa: F401
    receipt,
)


def batch(env, items):
    return env.call("POST", "/cash-receipts/batch", {"receipts": items})


def test_each_item_answers_what_the_single_call_would_in_order(env):
    env.post("old", receipt(reference="DUP"))
    response = batch(
        env,
        [
            {"idempotency_key": "k1", "receipt": receipt(apps=[("90001", "60.00")])},
            {
                "idempotency_key": "k2",
                "receipt": receipt(reference="T2", apps=[("90003", "1.00")]),
            },
            {"idempotency_key": "k3", "receipt": receipt(reference="T3", amount=1.5)},
            {"idempotency_key": 7, "receipt": receipt(reference="T4")},
            "not an object",
            {"idempotency_key": "k5", "receipt": receipt(reference="DUP")},
            {"idempotency_key": "k1", "receipt": receipt(apps=[("90001", "60.00")])},
            {"idempotency_key": "k1", "receipt": receipt("5.00")},
        ],
    )
    assert response.status == 200
    results = response.body["results"]
    assert [(r["idempotency_key"], r["status"]) for r in results] == [
        ("k1", 201),
        ("k2", 422),
        ("k3", 400),
        (None, 400),
        (None, 400),
        ("k5", 409),
        ("k1", 200),
        ("k1", 409),
    ]
    assert results[0]["receipt"]["receipt_no"] == "000002"
    assert results[6]["receipt"] == results[0]["receipt"]
    assert results[1]["code"] == "INVOICE_NOT_OPEN"
    assert results[2]["errors"] == {
        "amount": ['must be a decimal string with at most 2 places, e.g. "12.30"']
    }
    assert results[3]["errors"] == {
        "idempotency_key": ["header is required, at most 100 chars"]
    }
    assert results[3]["detail"] == "invalid fields: idempotency_key"
    assert results[4]["errors"] == {
        "receipts.4": ["must be an object {idempotency_key, receipt}"]
    }
    assert results[5]["code"] == "DUPLICATE_RECEIPT"
    assert results[7]["code"] == "IDEMPOTENCY_CONFLICT"
    check_invariants(env.store)


@pytest.mark.parametrize(
    "body", [{"receipts": []}, {"receipts": "x"}, {"receipts": [{}] * 101}, []]
)
def test_a_malformed_batch_is_400_for_the_whole_call(env, body):
    response = env.call("POST", "/cash-receipts/batch", body)
    assert response.status == 400
    assert set(response.body["errors"]) == {"receipts"}
    assert list(env.table("receipts").rows()) == []


def test_a_lock_is_that_items_423_and_the_others_post(menv):
    menv.store.fail_next("append", "receipts", Locked("header lock"), after=1)
    results = batch(
        menv,
        [
            {"idempotency_key": "k1", "receipt": receipt(reference="A")},
            {"idempotency_key": "k2", "receipt": receipt(reference="B")},
            {"idempotency_key": "k3", "receipt": receipt(reference="C")},
        ],
    ).body["results"]
    assert [r["status"] for r in results] == [201, 423, 201]
    again = batch(menv, [{"idempotency_key": "k2", "receipt": receipt(reference="B")}])
    assert again.body["results"][0]["status"] == 201


def test_the_date_listing_pages_by_receipt_number(env):
    from tests.agent.test_core_support import TODAY, period_date

    day = period_date(0, TODAY).isoformat()
    other = period_date(-1, TODAY).isoformat()
    for i in range(5):
        env.post(f"k{i}", receipt(reference=f"R{i}", date=day if i != 2 else other))
    query = {"date_from": day, "date_to": day, "limit": "2"}
    first = env.call("GET", "/cash-receipts", query=query).body
    assert [r["receipt_no"] for r in first["results"]] == ["000001", "000002"]
    assert first["next_cursor"] == "000002"
    assert first["results"][0]["idempotency_key"] == "k0"
    second = env.call("GET", "/cash-receipts", query={**query, "cursor": "000002"}).body
    assert [r["receipt_no"] for r in second["results"]] == ["000004", "000005"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ({"date_from": "2026-01-01"}, {"date_to"}),
        ({"date_from": "2026-02-01", "date_to": "2026-01-01"}, {"date_to"}),
        (
            {"date_from": "x", "date_to": "2026-01-01", "limit": "0"},
            {"date_from", "limit"},
        ),
        (
            {
                "date_from": "2026-01-01",
                "date_to": "2026-01-31",
                "cursor": "12345678901",
            },
            {"cursor"},
        ),
        (
            {"date_from": "2026-01-01", "date_to": "2026-01-31", "limit": "5001"},
            {"limit"},
        ),
    ],
)
def test_bad_listing_parameters_are_400(env, query, fields):
    response = env.call("GET", "/cash-receipts", query=query)
    assert response.status == 400
    assert set(response.body["errors"]) == fields


def test_the_search_by_key_reference_and_customer(env):
    env.post("k1", receipt(reference="R1"))
    env.post("k2", receipt(reference="R2"))
    env.post("k3", receipt(reference="R3", custno="HOLDCO"))

    def numbers(**query):
        return [
            r["receipt_no"]
            for r in env.call("GET", "/cash-receipts", query=query).body["results"]
        ]

    assert numbers(idempotency_key=" k2 ") == ["000002"]
    assert numbers(reference="R1") == ["000001"]
    assert numbers(custno="test") == ["000002", "000001"]  # newest first
    assert numbers() == ["000003", "000002", "000001"]
    assert numbers(idempotency_key="nope") == []
    assert numbers(custno="TOOLONG") == []
    detail = env.call("GET", "/cash-receipts/000002").body
    assert detail["receipt_no"] == "000002" and detail["idempotency_key"] == "k2"
    missing = env.call("GET", "/cash-receipts/999")
    assert missing.body == {"code": "RECEIPT_NOT_FOUND", "detail": "no receipt '999'"}
