"""Contract 4.3 and 4.4: `POST /cash-receipts` (validation, idempotency, the Sage Pro
rules in order, what is written) and the receipt look-ups."""

from urllib.parse import quote

import pytest

from tests.conformance.contract import (
    check_customer_balance,
    check_invoice,
    check_receipt,
    customer,
    expect_error,
    invoice,
    ok,
    receipt_body,
    receipts_for_key,
)


def app(invno, amount):
    return {"invno": invno, "amount": amount}


def pay(target, key, **kwargs):
    answer = target.post_receipt(key, receipt_body(target, **kwargs))
    body = ok(answer, 201)
    check_receipt(body)
    return body


@pytest.fixture
def newco(target):
    """A customer of our own with known invoices: 100.00, 60.00 (40.00 paid), 25.00."""
    target.seed_customer("NEWCO", "New Company Inc")
    target.seed_invoice("NEWCO", "100.00", "70001")
    target.seed_invoice("NEWCO", "100.00", "70002", paidamt="40.00")
    target.seed_invoice("NEWCO", "25.00", "70003")
    return target


# --- a receipt posted -------------------------------------------------------------------


def test_a_receipt_is_written_and_answered_201(newco):
    target = newco
    date = target.period_date(0)
    body = receipt_body(
        target,
        custno="newco",
        amount="150.00",
        method="visa",
        reference="118822719",
        applications=[app("70001", "100.00"), app("70002", "50.00")],
        gl_account="1100-00",
    )
    answer = target.post_receipt("key-1", body)
    receipt = ok(answer, 201)
    check_receipt(receipt)
    assert receipt["receipt_no"] == "000001"  # the counter starts at 1
    assert {k: v for k, v in receipt.items() if k != "created_at"} == {
        "receipt_no": "000001",
        "custno": "NEWCO",
        "date": date.isoformat(),
        "amount": "150.00",
        "method": "VISA",
        "reference": "118822719",
        "idempotency_key": "key-1",
        "applications": [
            {"invno": "70001", "amount": "100.00", "requested_amount": "100.00"},
            {"invno": "70002", "amount": "50.00", "requested_amount": "50.00"},
        ],
        "applied_amount": "150.00",
        "unapplied_amount": "0.00",
        "gl_account": "1100-00",
        "deleted": False,
        "reversed": False,
        "reversal_date": None,
        "reversal_reason": "",
    }
    first, second = invoice(target, "70001"), invoice(target, "70002")
    check_invoice(first)
    check_invoice(second)
    assert (first["paidamt"], first["balance"], first["status"]) == (
        "100.00",
        "0.00",
        "closed",
    )
    assert (second["paidamt"], second["balance"]) == ("90.00", "10.00")
    buyer = customer(target, "NEWCO")
    assert buyer["balance"] == "35.00"  # 0 + 10 + 25
    assert buyer["last_payment_date"] == date.isoformat()
    assert buyer["last_payment_amount"] == "150.00"
    check_customer_balance(target, "NEWCO")


def test_receipt_numbers_follow_the_counter(newco):
    numbers = [
        pay(newco, f"k{i}", custno="NEWCO", reference=f"pt-{i}")["receipt_no"]
        for i in range(3)
    ]
    assert numbers == ["000001", "000002", "000003"]


def test_at_most_the_balance_is_applied_and_the_rest_is_unapplied(newco):
    target = newco
    receipt = pay(
        target,
        "k",
        custno="NEWCO",
        amount="200.00",
        applications=[app("70002", "100.00"), app("70003", "30.00")],
    )
    assert receipt["applications"] == [
        {"invno": "70002", "amount": "60.00", "requested_amount": "100.00"},
        {"invno": "70003", "amount": "25.00", "requested_amount": "30.00"},
    ]
    assert (receipt["applied_amount"], receipt["unapplied_amount"]) == (
        "85.00",
        "115.00",
    )
    for invno in ("70002", "70003"):
        row = invoice(target, invno)
        check_invoice(row)
        assert (row["balance"], row["status"]) == ("0.00", "closed")
    assert invoice(target, "70002")["paidamt"] == "100.00"
    check_customer_balance(target, "NEWCO")
    # A balance never goes negative: the paid invoice is now refused.
    answer = target.post_receipt(
        "k2",
        receipt_body(
            target,
            custno="NEWCO",
            reference="pt-2",
            applications=[app("70003", "1.00")],
        ),
    )
    expect_error(answer, 422, "INVOICE_NOT_OPEN")


