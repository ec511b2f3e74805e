"""Soft or hard declines (mappings.declines): what autopay may retry."""

import pytest

from mappings.declines import HARD, SOFT, classify, parse_retry_days


@pytest.mark.parametrize(
    "message",
    [
        "  DECLINE - Do not honor",
        "  NSF - Insufficient funds",
        "Exceeds withdrawal limit",
        "Issuer unavailable - try again",
        "CALL ISSUER",
    ],
)
def test_temporary_declines_are_soft(message):
    verdict = classify(102, message)
    assert verdict.category == SOFT
    assert verdict.retryable
    assert verdict.reason == " ".join(message.split())


@pytest.mark.parametrize(
    "message",
    [
        "  PICK UP CARD - Lost or stolen",
        "  EXPIRED CARD",
        "Invalid card number",
        "Account closed",
        "Suspected fraud",
        "Do not honor - lost card",  # names both: hard wins
        "Something nobody has seen",  # unknown: hard, a person looks
        "",
    ],
)
def test_card_problems_and_unknown_declines_are_hard(message):
    verdict = classify(102, message)
    assert verdict.category == HARD
    assert not verdict.retryable
    assert verdict.reason


def test_an_avs_or_csc_void_is_hard_whatever_it_says():
    assert classify(103, "Insufficient funds").category == HARD


def test_an_empty_message_names_the_response_code():
    assert classify(102, "").reason == "declined (response code 102)"
    assert classify(None, None).category == HARD  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("1, 3, 7", [1, 3, 7]),
        ("1;3;7", [1, 3, 7]),
        ("", []),
        (" 2 ,, 5 ", [2, 5]),
        ("60", [60]),
    ],
)
def test_it_reads_retry_days(text, days):
    assert parse_retry_days(text) == days


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1, x", "'x'"),
        ("0", "'0'"),
        ("61", "'61'"),
        ("-1", "'-1'"),
        ("1.5", "'1.5'"),
        (",".join(["1"] * 11), "at most 10"),
    ],
)
def test_it_refuses_bad_retry_days_naming_the_part(text, says):
    with pytest.raises(ValueError, match=says):
        parse_retry_days(text)
