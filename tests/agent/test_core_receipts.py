"""POST /cash-receipts: validation, the rules 1-10 in order, idempotency, over- and
partial application, numbering, locks and failures, on both stores."""

import datetime
import threading
import time
from decimal import Decimal

import pytest

from sagepro_agent.core.validation import ReceiptRequest
from sagepro_agent.store.base import Locked, Unavailable
from tests.agent.test_core_support import (
    TODAY,
    check_invariants,
    env_fixture,  # noqa: F401
    menv_fixture,  # noqa: F401
    period_date,
    receipt,
    table_as,
)


def test_a_receipt_pays_invoices_and_the_customer_balance(env):
    response = env.post(
        "k1", receipt("150.00", apps=[("90001", "100.00"), ("90002", "50")])
    )
    assert response.status == 201, response.body
    body = response.body
    assert body["receipt_no"] == "000001"
    assert (body["custno"], body["method"], body["reference"]) == (
        "TEST",
        "VISA",
        "TX1",
    )
    assert body["idempotency_key"] == "k1"
    assert body["applications"] == [
        {"invno": "90001", "amount": "100.00", "requested_amount": "100.00"},
        {"invno": "90002", "amount": "50.00", "requested_amount": "50.00"},
    ]
    assert (body["applied_amount"], body["unapplied_amount"]) == ("150.00", "0.00")
    assert body["gl_account"] == "" and body["deleted"] is False
    created = datetime.datetime.fromisoformat(body["created_at"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert env.invoice("90001")["balance"] == "0.00"
    assert env.invoice("90001")["status"] == "closed"
    assert env.invoice("90002")["paidamt"] == "100.00"
    customer = env.customer("test")
    assert customer["balance"] == "110.00"  # 0 + 150 - 40
    assert customer["last_payment_amount"] == "150.00"
    assert customer["last_payment_date"] == period_date(0, TODAY).isoformat()
    check_invariants(env.store)


def test_apply_at_most_the_balance_and_keep_the_rest_unapplied(env):
    body = env.post("k1", receipt("300.00", apps=[("90001", "250.00")])).body
    assert body["applications"] == [
        {"invno": "90001", "amount": "100.00", "requested_amount": "250.00"}
    ]
    assert (body["applied_amount"], body["unapplied_amount"]) == ("100.00", "200.00")
    assert env.invoice("90001")["balance"] == "0.00"
    check_invariants(env.store)


def test_a_payment_on_account_has_no_lines(env):
    body = env.post("k1", receipt("25.5")).body
    assert body["amount"] == "25.50" and body["applications"] == []
    assert body["unapplied_amount"] == "25.50"


def test_replay_answers_200_with_the_stored_receipt_and_writes_nothing(env):
    first = env.post("k1", receipt(apps=[("90001", "60.00")]))
    again = env.post("k1", receipt(apps=[("90001", "60.00")]))
    # Normalised the same: padded keys, money to 2 places.
    padded = env.post("k1", receipt("100", apps=[("  90001", "60.0")], custno="TEST  "))
    assert (first.status, again.status, padded.status) == (201, 200, 200)
    assert again.body == first.body == padded.body
    assert env.invoice("90001")["balance"] == "40.00"
    assert len(list(env.table("receipts").rows())) == 1


def test_same_key_other_request_is_409_naming_the_receipt(env):
    env.post("k1", receipt())
    response = env.post("k1", receipt("99.00"))
    assert response.status == 409
    assert response.body == {
        "code": "IDEMPOTENCY_CONFLICT",
        "detail": "Idempotency-Key 'k1' was used for a different request (receipt 000001)",
    }


def test_same_reference_under_another_key_is_409_duplicate(env):
    env.post("k1", receipt())
    response = env.post("k2", receipt())
    assert response.status == 409
    assert response.body == {
        "code": "DUPLICATE_RECEIPT",
        "detail": "reference 'TX1' is already on receipt 000001",
    }


def test_receipt_numbers_skip_numbers_already_used(env):
    env.table("receipts").append(
        {"RCPTNO": "    000001", "CUSTNO": "TEST  ", "REFNO": "OLD"}
    )
    env.table("receipts").append(
        {"RCPTNO": "    000002", "CUSTNO": "TEST  ", "REFNO": "OLD2"}
    )
    assert env.post("k1", receipt()).body["receipt_no"] == "000003"
    assert env.post("k2", receipt(reference="TX2")).body["receipt_no"] == "000004"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            receipt(amount=12.5),
            {
                "amount": [
                    'must be a decimal string with at most 2 places, e.g. "12.30"'
                ]
            },
        ),
        (
            receipt(amount="1.234"),
            {
                "amount": [
                    'must be a decimal string with at most 2 places, e.g. "12.30"'
                ]
            },
        ),
        (receipt(amount="0.00"), {"amount": ["must be greater than 0.00"]}),
        (
            receipt(custno="TOOLONG"),
            {"custno": ["customer number must be 1 to 6 characters"]},
        ),
        (receipt(date="2026-13-01"), {"date": ["must be a date as YYYY-MM-DD"]}),
        (receipt(method=""), {"method": ["is required"]}),
        (receipt(reference="x" * 41), {"reference": ["must be at most 40 characters"]}),
        (receipt(gl_account=5), {"gl_account": ["is required"]}),
        (receipt(applications="no"), {"applications": ["must be a list"]}),
        (
            receipt(applications=[1]),
            {"applications.0": ["must be an object {invno, amount}"]},
        ),
        (
            receipt(apps=[("90001", "1.00"), ("90001", "2.00")]),
            {"applications.1.invno": ["invoice is listed more than once"]},
        ),
        (
            receipt(apps=[("90001", 5)]),
            {
                "applications.0.amount": [
                    'must be a decimal string with at most 2 places, e.g. "12.30"'
                ]
            },
        ),
        ([], {"body": ["must be a JSON object"]}),
    ],
)
def test_invalid_bodies_are_400_naming_every_field(env, body, errors):
    response = env.post("k1", body)
    assert response.status == 400
    assert response.body["code"] == "VALIDATION_ERROR"
    assert response.body["errors"] == errors
    assert response.body["detail"] == "invalid fields: " + ", ".join(sorted(errors))
    assert list(env.table("receipts").rows()) == []


