"""Contract 4.3a: `POST /cash-receipts/batch`."""

import pytest

from tests.conformance.contract import (
    check_customer_balance,
    check_receipt,
    dec,
    expect_error,
    invoice,
    ok,
    receipt_body,
    receipts_for_key,
)


def app(invno, amount):
    return {"invno": invno, "amount": amount}


def item(key, body):
    return {"idempotency_key": key, "receipt": body}


def batch(target, items):
    return target.call("POST", "/cash-receipts/batch", json={"receipts": items})


def test_results_come_one_per_item_in_request_order(target):
    good = receipt_body(target, reference="b-1", applications=[app("10001", "10.00")])
    paid = receipt_body(
        target, custno="ZEROBL", reference="b-2", applications=[app("10057", "5.00")]
    )
    bad = receipt_body(target, reference="b-3", amount="1.234")
    also_good = receipt_body(target, custno="BLUEOX", reference="b-4")
    before = invoice(target, "10001")
    answer = batch(
        target,
        [item("k1", good), item("k2", paid), item("k3", bad), item("k4", also_good)],
    )
    results = ok(answer)["results"]
    assert [r["idempotency_key"] for r in results] == ["k1", "k2", "k3", "k4"]
    assert [r["status"] for r in results] == [201, 422, 400, 201]
    first, refused, invalid, fourth = results
    assert set(first) == {"idempotency_key", "status", "receipt"}
    check_receipt(first["receipt"])
    check_receipt(fourth["receipt"])
    assert first["receipt"]["idempotency_key"] == "k1"
    assert [first["receipt"]["receipt_no"], fourth["receipt"]["receipt_no"]] == [
        "000001",
        "000002",
    ]
    assert refused["code"] == "INVOICE_NOT_OPEN" and refused["detail"]
    assert "receipt" not in refused
    assert invalid["code"] == "VALIDATION_ERROR"
    assert set(invalid["errors"]) == {"amount"}
    # Never all-or-nothing: the good items are posted, the refused ones wrote nothing.
    after = invoice(target, "10001")
    assert dec(after["balance"]) == dec(before["balance"]) - 10
    assert receipts_for_key(target, "k1") == [first["receipt"]]
    assert receipts_for_key(target, "k2") == receipts_for_key(target, "k3") == []
    check_customer_balance(target, "ACME")


def test_an_item_answers_what_the_single_call_answers(target):
    body = receipt_body(
        target, reference="s-1", amount="25.00", applications=[app("10001", "25.00")]
    )
    posted = ok(batch(target, [item("k1", body)]))["results"][0]
    assert posted["status"] == 201, posted
    # The same key and body, single call: a replay of the batch's receipt.
    assert ok(target.post_receipt("k1", body), 200) == posted["receipt"]
    single = receipt_body(target, reference="s-2", custno="BLUEOX")
    created = ok(target.post_receipt("k2", single), 201)
    again = ok(batch(target, [item("k2", single)]))["results"][0]
    assert again == {"idempotency_key": "k2", "status": 200, "receipt": created}


def test_field_errors_are_named_as_in_the_single_call(target):
    body = receipt_body(
        target, applications=[app("10001", "0.00"), app("10001", "1.00")]
    )
    (result,) = ok(batch(target, [item("k1", body)]))["results"]
    assert result["status"] == 400 and result["code"] == "VALIDATION_ERROR"
    assert set(result["errors"]) == {"applications.0.amount", "applications.1.invno"}
    single = target.post_receipt("k1", body)
    expect_error(
        single,
        400,
        "VALIDATION_ERROR",
        fields={"applications.0.amount", "applications.1.invno"},
    )


@pytest.mark.parametrize(
    "key, answered",
    [(None, None), (12, None), ("", ""), ("k" * 101, "k" * 101)],
)
def test_a_missing_or_bad_item_key_is_that_items_400(target, key, answered):
    entry = {"receipt": receipt_body(target, reference="x-1")}
    if key is not None:
        entry["idempotency_key"] = key
    good = item("k-ok", receipt_body(target, reference="x-2"))
    results = ok(batch(target, [entry, good]))["results"]
    assert results[0]["idempotency_key"] == answered
    assert results[0]["status"] == 400 and results[0]["code"] == "VALIDATION_ERROR"
    assert set(results[0]["errors"]) == {"idempotency_key"}
    assert results[1]["status"] == 201


@pytest.mark.parametrize("entry", ["k1", 12, None, ["k1", {}]])
def test_an_item_that_is_not_an_object_is_a_400_named_by_its_index(target, entry):
    good = item("k-ok", receipt_body(target))
    results = ok(batch(target, [good, entry]))["results"]
    assert results[0]["status"] == 201
    assert results[1]["idempotency_key"] is None
    assert results[1]["status"] == 400 and results[1]["code"] == "VALIDATION_ERROR"
    assert set(results[1]["errors"]) == {"receipts.1"}


def test_an_item_whose_receipt_is_missing_or_not_an_object_is_400(target):
    results = ok(
        batch(
            target,
            [{"idempotency_key": "k1"}, {"idempotency_key": "k2", "receipt": []}],
        )
    )["results"]
    assert [r["status"] for r in results] == [400, 400]
    assert [r["idempotency_key"] for r in results] == ["k1", "k2"]


