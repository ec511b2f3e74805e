"""The standard rule's ways of finding an invoice, and its traps, as pure functions."""

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import payers
from mappings.matching import DEFAULT_RULE, Invoice, Payment, Rule, decide
from mappings.payers import Customer, Identity, Link, Payer, identify
from mappings.references import near_miss, parse_reference, reference_key

D = Decimal
KNOWN = Identity("ACME", (payers.Evidence("ACME", "customer_id", "customer_id", "id"),))


def pay(amount="100.00", ref="", **kw):
    return Payment(
        transaction_id=kw.pop("txid", "500000001"),
        amount=D(amount),
        reference=ref,
        paid_on=date(2026, 11, 20),
        **kw,
    )


def inv(invno, balance="100.00", custno="ACME", day=1, **kw):
    return Invoice(
        invno=invno,
        custno=custno,
        balance=D(balance),
        invamt=D(balance),
        invdte=date(2026, 11, day),
        **kw,
    )


def applied(decision):
    return [(i.invno, str(a)) for i, a in decision.applications]


# --- reading references -------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "INV-10045",
        "Invoice #10045",
        "inv 10045",
        "#10045",
        "Inv. 10045",
        "No. 10045",
        "INV10045",
        "0010045",
        "  10045  ",
        "invoice: 10045",
        "１００４５",
    ],
)
def test_prefixes_punctuation_and_zeros_read_as_one_clean_number(written):
    parsed = parse_reference(written)
    assert parsed.keys == ["10045"]
    assert parsed.clean


@pytest.mark.parametrize(
    ("written", "keys"),
    [
        ("10045, 10046", ["10045", "10046"]),
        ("10045/10046", ["10045", "10046"]),
        ("10045 & 10046", ["10045", "10046"]),
        ("Invoices 10045 and 10046", ["10045", "10046"]),
        ("10045-10047", ["10045", "10046", "10047"]),
        ("10045 to 10047", ["10045", "10046", "10047"]),
        ("10047-10045", ["10047", "10045"]),  # reversed: two numbers, not a range
        ("10045-10099", ["10045", "10099"]),  # wider than a range may be
    ],
)
def test_several_numbers_and_ranges(written, keys):
    parsed = parse_reference(written)
    assert parsed.keys == keys
    assert not parsed.clean


def test_a_prefix_word_is_never_cut_out_of_another_word():
    assert parse_reference("INVENTORY 10045").keys == ["10045"]
    assert not parse_reference("INVENTORY 10045").clean
    assert reference_key("NOVA10") == "NOVA10"


def test_sage_right_justified_keys_compare_with_what_customers_write():
    assert reference_key("   10045") == reference_key("0010045") == "10045"
    assert reference_key("PO-7781") == reference_key("po 7781") == "7781"


@given(st.text(max_size=400))
def test_any_text_parses_within_bounds(text):
    parsed = parse_reference(text)
    assert len(parsed.tokens) <= 10
    assert all(t.key.isalnum() and t.key.isascii() for t in parsed.tokens)


@pytest.mark.parametrize(
    ("a", "b", "how"),
    [
        ("10054", "10045", "two adjacent characters transposed"),
        ("10046", "10045", "one character different"),
        ("1045", "10045", "one character missing"),
        ("100455", "10045", "one character extra"),
        ("10045", "10045", ""),
        ("12345", "54321", ""),
        ("991", "992", ""),  # too short to say
    ],
)
def test_near_misses(a, b, how):
    assert near_miss(a, b) == how


# --- who paid ---------------------------------------------------------------------------