def test_missing_key_and_malformed_json(env):
    missing = env.post(None, receipt())
    assert missing.status == 400
    assert missing.body["errors"] == {
        "Idempotency-Key": ["header is required, at most 100 chars"]
    }
    assert env.post("x" * 101, receipt()).status == 400
    bad = env.call(
        "POST", "/cash-receipts", raw=b"{nope", headers={"Idempotency-Key": "k"}
    )
    assert bad.body["errors"] == {"body": ["is not valid JSON"]}


@pytest.mark.parametrize(
    ("offset", "code"),
    [
        (-5, "PERIOD_LOCKED"),
        (-3, "PERIOD_CLOSED"),
        (-2, "PERIOD_LOCKED"),
        (2, "FUTURE_PERIOD"),
        (20, "PERIOD_NOT_DEFINED"),
    ],
)
def test_period_rules(env, offset, code):
    date = period_date(offset, TODAY).isoformat()
    response = env.post("k1", receipt(date=date))
    assert response.status == 422
    assert response.body["code"] == code
    assert (
        env.post("k1", receipt(date=period_date(-1, TODAY).isoformat())).status == 201
    )


@pytest.mark.parametrize(
    ("account", "status", "code"),
    [
        ("9999-99", 422, "ACCOUNT_NOT_FOUND"),
        ("1050-00", 422, "ACCOUNT_NOT_FOUND"),
        ("690000", 422, "ACCOUNT_INACTIVE"),
        ("110000", 201, None),
    ],
)
def test_gl_account_rules(env, account, status, code):
    response = env.post("k1", receipt(gl_account=account))
    assert response.status == status
    if code:
        assert response.body["code"] == code
    else:
        assert response.body["gl_account"] == "1100-00"


