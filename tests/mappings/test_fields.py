"""Transforms, specs and validation as pure functions, with property tests."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mappings import currency as fx
from mappings import fields as fm

LA = "America/Los_Angeles"
CTX = fm.TransformContext(gateway_zone=LA, business_zone="America/Chicago")

money = st.decimals(
    min_value=Decimal("-1000000"),
    max_value=Decimal("1000000"),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)
rates = st.decimals(
    min_value=Decimal("0.00000001"),
    max_value=Decimal("1000"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)


# --- money ---------------------------------------------------------------------------


@given(money)
def test_rounding_gives_a_decimal_with_two_places_half_up(amount):
    rounded = fm.round_money(amount)
    assert isinstance(rounded, Decimal)
    assert rounded.as_tuple().exponent == -2
    assert abs(rounded - amount) <= Decimal("0.005")
    # Half-up: exactly half a cent always rounds away from zero.
    cents = (amount * 100).quantize(Decimal("1"), rounding="ROUND_DOWN")
    if abs(amount * 100 - cents) == Decimal("0.5"):
        assert abs(rounded) > abs(amount)


def test_half_a_cent_rounds_up():
    assert fm.round_money(Decimal("0.005")) == Decimal("0.01")
    assert fm.round_money(Decimal("2.675")) == Decimal("2.68")
    assert fm.round_money(Decimal("2.665")) == Decimal("2.67")
    assert fm.round_money(Decimal("-2.675")) == Decimal("-2.68")
    assert fm.round_money(Decimal("2.674999")) == Decimal("2.67")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_no_float_is_ever_taken_as_money(value):
    with pytest.raises(TypeError):
        fm.round_money(value)
    with pytest.raises(TypeError):
        fm.to_decimal(value)
    with pytest.raises(TypeError):
        fm.convert_money(value, Decimal("1.1"))
    with pytest.raises(TypeError):
        fm.convert_money(Decimal("1.00"), value)
    with pytest.raises(TypeError):
        fm.apply_transforms(value, [{"op": "convert_currency"}], CTX)


@given(money, rates)
def test_conversion_is_decimal_and_rounded_once(amount, rate):
    converted = fm.convert_money(amount, rate)
    assert isinstance(converted, Decimal)
    assert converted == fm.round_money(amount * rate)
    ctx = fm.TransformContext(rate=rate)
    assert fm.apply_transforms(amount, [{"op": "convert_currency"}], ctx) == converted
    assert fm.apply_transforms(str(amount), [{"op": "convert_currency"}], ctx) == (
        converted
    )


def test_money_reads_strings_and_ints_exactly():
    assert fm.to_decimal("125.50") == Decimal("125.50")
    assert fm.to_decimal(12) == Decimal("12")
    with pytest.raises(fm.TransformError):
        fm.to_decimal("12,50")
    with pytest.raises(TypeError):
        fm.to_decimal(True)


def test_the_rate_is_the_days_else_the_latest_of_the_week_before():
    rates_ = [
        fx.Rate("EUR", "USD", Decimal("1.10"), date(2025, 3, 3)),
        fx.Rate("EUR", "USD", Decimal("1.08"), date(2025, 3, 7)),
        fx.Rate("EUR", "USD", Decimal("1.20"), date(2025, 3, 12)),
        fx.Rate("GBP", "USD", Decimal("1.30"), date(2025, 3, 9)),
    ]
    assert fx.find_rate("EUR", "USD", date(2025, 3, 7), rates_).rate == Decimal("1.08")
    assert fx.find_rate("eur", "USD", date(2025, 3, 9), rates_).rate == Decimal("1.08")
    assert fx.find_rate("EUR", "USD", date(2025, 3, 14), rates_).rate == Decimal("1.20")
    assert fx.find_rate("EUR", "USD", date(2025, 3, 2), rates_) is None  # never later
    assert fx.find_rate("EUR", "USD", date(2025, 3, 20), rates_) is None  # too old
    assert fx.find_rate("EUR", "CAD", date(2025, 3, 7), rates_) is None


# --- references ------------------------------------------------------------------------

prefix_lists = st.lists(
    st.sampled_from(["INV-", "inv", "SO-", "#", "0", "INV -", ""]), max_size=3
)
references = st.text(alphabet="0123456789INVSO-# \tabc", max_size=20)


@given(references, prefix_lists)
def test_reference_normalisation_is_idempotent(value, prefixes):
    once = fm.normalize_reference(value, prefixes)
    assert fm.normalize_reference(once, prefixes) == once
    assert " " not in once


@given(references, prefix_lists, st.integers(min_value=0, max_value=12))
def test_every_string_transform_is_idempotent(value, prefixes, width):
    chains = [
        [{"op": "upper"}],
        [{"op": "strip_spaces"}],
        [{"op": "strip_leading_zeros"}],
        [{"op": "strip_prefixes", "prefixes": prefixes}],
        [{"op": "truncate", "length": width}],
        [{"op": "pad", "width": width, "align": "right"}],
        [{"op": "normalize_reference", "prefixes": prefixes}],
        [
            {"op": "strip_prefixes", "prefixes": ["INV-"]},
            {"op": "strip_leading_zeros"},
            {"op": "pad", "width": 10, "align": "right"},
        ],
    ]
    for chain in chains:
        once = fm.apply_transforms(value, chain, CTX)
        assert fm.apply_transforms(once, chain, CTX) == once, chain


def test_references_lose_prefixes_zeros_and_spaces():
    assert fm.normalize_reference(" INV-000123 ", ["INV-"]) == "123"
    assert fm.normalize_reference("inv-0inv-7", ["INV-"]) == "7"
    assert fm.normalize_reference("0000", []) == "0"
    chain = [
        {"op": "strip_prefixes", "prefixes": ["INV-"]},
        {"op": "strip_leading_zeros"},
        {"op": "pad", "width": 10, "align": "right"},
    ]
    assert fm.apply_transforms("INV-0045", chain, CTX) == "        45"


def test_the_other_transforms():
    assert fm.apply_transforms("abc", [{"op": "truncate", "length": 2}], CTX) == "ab"
    assert fm.apply_transforms("x", [{"op": "constant", "value": "CARD"}], CTX) == (
        "CARD"
    )
    lookup = {"op": "lookup", "table": {"Visa": "VISA"}, "default": "CARD"}
    assert fm.apply_transforms("Visa", [lookup], CTX) == "VISA"
    assert fm.apply_transforms("Diners", [lookup], CTX) == "CARD"
    no_default = {"op": "lookup", "table": {"Visa": "VISA"}}
    assert fm.apply_transforms("Diners", [no_default], CTX) == "Diners"
    assert fm.apply_transforms("ab", [{"op": "pad", "width": 4, "fill": "0"}], CTX) == (
        "ab00"
    )


def test_a_bad_transform_list_is_named_precisely():
    assert fm.transform_errors([{"op": "upper"}]) == []
    errors = fm.transform_errors(
        [{"op": "upper"}, {"op": "reverse"}, {"op": "pad"}, "upper"]
    )
    assert errors[0].startswith("#2: unknown op 'reverse'")
    assert errors[1] == "#3: op 'pad' needs 'width'"
    assert errors[2].startswith("#4: a transform must be an object")
    assert fm.transform_errors({"op": "upper"})
    with pytest.raises(fm.TransformError, match="unknown op"):
        fm.apply_transforms("x", [{"op": "reverse"}], CTX)


# --- dates -------------------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2037, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
zones = st.sampled_from(
    [LA, "America/Chicago", "America/New_York", "Europe/London", "Australia/Sydney"]
)


def is_ambiguous(moment, zone):
    """The wall time happens twice in `zone` (the hour repeated when DST ends)."""
    local = moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    first = local.replace(tzinfo=ZoneInfo(zone), fold=0)
    second = local.replace(tzinfo=ZoneInfo(zone), fold=1)
    return first.utcoffset() != second.utcoffset()


@given(moments, zones)
def test_paytrace_times_round_trip_through_the_gateway_zone(moment, zone):
    assume(not is_ambiguous(moment, zone))
    text = fm.format_paytrace_datetime(moment, zone)
    parsed = fm.parse_paytrace_datetime(text, zone)
    assert parsed == moment.replace(microsecond=0)
    assert parsed.tzinfo is UTC


def fall_back_instants(zone, years):
    """The UTC instants when `zone` moves its clocks back (DST ends), by hourly scan."""
    found = []
    for year in years:
        moment = datetime(year, 1, 1, tzinfo=UTC)
        previous = moment.astimezone(ZoneInfo(zone)).utcoffset()
        while moment.year == year:
            moment += timedelta(hours=1)
            offset = moment.astimezone(ZoneInfo(zone)).utcoffset()
            if offset < previous:
                found.append((moment, previous - offset))
            previous = offset
    return found


FALL_BACKS = [
    (zone, instant, shift)
    for zone in (LA, "Europe/London", "Australia/Sydney")
    for instant, shift in fall_back_instants(zone, range(2020, 2031))
]


@given(st.sampled_from(FALL_BACKS), st.integers(min_value=1, max_value=3599))
def test_in_the_repeated_hour_the_first_occurrence_is_read(fall_back, seconds):
    zone, instant, shift = fall_back
    first = instant - shift + timedelta(seconds=seconds)  # daylight time
    second = instant + timedelta(seconds=seconds)  # the same wall time, standard
    assert fm.format_paytrace_datetime(first, zone) == fm.format_paytrace_datetime(
        second, zone
    )
    text = fm.format_paytrace_datetime(second, zone)
    # fold=0: the earlier instant, the daylight-time one, for both.
    assert fm.parse_paytrace_datetime(text, zone) == first


def test_daylight_saving_changes_in_los_angeles():
    # Spring forward: 2:00-2:59 AM does not exist on 3/9/2025; 1:30 AM is PST.
    assert fm.parse_paytrace_datetime("3/9/2025 1:30:00 AM", LA) == datetime(
        2025, 3, 9, 9, 30, tzinfo=UTC
    )
    assert fm.parse_paytrace_datetime("3/9/2025 3:30:00 AM", LA) == datetime(
        2025, 3, 9, 10, 30, tzinfo=UTC
    )
    # The skipped 2:30 AM is read with the offset before the change (PST): 10:30 UTC.
    assert fm.parse_paytrace_datetime("3/9/2025 2:30:00 AM", LA) == datetime(
        2025, 3, 9, 10, 30, tzinfo=UTC
    )
    # Fall back: 1:30 AM on 11/2/2025 happens twice; we read the first (PDT, UTC-7).
    assert fm.parse_paytrace_datetime("11/2/2025 1:30:00 AM", LA) == datetime(
        2025, 11, 2, 8, 30, tzinfo=UTC
    )
    assert fm.parse_paytrace_datetime("11/2/2025 12:15:09 PM", LA) == datetime(
        2025, 11, 2, 20, 15, 9, tzinfo=UTC
    )


def test_the_date_transform_gives_the_business_day():
    # 11:30 PM in Los Angeles is already the next day in Chicago.
    assert fm.apply_transforms("3/9/2025 11:30:00 PM", [{"op": "date"}], CTX) == date(
        2025, 3, 10
    )
    same_zone = fm.TransformContext(gateway_zone=LA, business_zone=LA)
    assert fm.apply_transforms("3/9/2025 11:30:00 PM", [{"op": "date"}], same_zone) == (
        date(2025, 3, 9)
    )
    with pytest.raises(fm.TransformError):
        fm.apply_transforms("2025-03-09", [{"op": "date"}], CTX)


# --- specs and validation -----------------------------------------------------------------

PERIODS = [
    fm.Period("202501", date(2025, 1, 1), date(2025, 1, 31), plocked=True),
    fm.Period("202502", date(2025, 2, 1), date(2025, 2, 28), current=True),
    fm.Period("202503", date(2025, 3, 1), date(2025, 3, 31)),
]
GOOD = {
    "custno": "ACME",
    "date": date(2025, 2, 14),
    "amount": Decimal("12.30"),
    "method": "CARD",
    "reference": "600000001",
    "invno": "10001",
    "gl_account": "1100-00",
}
CHART = {"110000": True, "690000": False}


def problems(**changes):
    check = fm.FieldCheck(periods=PERIODS, chart=CHART, rules={"reference": "default"})
    return fm.validate_fields({**GOOD, **changes}, fm.CASH_RECEIPT_SPECS, check)


def test_a_good_receipt_has_no_problems():
    assert problems() == []


def test_each_spec_names_the_field_and_the_rule():
    (wide,) = problems(reference="R" * 21)
    assert wide.field == "reference"
    assert wide.error_code == "VALIDATION:reference"
    assert "at most 20" in wide.describe()
    assert "default" in wide.describe()
    assert "R" * 21 in wide.describe()

    assert [p.error_code for p in problems(date=date(2025, 1, 10))] == ["PERIOD_LOCKED"]
    assert [p.error_code for p in problems(date=date(2025, 3, 10))] == ["FUTURE_PERIOD"]
    assert [p.error_code for p in problems(date=date(2024, 3, 10))] == [
        "PERIOD_NOT_DEFINED"
    ]
    assert [p.error_code for p in problems(gl_account="6900-00")] == [
        "ACCOUNT_INACTIVE"
    ]
    assert [p.field for p in problems(custno="")] == ["custno"]
    assert [p.field for p in problems(method="BITCOIN")] == ["method"]
    assert [p.field for p in problems(amount=Decimal("0.00"))] == ["amount"]
    assert [p.field for p in problems(amount=Decimal("1.234"))] == ["amount"]
    assert [p.field for p in problems(invno="12345678901")] == ["invno"]


def test_reviewer_text_is_coerced_to_the_fields_type():
    spec = {s.name: s for s in fm.CASH_RECEIPT_SPECS}
    assert fm.coerce("2025-02-14", spec["date"]) == date(2025, 2, 14)
    assert fm.coerce("12.30", spec["amount"]) == Decimal("12.30")
    assert fm.coerce("acme", spec["custno"]) == "ACME"
    with pytest.raises(fm.TransformError):
        fm.coerce("14/02/2025", spec["date"])
    with pytest.raises(TypeError):
        fm.coerce(12.3, spec["amount"])


def test_dot_paths_read_nested_records():
    record = {"created": {"at": "1/2/2025 3:04:05 PM"}, "lines": [{"sku": "A1"}]}
    assert fm.resolve_path(record, "created.at") == "1/2/2025 3:04:05 PM"
    assert fm.resolve_path(record, "lines.0.sku") == "A1"
    assert fm.resolve_path(record, "lines.3.sku") is None
    assert fm.resolve_path(record, "missing.path") is None


# --- checking a mapping when it is saved ------------------------------------------------

RECORDS = [
    {"invoice_id": "INV-1", "billing_address": {"name": "Acme", "zip": "99201"}},
    {"invoice_id": "INV-2", "credit_card": {"masked_number": "************1111"}},
]


def test_a_path_found_in_some_recent_record_is_fine():
    assert fm.path_problem("credit_card.masked_number", RECORDS) is None
    assert fm.path_problem("invoice_id", RECORDS) is None


def test_a_path_found_in_no_recent_record_names_the_paths_that_exist():
    problem = fm.path_problem("billing_address.nme", RECORDS)

    assert problem is not None
    assert problem.startswith("billing_address.nme is in none of the last 2")
    assert "billing_address.name" in problem and "invoice_id" in problem


def test_without_records_a_path_cannot_be_checked():
    assert fm.path_problem("anything", []) is None


def test_fixed_values_are_constants_and_lookup_results():
    transforms = [
        {"op": "lookup", "table": {"V": "VISA", "M": "MC"}, "default": "CARD"},
        {"op": "upper"},
    ]

    assert fm.fixed_values(transforms) == ["VISA", "MC", "CARD"]
    assert fm.fixed_values([{"op": "constant", "value": "ACH"}]) == ["ACH"]
    assert fm.fixed_values("not a list") == []


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (
            "method",
            "CREDIT CARD PAYMENTS 0",
            "is 22 characters, Sage Pro takes at most 10",
        ),
        ("method", "PAYPAL", "must be one of " + ", ".join(fm.CASH_RECEIPT_METHODS)),
        ("date", "06/12/2026", "must be a date as YYYY-MM-DD"),
        ("amount", "0.00", "must be greater than 0.00"),
        ("method", "visa", None),
        ("invno", "10045", None),
    ],
)
def test_a_value_is_checked_against_its_field_spec(name, value, problem):
    spec = next(s for s in fm.CASH_RECEIPT_SPECS if s.name == name)

    assert fm.value_problem(spec, value) == problem
