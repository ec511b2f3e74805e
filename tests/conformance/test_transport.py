"""Contract section 1 and 3: auth, company, methods, bodies, errors, 423 and 503."""

import pytest

from tests.conformance.contract import (
    check_customer_balance,
    expect_error,
    invoice,
    ok,
    receipt_body,
    receipts_for_key,
)

READS = ["/customers/ACME", "/invoices/10001", "/invoices", "/gl-accounts", "/periods"]


def needs_bearer(target):
    if not target.bearer_auth:
        pytest.skip(f"{target.name}: the transport authenticates, not a bearer key")


@pytest.mark.parametrize("path", READS)
def test_a_missing_key_is_401_with_www_authenticate(target, path):
    needs_bearer(target)
    answer = target.call("GET", path, auth=False)
    expect_error(answer, 401, "UNAUTHORIZED")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer wrong-key", "Basic dXNlcjpwYXNz", "Bearer", "bearer"]
)
def test_a_wrong_key_or_scheme_is_401(target, header):
    needs_bearer(target)
    answer = target.call("GET", "/customers/ACME", auth=header)
    expect_error(answer, 401, "UNAUTHORIZED")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_write_without_the_key_writes_nothing(target):
    needs_bearer(target)
    body = receipt_body(target, applications=[{"invno": "10001", "amount": "10.00"}])
    before = invoice(target, "10001")
    answer = target.call(
        "POST",
        "/cash-receipts",
        json=body,
        headers={"Idempotency-Key": "k"},
        auth=False,
    )
    expect_error(answer, 401, "UNAUTHORIZED")
    assert invoice(target, "10001") == before
    assert receipts_for_key(target, "k") == []


def test_the_key_is_checked_before_the_method(target):
    needs_bearer(target)
    expect_error(target.call("DELETE", "/periods", auth=False), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("company", [None, "01"])
def test_the_company_header_defaults_to_01(target, company):
    headers = {} if company is None else {"Sage-Company": company}
    body = ok(target.call("GET", "/customers/ACME", headers=headers))
    assert body["company_id"] == "01"


@pytest.mark.parametrize("company", ["02", "1", "001", "ZZ"])
def test_an_unknown_company_is_404_on_every_resource(target, company):
    for path in READS:
        answer = target.call("GET", path, headers={"Sage-Company": company})
        expect_error(answer, 404, "COMPANY_NOT_FOUND")
    body = receipt_body(target)
    answer = target.call(
        "POST",
        "/cash-receipts",
        json=body,
        headers={"Sage-Company": company, "Idempotency-Key": "k"},
    )
    expect_error(answer, 404, "COMPANY_NOT_FOUND")
    answer = target.call(
        "POST",
        "/cash-receipts/batch",
        json={"receipts": [{"idempotency_key": "k", "receipt": body}]},
        headers={"Sage-Company": company},
    )
    expect_error(answer, 404, "COMPANY_NOT_FOUND")
    assert receipts_for_key(target, "k") == []


@pytest.mark.parametrize(
    "method, path",
    [
        ("DELETE", "/customers/ACME"),
        ("POST", "/customers/ACME"),
        ("POST", "/customers/ACME/open-items"),
        ("PUT", "/invoices"),
        ("PATCH", "/invoices/10001"),
        ("POST", "/invoices/10001"),
        ("PUT", "/cash-receipts"),
        ("GET", "/cash-receipts/batch"),
        ("PUT", "/cash-receipts/batch"),
        ("POST", "/gl-accounts"),
        ("DELETE", "/gl-accounts/1100-00"),
        ("POST", "/periods"),
    ],
)
def test_a_method_not_allowed_is_405(target, method, path):
    expect_error(target.call(method, path, json={}), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("path", ["/cash-receipts", "/cash-receipts/batch"])
@pytest.mark.parametrize(
    "raw", [b"{", b"not json", b"\xff\xfe", b'{"custno": "ACME",}']
)
def test_malformed_json_is_a_400_validation_error(target, path, raw):
    if not target.raw_bodies and raw == b"\xff\xfe":
        pytest.skip(f"{target.name}: the transport carries bodies as text")
    answer = target.call("POST", path, body=raw, headers={"Idempotency-Key": "k"})
    body = expect_error(answer, 400, "VALIDATION_ERROR")
    assert body["errors"], body
    assert receipts_for_key(target, "k") == []


@pytest.mark.parametrize("path", ["/cash-receipts", "/cash-receipts/batch"])
def test_json_nested_too_deeply_is_a_400_not_a_crash(target, path):
    raw = b"[" * 5000 + b"]" * 5000
    answer = target.call("POST", path, body=raw, headers={"Idempotency-Key": "k"})
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"body"})


@pytest.mark.parametrize("json_body", [[], "text", 12, None])
def test_a_body_that_is_not_an_object_is_400(target, json_body):
    answer = target.call(
        "POST",
        "/cash-receipts",
        body=b"null" if json_body is None else None,
        json=json_body,
        headers={"Idempotency-Key": "k"},
    )
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"body"})


def test_answers_are_json(target):
    answer = target.call("GET", "/customers/ACME")
    assert answer.headers["Content-Type"].startswith("application/json")
    answer = target.call("GET", "/customers/NOSUCH")
    assert answer.headers["Content-Type"].startswith("application/json")


# --- 423 and 503 ------------------------------------------------------------------------


def check_retry_after(answer):
    """`Retry-After`, when sent, is a whole number of seconds."""
    value = answer.headers.get("Retry-After")
    if value is not None:
        assert value.isdigit(), value


def test_a_lock_refuses_the_write_with_423_and_nothing_is_written(target):
    body = receipt_body(target, applications=[{"invno": "10001", "amount": "10.00"}])
    before = invoice(target, "10001")
    with target.hold_lock(custno="ACME", invnos=("10001",)):
        answer = target.post_receipt("k-lock", body)
        expect_error(answer, 423, "RECORD_LOCKED")
        check_retry_after(answer)
        # Reads keep working while a user holds the lock.
        assert invoice(target, "10001") == before
        assert receipts_for_key(target, "k-lock") == []
    created = ok(target.post_receipt("k-lock", body), 201)
    assert created["applied_amount"] == "10.00"
    after = invoice(target, "10001")
    assert after["paidamt"] != before["paidamt"]
    from decimal import Decimal

    assert Decimal(after["balance"]) == Decimal(before["balance"]) - Decimal("10.00")
    check_customer_balance(target, "ACME")


def test_unavailable_data_is_503_on_reads_and_writes(target):
    body = receipt_body(target, applications=[{"invno": "10001", "amount": "10.00"}])
    before = invoice(target, "10001")
    with target.make_unavailable():
        for path in READS:
            answer = target.call("GET", path)
            expect_error(answer, 503, "UNAVAILABLE")
            check_retry_after(answer)
        answer = target.post_receipt("k-down", body)
        expect_error(answer, 503, "UNAVAILABLE")
        check_retry_after(answer)
        answer = target.call(
            "POST",
            "/cash-receipts/batch",
            json={"receipts": [{"idempotency_key": "k-batch", "receipt": body}]},
        )
        expect_error(answer, 503, "UNAVAILABLE")
    assert invoice(target, "10001") == before
    assert receipts_for_key(target, "k-down") == []
    assert receipts_for_key(target, "k-batch") == []
    ok(target.post_receipt("k-down", body), 201)