def test_the_payer_is_found_by_email_name_customer_id_or_a_mapping():
    acme = Customer("ACME", payers.name_key("Acme Tools, Inc."), ("ap@acme.example",))
    assert identify(Payer(email="ap@acme.example"), [], [acme]).custno == "ACME"
    assert (
        identify(Payer(name=payers.name_key("ACME TOOLS")), [], [acme]).custno == "ACME"
    )
    assert identify(Payer(customer_id="ACME"), [], [acme]).custno == "ACME"
    link = Link("customer_id", "4417", "ACME", 7)
    found = identify(Payer(customer_id="4417"), [link], [])
    assert (found.custno, found.link_id) == ("ACME", 7)


def test_evidence_naming_two_customers_is_a_conflict_never_a_guess():
    a = Customer("ACME", "ACME", ("ap@acme.example",))
    b = Customer("GLOBEX", "GLOBEX", ())
    found = identify(Payer(customer_id="GLOBEX", email="ap@acme.example"), [], [a, b])
    assert found.conflict and found.custno == ""


def test_a_name_two_customers_share_identifies_nobody():
    a, b = Customer("ACME1", "ACME"), Customer("ACME2", "ACME")
    assert identify(Payer(name="ACME"), [], [a, b]).custno == ""


def test_card_keys_hold_no_card_number():
    assert payers.card_key("VISA", "************1111", 9, 28) == "VISA 1111 09/28"
    assert payers.card_key("VISA", "11", 9, 28) == ""


# --- the standard rule ------------------------------------------------------------------


def test_the_standard_rule_applies_a_prefixed_reference():
    decision = decide(pay(ref="Invoice #10045"), [inv("10045")])
    assert decision.action == "apply" and not decision.review_kind
    assert decision.method == "normalized"
    assert any("10045" in s["text"] for s in decision.explanation["steps"])


def test_the_legacy_exact_rule_does_not():
    exact = Rule(reference_mode="exact", allow_partial=True)
    assert decide(pay(ref="Invoice #10045"), [inv("10045")], [exact]).action == "review"


def test_two_invoices_in_one_reference_are_paid_together_when_they_add_up():
    decision = decide(
        pay("250.00", ref="10045, 10046"),
        [inv("10045", "100.00", day=2), inv("10046", "150.00", day=3)],
    )
    assert decision.action == "apply" and not decision.review_kind
    assert applied(decision) == [("10045", "100.00"), ("10046", "150.00")]
    assert decision.method == "multiple"


def test_two_invoices_that_do_not_add_up_go_to_review():
    decision = decide(
        pay("100.00", ref="10045, 10046"),
        [inv("10045", "100.00"), inv("10046", "150.00")],
    )
    assert decision.action == "review"


def test_a_range_pays_each_invoice_in_it():
    invoices = [inv(str(n), "10.00", day=n - 10040) for n in (10045, 10046, 10047)]
    decision = decide(pay("30.00", ref="10045-10047"), invoices)
    assert [i for i, _ in applied(decision)] == ["10045", "10046", "10047"]


def test_several_invoices_of_different_customers_go_to_review():
    decision = decide(
        pay("250.00", ref="10045, 10046"),
        [inv("10045", "100.00"), inv("10046", "150.00", custno="GLOBEX")],
    )
    assert decision.action == "review"


def test_an_order_number_and_a_po_number_find_their_invoice():
    invoice = inv("10045", ornum="4053045", ponum="PO-7781")
    assert decide(pay(ref="SO 4053045"), [invoice]).method == "order"
    by_po = decide(pay(ref="", po="7781"), [invoice])
    assert by_po.action == "apply" and by_po.method == "po"


def test_a_transposed_number_with_the_customer_and_exact_amount_applies():
    decision = decide(
        pay("123.45", ref="10054"), [inv("10045", "123.45")], identity=KNOWN
    )
    assert decision.action == "apply" and decision.method == "near_miss"


def test_a_transposed_number_without_the_customer_goes_to_review():
    decision = decide(pay("123.45", ref="10054"), [inv("10045", "123.45")])
    assert decision.action == "review"


