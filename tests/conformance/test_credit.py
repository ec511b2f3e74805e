"""Contract 4.7-4.9: credit memos, receipt reversal and applications of unapplied cash.

The sandbox implements them with Sage Pro's rules; the on-site agent (directly and
through the relay) answers every new path `501 NOT_SUPPORTED_AT_SITE`.
"""

import json
from decimal import Decimal

import pytest

from tests.conformance.contract import (
    check_customer_balance,
    check_invoice,
    customer,
    expect_error,
    invoice,
    ok,
    receipt_body,
)

MEMO_FIELDS = {
    "memo_no", "custno", "date", "amount", "reference", "receipt_no", "invno",
    "refund_account", "cash_account", "fee_amount", "fee_account", "reason",
    "gl_batch_no", "idempotency_key", "created_at", "receipt_refunded_total",
    "receipt_refundable",
}  # fmt: skip
REVERSAL_FIELDS = ("reversed", "reversal_date", "reversal_reason")


def app(invno, amount):
    return {"invno": invno, "amount": amount}


def post(target, path, key, body):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return target.call("POST", path, json=body, headers=headers)


def check_ledger(target, custno="NEWCO"):
    """Every invoice keeps `invamt - paidamt = balance`; ARCUST.BALANCE is their sum."""
    for row in ok(target.get("/invoices", custno=custno))["results"]:
        check_invoice(row)
    check_customer_balance(target, custno)


@pytest.fixture
def newco(sandbox_target):
    """NEWCO with invoices 70001 (100.00), 70002 (60.00 open) and 70003 (25.00), and
    receipt 000001: 150.00 (reference pt-sale) paying 70001 in full, 50.00 unapplied,
    booked to 1100-00."""
    target = sandbox_target
    target.seed_customer("NEWCO", "New Company Inc")
    target.seed_invoice("NEWCO", "100.00", "70001")
    target.seed_invoice("NEWCO", "100.00", "70002", paidamt="40.00")
    target.seed_invoice("NEWCO", "25.00", "70003")
    body = receipt_body(
        target,
        custno="NEWCO",
        amount="150.00",
        reference="pt-sale",
        applications=[app("70001", "100.00")],
        gl_account="1100-00",
    )
    receipt = ok(target.post_receipt("sale-key", body), 201)
    assert receipt["receipt_no"] == "000001"
    return target


def memo_body(target, **overrides):
    body = {
        "custno": "NEWCO",
        "date": target.period_date(0).isoformat(),
        "amount": "40.00",
        "reference": "pt-refund-1",
        "receipt_no": "000001",
        "invno": "70001",
        "refund_account": "4900-00",
        "cash_account": "",
        "reason": "customer returned one item",
    }
    body.update(overrides)
    return body


def refund(target, key, **overrides):
    return post(target, "/credit-memos", key, memo_body(target, **overrides))


def reverse(target, key, receipt_no="000001", **overrides):
    body = {"date": target.period_date(0).isoformat(), "reason": "voided sale"}
    body.update(overrides)
    return post(target, f"/cash-receipts/{receipt_no}/reversal", key, body)


def apply_cash(target, key, applications, receipt_no="000001", **overrides):
    body = {"date": target.period_date(0).isoformat(), "applications": applications}
    body.update(overrides)
    return post(target, f"/cash-receipts/{receipt_no}/applications", key, body)


def receipt(target, receipt_no="000001"):
    return ok(target.call("GET", f"/cash-receipts/{receipt_no}"))


def memo_count(target):
    return len(ok(target.get("/credit-memos", receipt_no="000001"))["results"])


# --- credit memos (§4.7) -----------------------------------------------------------------