def test_a_payment_on_account_applies_nothing(newco):
    target = newco
    before = customer(target, "NEWCO")
    receipt = pay(target, "k", custno="NEWCO", amount="42.10")
    assert receipt["applications"] == []
    assert (receipt["applied_amount"], receipt["unapplied_amount"]) == ("0.00", "42.10")
    after = customer(target, "NEWCO")
    assert after["balance"] == before["balance"]
    assert (after["last_payment_amount"], after["last_payment_date"]) == (
        "42.10",
        receipt["date"],
    )


def test_applications_below_the_amount_leave_the_remainder_unapplied(newco):
    receipt = pay(
        newco, "k", custno="NEWCO", amount="50.00", applications=[app("70001", "20.00")]
    )
    assert (receipt["applied_amount"], receipt["unapplied_amount"]) == (
        "20.00",
        "30.00",
    )
    assert invoice(newco, "70001")["balance"] == "80.00"


def test_two_receipts_share_an_invoice_balance(newco):
    target = newco
    first = pay(
        target,
        "k1",
        custno="NEWCO",
        amount="45.00",
        reference="a",
        applications=[app("70002", "45.00")],
    )
    second = pay(
        target,
        "k2",
        custno="NEWCO",
        amount="45.00",
        reference="b",
        applications=[app("70002", "45.00")],
    )
    assert first["applications"][0]["amount"] == "45.00"
    assert second["applications"][0]["amount"] == "15.00"
    assert second["unapplied_amount"] == "30.00"
    row = invoice(target, "70002")
    assert (row["paidamt"], row["balance"]) == ("100.00", "0.00")


def test_a_customer_on_credit_hold_may_pay(target):
    receipt = pay(target, "k", custno="HOLDCO", applications=[app("10009", "10.00")])
    assert receipt["custno"] == "HOLDCO"
    check_customer_balance(target, "HOLDCO")


@pytest.mark.parametrize("offset", [0, -1])
def test_the_current_and_the_previous_open_period_accept(target, offset):
    receipt = pay(target, f"k{offset}", offset=offset)
    assert receipt["date"] == target.period_date(offset).isoformat()


# --- money ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount, stored",
    [("12.3", "12.30"), ("12", "12.00"), ("7.05", "7.05"), ("0.01", "0.01")],
)
def test_money_strings_are_read_to_2_places(target, amount, stored):
    receipt = pay(target, "k", amount=amount, applications=[app("10001", amount)])
    assert receipt["amount"] == stored
    assert receipt["applications"][0]["requested_amount"] == stored


@pytest.mark.parametrize(
    "amount", [12.3, 12, "12.345", "1,000.00", "12.3.4", "abc", "", "1e3", None, True]
)
def test_money_that_is_not_a_decimal_string_is_refused(target, amount):
    answer = target.post_receipt("k", receipt_body(target, amount=amount))
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"amount"})
    answer = target.post_receipt(
        "k", receipt_body(target, amount="10.00", applications=[app("10001", amount)])
    )
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"applications.0.amount"})
    assert receipts_for_key(target, "k") == []


