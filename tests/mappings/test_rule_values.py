"""Rule rows become plain values through `as_rule()`; mappings stays the lower layer."""

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from integrations.models import ReviewItem
from mappings import matching
from mappings.fields import FieldRule, TransformContext
from mappings.gl import GlRuleData
from mappings.kinds import ReviewKind
from mappings.models import FieldMapping, GlRule, MatchingRule
from mappings.text import split_list
from tests.factories import make_connection

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


@pytest.mark.django_db
def test_a_gl_rule_row_becomes_its_plain_rule():
    connection = make_connection()
    row = GlRule.objects.create(
        connection=connection,
        name="Amex web",
        priority=5,
        transaction_types="sale, capture",
        card_brands="amex",
        channels="api,,",
        amount_min=Decimal("10.00"),
        currency="usd",
        customer_pattern="WEB*",
        account="1105-00",
    )

    assert GlRule.rules_for(connection) == [
        GlRuleData(
            account="1105-00",
            name="Amex web",
            id=row.pk,
            priority=5,
            transaction_types=("SALE", "CAPTURE"),
            card_brands=("AMEX",),
            channels=("API",),
            amount_min=Decimal("10.00"),
            currency="USD",
            customer_pattern="WEB*",
        )
    ]


@pytest.mark.django_db
def test_a_matching_rule_row_keeps_the_case_of_its_lists():
    connection = make_connection()
    row = MatchingRule.objects.create(
        connection=connection,
        name="Web",
        strip_prefixes="inv-, SO-",
        channels="api",
        tolerance_type=MatchingRule.Tolerance.FIXED,
        tolerance_value=Decimal("0.50"),
    )
    MatchingRule.objects.create(connection=connection, name="Off", is_active=False)

    rule = row.as_rule()

    assert MatchingRule.rules_for(connection) == [rule]
    assert rule.strip_prefixes == ("inv-", "SO-")
    assert rule.channels == ("api",)
    assert rule.tolerance_for(Decimal("100.00")) == Decimal("0.50")
    assert rule.id == row.pk


@pytest.mark.django_db
def test_a_field_mapping_row_becomes_a_rule_that_computes_its_value():
    connection = make_connection()
    row = FieldMapping.objects.create(
        connection=connection,
        target_field="invno",
        source_path="invoice_id",
        transforms=[{"op": "strip_prefixes", "prefixes": ["INV-"]}],
    )

    rule = row.as_rule()

    assert FieldMapping.rules_for(connection) == [rule]
    assert rule == FieldRule(
        "invno",
        "invoice_id",
        ({"op": "strip_prefixes", "prefixes": ["INV-"]},),
        "cash_receipt",
        row.pk,
    )
    assert rule.value_from({"invoice_id": "INV-10001"}, TransformContext()) == "10001"
    assert not rule.converts_currency()


def test_split_list_reads_comma_lists_upper_cased_or_as_written():
    assert split_list(" sale, Capture ,,") == ("SALE", "CAPTURE")
    assert split_list(" inv-, SO- ,", upper=False) == ("inv-", "SO-")
    assert split_list(["a ", " ", "b"]) == ("A", "B")


def test_a_decision_names_its_action_and_kind_with_the_shared_enums():
    decision = matching.decide(
        matching.Payment("1", Decimal("10.00"), reference="404"), []
    )

    assert decision.action is matching.Action.REVIEW
    assert decision.review_kind is ReviewKind.UNMATCHED
    assert decision.action == "review" and decision.review_kind == "unmatched"


def test_review_items_use_the_review_kinds_of_mappings():
    assert [(k.value, k.label) for k in ReviewItem.Kind] == [
        (k.value, k.label) for k in ReviewKind
    ]


def test_mappings_imports_nothing_from_integrations():
    offenders = []
    for path in sorted(MAPPINGS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name == "integrations" or name.startswith("integrations.")
            ]
    assert offenders == []
