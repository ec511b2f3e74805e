"""Text a FoxPro table cannot hold (characters outside its code page, Windows-1252).

A key no Sage Pro row can carry finds nothing: the contract's not-found answers, never
a `503` (which the portal would retry for ever). Free text the receipt stores
(`reference`, `method`) is refused as a `400 VALIDATION_ERROR` naming the field, on every
target; text inside the code page is stored and answered back exactly.
"""

from urllib.parse import quote

import pytest

from tests.conformance.contract import expect_error, ok, receipt_body, receipts_for_key

OUTSIDE = ["😀", "Ω≈", "汉字"]  # none of these is in Windows-1252


@pytest.mark.parametrize("text", OUTSIDE)
def test_a_key_outside_the_code_page_is_not_found(target, text):
    expect_error(
        target.call("GET", f"/customers/{quote(text)}"), 404, "CUSTOMER_NOT_FOUND"
    )
    expect_error(
        target.call("GET", f"/customers/{quote(text)}/open-items"),
        404,
        "CUSTOMER_NOT_FOUND",
    )
    expect_error(
        target.call("GET", f"/invoices/{quote(text)}"), 404, "INVOICE_NOT_FOUND"
    )
    expect_error(target.get("/invoices", custno=text), 404, "CUSTOMER_NOT_FOUND")
    expect_error(
        target.call("GET", f"/cash-receipts/{quote(text)}"), 404, "RECEIPT_NOT_FOUND"
    )
    expect_error(
        target.call("GET", f"/gl-accounts/{quote(text)}"), 404, "ACCOUNT_NOT_FOUND"
    )
    for query in ({"reference": text}, {"custno": text}):
        assert ok(target.get("/cash-receipts", **query))["results"] == [], query


@pytest.mark.parametrize("text", OUTSIDE)
def test_a_receipt_naming_keys_outside_the_code_page_is_refused_as_unknown(
    target, text
):
    answer = target.post_receipt("k1", receipt_body(target, custno=text))
    expect_error(answer, 422, "CUSTOMER_NOT_FOUND")
    body = receipt_body(target, applications=[{"invno": text, "amount": "1.00"}])
    expect_error(target.post_receipt("k2", body), 422, "INVOICE_NOT_FOUND")
    answer = target.post_receipt("k3", receipt_body(target, gl_account=text))
    expect_error(answer, 422, "ACCOUNT_NOT_FOUND")


@pytest.mark.parametrize("field", ["reference", "method"])
def test_free_text_outside_the_code_page_is_refused_naming_the_field(target, field):
    value = "PT-😀" if field == "reference" else "CARD😀"
    answer = target.post_receipt("k1", receipt_body(target, **{field: value}))
    expect_error(answer, 400, "VALIDATION_ERROR", fields={field})
    assert "Windows-1252" in answer.json["errors"][field][0]
    assert receipts_for_key(target, "k1") == []


@pytest.mark.parametrize("field", ["reference", "method"])
def test_free_text_in_the_code_page_is_stored_exactly(target, field):
    value = "PT-Müller-€5" if field == "reference" else "CARTÉ"
    answer = target.post_receipt("k1", receipt_body(target, **{field: value}))
    assert answer.status == 201, answer
    assert answer.json[field] == value
    assert receipts_for_key(target, "k1") == [answer.json]


@pytest.mark.parametrize("amount", ["٣.٠٠", "３.００", "3.০০"])
def test_money_written_in_other_digits_is_refused(target, amount):
    answer = target.post_receipt("k1", receipt_body(target, amount=amount))
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"amount"})
    assert receipts_for_key(target, "k1") == []
