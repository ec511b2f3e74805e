"""Exchange rates: the rate of the payment's day, or the latest earlier one within a week."""

from datetime import date
from decimal import Decimal

from mappings.currency import MAX_RATE_AGE_DAYS, Rate, find_rate


def _rate(day: date, value: str = "1.10", currency: str = "EUR") -> Rate:
    return Rate(currency, "USD", Decimal(value), day)


def test_the_rate_of_the_payment_day_is_used():
    rates = [_rate(date(2026, 3, 3), "1.09"), _rate(date(2026, 3, 4), "1.10")]
    assert find_rate("EUR", "USD", date(2026, 3, 4), rates).rate == Decimal("1.10")


def test_a_weekend_payment_uses_the_latest_earlier_rate():
    friday = _rate(date(2026, 3, 6), "1.08")
    thursday = _rate(date(2026, 3, 5), "1.07")
    assert find_rate("EUR", "USD", date(2026, 3, 8), [thursday, friday]) is friday


def test_a_later_rate_is_never_used():
    assert find_rate("EUR", "USD", date(2026, 3, 4), [_rate(date(2026, 3, 5))]) is None


def test_a_rate_older_than_the_window_is_refused_and_the_edge_is_kept():
    day = date(2026, 3, 20)
    edge = _rate(date(2026, 3, 20 - MAX_RATE_AGE_DAYS))
    too_old = _rate(date(2026, 3, 20 - MAX_RATE_AGE_DAYS - 1))
    assert find_rate("EUR", "USD", day, [edge]) is edge
    assert find_rate("EUR", "USD", day, [too_old]) is None


def test_currencies_match_case_insensitively_and_other_pairs_are_ignored():
    cad = _rate(date(2026, 3, 4), "0.73", currency="CAD")
    eur = _rate(date(2026, 3, 4), "1.10", currency="eur")
    assert find_rate("EUR", "usd", date(2026, 3, 4), [cad, eur]) is eur
    assert find_rate("GBP", "USD", date(2026, 3, 4), [cad, eur]) is None