def test_the_same_key_twice_replays_or_conflicts(target):
    body = receipt_body(target, reference="t-1", applications=[app("10001", "10.00")])
    other = receipt_body(target, reference="t-1", amount="11.00")
    results = ok(
        batch(target, [item("k1", body), item("k1", body), item("k1", other)])
    )["results"]
    assert [r["status"] for r in results] == [201, 200, 409]
    assert results[1]["receipt"] == results[0]["receipt"]
    assert results[2]["code"] == "IDEMPOTENCY_CONFLICT"
    assert len(receipts_for_key(target, "k1")) == 1


def test_a_reference_twice_is_a_duplicate_naming_the_receipt(target):
    first = receipt_body(target, reference="t-2")
    second = receipt_body(target, reference="t-2", amount="3.00")
    results = ok(batch(target, [item("k1", first), item("k2", second)]))["results"]
    assert [r["status"] for r in results] == [201, 409]
    assert results[1]["code"] == "DUPLICATE_RECEIPT"
    assert results[0]["receipt"]["receipt_no"] in results[1]["detail"]


def test_every_business_rule_is_per_item(target):
    items = [
        item("k1", receipt_body(target, reference="r1", custno="NOSUCH")),
        item("k2", receipt_body(target, reference="r2", offset=-2)),
        item("k3", receipt_body(target, reference="r3", offset=-3)),
        item("k4", receipt_body(target, reference="r4", offset=2)),
        item("k5", receipt_body(target, reference="r5", offset=9)),
        item("k6", receipt_body(target, reference="r6", gl_account="6900-00")),
        item("k7", receipt_body(target, reference="r7", gl_account="1050-00")),
        item(
            "k8",
            receipt_body(target, reference="r8", applications=[app("10001", "10.01")]),
        ),
        item(
            "k9",
            receipt_body(target, reference="r9", applications=[app("10002", "1.00")]),
        ),
        item("k10", receipt_body(target, reference="r10")),
    ]
    results = ok(batch(target, items))["results"]
    assert [(r["status"], r.get("code")) for r in results] == [
        (422, "CUSTOMER_NOT_FOUND"),
        (422, "PERIOD_LOCKED"),
        (422, "PERIOD_CLOSED"),
        (422, "FUTURE_PERIOD"),
        (422, "PERIOD_NOT_DEFINED"),
        (422, "ACCOUNT_INACTIVE"),
        (422, "ACCOUNT_NOT_FOUND"),
        (422, "OVER_APPLICATION"),
        (422, "INVOICE_NOT_FOUND"),
        (201, None),
    ]
    assert results[-1]["receipt"]["receipt_no"] == "000001"


def test_one_hundred_items_are_accepted(target):
    items = [
        item(f"k{i}", receipt_body(target, reference=f"h-{i}", amount="1.00"))
        for i in range(100)
    ]
    results = ok(batch(target, items))["results"]
    assert [r["status"] for r in results] == [201] * 100
    assert [r["receipt"]["receipt_no"] for r in results] == [
        f"{n:06d}" for n in range(1, 101)
    ]


@pytest.mark.parametrize("size", [0, 101])
def test_too_few_or_too_many_items_is_400_for_the_whole_call(target, size):
    items = [
        item(f"k{i}", receipt_body(target, reference=f"h-{i}", amount="1.00"))
        for i in range(size)
    ]
    expect_error(batch(target, items), 400, "VALIDATION_ERROR", fields={"receipts"})
    if size:
        assert receipts_for_key(target, "k0") == []


@pytest.mark.parametrize(
    "body", [{}, {"receipts": None}, {"receipts": {"k1": {}}}, {"receipts": "k1"}]
)
def test_receipts_that_are_not_a_list_is_400_for_the_whole_call(target, body):
    answer = target.call("POST", "/cash-receipts/batch", json=body)
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"receipts"})


@pytest.mark.parametrize("body", [[], [{"idempotency_key": "k1"}], "receipts"])
def test_a_body_that_is_not_an_object_is_400_for_the_whole_call(target, body):
    answer = target.call("POST", "/cash-receipts/batch", json=body)
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"receipts"})


def test_a_lock_refuses_the_items_it_touches_and_writes_nothing_for_them(target):
    """The sandbox's `locked` fault refuses the whole call; an agent meets the lock on
    the row and refuses that item (contract: 423 per item or for the whole call)."""
    body = receipt_body(target, reference="l-1", applications=[app("10001", "10.00")])
    before = invoice(target, "10001")
    with target.hold_lock(custno="ACME", invnos=("10001",)):
        answer = batch(target, [item("k1", body)])
        if answer.status == 200:
            (result,) = answer.json["results"]
            assert (result["status"], result["code"]) == (423, "RECORD_LOCKED")
        else:
            expect_error(answer, 423, "RECORD_LOCKED")
        assert invoice(target, "10001") == before
        assert receipts_for_key(target, "k1") == []
    (result,) = ok(batch(target, [item("k1", body)]))["results"]
    assert result["status"] == 201


def test_a_batch_without_the_key_is_401_and_writes_nothing(target):
    if not target.bearer_auth:
        pytest.skip(f"{target.name}: the transport authenticates, not a bearer key")
    body = {"receipts": [item("k1", receipt_body(target))]}
    answer = target.call("POST", "/cash-receipts/batch", json=body, auth=False)
    expect_error(answer, 401, "UNAUTHORIZED")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert receipts_for_key(target, "k1") == []