@pytest.mark.parametrize("amount", ["0.00", "0", "-5.00"])
def test_an_amount_not_above_zero_is_refused(target, amount):
    answer = target.post_receipt("k", receipt_body(target, amount=amount))
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"amount"})
    answer = target.post_receipt(
        "k", receipt_body(target, amount="10.00", applications=[app("10001", amount)])
    )
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"applications.0.amount"})


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, fields",
    [
        ({"custno": None}, {"custno"}),
        ({"custno": ""}, {"custno"}),
        ({"custno": "ACMEXYZ"}, {"custno"}),
        ({"custno": 12}, {"custno"}),
        ({"date": None}, {"date"}),
        ({"date": "2025-5-1"}, {"date"}),
        ({"date": "2025-02-30"}, {"date"}),
        ({"date": "14/05/2025"}, {"date"}),
        ({"date": 20250514}, {"date"}),
        ({"amount": None}, {"amount"}),
        ({"method": None}, {"method"}),
        ({"method": ""}, {"method"}),
        ({"method": "X" * 11}, {"method"}),
        ({"reference": None}, {"reference"}),
        ({"reference": "  "}, {"reference"}),
        ({"reference": "R" * 41}, {"reference"}),
        ({"gl_account": "1" * 25}, {"gl_account"}),
        ({"applications": "10001"}, {"applications"}),
        ({"applications": {"invno": "10001"}}, {"applications"}),
        ({"applications": ["10001"]}, {"applications.0"}),
        ({"applications": [{"amount": "1.00"}]}, {"applications.0.invno"}),
        ({"applications": [app("", "1.00")]}, {"applications.0.invno"}),
        ({"applications": [app("12345678901", "1.00")]}, {"applications.0.invno"}),
        ({"applications": [app(10001, "1.00")]}, {"applications.0.invno"}),
        ({"applications": [{"invno": "10001"}]}, {"applications.0.amount"}),
        (
            {"applications": [app("10001", "1.00"), app(" 10001", "2.00")]},
            {"applications.1.invno"},
        ),
        (
            {"custno": "", "amount": "1.234", "applications": [app("10001", "0")]},
            {"custno", "amount", "applications.0.amount"},
        ),
    ],
)
def test_an_invalid_field_is_400_naming_it_and_nothing_is_written(
    target, change, fields
):
    body = receipt_body(target, applications=[app("10001", "10.00")])
    for name, value in change.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value
    before = invoice(target, "10001")
    answer = target.post_receipt("k", body)
    expect_error(answer, 400, "VALIDATION_ERROR", fields=fields)
    assert receipts_for_key(target, "k") == []
    assert invoice(target, "10001") == before


def test_limits_are_inclusive(target):
    receipt = pay(
        target, "k" * 100, custno="ACME  ", method="M" * 10, reference="R" * 40
    )
    assert receipt["idempotency_key"] == "k" * 100
    assert (receipt["method"], receipt["reference"]) == ("M" * 10, "R" * 40)


@pytest.mark.parametrize("key", [None, "", "k" * 101])
def test_a_missing_or_bad_idempotency_key_is_400_under_the_header_name(target, key):
    answer = target.post_receipt(key, receipt_body(target))
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"Idempotency-Key"})


def test_validation_comes_before_every_rule(target):
    body = receipt_body(target, custno="NOSUCH", offset=-2, amount="1.234")
    expect_error(
        target.post_receipt("k", body), 400, "VALIDATION_ERROR", fields={"amount"}
    )


# --- idempotency ------------------------------------------------------------------------


def test_a_replay_answers_200_with_the_stored_receipt_and_writes_nothing(target):
    body = receipt_body(target, amount="30.00", applications=[app("10001", "30.00")])
    first = ok(target.post_receipt("key-r", body), 201)
    after_first = invoice(target, "10001"), customer(target, "ACME")
    again = ok(target.post_receipt("key-r", body), 200)
    assert again == first
    assert (invoice(target, "10001"), customer(target, "ACME")) == after_first
    assert len(receipts_for_key(target, "key-r")) == 1


def test_a_replay_matches_after_normalisation(target):
    body = receipt_body(
        target,
        amount="30.00",
        applications=[app("10001", "30.00")],
        gl_account="1100-00",
    )
    first = ok(target.post_receipt("key-n", body), 201)
    same = dict(
        body,
        custno=" acme",
        amount="30",
        method="visa",
        applications=[app("  10001", "30.0")],
        gl_account="110000",
    )
    assert ok(target.post_receipt("key-n", same), 200) == first