def test_a_credit_memo_is_written_with_its_ledger_row_and_gl_batch(newco):
    target = newco
    before = customer(target, "NEWCO")["balance"]
    answer = refund(target, "refund-1", fee_amount="1.50", fee_account="6100-00")
    memo = ok(answer, 201)
    assert set(memo) == MEMO_FIELDS, memo
    assert {
        k: v for k, v in memo.items() if k not in ("created_at", "gl_batch_no")
    } == {
        "memo_no": "000001",
        "custno": "NEWCO",
        "date": target.period_date(0).isoformat(),
        "amount": "40.00",
        "reference": "pt-refund-1",
        "receipt_no": "000001",
        "invno": "70001",
        "refund_account": "4900-00",
        "cash_account": "1100-00",  # empty: the receipt's own account
        "fee_amount": "1.50",
        "fee_account": "6100-00",
        "reason": "customer returned one item",
        "idempotency_key": "refund-1",
        "receipt_refunded_total": "40.00",
        "receipt_refundable": "110.00",
    }
    assert len(memo["gl_batch_no"]) == 6 and memo["gl_batch_no"].isdigit()
    # The memo's ARMAST row: a credit memo fully offset by the refund paid out.
    row = invoice(target, "CM000001")
    check_invoice(row)
    assert (row["artype"], row["invamt"], row["paidamt"], row["balance"]) == (
        "C",
        "-40.00",
        "-40.00",
        "0.00",
    )
    # The invoice the sale paid is not reopened; the customer owes what it owed.
    assert invoice(target, "70001")["balance"] == "0.00"
    assert customer(target, "NEWCO")["balance"] == before
    check_ledger(target)


def test_the_memo_gl_batch_balances_and_lands_unposted(newco):
    target = newco
    memo = ok(refund(target, "r1", fee_amount="2.00", fee_account="6100-00"), 201)
    from integrations.sandbox.sagepro.orders_models import GlBatch

    batch = GlBatch.objects.get(company="01", batchno=memo["gl_batch_no"])
    assert (batch.bstat, batch.btype, batch.glrefr) == ("U", "AR", "pt-refund-1")
    lines = [(line.glacnt, line.gldamnt, line.glcamnt) for line in batch.lines.all()]
    assert lines == [
        ("4900-00", Decimal("40.00"), Decimal("0.00")),
        ("1100-00", Decimal("0.00"), Decimal("40.00")),
        ("6100-00", Decimal("2.00"), Decimal("0.00")),
        ("1100-00", Decimal("0.00"), Decimal("2.00")),
    ]
    assert batch.drtotal == batch.crtotal == Decimal("42.00")


def test_partial_refunds_add_up_and_never_exceed_the_receipt(newco):
    target = newco
    first = ok(refund(target, "r1", amount="60.00", reference="pt-r1"), 201)
    second = ok(refund(target, "r2", amount="50.00", reference="pt-r2"), 201)
    assert (first["memo_no"], second["memo_no"]) == ("000001", "000002")
    assert (second["receipt_refunded_total"], second["receipt_refundable"]) == (
        "110.00",
        "40.00",
    )
    over = expect_error(
        refund(target, "r3", amount="40.01", reference="pt-r3"), 422, "OVER_REFUND"
    )
    assert "40.01" in over["detail"] and "40.00" in over["detail"]
    assert memo_count(target) == 2
    last = ok(refund(target, "r4", amount="40.00", reference="pt-r4"), 201)
    assert last["receipt_refundable"] == "0.00"
    expect_error(
        refund(target, "r5", amount="0.01", reference="pt-r5"), 422, "OVER_REFUND"
    )
    # Earlier memos answer the receipt's totals as they stand now.
    again = ok(target.call("GET", "/credit-memos/000001"))
    assert again["receipt_refunded_total"] == "150.00"
    check_ledger(target)


def test_a_memo_replays_and_refuses_another_request_under_its_key(newco):
    target = newco
    first = ok(refund(target, "r1"), 201)
    replay = ok(refund(target, "r1"), 200)
    assert replay["memo_no"] == first["memo_no"]
    assert memo_count(target) == 1
    expect_error(refund(target, "r1", amount="41.00"), 409, "IDEMPOTENCY_CONFLICT")


def test_a_reference_on_another_memo_is_a_duplicate(newco):
    target = newco
    ok(refund(target, "r1", amount="10.00"), 201)
    body = expect_error(
        refund(target, "r2", amount="10.00"), 409, "DUPLICATE_CREDIT_MEMO"
    )
    assert "000001" in body["detail"]
    assert memo_count(target) == 1


def test_a_memo_needs_a_live_unreversed_receipt_of_its_customer(newco):
    target = newco
    expect_error(refund(target, "r1", receipt_no="999999"), 422, "RECEIPT_NOT_FOUND")
    target.seed_customer("OTHER", "Other Co")
    expect_error(
        refund(target, "r2", custno="OTHER", invno=""), 422, "RECEIPT_NOT_FOUND"
    )
    expect_error(refund(target, "r3", custno="NOBODY"), 422, "CUSTOMER_NOT_FOUND")
    expect_error(refund(target, "r4", invno="10001"), 422, "INVOICE_NOT_FOUND")
    ok(reverse(target, "void-1"), 201)
    body = expect_error(refund(target, "r5"), 422, "RECEIPT_NOT_FOUND")
    assert "reversed" in body["detail"]
    assert memo_count(target) == 0