def test_business_rules_refuse_and_write_nothing(env):
    cases = [
        (receipt(custno="NOBODY"), "CUSTOMER_NOT_FOUND", "no customer 'NOBODY'"),
        (
            receipt("10.00", apps=[("90001", "10.01")]),
            "OVER_APPLICATION",
            "applications total 10.01 exceeds the receipt amount 10.00",
        ),
        (
            receipt(apps=[("99999", "1.00")]),
            "INVOICE_NOT_FOUND",
            "no invoice '99999' for customer 'TEST'",
        ),
        (
            receipt(apps=[("90004", "1.00")]),
            "INVOICE_NOT_FOUND",
            "no invoice '90004' for customer 'TEST'",
        ),  # deleted
        (
            receipt(apps=[("90003", "1.00")]),
            "INVOICE_NOT_OPEN",
            "invoice '90003' has no balance to pay (balance -40.00)",
        ),  # credit memo
    ]
    for body, code, detail in cases:
        response = env.post("k1", body)
        assert (response.status, response.body) == (
            422,
            {"code": code, "detail": detail},
        )
    assert list(env.table("receipts").rows()) == []
    assert env.invoice("90001")["balance"] == "100.00"
    # A refusal is not remembered: the same key may carry a valid request later.
    assert env.post("k1", receipt()).status == 201


def test_another_customers_invoice_is_not_found(env):
    other = [
        i
        for i in env.call("GET", "/invoices", query={"status": "open"}).body["results"]
        if i["custno"] != "TEST" and i["artype"] != "C"
    ][0]
    response = env.post("k1", receipt(apps=[(other["invno"], "1.00")]))
    assert response.body["code"] == "INVOICE_NOT_FOUND"


def test_customers_on_hold_may_pay(env):
    response = env.post("k1", receipt(custno="HOLDCO"))
    assert response.status == 201


def test_an_object_lock_is_423_then_success_once_cleared(env):
    table = env.table("invoices")
    row = table.find({"INVNO": "     90001"})[0]
    table_as(env, "invoices", "JOE").update(
        row.ref, {"LCKSTAT": "L", "LCKUSER": "JOE "}, expect={"INVNO": "     90001"}
    )
    response = env.post("k1", receipt(apps=[("90001", "10.00")]))
    assert response.status == 423
    assert response.body == {
        "code": "RECORD_LOCKED",
        "detail": "invoice 90001 is in use by JOE",
    }
    assert response.headers["Retry-After"]
    assert list(env.table("receipts").rows()) == []
    # The lock holder clears it.
    table_as(env, "invoices", "JOE").update(
        row.ref, {"LCKSTAT": " ", "LCKUSER": "    "}, expect={"INVNO": "     90001"}
    )
    assert env.post("k1", receipt(apps=[("90001", "10.00")])).status == 201
    check_invariants(env.store)


@pytest.mark.parametrize(
    "step",
    ["append:receipts", "append:receipt_lines", "update:invoices", "update:customers"],
)
def test_a_lock_part_way_is_423_and_the_retry_finishes_the_same_receipt(menv, step):
    op, table = step.split(":")
    menv.store.fail_next(op, table, Locked(f"{table} record is locked"))
    first = menv.post(
        "k1", receipt("150.00", apps=[("90001", "100.00"), ("90002", "50")])
    )
    assert first.status == 423 and first.headers["Retry-After"]
    assert menv.journal.backlog() == 1
    retry = menv.post(
        "k1", receipt("150.00", apps=[("90001", "100.00"), ("90002", "50")])
    )
    assert retry.status == 201, retry.body
    assert retry.body["receipt_no"] == "000001"
    assert len(list(menv.table("receipts").rows())) == 1
    assert len(list(menv.table("receipt_lines").rows())) == 2
    assert menv.journal.backlog() == 0
    check_invariants(menv.store)


