"""Review reasons in plain words, the recorded text kept whole."""

from types import SimpleNamespace

import pytest

from integrations.wording import LIST_LENGTH, first_sentence, plain_reason, short_reason


def item(reason, error_code=""):
    return SimpleNamespace(reason=reason, error_code=error_code)


@pytest.mark.parametrize(
    ("reason", "code", "plain"),
    [
        (
            "Sage Pro refused GET /customers/NOPE: no customer 'NOPE' "
            "[CUSTOMER_NOT_FOUND] (HTTP 404)",
            "",
            "Sage Pro has no customer NOPE.",
        ),
        (
            "Sage Pro refused the receipt: Sage Pro refused POST /cash-receipts: "
            "invoice '21003' has no balance to pay (balance 0.00) "
            "[INVOICE_NOT_OPEN] (HTTP 422)",
            "INVOICE_NOT_OPEN",
            "Sent and refused: Invoice 21003 has no balance left to pay in Sage Pro.",
        ),
        (
            "Sage Pro refused the receipt: Sage Pro refused POST /cash-receipts: "
            "GL account '1099' is inactive [ACCOUNT_INACTIVE] (HTTP 422)",
            "ACCOUNT_INACTIVE",
            "Sent and refused: GL account 1099 is inactive in Sage Pro.",
        ),
        (
            "Not sent to Sage Pro: date: period 202503 is locked (value "
            "'2025-03-14'; spec: date)",
            "PERIOD_LOCKED",
            "Not sent to Sage Pro: Sage Pro's period 202503 is locked: post in an "
            "open period or have it unlocked.",
        ),
        (
            "Not sent to Sage Pro: method: is longer than 10 characters (value "
            "'CREDITCARD-ONLINE'; spec: method text max 10)",
            "VALIDATION:method",
            "Not sent to Sage Pro: the payment method is longer than 10 characters.",
        ),
    ],
)
def test_it_says_what_is_wrong_by_the_error_code(reason, code, plain):
    assert plain_reason(item(reason, code)) == (plain, reason)


def test_a_long_validation_reason_becomes_one_sentence_naming_the_rest():
    problems = "; ".join(
        f"field{n}: is not what Sage Pro accepts here at all (value 'x'; spec {n})"
        for n in range(8)
    )
    reason = (
        "Not sent to Sage Pro: gl_account: no GL rule matched and the connection has "
        f"no suspense account (value ''; GL rules of paytrace-prod); {problems}"
    )
    assert len(reason) > 600

    plain, technical = plain_reason(item(reason, "VALIDATION:gl_account"))

    assert plain == (
        "Not sent to Sage Pro: no GL account: no GL rule matched and the connection "
        "has no suspense account (and 8 more problems)."
    )
    assert len(plain) <= LIST_LENGTH
    assert technical == reason


def test_a_reason_without_a_known_code_keeps_its_first_sentence():
    reason = (
        "No open invoice matches reference ZZZ-1 for customer ACME. Candidates: "
        "21003 (0.21), 21004 (0.12)."
    )
    assert plain_reason(item(reason)) == (
        "No open invoice matches reference ZZZ-1 for customer ACME.",
        reason,
    )


def test_the_list_cell_is_at_most_one_line_of_text():
    reason = "word " * 100
    assert len(short_reason(item(reason))) <= LIST_LENGTH
    assert first_sentence("") == ""


def test_an_unknown_code_falls_back_to_the_reason():
    reason = "Something new happened [BRAND_NEW_CODE] (HTTP 418)"
    assert plain_reason(item(reason, "BRAND_NEW_CODE"))[0] == reason
