"""How the PayTrace sandbox writes values on the wire, the way PayTrace does.

PayTrace writes amounts as JSON numbers (`110`, `250.5`) and times as
`M/D/YYYY h:mm:ss AM/PM` in the gateway's local time with no zone. The standard
`json` encoder can only write a Decimal by going through float or a string, so
`dumps` renders JSON itself and writes each Decimal's own digits as a number literal.
"""

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings


def format_gateway_time(moment: datetime | None) -> str:
    """Write an aware datetime as PayTrace does: gateway-local, unpadded, no zone."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(settings.SANDBOX_PAYTRACE_TIME_ZONE))
    hour = local.hour % 12 or 12
    meridiem = "AM" if local.hour < 12 else "PM"
    return (
        f"{local.month}/{local.day}/{local.year} "
        f"{hour}:{local.minute:02d}:{local.second:02d} {meridiem}"
    )


def format_number(value: Decimal) -> str:
    """Write a Decimal as a JSON number with no trailing zeros (`110`, `250.5`)."""
    if not value.is_finite():
        raise ValueError(f"cannot write {value!r} as a JSON number")
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def dumps(value: Any) -> str:
    """Serialize to compact JSON, writing Decimals as number literals."""
    if isinstance(value, Decimal):
        return format_number(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(key))}:{dumps(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    return json.dumps(value)
