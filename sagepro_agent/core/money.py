"""Money: `Decimal` end to end, strings with exactly two places at the edges."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
# The contract's input money: a decimal string with at most 2 places (sandbox's rule).
MONEY_RE = re.compile(r"^-?[0-9]{1,12}(\.[0-9]{1,2})?$")  # ASCII digits only


def cents(value: Decimal | int) -> Decimal:
    """Quantise to cents, half up. Floats are refused: they must never reach a ledger."""
    if isinstance(value, (float, bool)):
        raise TypeError(f"money must be Decimal, not {type(value).__name__}")
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def money(value: Decimal | int | None) -> str:
    """`Decimal("12.3")` -> `"12.30"` (a blank numeric reads as 0.00)."""
    return f"{cents(value if value is not None else ZERO):f}"


def parse_money(value: Any, name: str, errors: dict[str, list[str]]) -> Decimal:
    """Read a contract money value: a decimal string with at most 2 places."""
    if not isinstance(value, str) or not MONEY_RE.match(value.strip()):
        errors.setdefault(name, []).append(
            'must be a decimal string with at most 2 places, e.g. "12.30"'
        )
        return ZERO
    return Decimal(value.strip()).quantize(CENT)
