"""Values across the provider boundary, both ways, per the table in `store/base.py`.

Writes: money is `Decimal` quantised ROUND_HALF_UP to the field's decimals (4 for `Y`)
and checked against the field width; a float is refused, never rounded. Character
values are checked against the width (never truncated) and padded on the right as VFP
stores them. Empty dates are not a parameter: VFP free tables take no NULL (`SET NULL
OFF`), so the statement builders write the literal `{}` instead (see `statements.py`).

Reads: what the provider hands back is turned into the base conventions.

UNVERIFIED (a site test must confirm): the types VFPOLEDB returns through adodbapi.
Expected: N and F as `Decimal` (adNumeric) or `float` (adDouble), Y as `Decimal`
(adCurrency), D and T as `datetime.datetime` with ADO's zero date 1899-12-30 for an
empty one, L as `bool`, I as `int`, C as `str` padded to the width, M as `str`.
`value_from_provider` accepts every one of these shapes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sagepro_agent.store.base import FieldSpec

# ADO's "zero" date: how an empty VFP date or datetime comes back through OLE DB.
ADO_ZERO_DATE = date(1899, 12, 30)

MONEY_TYPES = frozenset("NFY")


def decimals_of(spec: FieldSpec) -> int:
    return 4 if spec.type == "Y" else spec.decimals


def value_to_provider(table: str, spec: FieldSpec, value: Any) -> Any:
    """The parameter to bind for `value` in field `spec`; None only for an empty D/T
    (the caller writes the `{}` literal for it). Raises ValueError or TypeError naming
    the table and field for a value the field cannot hold."""
    name = f"{table}.{spec.name}"
    kind = spec.type
    if kind == "C":
        if not isinstance(value, str):
            raise TypeError(f"{name} is C({spec.length}): got {type(value).__name__}")
        if len(value) > spec.length:
            raise ValueError(
                f"{name} is C({spec.length}) but the value is {len(value)} characters; "
                "it would be cut. Check the site mapping's field widths."
            )
        return value.ljust(spec.length)
    if kind == "M":
        if not isinstance(value, str):
            raise TypeError(f"{name} is a memo: got {type(value).__name__}")
        return value
    if kind in MONEY_TYPES:
        return money_to_provider(name, spec, value)
    if kind == "I":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} is an integer field: got {type(value).__name__}")
        return value
    if kind == "L":
        if not isinstance(value, bool):
            raise TypeError(f"{name} is a logical field: got {type(value).__name__}")
        return value
    if kind == "D":
        if value is None:
            return None
        if isinstance(value, datetime) or not isinstance(value, date):
            raise TypeError(f"{name} is a date field: got {type(value).__name__}")
        return value
    if kind == "T":
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"{name} is a datetime field: got {type(value).__name__}")
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value
    raise TypeError(f"{name} has type {kind!r}, which the agent does not write")


def money_to_provider(name: str, spec: FieldSpec, value: Any) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"{name}: a float was passed for money; pass a Decimal")
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{name} is numeric: got {type(value).__name__}")
    quantum = Decimal(1).scaleb(-decimals_of(spec))
    try:
        amount = Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError(f"{name}: {value!r} is not a number") from exc
    if spec.type in "NF" and spec.length and len(f"{amount:f}") > spec.length:
        raise ValueError(
            f"{name} is N({spec.length}, {spec.decimals}): {amount} does not fit"
        )
    return amount


def value_from_provider(spec: FieldSpec, raw: Any) -> Any:
    """A value read through the provider, in the base conventions."""
    kind = spec.type
    if kind == "C":
        text = "" if raw is None else _text(raw)
        # VFP returns C fields padded; padding again on the right is a no-op then and
        # restores the stored bytes if a provider or driver trimmed them.
        return text.ljust(spec.length)
    if kind == "M":
        return "" if raw is None else _text(raw)
    if kind in MONEY_TYPES:
        quantum = Decimal(1).scaleb(-decimals_of(spec))
        if raw is None:
            return Decimal(0).quantize(quantum)
        # Through str(): a float such as 12.35 becomes Decimal("12.35"), not the
        # binary value's 12.3499999999999996447286321199499070644378662109375.
        return Decimal(str(raw)).quantize(quantum, rounding=ROUND_HALF_UP)
    if kind == "I":
        return 0 if raw is None else int(raw)
    if kind == "L":
        return bool(raw)
    if kind == "D":
        return date_from_provider(raw)
    if kind == "T":
        return datetime_from_provider(raw)
    return raw


def date_from_provider(raw: Any) -> date | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        if raw.tzinfo is not None:
            raw = raw.astimezone(UTC)
        day = raw.date()
    elif isinstance(raw, date):
        day = raw
    else:
        raise TypeError(f"a date field came back as {type(raw).__name__}: {raw!r}")
    return None if day == ADO_ZERO_DATE else day


def datetime_from_provider(raw: Any) -> datetime | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, date):
        moment = datetime(raw.year, raw.month, raw.day)  # noqa: DTZ001 (naive UTC by convention)
    else:
        raise TypeError(f"a datetime field came back as {type(raw).__name__}: {raw!r}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment.date() == ADO_ZERO_DATE and moment.time() == datetime.min.time():
        return None
    return moment


def blank(spec: FieldSpec) -> Any:
    """The value VFP gives a field nobody wrote (SET NULL OFF)."""
    return value_from_provider(spec, None)


def _text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("cp1252")
    return str(raw)
