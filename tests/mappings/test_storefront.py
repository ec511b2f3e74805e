"""The storefront's pure rules: order references, customer numbers, order lines."""

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings import storefront as sf


@pytest.mark.parametrize(
    ("reference", "prefix", "key", "explicit"),
    [
        ("#1001", "", "1001", True),
        ("1001", "", "1001", False),
        ("SHOP-1001", "SHOP", "1001", True),
        ("shop 1001", "SHOP", "1001", True),
        (" #001001 ", "", "1001", True),
        ("１００１", "", "1001", False),  # full-width digits
    ],
)
def test_it_reads_the_order_a_reference_names(reference, prefix, key, explicit):
    assert sf.order_reference(reference, prefix) == sf.OrderReference(key, explicit)


@pytest.mark.parametrize("reference", ["", "INV-A", "SHOP-1001", "10001, 10002", "#"])
def test_it_reads_no_order_from_anything_else(reference):
    # Without the SHOP prefix configured, SHOP-1001 is not this storefront's.
    assert sf.order_reference(reference, "") is None


@given(st.text(max_size=300), st.text(max_size=30))
def test_order_reference_takes_any_text(reference, prefix):
    found = sf.order_reference(reference, prefix)
    assert found is None or found.key.isdigit()


def test_new_customer_numbers_are_letters_and_a_sequence_that_never_clash():
    taken = {"ADAL01", "ADAL02"}
    assert sf.new_customer_number("Ada Lovelace", "", taken.__contains__) == "ADAL03"
    assert sf.new_customer_number("", "zoe@x.example", set().__contains__) == "ZOE01"
    assert sf.new_customer_number("42 & 7", "", set().__contains__) == "WEB01"
    assert sf.new_customer_number("Émile Zola", "", set().__contains__) == "EMIL01"


def test_a_full_sequence_falls_back_to_fewer_letters():
    taken = {f"ADAL{n:02d}" for n in range(1, 100)}
    number = sf.new_customer_number("Ada Lovelace", "", taken.__contains__)
    assert number == "ADA01" and len(number) <= 6


@given(st.text(max_size=60), st.text(max_size=60), st.integers(1, 6))
def test_customer_numbers_fit_sage_pro(name, email, letters):
    number = sf.new_customer_number(name, email, set().__contains__, letters=letters)
    assert 1 <= len(number) <= sf.CUSTNO_WIDTH
    assert number == number.upper() and number.isalnum() and number.isascii()


def test_order_lines_become_sales_order_lines_at_the_default_location():
    line = sf.OrderLine("widget ", "Widget, blue", Decimal("2.00"), Decimal("19.99"))
    (so_line,) = sf.sales_order_lines([line], "main")
    assert so_line.as_payload() == {
        "item": "WIDGET",
        "description": "Widget, blue",
        "quantity": "2.00",
        "price": "19.99",
        "location": "MAIN",
        "taxable": True,
    }


def test_the_sales_order_payload_and_total():
    order = sf.SalesOrder(
        custno="ADAL01",
        date=date(2026, 3, 1),
        reference="#1001",
        ponum="#1001",
        ship_to=sf.Address(name="Ada", address1="1 Way", country="US"),
        lines=sf.sales_order_lines(
            [sf.OrderLine("WIDGET", "W", Decimal("2"), Decimal("19.99"))], "MAIN"
        ),
        tax=Decimal("3.20"),
        freight=Decimal("5.00"),
    )
    payload = order.as_payload()
    assert order.total == Decimal("48.18")
    assert payload["date"] == "2026-03-01" and payload["invoice"] is True
    assert payload["tax"] == "3.20" and payload["ship_to"]["name"] == "Ada"


def test_order_problems_name_each_bad_line():
    lines = [
        sf.OrderLine("WIDGET", "ok", Decimal(1), Decimal(1)),
        sf.OrderLine("NOPE", "missing", Decimal(1), Decimal(1)),
        sf.OrderLine("OLDPART", "old", Decimal(1), Decimal(1)),
        sf.OrderLine("", "no sku", Decimal(1), Decimal(1)),
    ]
    problems = sf.order_problems(lines, {"WIDGET": True, "OLDPART": False}, "MAIN")
    assert problems == [
        "line 2: SKU NOPE is not a Sage Pro item",
        "line 3: Sage Pro item OLDPART is inactive",
        "line 4 (no sku) has no SKU",
    ]


def test_parse_order_reads_money_as_decimal_and_names_bad_fields():
    body = {
        "id": 1,
        "name": "#1001",
        "total_price": "48.18",
        "line_items": [{"sku": "W", "quantity": 2, "price": "19.99"}],
        "shipping_lines": [{"price": "5.00"}],
    }
    order = sf.parse_order(body)
    assert order.total == Decimal("48.18") and order.freight == Decimal("5.00")
    assert order.lines[0].quantity == Decimal("2.00")
    with pytest.raises(sf.OrderShapeError) as caught:
        sf.parse_order({**body, "total_price": 48.181, "line_items": [{"price": "x"}]})
    assert set(caught.value.errors) == {
        "total_price",
        "line_items.0.quantity",
        "line_items.0.price",
    }


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=30,
    )
)
def test_parsers_take_any_json(body):
    for parse in (sf.parse_order, sf.parse_refund):
        try:
            parse(body)
        except sf.OrderShapeError:
            pass