@pytest.mark.parametrize(
    ("offset", "code"),
    [
        (-2, "PERIOD_LOCKED"),
        (-3, "PERIOD_CLOSED"),
        (1, "FUTURE_PERIOD"),
        (-40, "PERIOD_NOT_DEFINED"),
    ],
)
def test_a_memo_dated_outside_an_open_period_is_refused(newco, offset, code):
    target = newco
    date = target.period_date(offset).isoformat()
    expect_error(refund(target, "r1", date=date), 422, code)
    assert memo_count(target) == 0


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"refund_account": "8888-00"}, "ACCOUNT_NOT_FOUND"),
        ({"refund_account": "1050-00"}, "ACCOUNT_NOT_FOUND"),  # deleted
        ({"refund_account": "6900-00"}, "ACCOUNT_INACTIVE"),
        ({"cash_account": "690000"}, "ACCOUNT_INACTIVE"),
        ({"fee_amount": "1.00", "fee_account": "8888-00"}, "ACCOUNT_NOT_FOUND"),
    ],
)
def test_memo_accounts_must_be_known_and_active(newco, overrides, code):
    target = newco
    expect_error(refund(target, "r1", **overrides), 422, code)
    assert memo_count(target) == 0


def test_an_empty_cash_account_is_the_receipts_else_the_default_cash(newco):
    target = newco
    ok(target.post_receipt("k2", receipt_body(target, custno="NEWCO")), 201)
    memo = ok(refund(target, "r1", receipt_no="000002", invno="", amount="5.00"), 201)
    assert memo["cash_account"] == "1000-00"
    named = ok(
        refund(target, "r2", reference="pt-r2", amount="5.00", cash_account="100000"),
        201,
    )
    assert named["cash_account"] == "1000-00"


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"amount": 40.0}, {"amount"}),
        ({"amount": "0.00"}, {"amount"}),
        ({"amount": "-5.00"}, {"amount"}),
        ({"amount": "1.234"}, {"amount"}),
        ({"custno": None, "date": "2025-13-01"}, {"custno", "date"}),
        ({"reference": "x" * 41}, {"reference"}),
        ({"reference": "ref \u20ac\u4e2d"}, {"reference"}),
        ({"receipt_no": ""}, {"receipt_no"}),
        ({"refund_account": ""}, {"refund_account"}),
        ({"fee_amount": "1.00"}, {"fee_account"}),
        ({"fee_amount": "-1.00", "fee_account": "6100-00"}, {"fee_amount"}),
        ({"reason": "r" * 61}, {"reason"}),
        ({"invno": "12345678901"}, {"invno"}),
    ],
)
def test_a_bad_memo_body_is_refused_naming_the_field(newco, overrides, fields):
    target = newco
    expect_error(
        refund(target, "r1", **overrides), 400, "VALIDATION_ERROR", fields=fields
    )
    assert memo_count(target) == 0


def test_a_memo_without_idempotency_key_is_refused(newco):
    expect_error(
        refund(newco, None), 400, "VALIDATION_ERROR", fields={"Idempotency-Key"}
    )


def test_memos_are_found_by_key_reference_and_receipt(newco):
    target = newco
    memo = ok(refund(target, "r1", amount="10.00"), 201)
    ok(refund(target, "r2", amount="10.00", reference="pt-r2"), 201)
    by_key = ok(target.get("/credit-memos", idempotency_key="r1"))["results"]
    assert [m["memo_no"] for m in by_key] == [memo["memo_no"]]
    by_ref = ok(target.get("/credit-memos", reference="pt-r2"))["results"]
    assert [m["memo_no"] for m in by_ref] == ["000002"]
    by_receipt = ok(target.get("/credit-memos", receipt_no="000001"))["results"]
    assert [m["memo_no"] for m in by_receipt] == ["000002", "000001"]
    assert ok(target.get("/credit-memos", idempotency_key="nope"))["results"] == []
    assert ok(target.call("GET", "/credit-memos/000001")) == by_key[0] | {
        "receipt_refunded_total": "20.00",
        "receipt_refundable": "130.00",
    }
    expect_error(
        target.call("GET", "/credit-memos/000099"), 404, "CREDIT_MEMO_NOT_FOUND"
    )