def test_trap_a_transposition_onto_an_invoice_with_another_amount_goes_to_review():
    decision = decide(
        pay("123.45", ref="10054"),
        [inv("10045", "99.00"), inv("10099", "123.45")],
        identity=KNOWN,
    )
    assert decision.action == "review"
    assert any(r["invno"] == "10045" for r in decision.explanation["rejected"])


def test_of_two_near_misses_the_exact_amount_says_which():
    decision = decide(
        pay("123.45", ref="10054"),
        [inv("10045", "123.45"), inv("10055", "80.00")],
        identity=KNOWN,
    )
    assert applied(decision) == [("10045", "123.45")]
    assert any(r["invno"] == "10055" for r in decision.explanation["rejected"])


def test_trap_two_near_misses_of_the_same_amount_go_to_review():
    decision = decide(
        pay("123.45", ref="10054"),
        [inv("10045", "123.45"), inv("10055", "123.45")],
        identity=KNOWN,
    )
    assert decision.action == "review"


def test_trap_a_near_miss_whose_amount_another_open_invoice_shares_goes_to_review():
    decision = decide(
        pay("123.45", ref="10054"),
        [inv("10045", "123.45"), inv("20999", "123.45")],
        identity=KNOWN,
    )
    assert decision.action == "review"


def test_no_reference_the_customer_known_and_one_invoice_of_that_amount_applies():
    decision = decide(
        pay("80.00"), [inv("10045", "100.00"), inv("10046", "80.00")], identity=KNOWN
    )
    assert decision.action == "apply" and applied(decision) == [("10046", "80.00")]
    assert decision.method == "amount"


def test_trap_two_equal_invoices_and_no_reference_go_to_review():
    decision = decide(
        pay("80.00"), [inv("10045", "80.00"), inv("10046", "80.00")], identity=KNOWN
    )
    assert decision.action == "review"


def test_one_exact_combination_of_open_invoices_applies_oldest_first():
    invoices = [
        inv("10045", "30.00", day=5),
        inv("10046", "45.00", day=2),
        inv("10047", "99.00"),
    ]
    decision = decide(pay("75.00"), invoices, identity=KNOWN)
    assert applied(decision) == [("10046", "45.00"), ("10045", "30.00")]
    assert decision.method == "combination"


def test_trap_two_combinations_go_to_review():
    invoices = [
        inv("1", "30.00"),
        inv("2", "45.00"),
        inv("3", "40.00"),
        inv("4", "35.00"),
    ]
    assert decide(pay("75.00"), invoices, identity=KNOWN).action == "review"


def test_trap_another_customers_invoice_is_never_paid():
    decision = decide(pay(ref="10045"), [inv("10045", custno="GLOBEX")], identity=KNOWN)
    assert decision.action == "review"
    assert "belongs to customer GLOBEX" in decision.reason


def test_trap_a_customer_id_nothing_resolves_still_rules_out_another_customer():
    unknown = Identity("", (), False, ("no such customer",))
    decision = decide(
        pay(ref="10045", customer="GLOBEX"), [inv("10045")], identity=unknown
    )
    assert decision.action == "review"


def test_trap_a_short_reference_never_matches_a_longer_number_by_prefix():
    assert decide(pay(ref="991"), [inv("99910")], identity=KNOWN).action == "review"


def test_trap_a_closed_invoice_is_never_paid_twice():
    decision = decide(pay(ref="INV-10045"), [inv("10045", "0.00")])
    assert decision.action == "on_account"
    assert decision.applications == []


def test_trap_a_conflicting_payer_goes_to_review():
    conflict = Identity("", (), True)
    assert (
        decide(pay(ref="10045"), [inv("10045")], identity=conflict).action == "review"
    )


def test_a_number_in_longer_text_counts_only_when_the_amount_agrees():
    agrees = decide(pay("100.00", ref="10045 thanks"), [inv("10045", "100.00")])
    differs = decide(pay("40.00", ref="10045 thanks"), [inv("10045", "100.00")])
    assert agrees.action == "apply"
    assert differs.action == "review"


