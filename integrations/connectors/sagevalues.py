"""Values on the Sage Pro gateway's wire: money as 2-place strings, ISO dates, keys
quoted for a path (docs/sagepro-gateway.md §1). Shared by the client's modules."""

import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

CENT = Decimal("0.01")


def to_money(value: Decimal) -> str:
    """Format an amount for the gateway: exactly 2 places, never a float."""
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
    quantized = value.quantize(CENT)
    if quantized != value:
        raise ValueError(f"{value} has more than 2 decimal places")
    return f"{quantized:f}"


def from_money(value: Any) -> Decimal:
    return Decimal(str(value))


def from_date(value: Any) -> datetime.date | None:
    return datetime.date.fromisoformat(value) if value else None


def convert(
    data: dict[str, Any],
    money: tuple[str, ...] = (),
    dates: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Return a copy of `data` with money as Decimal and dates as date."""
    out = dict(data)
    for name in money:
        if out.get(name) is not None:
            out[name] = from_money(out[name])
    for name in dates:
        if name in out:
            out[name] = from_date(out[name])
    return out


def segment(key: str) -> str:
    """Quote a key for a URL path; padding is kept, the gateway normalises it."""
    return quote(str(key), safe="")