def test_a_replay_wins_over_rules_that_changed_since(target):
    body = receipt_body(target, applications=[app("10001", "10.00")])
    first = ok(target.post_receipt("key-p", body), 201)
    target.set_period(0, plocked=True)
    assert ok(target.post_receipt("key-p", body), 200) == first


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "30.01"},
        {"custno": "BLUEOX", "applications": []},
        {"reference": "pt-other"},
        {"method": "CASH"},
        {"applications": []},
        {"applications": [app("10001", "29.00")]},
        {"gl_account": "1100-00"},
    ],
)
def test_the_key_reused_for_another_request_is_409(target, change):
    body = receipt_body(target, amount="30.00", applications=[app("10001", "30.00")])
    first = ok(target.post_receipt("key-c", body), 201)
    before = invoice(target, "10001")
    answer = target.post_receipt("key-c", {**body, **change})
    expect_error(answer, 409, "IDEMPOTENCY_CONFLICT")
    assert invoice(target, "10001") == before
    assert receipts_for_key(target, "key-c") == [first]


def test_another_gl_account_under_the_same_key_is_a_conflict(target):
    body = receipt_body(target, gl_account="1100-00")
    ok(target.post_receipt("key-g", body), 201)
    answer = target.post_receipt("key-g", {**body, "gl_account": "1000-00"})
    expect_error(answer, 409, "IDEMPOTENCY_CONFLICT")
    answer = target.post_receipt("key-g", {**body, "gl_account": ""})
    expect_error(answer, 409, "IDEMPOTENCY_CONFLICT")


def test_no_gl_account_and_an_empty_one_are_the_same_request(target):
    body = receipt_body(target)
    first = ok(target.post_receipt("key-e", body), 201)
    assert first["gl_account"] == ""
    assert ok(target.post_receipt("key-e", {**body, "gl_account": ""}), 200) == first
    assert ok(target.post_receipt("key-e", {**body, "gl_account": None}), 200) == first


def test_a_reference_on_another_live_receipt_is_409_naming_it(target):
    first = ok(
        target.post_receipt("key-1", receipt_body(target, reference="T-77")), 201
    )
    answer = target.post_receipt(
        "key-2", receipt_body(target, reference="T-77", amount="5.00")
    )
    body = expect_error(answer, 409, "DUPLICATE_RECEIPT")
    assert first["receipt_no"] in body["detail"]
    assert receipts_for_key(target, "key-2") == []


def test_the_duplicate_check_comes_before_the_business_rules(target):
    ok(target.post_receipt("key-1", receipt_body(target, reference="T-78")), 201)
    body = receipt_body(target, reference="T-78", custno="NOSUCH", offset=-3)
    expect_error(target.post_receipt("key-2", body), 409, "DUPLICATE_RECEIPT")


def test_a_refused_request_leaves_its_key_and_reference_free(target):
    body = receipt_body(target, reference="T-79", offset=-2)
    expect_error(target.post_receipt("key-f", body), 422, "PERIOD_LOCKED")
    created = ok(
        target.post_receipt(
            "key-f", {**body, "date": target.period_date(0).isoformat()}
        ),
        201,
    )
    assert created["reference"] == "T-79"


# --- Sage Pro rules (422) ---------------------------------------------------------------


def test_an_unknown_or_deleted_customer_is_422(target):
    expect_error(
        target.post_receipt("k1", receipt_body(target, custno="NOSUCH")),
        422,
        "CUSTOMER_NOT_FOUND",
    )
    target.seed_customer("GONE", "Gone Away Ltd")
    target.delete_customer("GONE")
    expect_error(
        target.post_receipt(
            "k2", receipt_body(target, custno="GONE", reference="pt-2")
        ),
        422,
        "CUSTOMER_NOT_FOUND",
    )