def test_a_surcharge_within_the_tolerance_applies_without_review():
    decision = decide(pay("102.50", ref="10045"), [inv("10045", "100.00")])
    assert decision.action == "apply" and not decision.review_kind
    assert decision.unapplied == D("2.50")


def test_every_decision_explains_itself():
    decision = decide(pay("80.00"), [inv("10046", "80.00")], identity=KNOWN)
    explanation = decision.explanation
    assert explanation["rule"] == DEFAULT_RULE.name
    assert explanation["method_label"]
    assert explanation["customer_from"].startswith("customer ACME")
    assert [s["label"] for s in explanation["steps"]][:2] == ["Rule", "Customer"]


# --- safety, whatever the input ------------------------------------------------------

money = st.decimals(min_value=D("0.01"), max_value=D("999.99"), places=2)
invoice_numbers = st.sampled_from(["10045", "10046", "10054", "10064", "991", "99910"])
references = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda pre, n, post: f"{pre}{n}{post}",
        st.sampled_from(["", "INV-", "Invoice #", "#", "no. ", "PO "]),
        invoice_numbers,
        st.sampled_from(["", ", 10046", "-10047", " thanks", "/10054"]),
    ),
)
invoice_lists = st.lists(
    st.builds(
        inv,
        invoice_numbers,
        st.one_of(money, st.just(D("0.00"))),
        st.sampled_from(["ACME", "GLOBEX"]),
        st.integers(min_value=1, max_value=28),
    ),
    max_size=6,
    unique_by=lambda i: i.invno,
)
identities = st.sampled_from(
    [None, KNOWN, Identity(""), Identity("", (), True), Identity("GLOBEX")]
)


@settings(max_examples=500, deadline=None)
@given(money, references, invoice_lists, identities)
def test_no_input_pays_another_customer_more_than_a_balance_or_more_than_paid(
    amount, reference, invoices, identity
):
    decision = decide(pay(str(amount), ref=reference), invoices, identity=identity)
    total = sum((a for _, a in decision.applications), D("0"))
    assert total <= amount
    for invoice, share in decision.applications:
        assert D("0") < share <= invoice.balance
        if identity is not None and identity.custno:
            assert invoice.custno == identity.custno
    assert len({i.custno for i, _ in decision.applications}) <= 1
    if identity is not None and identity.conflict:
        assert decision.action == "review"
    assert decision.explanation["outcome"]


def test_a_po_or_order_number_written_whole_finds_its_invoice():
    invoice = inv("10045", ponum="FAC-8250", ornum="2025-0044")
    assert decide(pay(ref="FAC-8250"), [invoice]).method == "po"
    assert decide(pay(ref="2025-0044"), [invoice]).method == "order"
    assert decide(pay(po="FAC 8250"), [invoice]).action == "apply"
    # ...but never as an invoice number: "FAC-8250" does not pay invoice FAC8250.
    other = inv("FAC8250")
    assert decide(pay(ref="FAC-8250"), [other], identity=KNOWN).action == "review"


def test_trap_a_part_payment_of_exactly_another_invoices_balance_goes_to_review():
    """The reference names A, the amount is less than A's balance but exactly B's:
    a part payment of A, or B paid under the wrong number?"""
    invoices = [inv("10045", "500.00"), inv("10046", "334.58")]
    decision = decide(pay("334.58", ref="10045"), invoices, identity=KNOWN)
    assert decision.action == "review"
    assert any(r["invno"] == "10046" for r in decision.explanation["rejected"])
    # The same part payment with no such other invoice is applied.
    alone = decide(pay("334.58", ref="10045"), invoices[:1], identity=KNOWN)
    assert alone.action == "apply" and alone.approximate


def test_trap_a_surcharged_amount_equal_to_another_invoice_goes_to_review():
    invoices = [inv("10045", "100.00"), inv("10046", "102.00")]
    assert decide(pay("102.00", ref="10045"), invoices).action == "review"


