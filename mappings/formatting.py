"""One way to show money and time on every page.

Money: `$2,405.51` (the currency's symbol when it has a well-known one, else the
amount followed by its code: `2,405.51 MXN`), negative as `-$12.00`, always two
decimals, right-aligned in lists (`money_html` wraps it in `<span class="money">`).
Time: `2026-12-06 06:22 PST`, in the business time zone (settings.BUSINESS_TIME_ZONE),
which the admin pages activate and name in their header.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

SYMBOLS = {"USD": "$", "CAD": "CA$", "EUR": "€", "GBP": "£", "AUD": "A$"}
TIME_FORMAT = "%Y-%m-%d %H:%M %Z"


def format_money(amount: object, currency: str | None = "USD") -> str:
    """`$2,405.51`; an amount that is not a number is shown as it is."""
    if amount is None or amount == "":
        return ""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    if not value.is_finite():
        return str(amount)
    code = (currency or "USD").strip().upper()
    digits = f"{abs(value).quantize(Decimal('0.01')):,.2f}"
    sign = "-" if value < 0 else ""
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {code}"


def money_html(amount: object, currency: str | None = "USD") -> SafeString:
    """The amount for a list cell: right-aligned, digits lined up."""
    return format_html('<span class="money">{}</span>', format_money(amount, currency))


def business_zone() -> ZoneInfo:
    return ZoneInfo(settings.BUSINESS_TIME_ZONE)


def format_when(value: datetime | None, zone: ZoneInfo | None = None) -> str:
    """`2026-12-06 06:22 PST` in the business time zone (or `zone`)."""
    if value is None:
        return ""
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone or business_zone()).strftime(TIME_FORMAT)