# --- receipt reversal (§4.8) ------------------------------------------------------------


def test_a_reversal_gives_every_application_back_and_keeps_the_receipt(newco):
    target = newco
    before = customer(target, "NEWCO")["balance"]
    ok(apply_cash(target, "apply-1", [app("70003", "25.00")]), 201)
    date = target.period_date(0).isoformat()
    reversed_ = ok(reverse(target, "void-1"), 201)
    assert (reversed_["reversed"], reversed_["reversal_date"]) == (True, date)
    assert reversed_["reversal_reason"] == "voided sale"
    assert reversed_["deleted"] is False
    assert invoice(target, "70001")["balance"] == "100.00"
    assert invoice(target, "70003")["balance"] == "25.00"
    assert customer(target, "NEWCO")["balance"] == str(Decimal(before) + 100)
    check_ledger(target)
    # Still readable, still listed, and its reference still taken.
    assert receipt(target)["reversed"] is True
    listed = ok(target.get("/cash-receipts", reference="pt-sale"))["results"]
    assert [r["receipt_no"] for r in listed] == ["000001"]
    again = receipt_body(target, custno="NEWCO", reference="pt-sale")
    expect_error(target.post_receipt("new-key", again), 409, "DUPLICATE_RECEIPT")


def test_deleting_a_reversed_receipt_does_not_give_its_cash_back_twice(newco):
    """Sandbox only (§5): DELETE after a reversal frees the key and reference."""
    target = newco
    ok(reverse(target, "void-1"), 201)
    deleted = ok(target.call("DELETE", "/cash-receipts/000001"))
    assert deleted["deleted"] is True
    assert invoice(target, "70001")["balance"] == "100.00"
    check_ledger(target)


def test_a_live_receipt_answers_the_reversal_fields_empty(newco):
    row = receipt(newco)
    assert (row["reversed"], row["reversal_date"], row["reversal_reason"]) == (
        False,
        None,
        "",
    )


def test_a_reversal_replays_and_refuses_a_second_one(newco):
    target = newco
    first = ok(reverse(target, "void-1"), 201)
    replay = ok(reverse(target, "void-1"), 200)
    assert replay == first
    assert invoice(target, "70001")["balance"] == "100.00"  # given back once
    expect_error(reverse(target, "void-1", reason="other"), 409, "IDEMPOTENCY_CONFLICT")
    body = expect_error(reverse(target, "void-2"), 422, "RECEIPT_REVERSED")
    assert "000001" in body["detail"]
    check_ledger(target)


def test_a_reversal_key_cannot_void_another_receipt(newco):
    target = newco
    ok(target.post_receipt("k2", receipt_body(target, custno="NEWCO")), 201)
    ok(reverse(target, "void-1"), 201)
    expect_error(reverse(target, "void-1", "000002"), 409, "IDEMPOTENCY_CONFLICT")
    assert receipt(target, "000002")["reversed"] is False


def test_a_refunded_receipt_cannot_be_reversed(newco):
    target = newco
    ok(refund(target, "r1", amount="10.00"), 201)
    body = expect_error(reverse(target, "void-1"), 422, "RECEIPT_HAS_CREDIT_MEMOS")
    assert "000001" in body["detail"]
    assert invoice(target, "70001")["balance"] == "0.00"
    assert receipt(target)["reversed"] is False


def test_reversing_an_unknown_receipt_is_not_found(newco):
    expect_error(reverse(newco, "v", "999999"), 404, "RECEIPT_NOT_FOUND")
    expect_error(reverse(newco, "v", "12345678901"), 404, "RECEIPT_NOT_FOUND")


@pytest.mark.parametrize(
    ("offset", "code"),
    [(-2, "PERIOD_LOCKED"), (-3, "PERIOD_CLOSED"), (2, "FUTURE_PERIOD")],
)
def test_a_reversal_dated_outside_an_open_period_is_refused(newco, offset, code):
    target = newco
    expect_error(
        reverse(target, "v", date=target.period_date(offset).isoformat()), 422, code
    )
    assert receipt(target)["reversed"] is False
    assert invoice(target, "70001")["balance"] == "0.00"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"reason": "x"}, {"date"}),
        ({"date": "15/01/2025"}, {"date"}),
        ({"date": None, "reason": "r" * 61}, {"date", "reason"}),
        ({"date": "2025-01-15", "reason": ["list"]}, {"reason"}),
    ],
)
def test_a_bad_reversal_body_is_refused_naming_the_field(newco, body, fields):
    answer = post(newco, "/cash-receipts/000001/reversal", "v", body)
    expect_error(answer, 400, "VALIDATION_ERROR", fields=fields)
    assert receipt(newco)["reversed"] is False