def test_an_address_at_a_domain_only_one_customer_uses_identifies_it():
    acme = Customer("ACME", "ACME", ("ap@acme.example",))
    globex = Customer("GLOBEX", "GLOBEX", ("ap@globex.example", "x@gmail.com"))
    assert (
        identify(Payer(email="lcohen@acme.example"), [], [acme, globex]).custno
        == "ACME"
    )
    # A free mail provider's domain says nothing; a shared domain is no evidence.
    assert identify(Payer(email="y@gmail.com"), [], [acme, globex]).custno == ""
    twin = Customer("ACME2", "ACME WEST", ("west@acme.example",))
    assert identify(Payer(email="z@acme.example"), [], [acme, twin]).custno == ""


def test_a_billing_name_with_its_department_identifies_the_company():
    acme = Customer("ACME", payers.name_key("Acme Tools, Inc."))
    for written in ("Acme Tools Inc - Accounts Payable", "ACME TOOLS AP DEPT"):
        found = identify(Payer(name=payers.name_key(written)), [], [acme])
        assert found.custno == "ACME", written
    # ...but a company whose name ends in such a word is not cut short.
    smith = Customer("SMITH", payers.name_key("Smith Accounting"))
    assert (
        identify(Payer(name=payers.name_key("Smith Accounting")), [], [smith]).custno
        == "SMITH"
    )


def test_a_reference_naming_nothing_leaves_the_description_to_name_the_invoice():
    decision = decide(
        pay("100.00", ref="1", description="Inv. 10045 Prairie Optical"),
        [inv("10045", "100.00")],
    )
    assert decision.action == "apply"
    differs = decide(
        pay("40.00", ref="1", description="Inv. 10045"), [inv("10045", "100.00")]
    )
    assert differs.action == "review"


def test_a_credit_memo_named_beside_an_invoice_goes_to_a_person_saying_why():
    decision = decide(
        pay("80.00", ref="Inv 10045 less credit 10050"),
        [inv("10045", "100.00"), inv("10050", "-20.00")],
    )
    assert decision.action == "review"
    assert "credit memo 10050 (-20.00)" in decision.reason


def test_dotted_legal_words_and_departments_do_not_hide_the_company():
    key = payers.name_key("Sagebrush Foods, L.L.C. AP Dept")
    assert payers.without_department(key) == payers.name_key("Sagebrush Foods LLC")


def test_a_po_number_alone_pays_only_when_the_amount_agrees():
    invoice = inv("10045", "100.00", ponum="1001")
    assert decide(pay("100.00", po="1001"), [invoice]).action == "apply"
    assert decide(pay("40.00", po="1001"), [invoice]).action == "review"


def test_a_transposition_that_names_another_customers_invoice_pays_the_payers_own():
    """Dense invoice numbers: 10054 is GLOBEX's, the payer is ACME, and ACME's 10045
    has exactly the amount: that is what was meant; GLOBEX's is never paid."""
    invoices = [inv("10054", "50.00", custno="GLOBEX"), inv("10045", "123.45")]
    decision = decide(pay("123.45", ref="10054"), invoices, identity=KNOWN)
    assert decision.action == "apply" and applied(decision) == [("10045", "123.45")]
    assert decision.method == "near_miss"
    other_amount = decide(pay("99.00", ref="10054"), invoices, identity=KNOWN)
    assert other_amount.action == "review"
    assert "belongs to customer GLOBEX" in other_amount.reason
    # With the payer unknown, 10054 is simply the invoice named: its balance is
    # applied and the rest goes to a reviewer as an overpayment, as before.
    unknown_payer = decide(pay("123.45", ref="10054"), invoices)
    assert applied(unknown_payer) == [("10054", "50.00")]
    assert unknown_payer.review_kind == "overpayment"