@pytest.mark.parametrize(
    "offset, code",
    [
        (-2, "PERIOD_LOCKED"),  # PLOCKED
        (-3, "PERIOD_CLOSED"),  # PCLOSED
        (-4, "PERIOD_LOCKED"),  # PERMLCK
        (-12, "PERIOD_LOCKED"),
        (1, "FUTURE_PERIOD"),
        (3, "FUTURE_PERIOD"),
        (4, "PERIOD_NOT_DEFINED"),
        (-13, "PERIOD_NOT_DEFINED"),
    ],
)
def test_the_seeded_periods_refuse(target, offset, code):
    before = invoice(target, "10001")
    body = receipt_body(target, offset=offset, applications=[app("10001", "10.00")])
    expect_error(target.post_receipt("k", body), 422, code)
    assert invoice(target, "10001") == before
    assert receipts_for_key(target, "k") == []


@pytest.mark.parametrize(
    "flags, code",
    [
        ({"plocked": True}, "PERIOD_LOCKED"),
        ({"permlck": True}, "PERIOD_LOCKED"),
        ({"pclosed": True}, "PERIOD_CLOSED"),
        ({"pclosed": True, "plocked": True}, "PERIOD_LOCKED"),
        ({"pclosed": True, "permlck": True}, "PERIOD_LOCKED"),
    ],
)
def test_every_period_state_refuses(target, flags, code):
    target.set_period(0, **flags)
    body = expect_error(target.post_receipt("k", receipt_body(target)), 422, code)
    assert target.period_date(0).strftime("%Y%m") in body["detail"]
    target.set_period(0)
    ok(target.post_receipt("k", receipt_body(target)), 201)


def test_an_unlocked_old_period_accepts(target):
    target.set_period(-2)
    ok(target.post_receipt("k", receipt_body(target, offset=-2)), 201)


@pytest.mark.parametrize(
    "account, code",
    [
        ("7777-00", "ACCOUNT_NOT_FOUND"),
        ("1050-00", "ACCOUNT_NOT_FOUND"),  # deleted
        ("105000", "ACCOUNT_NOT_FOUND"),
        ("6900-00", "ACCOUNT_INACTIVE"),
        ("690000", "ACCOUNT_INACTIVE"),
        ("12345", "ACCOUNT_NOT_FOUND"),  # does not fit the mask
    ],
)
def test_an_unknown_deleted_or_inactive_gl_account_is_422(target, account, code):
    body = receipt_body(
        target, gl_account=account, applications=[app("10001", "10.00")]
    )
    before = invoice(target, "10001")
    expect_error(target.post_receipt("k", body), 422, code)
    assert invoice(target, "10001") == before


@pytest.mark.parametrize("account", ["1100-00", "110000", " 1100-00 ", "11-0000"])
def test_the_gl_account_is_normalised_and_echoed_as_stored(target, account):
    receipt = pay(target, "k", gl_account=account)
    assert receipt["gl_account"] == "1100-00"
    assert ok(target.call("GET", f"/cash-receipts/{receipt['receipt_no']}")) == receipt


def test_applications_above_the_amount_are_over_application(target):
    body = receipt_body(
        target,
        amount="10.00",
        applications=[app("10001", "6.00"), app("10012", "4.01")],
    )
    expect_error(target.post_receipt("k", body), 422, "OVER_APPLICATION")


@pytest.mark.parametrize(
    "invno, code",
    [
        ("99999", "INVOICE_NOT_FOUND"),
        ("10002", "INVOICE_NOT_FOUND"),  # BLUEOX's
        ("10059", "INVOICE_NOT_FOUND"),  # deleted
        ("10057", "INVOICE_NOT_OPEN"),  # ZEROBL's, paid: asked as ZEROBL below
        ("10058", "INVOICE_NOT_OPEN"),  # IRONWD's credit memo
    ],
)
def test_an_invoice_that_cannot_be_paid_is_422(target, invno, code):
    custno = {"10057": "ZEROBL", "10058": "IRONWD"}.get(invno, "ACME")
    applications = [app(invno, "5.00")]
    if custno == "ACME":
        # A payable invoice first: the refusal must not leave it half-paid.
        applications.insert(0, app("10001", "5.00"))
    body = receipt_body(target, custno=custno, applications=applications)
    before = [invoice(target, "10001"), customer(target, custno)]
    expect_error(target.post_receipt("k", body), 422, code)
    assert [invoice(target, "10001"), customer(target, custno)] == before
    assert receipts_for_key(target, "k") == []