# --- applications of unapplied cash (§4.9) ---------------------------------------------


def test_unapplied_cash_is_applied_up_to_each_balance(newco):
    target = newco
    answer = ok(apply_cash(target, "a1", [app("70002", "45.00")]), 201)
    assert answer["idempotency_key"] == "a1"
    assert answer["applications"] == [
        {"invno": "70002", "amount": "45.00", "requested_amount": "45.00"}
    ]
    assert answer["applied_amount"] == "45.00"
    row = answer["receipt"]
    assert (row["applied_amount"], row["unapplied_amount"]) == ("145.00", "5.00")
    assert [a["invno"] for a in row["applications"]] == ["70001", "70002"]
    assert invoice(target, "70002")["balance"] == "15.00"
    # 5.00 left, asked for 5.00 on a 25.00 invoice; then nothing is left.
    ok(apply_cash(target, "a2", [app("70003", "5.00")]), 201)
    assert invoice(target, "70003")["balance"] == "20.00"
    expect_error(
        apply_cash(target, "a3", [app("70003", "0.01")]), 422, "OVER_APPLICATION"
    )
    check_ledger(target)


def test_an_application_is_capped_at_the_invoice_balance(newco):
    target = newco
    answer = ok(apply_cash(target, "a1", [app("70003", "40.00")]), 201)
    assert answer["applications"] == [
        {"invno": "70003", "amount": "25.00", "requested_amount": "40.00"}
    ]
    assert answer["applied_amount"] == "25.00"
    assert answer["receipt"]["unapplied_amount"] == "25.00"
    assert invoice(target, "70003")["balance"] == "0.00"
    check_ledger(target)


def test_an_application_over_the_unapplied_amount_is_refused(newco):
    target = newco
    body = expect_error(
        apply_cash(target, "a1", [app("70002", "30.00"), app("70003", "20.01")]),
        422,
        "OVER_APPLICATION",
    )
    assert "50.00" in body["detail"] and "50.01" in body["detail"]
    assert invoice(target, "70002")["balance"] == "60.00"
    assert receipt(target)["unapplied_amount"] == "50.00"


def test_an_application_replays_and_refuses_another_request_under_its_key(newco):
    target = newco
    first = ok(apply_cash(target, "a1", [app("70002", "10.00")]), 201)
    replay = ok(apply_cash(target, "a1", [app("70002", "10.00")]), 200)
    assert replay["applications"] == first["applications"]
    assert replay["receipt"]["unapplied_amount"] == "40.00"
    assert invoice(target, "70002")["balance"] == "50.00"  # applied once
    expect_error(
        apply_cash(target, "a1", [app("70002", "11.00")]), 409, "IDEMPOTENCY_CONFLICT"
    )
    ok(target.post_receipt("k2", receipt_body(target, custno="NEWCO")), 201)
    expect_error(
        apply_cash(target, "a1", [app("70002", "10.00")], receipt_no="000002"),
        409,
        "IDEMPOTENCY_CONFLICT",
    )


def test_applications_follow_the_invoice_rules(newco):
    target = newco
    target.seed_invoice("NEWCO", "-10.00", "70009", artype="C")
    target.seed_invoice("NEWCO", "30.00", "70010")
    target.delete_invoice("70010")
    cases = [
        ("99999", "INVOICE_NOT_FOUND"),
        ("10001", "INVOICE_NOT_FOUND"),  # ACME's
        ("70010", "INVOICE_NOT_FOUND"),  # deleted
        ("70001", "INVOICE_NOT_OPEN"),  # paid
        ("70009", "INVOICE_NOT_OPEN"),  # a credit memo
    ]
    for index, (invno, code) in enumerate(cases):
        expect_error(apply_cash(target, f"a{index}", [app(invno, "1.00")]), 422, code)
    assert receipt(target)["unapplied_amount"] == "50.00"
    for invno in ("70001", "70002", "70003", "70009"):
        check_invoice(invoice(target, invno))


