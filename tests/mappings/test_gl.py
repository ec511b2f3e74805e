"""GL-account rules as pure functions: no database, no network."""

from decimal import Decimal

from mappings.gl import (
    MATCHED,
    SKIPPED,
    GlFacts,
    GlRuleData,
    account_problem,
    chart_from,
    choose_gl_account,
    normalize_card_brand,
)
from mappings.text import split_list

SALE = GlFacts(
    transaction_type="SALE",
    card_brand="American Express",
    channel="API",
    amount=Decimal("250.00"),
    currency="USD",
    customer="ACME",
    invoice="10001",
)


def rule(id, account, priority=100, **conditions):
    return GlRuleData(
        account=account, name=f"rule {id}", id=id, priority=priority, **conditions
    )


def test_it_picks_the_highest_priority_match_and_explains_every_other_rule():
    rules = [
        rule(1, "1000-00", priority=50, card_brands=("VISA", "MASTERCARD")),
        rule(2, "1100-00", priority=20, card_brands=("AMEX",)),
        rule(3, "1200-00", priority=10, channels=("API",)),
        rule(4, "4000-00", priority=10, amount_max=Decimal("100.00")),
    ]

    choice = choose_gl_account(SALE, rules, "9999-00")

    assert choice.account == "1200-00"
    assert choice.rule.id == 3
    assert not choice.used_suspense
    trace = {step["rule"]: step for step in choice.trace_dicts()}
    assert [s["rule"] for s in choice.trace_dicts()] == [3, 4, 2, 1]
    assert trace[3]["result"] == MATCHED
    assert trace[4] == {
        "rule": 4,
        "name": "rule 4",
        "result": SKIPPED,
        "reason": "amount 250.00 above 100.00",
        "account": "4000-00",
    }
    assert trace[2]["result"] == SKIPPED
    assert "matched first" in trace[2]["reason"]
    assert trace[1]["reason"] == "card brand AMEX not in VISA,MASTERCARD"


def test_ties_in_priority_go_to_the_lower_id():
    choice = choose_gl_account(SALE, [rule(7, "1100-00"), rule(5, "1000-00")])
    assert choice.rule.id == 5


def test_it_falls_back_to_the_suspense_account_and_says_so():
    choice = choose_gl_account(SALE, [rule(1, "1000-00", currency="EUR")], "9999-00")

    assert choice.account == "9999-00"
    assert choice.used_suspense
    assert choice.rule is None
    last = choice.trace_dicts()[-1]
    assert last["rule"] is None
    assert last["result"] == MATCHED
    assert "suspense" in last["reason"]
    assert choice.trace_dicts()[0]["reason"] == "currency USD is not EUR"


def test_without_a_match_or_a_suspense_account_no_account_is_chosen():
    choice = choose_gl_account(
        SALE, [rule(1, "1000-00", transaction_types=("REFUND",))]
    )
    assert choice.account == ""
    assert choice.trace_dicts()[-1]["result"] == SKIPPED


def test_every_condition_has_a_reason():
    cases = [
        ({"transaction_types": ("CAPTURE",)}, "transaction type SALE not in CAPTURE"),
        ({"channels": ("VT",)}, "channel API not in VT"),
        ({"amount_min": Decimal("500.00")}, "amount 250.00 below 500.00"),
        ({"customer_pattern": "WEB*"}, "customer ACME does not match WEB*"),
        ({"invoice_pattern": "SO-*"}, "invoice 10001 does not match SO-*"),
        (
            {"product_category": "PARTS"},
            "order lines unknown, cannot check category PARTS",
        ),
    ]
    for conditions, reason in cases:
        assert rule(1, "1000-00", **conditions).skip_reason(SALE) == reason


def test_patterns_are_case_insensitive_globs_and_categories_need_order_lines():
    facts = GlFacts(customer="webco", invoice="so-77", categories=("Parts", "Labor"))
    assert not rule(
        1, "x", customer_pattern="WEB*", invoice_pattern="SO-*"
    ).skip_reason(facts)
    assert not rule(1, "x", product_category="parts").skip_reason(facts)
    assert rule(1, "x", product_category="TOOLS").skip_reason(facts)


def test_card_brands_are_compared_by_their_short_names():
    assert normalize_card_brand("American Express") == "AMEX"
    assert normalize_card_brand("MasterCard") == "MASTERCARD"
    assert normalize_card_brand(" visa ") == "VISA"
    assert not rule(1, "x", card_brands=("MC",)).skip_reason(
        GlFacts(card_brand="MasterCard")
    )


def test_split_list_reads_the_admin_comma_lists():
    assert split_list(" sale, Capture ,,") == ("SALE", "CAPTURE")


def test_accounts_are_checked_against_the_chart_with_or_without_the_mask():
    chart = chart_from(
        [
            {"glacnt": "1100-00", "active": True},
            {"glacnt": "6900-00", "active": False},
        ]
    )
    assert account_problem("110000", chart) is None
    assert account_problem("1100-00", chart) is None
    assert account_problem("6900-00", chart)[0] == "ACCOUNT_INACTIVE"
    assert account_problem("1050-00", chart)[0] == "ACCOUNT_NOT_FOUND"


def test_an_account_code_must_look_like_a_sage_pro_account():
    from mappings.gl import account_format_problem

    assert account_format_problem("1100-00") is None
    assert account_format_problem("") is None
    assert "letters, digits and dashes" in account_format_problem("1100 00")
    assert "is 25 characters" in account_format_problem("1" * 25)