def test_a_deleted_invoice_cannot_be_paid(newco):
    newco.delete_invoice("70001")
    body = receipt_body(newco, custno="NEWCO", applications=[app("70001", "5.00")])
    expect_error(newco.post_receipt("k", body), 422, "INVOICE_NOT_FOUND")


@pytest.mark.parametrize(
    "change, code",
    [
        # customer before period
        ({"custno": "NOSUCH", "date": -2}, "CUSTOMER_NOT_FOUND"),
        # period before GL account
        ({"date": -3, "gl_account": "7777-00"}, "PERIOD_CLOSED"),
        # GL account before over-application
        ({"gl_account": "6900-00", "amount": "1.00"}, "ACCOUNT_INACTIVE"),
        # period before over-application
        ({"date": 1, "amount": "1.00"}, "FUTURE_PERIOD"),
        # over-application before the invoices
        (
            {"amount": "1.00", "applications": [app("99999", "5.00")]},
            "OVER_APPLICATION",
        ),
    ],
)
def test_the_rules_apply_in_the_contract_order(target, change, code):
    body = receipt_body(target, amount="10.00", applications=[app("10001", "5.00")])
    for name, value in change.items():
        body[name] = target.period_date(value).isoformat() if name == "date" else value
    expect_error(target.post_receipt("k", body), 422, code)


# --- look-ups (4.4) ---------------------------------------------------------------------


def test_a_receipt_reads_back_by_number(target):
    receipt = pay(target, "k", applications=[app("10001", "10.00")])
    assert ok(target.call("GET", "/cash-receipts/000001")) == receipt
    for number in ("000001", quote("    000001"), quote(" 000001 ")):
        assert ok(target.call("GET", f"/cash-receipts/{number}")) == receipt


@pytest.mark.parametrize("number", ["000002", "1", "00000000001", "ABC"])
def test_an_unknown_receipt_is_404(target, number):
    pay(target, "k")
    expect_error(
        target.call("GET", f"/cash-receipts/{number}"), 404, "RECEIPT_NOT_FOUND"
    )


def test_receipts_are_searched_by_reference_key_and_customer_newest_first(target):
    a = pay(target, "ka", reference="ref-a")
    b = pay(target, "kb", reference="ref-b", custno="BLUEOX")
    c = pay(target, "kc", reference="ref-c")
    everything = ok(target.get("/cash-receipts"))["results"]
    assert everything == [c, b, a]
    assert ok(target.get("/cash-receipts", reference="ref-b"))["results"] == [b]
    assert ok(target.get("/cash-receipts", reference=" ref-b "))["results"] == [b]
    assert ok(target.get("/cash-receipts", idempotency_key="kc"))["results"] == [c]
    assert ok(target.get("/cash-receipts", idempotency_key=" kc "))["results"] == [c]
    assert ok(target.get("/cash-receipts", custno="acme"))["results"] == [c, a]
    assert ok(target.get("/cash-receipts", custno="ACME", reference="ref-a"))[
        "results"
    ] == [a]
    assert (
        ok(target.get("/cash-receipts", custno="ACME", reference="ref-b"))["results"]
        == []
    )
    for query in (
        {"reference": "ref"},
        {"reference": "REF-A"},
        {"idempotency_key": "nope"},
        {"custno": "NOSUCH"},
        {"custno": "TOOLONGX"},
    ):
        assert ok(target.get("/cash-receipts", **query))["results"] == [], query