def test_no_cash_is_applied_from_a_reversed_or_unknown_receipt(newco):
    target = newco
    expect_error(
        apply_cash(target, "a1", [app("70002", "1.00")], receipt_no="999999"),
        404,
        "RECEIPT_NOT_FOUND",
    )
    ok(reverse(target, "void-1"), 201)
    expect_error(
        apply_cash(target, "a2", [app("70002", "1.00")]), 422, "RECEIPT_REVERSED"
    )
    assert invoice(target, "70002")["balance"] == "60.00"


def test_an_application_dated_in_a_closed_period_is_refused(newco):
    target = newco
    date = target.period_date(-3).isoformat()
    expect_error(
        apply_cash(target, "a1", [app("70002", "1.00")], date=date),
        422,
        "PERIOD_CLOSED",
    )


@pytest.mark.parametrize(
    ("applications", "fields"),
    [
        ([], {"applications"}),
        ("70002", {"applications"}),
        ([app("70002", 1.0)], {"applications.0.amount"}),
        ([app("70002", "0.00")], {"applications.0.amount"}),
        ([app("70002", "1.00"), app(" 70002", "2.00")], {"applications.1.invno"}),
        ([app(None, "1.00")], {"applications.0.invno"}),
        (["70002"], {"applications.0"}),
    ],
)
def test_a_bad_application_body_is_refused_naming_the_field(
    newco, applications, fields
):
    expect_error(
        apply_cash(newco, "a1", applications), 400, "VALIDATION_ERROR", fields=fields
    )
    assert receipt(newco)["unapplied_amount"] == "50.00"


# --- malformed bodies never reach the ledger ------------------------------------------

JUNK = [
    None,
    [],
    "text",
    12,
    {"nested": {"deeper": [[[{}]]]}},
    {"date": {"$gt": ""}, "amount": ["1.00"], "applications": {"0": {}}},
    {"custno": "A" * 10_000, "reference": "\x00\x01\x02", "amount": "1e5"},
    {"date": "2025-02-30", "reason": "\U0001f4a5 boom", "amount": "NaN"},
    {"applications": [{"invno": {"a": 1}, "amount": True}] * 3},
    {"receipt_no": 1, "refund_account": ["1000-00"], "fee_amount": "Infinity"},
    {"amount": "\u0661\u0662.00", "reference": "\u4e2d\u6587", "reason": "\udcff"},
]


def test_malformed_bodies_are_400_never_a_server_error(newco):
    target = newco
    paths = [
        "/credit-memos",
        "/cash-receipts/000001/reversal",
        "/cash-receipts/000001/applications",
    ]
    for path in paths:
        for index, body in enumerate(JUNK):
            try:
                raw = json.dumps(body).encode()
            except (UnicodeEncodeError, ValueError):  # a lone surrogate
                raw = json.dumps(body, ensure_ascii=True).encode()
            answer = target.call(
                "POST", path, body=raw, headers={"Idempotency-Key": f"fuzz-{index}"}
            )
            assert answer.status == 400, (path, body, answer)
            assert answer.json["code"] == "VALIDATION_ERROR", answer
        for raw in (b"{", b"\xff\xfe", b"[" * 5000, b'{"date": 1e999}'):
            answer = target.call(
                "POST", path, body=raw, headers={"Idempotency-Key": "fuzz-raw"}
            )
            assert answer.status == 400, (path, raw[:20], answer)
    assert memo_count(target) == 0
    assert receipt(target)["reversed"] is False
    check_ledger(target)


# --- the on-site agent -------------------------------------------------------------


UNSUPPORTED_CALLS = [
    ("POST", "/credit-memos"),
    ("GET", "/credit-memos"),
    ("GET", "/credit-memos/000001"),
    ("POST", "/cash-receipts/000001/reversal"),
    ("POST", "/cash-receipts/000001/applications"),
]


@pytest.mark.parametrize(
    "which",
    ["agent_target", "relay_target"],
)
def test_the_agent_answers_every_credit_path_not_supported_at_site(request, which):
    target = request.getfixturevalue(which)
    for method, path in UNSUPPORTED_CALLS:
        body = {"date": target.period_date(0).isoformat()} if method == "POST" else None
        answer = target.call(
            method, path, json=body, headers={"Idempotency-Key": "k-501"}
        )
        error = expect_error(answer, 501, "NOT_SUPPORTED_AT_SITE")
        assert "by hand" in error["detail"], error
