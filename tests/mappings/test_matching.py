"""Matching rules, pure: no database, no Sage Pro."""

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.matching import (
    Earlier,
    Invoice,
    Payment,
    Rule,
    candidates,
    decide,
    match_reference,
    normalize_reference,
)

D = Decimal


def pay(amount="100.00", ref="10001", **kw):
    return Payment(
        transaction_id=kw.pop("txid", "500000001"),
        amount=D(amount),
        reference=ref,
        paid_on=date(2026, 11, 20),
        **kw,
    )


def inv(invno="10001", balance="100.00", custno="ACME", **kw):
    return Invoice(
        invno=invno,
        custno=custno,
        balance=D(balance),
        invamt=D(balance),
        invdte=date(2026, 11, 1),
        **kw,
    )


def test_an_exact_reference_and_amount_applies_by_itself():
    decision = decide(pay(), [inv()])
    assert decision.action == "apply"
    assert decision.invoice.invno == "10001"
    assert (decision.applied, decision.unapplied) == (D("100.00"), D("0"))
    assert decision.review_kind == ""


def test_991_never_matches_inv_99910():
    assert match_reference("991", "INV-99910") == ("none", 0.0)
    decision = decide(pay(ref="991"), [inv("INV-99910")])
    assert decision.action == "review"
    assert decision.review_kind == "unmatched"


def test_a_fuzzy_reference_is_a_candidate_but_never_applied():
    assert match_reference("100455", "10045")[0] == "fuzzy"  # a digit typed twice
    decision = decide(pay(ref="100455"), [inv("10045")])
    assert decision.action == "review"
    assert decision.candidates[0].invoice.invno == "10045"
    assert decision.candidates[0].reference_match == "fuzzy"


def test_a_normalized_reference_applies_only_when_the_rule_allows_it():
    exact_rule = Rule(reference_mode="exact")
    normal_rule = Rule(reference_mode="normalized")
    assert (
        decide(pay(ref="INV-0010001"), [inv("10001")], [exact_rule]).action == "review"
    )
    assert (
        decide(pay(ref="INV-0010001"), [inv("10001")], [normal_rule]).action == "apply"
    )


def test_two_equally_good_candidates_go_to_review_never_a_guess():
    decision = decide(
        pay(), [inv("10001", custno="ACME"), inv("10001", custno="GLOBEX")]
    )
    assert decision.action == "review"
    assert "more than one invoice" in decision.reason


def test_no_tolerance_means_exact():
    rule = Rule(tolerance_type="none")
    assert (
        decide(pay("99.99"), [inv(balance="100.00")], [rule]).review_kind
        == "underpayment"
    )
    assert decide(pay("100.00"), [inv(balance="100.00")], [rule]).action == "apply"


def test_an_underpayment_within_tolerance_is_applied_and_leaves_the_invoice_open():
    rule = Rule(tolerance_type="percent", tolerance_value=D("1"))
    decision = decide(pay("99.50"), [inv(balance="100.00")], [rule])
    assert decision.action == "apply"
    assert decision.applied == D("99.50")
    assert decision.review_kind == ""


def test_an_underpayment_beyond_tolerance_goes_to_review():
    rule = Rule(tolerance_type="fixed", tolerance_value=D("0.50"))
    decision = decide(pay("99.00"), [inv(balance="100.00")], [rule])
    assert decision.action == "review"
    assert decision.review_kind == "underpayment"


def test_an_overpayment_applies_the_balance_and_keeps_the_rest_unapplied():
    decision = decide(pay("130.00"), [inv(balance="100.00")])
    assert decision.action == "apply"
    assert (decision.applied, decision.unapplied) == (D("100.00"), D("30.00"))
    assert decision.review_kind == "overpayment"


def test_a_second_payment_of_a_paid_invoice_is_unapplied_cash_and_flagged():
    decision = decide(pay("100.00"), [inv(balance="0.00")])
    assert decision.action == "on_account"
    assert decision.unapplied == D("100.00")
    assert decision.review_kind == "possible_duplicate"


def test_same_card_amount_and_invoice_under_two_transaction_ids_is_a_possible_duplicate():
    earlier = [Earlier("500000001", "1111", D("100.00"), "10001", date(2026, 11, 19))]
    decision = decide(
        pay(txid="500000002", card_last4="1111"), [inv()], earlier=earlier
    )
    assert decision.action == "on_account"
    assert decision.review_kind == "possible_duplicate"
    assert "500000001" in decision.reason


def test_the_duplicate_window_is_configurable():
    earlier = [Earlier("500000001", "1111", D("100.00"), "10001", date(2026, 11, 1))]
    narrow = Rule(duplicate_window_days=7)
    wide = Rule(duplicate_window_days=30)
    assert (
        decide(
            pay(txid="500000002", card_last4="1111"), [inv()], [narrow], earlier=earlier
        ).action
        == "apply"
    )
    assert (
        decide(
            pay(txid="500000002", card_last4="1111"), [inv()], [wide], earlier=earlier
        ).action
        == "on_account"
    )


def test_an_invoice_of_another_customer_is_not_applied():
    decision = decide(pay(customer="GLOBEX"), [inv(custno="ACME")])
    assert decision.action == "review"
    assert "belongs to customer ACME" in decision.reason


def test_the_first_matching_rule_by_priority_decides():
    strict = Rule(
        name="strict", priority=10, customer_pattern="WEB*", tolerance_type="none"
    )
    loose = Rule(
        name="loose", priority=20, tolerance_type="fixed", tolerance_value=D("1.00")
    )
    web = decide(pay("99.50", customer="WEB01"), [inv(custno="WEB01")], [loose, strict])
    other = decide(pay("99.50", customer="ACME"), [inv(custno="ACME")], [loose, strict])
    assert (web.rule.name, web.action) == ("strict", "review")
    assert (other.rule.name, other.action) == ("loose", "apply")


def test_candidates_are_the_three_best_with_their_parts():
    invoices = [
        inv("10001", "100.00"),
        inv("10002", "100.00"),
        inv("10003", "55.00"),
        inv("10004", "100.00", custno="GLOBEX"),
    ]
    history = {"ACME": 3}
    found = candidates(pay(ref="10002", customer="ACME"), invoices, Rule(), history)
    assert len(found) == 3
    assert found[0].invoice.invno == "10002"
    assert set(found[0].parts) == {"reference", "amount", "customer", "date", "history"}
    assert found[0].parts["history"] == 1.0
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)


references = st.text(alphabet="INVSO-# 0123456789AB", min_size=0, max_size=14)


@given(references)
def test_normalisation_is_idempotent(value):
    once = normalize_reference(value)
    assert normalize_reference(once) == once


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("INV-00123", "123"),
        (" inv 123 ", "123"),
        ("#0045", "45"),
        ("SO-10045", "10045"),
        ("0000", "0000"),
    ],
)
def test_normalisation_examples(raw, normal):
    assert normalize_reference(raw) == normal


def test_with_no_rules_configured_a_partial_payment_is_applied_and_the_invoice_stays_open():
    decision = decide(pay("40.00"), [inv(balance="100.00")])
    assert decision.action == "apply"
    assert decision.applied == D("40.00")
    assert "partial payments allowed" in decision.reason


def test_a_rule_can_allow_partial_payments():
    strict, partial = Rule(), Rule(allow_partial=True)
    assert (
        decide(pay("40.00"), [inv(balance="100.00")], [strict]).review_kind
        == "underpayment"
    )
    assert decide(pay("40.00"), [inv(balance="100.00")], [partial]).action == "apply"
