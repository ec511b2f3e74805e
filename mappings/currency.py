"""Exchange rates: which rate books a foreign-currency payment in the base currency.

The rule: the rate of the payment's business date; failing that, the most recent
earlier rate no more than `MAX_RATE_AGE_DAYS` days older (weekends and holidays have
no published rate). A later rate is never used, and with none in the window the
payment goes to review rather than being booked at a guess.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

MAX_RATE_AGE_DAYS = 7


@dataclass(frozen=True)
class Rate:
    """One unit of `currency` was worth `rate` units of `base_currency` on `valid_on`."""

    currency: str
    base_currency: str
    rate: Decimal
    valid_on: date


def find_rate(
    currency: str, base_currency: str, day: date, rates: Iterable[Rate]
) -> Rate | None:
    """The rate for `day` under the rule above, or None."""
    oldest = day - timedelta(days=MAX_RATE_AGE_DAYS)
    candidates = [
        r
        for r in rates
        if r.currency.upper() == currency.upper()
        and r.base_currency.upper() == base_currency.upper()
        and oldest <= r.valid_on <= day
    ]
    return max(candidates, key=lambda r: r.valid_on, default=None)