def test_the_share_going_offline_part_way_is_503_and_the_entry_resumes(menv):
    menv.store.fail_next("update", "invoices", Unavailable("share offline"), after=1)
    first = menv.post(
        "k1", receipt("150.00", apps=[("90001", "100.00"), ("90002", "50")])
    )
    assert first.status == 503
    assert (
        menv.post(
            "k1", receipt("150.00", apps=[("90001", "100.00"), ("90002", "50")])
        ).status
        == 201
    )
    check_invariants(menv.store)


def test_a_concurrent_change_sends_the_entry_to_review_never_rolled_back(menv):
    # The plan sees PAIDAMT 0.00; a Sage user pays 5.00 before S4 runs.
    menv.store.fail_next("append", "receipt_lines", Locked("busy"))
    body = receipt("150.00", apps=[("90001", "100.00")])
    assert menv.post("k1", body).status == 423
    invoices = menv.table("invoices")
    row = invoices.find({"INVNO": "     90001"})[0]
    invoices.update(
        row.ref,
        {"PAIDAMT": Decimal("5.00"), "BALANCE": Decimal("95.00")},
        expect={"INVNO": "     90001"},
    )
    response = menv.post("k1", body)
    assert response.status == 503
    assert "operator" in response.body["detail"] and "90001" in response.body["detail"]
    review = menv.journal.needs_review()
    assert [(r["idempotency_key"], r["reference"]) for r in review] == [("k1", "TX1")]
    assert "PAIDAMT" in review[0]["detail"]
    assert menv.post("k1", body).status == 503  # still waiting for the operator
    assert menv.invoice("90001")["paidamt"] == "5.00"  # nothing undone or redone
    assert menv.agent.health()["needs_review"] == 1


def test_the_request_hash_is_the_sandboxs():
    from integrations.sandbox.sagepro.ledger import ReceiptRequest as SandboxRequest

    bodies = [
        receipt(apps=[("90001", "1.5")]),
        receipt(gl_account="1100-00"),
        receipt(gl_account=""),
        {**receipt(), "custno": " test ", "method": " Visa "},
    ]
    for body in bodies:
        assert (
            ReceiptRequest.parse(body).fingerprint()
            == SandboxRequest.parse(body).fingerprint()
        )
    # Without gl_account the hash is the one from before the field existed.
    assert (
        ReceiptRequest.parse(receipt()).fingerprint()
        == ReceiptRequest.parse(receipt(gl_account="")).fingerprint()
    )


def test_a_receipt_deleted_in_sage_frees_its_key_and_reference(env):
    env.post("k1", receipt())
    table = env.table("receipts")
    row = table.find({"RCPTNO": "    000001"})[0]
    table.set_deleted(row.ref, True, expect={"RCPTNO": "    000001"})
    again = env.post("k1", receipt())
    assert again.status == 201 and again.body["receipt_no"] == "000002"


def test_recovery_never_reruns_an_entry_a_request_is_finishing(env):
    """The background recovery lists unfinished entries, then waits for the company
    lock while a request finishes one of them: it must not write that receipt again."""

    receipts = env.agent.gateway.receipts
    steps = receipts._steps
    in_flight = threading.Event()

    def slow_steps(*args, **kwargs):
        in_flight.set()
        time.sleep(0.3)  # the request holds the lock while recovery lists the entry
        return steps(*args, **kwargs)

    receipts._steps = slow_steps
    answers = []
    request = threading.Thread(
        target=lambda: answers.append(
            env.post("race-1", receipt("10.00", reference="RACE"))
        )
    )
    request.start()
    assert in_flight.wait(5)
    receipts._steps = steps
    env.agent.recover()
    request.join(10)

    assert answers and answers[0].status == 201, answers
    live = env.store.table("01", "receipts").find({"REFNO": "RACE".ljust(40)})
    assert len(live) == 1, f"the payment was written {len(live)} times"
    check_invariants(env.store)
