"""Field mappings: transforms, target-field specs and validation of Sage Pro documents.

Pure functions over plain values (`str`, `Decimal`, `date`, `datetime`); nothing here
touches the database or the network. `integrations.documents` loads `FieldMapping`
rows, exchange rates, periods and the chart of accounts and passes them in.

Money: `Decimal` only. A float handed to a money function raises TypeError; amounts
are rounded once, half-up to cents (`round_money`).

Time: PayTrace writes `M/D/YYYY h:mm:ss AM/PM` in the gateway's zone with no offset.
A wall time that happens twice (the hour repeated when daylight saving time ends) is
read with `fold=0`, the first occurrence (daylight time); a wall time that never
happens (the hour skipped when it starts) is read with the offset in force before the
change, which is what zoneinfo does for `fold=0`. `integrations.connectors.paytrace`
reads times the same way.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from mappings.gl import account_problem

CENT = Decimal("0.01")

_PAYTRACE_TIME = re.compile(
    r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})\s*([AaPp][Mm])\s*$"
)


class TransformError(ValueError):
    """A transform could not be applied, or a transform list is malformed."""


# --- money --------------------------------------------------------------------------


def to_decimal(value: Any) -> Decimal:
    """Read money from a Decimal, an int or a decimal string. Floats are refused."""
    if isinstance(value, float):
        raise TypeError(f"money must not be a float: {value!r}")
    if isinstance(value, bool):
        raise TypeError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation as exc:
            raise TransformError(f"not an amount: {value!r}") from exc
    else:
        raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
    if not amount.is_finite():
        raise TransformError(f"not an amount: {value!r}")
    return amount


def round_money(value: Decimal) -> Decimal:
    """Round to cents, half-up (`2.675` → `2.68`). The one rounding step for money."""
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def convert_money(amount: Decimal, rate: Decimal) -> Decimal:
    """`amount` in a foreign currency → base currency at `rate`, rounded once."""
    if not isinstance(amount, Decimal) or not isinstance(rate, Decimal):
        raise TypeError("amount and rate must both be Decimal")
    if rate <= 0:
        raise ValueError(f"an exchange rate must be positive, not {rate}")
    return round_money(amount * rate)


# --- time ---------------------------------------------------------------------------


# The connector has the strict edge parser of the same format
# (`integrations.connectors.paytrace.parse_datetime`); the layers keep them apart,
# see the note there.
def parse_paytrace_datetime(text: str, time_zone: str) -> datetime:
    """Read PayTrace's `M/D/YYYY h:mm:ss AM/PM` in `time_zone`; return it in UTC."""
    match = _PAYTRACE_TIME.match(str(text))
    if not match:
        raise TransformError(f"not a PayTrace time (M/D/YYYY h:mm:ss AM/PM): {text!r}")
    month, day, year, hour, minute, second = (int(p) for p in match.groups()[:6])
    if not 1 <= hour <= 12:
        raise TransformError(f"hour out of range in PayTrace time {text!r}")
    hour = hour % 12 + (12 if match.group(7).upper() == "PM" else 0)
    try:
        local = datetime(
            year, month, day, hour, minute, second, tzinfo=ZoneInfo(time_zone), fold=0
        )
    except ValueError as exc:
        raise TransformError(f"invalid PayTrace time {text!r}: {exc}") from exc
    return local.astimezone(UTC)


def format_paytrace_datetime(moment: datetime, time_zone: str) -> str:
    """Write an aware moment the way PayTrace does: local wall time, unpadded, no zone."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no instant to format")
    local = moment.astimezone(ZoneInfo(time_zone))
    hour = local.hour % 12 or 12
    suffix = "PM" if local.hour >= 12 else "AM"
    return (
        f"{local.month}/{local.day}/{local.year} "
        f"{hour}:{local.minute:02d}:{local.second:02d} {suffix}"
    )


def business_date(moment: datetime, business_zone: str) -> date:
    """The calendar day `moment` falls on where the business is (the Sage Pro date)."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no business date")
    return moment.astimezone(ZoneInfo(business_zone)).date()


# --- references ---------------------------------------------------------------------


def strip_spaces(value: str) -> str:
    return "".join(str(value).split())


def strip_prefixes(value: str, prefixes: Sequence[str]) -> str:
    """Remove any of `prefixes` (case-insensitive) from the start, repeatedly."""
    text = str(value)
    wanted = [p.upper() for p in prefixes if p]
    changed = True
    while changed:
        changed = False
        for prefix in wanted:
            if text.upper().startswith(prefix):
                text = text[len(prefix) :]
                changed = True
    return text


def strip_leading_zeros(value: str) -> str:
    """`"000123"` → `"123"`; an all-zero value keeps one `"0"`."""
    text = str(value)
    stripped = text.lstrip("0")
    if not stripped and text:
        return "0"
    return stripped


def normalize_reference(value: str, prefixes: Sequence[str] = ()) -> str:
    """Normalise an invoice or order reference: no spaces, no prefixes, no leading zeros.

    Prefix and zero stripping repeat until nothing changes (`"0INV-007"` → `"7"`), so
    the result is a fixed point: `normalize_reference(x) == normalize_reference(
    normalize_reference(x))` for any `x`.
    """
    spaceless = [strip_spaces(p) for p in prefixes]
    text = strip_spaces(value)
    while True:
        nxt = strip_leading_zeros(strip_prefixes(text, spaceless))
        if nxt == text:
            return text
        text = nxt


# --- transforms -----------------------------------------------------------------------


@dataclass(frozen=True)
class TransformContext:
    """What transforms need beyond the value.

    `rate` is the exchange rate to the base currency, or None when no conversion is
    needed (the payment is already in the base currency).
    """

    gateway_zone: str = "UTC"
    business_zone: str = "UTC"
    rate: Decimal | None = None


def _need(spec: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in spec:
        raise TransformError(f"op {spec.get('op')!r} needs {name!r}")
    value = spec[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TransformError(f"op {spec.get('op')!r}: {name!r} has the wrong type")
    return value


def _op_date(value: Any, spec: Mapping[str, Any], ctx: TransformContext) -> Any:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        return value
    else:
        moment = parse_paytrace_datetime(
            str(value), spec.get("time_zone") or ctx.gateway_zone
        )
    return business_date(moment, ctx.business_zone)


def _op_upper(value: Any, spec: Mapping[str, Any], ctx: TransformContext) -> Any:
    return "" if value is None else str(value).upper()


def _op_truncate(value: Any, spec: Mapping[str, Any], ctx: TransformContext) -> Any:
    return "" if value is None else str(value)[: spec["length"]]


def _op_pad(value: Any, spec: Mapping[str, Any], ctx: TransformContext) -> Any:
    text = "" if value is None else str(value)
    fill = spec.get("fill", " ")
    if spec.get("align", "left") == "right":
        return text.rjust(spec["width"], fill)
    return text.ljust(spec["width"], fill)


def _op_constant(value: Any, spec: Mapping[str, Any], ctx: TransformContext) -> Any:
    return spec["value"]


def _op_lookup(value: Any, spec: Mapping[str, Any], ctx: TransformContext) -> Any:
    """Map through `table`; a missing key gives `default`, or the value unchanged."""
    key = "" if value is None else str(value)
    table = spec["table"]
    if key in table:
        return table[key]
    return spec.get("default", value)


def _op_strip_prefixes(
    value: Any, spec: Mapping[str, Any], ctx: TransformContext
) -> Any:
    return strip_prefixes("" if value is None else str(value), spec["prefixes"])


def _op_strip_leading_zeros(
    value: Any, spec: Mapping[str, Any], ctx: TransformContext
) -> Any:
    return strip_leading_zeros("" if value is None else str(value))


def _op_strip_spaces(value: Any, spec: Mapping[str, Any], ctx: TransformContext) -> Any:
    return strip_spaces("" if value is None else str(value))


def _op_normalize_reference(
    value: Any, spec: Mapping[str, Any], ctx: TransformContext
) -> Any:
    return normalize_reference(
        "" if value is None else str(value), spec.get("prefixes", [])
    )


def _op_convert_currency(
    value: Any, spec: Mapping[str, Any], ctx: TransformContext
) -> Any:
    amount = to_decimal(value)
    if ctx.rate is None:
        return round_money(amount)
    return convert_money(amount, ctx.rate)


OPS = {
    "date": _op_date,
    "upper": _op_upper,
    "truncate": _op_truncate,
    "pad": _op_pad,
    "constant": _op_constant,
    "lookup": _op_lookup,
    "strip_prefixes": _op_strip_prefixes,
    "strip_leading_zeros": _op_strip_leading_zeros,
    "strip_spaces": _op_strip_spaces,
    "normalize_reference": _op_normalize_reference,
    "convert_currency": _op_convert_currency,
}


def check_transform(spec: Any) -> None:
    """Raise TransformError when one transform's JSON is not usable."""
    if not isinstance(spec, dict):
        raise TransformError(f"a transform must be an object, not {spec!r}")
    op = spec.get("op")
    if op not in OPS:
        raise TransformError(f"unknown op {op!r} (known: {', '.join(sorted(OPS))})")
    if op == "truncate" and _need(spec, "length", int) < 0:
        raise TransformError("op 'truncate': length must be ≥ 0")
    if op == "pad":
        if _need(spec, "width", int) < 0:
            raise TransformError("op 'pad': width must be ≥ 0")
        if spec.get("align", "left") not in ("left", "right"):
            raise TransformError("op 'pad': align must be left or right")
        if len(str(spec.get("fill", " "))) != 1:
            raise TransformError("op 'pad': fill must be one character")
    if op == "constant":
        _need(spec, "value", (str, int))
    if op == "lookup":
        _need(spec, "table", dict)
    if op == "strip_prefixes":
        prefixes = _need(spec, "prefixes", list)
        if not all(isinstance(p, str) for p in prefixes):
            raise TransformError("op 'strip_prefixes': prefixes must be strings")
    if op == "date" and spec.get("time_zone"):
        try:
            ZoneInfo(str(spec["time_zone"]))
        except (KeyError, ValueError) as exc:
            raise TransformError(f"op 'date': unknown time_zone {exc}") from exc


def transform_errors(transforms: Any) -> list[str]:
    """Every problem in a transform list, as `"#<n>: message"` (empty when fine)."""
    if not isinstance(transforms, list):
        return ['transforms must be a JSON list of {"op": …} objects']
    errors = []
    for n, spec in enumerate(transforms, start=1):
        try:
            check_transform(spec)
        except TransformError as exc:
            errors.append(f"#{n}: {exc}")
    return errors


def apply_transforms(
    value: Any, transforms: Sequence[Mapping[str, Any]], ctx: TransformContext
) -> Any:
    """Run `value` through `transforms` in order."""
    for spec in transforms:
        check_transform(spec)
        value = OPS[spec["op"]](value, spec, ctx)
    return value


def describe_transforms(transforms: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for spec in transforms:
        args = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "op")
        parts.append(f"{spec.get('op')}({args})" if args else str(spec.get("op")))
    return " → ".join(parts)


def resolve_path(source: Mapping[str, Any], path: str) -> Any:
    """Follow a dot path (`created.at`, `lines.0.sku`) into nested dicts and lists."""
    value: Any = source
    for part in path.split(".") if path else []:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is None:
            return None
    return value


@dataclass(frozen=True)
class FieldRule:
    """One field mapping as a plain value: `target_field` ← `source_path`, transformed.

    A blank `source_path` is a constant: the transforms start from None.
    """

    target_field: str
    source_path: str = ""
    transforms: tuple[Mapping[str, Any], ...] = ()
    document: str = "cash_receipt"
    id: int | None = None

    def value_from(self, source: Mapping[str, Any], ctx: TransformContext) -> Any:
        """The target's value for `source`; raises TransformError, TypeError or ValueError."""
        raw = resolve_path(source, self.source_path) if self.source_path else None
        return apply_transforms(raw, self.transforms, ctx)

    def converts_currency(self) -> bool:
        return any(t.get("op") == "convert_currency" for t in self.transforms)


# --- target specs and validation --------------------------------------------------------


TEXT = "text"
DATE = "date"
MONEY = "money"


@dataclass(frozen=True)
class FieldSpec:
    """What Sage Pro accepts in one field of a document."""

    name: str
    kind: str = TEXT
    required: bool = False
    width: int | None = None
    upper: bool = False
    allowed: tuple[str, ...] = ()
    open_period: bool = False
    active_account: bool = False

    def describe(self) -> str:
        parts = ["required" if self.required else "optional", self.kind]
        if self.width:
            parts.append(f"at most {self.width} characters")
        if self.upper:
            parts.append("upper case")
        if self.allowed:
            parts.append(f"one of {','.join(self.allowed)}")
        if self.kind == MONEY:
            parts.append("> 0 with 2 places")
        if self.open_period:
            parts.append("inside an open period")
        if self.active_account:
            parts.append("an active Sage Pro account")
        return ", ".join(parts)


CASH_RECEIPT_METHODS = (
    "CARD",
    "CHECK",
    "CASH",
    "ACH",
    "WIRE",
    "VISA",
    "MC",
    "MASTERCARD",
    "AMEX",
    "DISCOVER",
)

CASH_RECEIPT_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("custno", required=True, width=6, upper=True),
    FieldSpec("date", kind=DATE, required=True, open_period=True),
    FieldSpec("amount", kind=MONEY, required=True),
    FieldSpec(
        "method", required=True, width=10, upper=True, allowed=CASH_RECEIPT_METHODS
    ),
    FieldSpec("reference", required=True, width=20),
    FieldSpec("invno", width=10, upper=True),
    FieldSpec("gl_account", width=24, upper=True, active_account=True),
)


@dataclass(frozen=True)
class Period:
    """A Sage Pro fiscal period as `GET /periods` describes it."""

    yearprd: str
    bdate: date
    edate: date
    pclosed: bool = False
    plocked: bool = False
    permlck: bool = False
    current: bool = False


def period_problem(day: date, periods: Sequence[Period]) -> tuple[str, str] | None:
    """Why Sage Pro would refuse a document dated `day`: its error code and a message,
    or None (Sage Pro refuses documents outside an open period; the codes are the
    gateway's, see docs/sagepro-gateway.md)."""
    current = next((p.yearprd for p in periods if p.current), "")
    for period in periods:
        if period.bdate <= day <= period.edate:
            if period.permlck or period.plocked:
                kind = "permanently locked" if period.permlck else "locked"
                return "PERIOD_LOCKED", f"period {period.yearprd} is {kind}"
            if period.pclosed:
                return "PERIOD_CLOSED", f"period {period.yearprd} is closed"
            if current and period.yearprd > current:
                return (
                    "FUTURE_PERIOD",
                    f"period {period.yearprd} is after the current period {current}",
                )
            return None
    return "PERIOD_NOT_DEFINED", f"no fiscal period contains {day.isoformat()}"


@dataclass(frozen=True)
class FieldProblem:
    """One field of a document that Sage Pro would refuse.

    `code` is the gateway's own error code where there is one (`PERIOD_LOCKED`,
    `ACCOUNT_INACTIVE`…), else `VALIDATION:<field>`.
    """

    field: str
    message: str
    value: Any = None
    rule: str = ""
    code: str = ""

    @property
    def error_code(self) -> str:
        return self.code or f"VALIDATION:{self.field}"

    def describe(self) -> str:
        text = f"{self.field}: {self.message} (value {display_value(self.value)!r}"
        return f"{text}; {self.rule})" if self.rule else f"{text})"


def display_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def coerce(value: Any, spec: FieldSpec) -> Any:
    """Turn a value (possibly a reviewer's text) into the spec's type, or raise."""
    if value is None or value == "":
        return None
    if spec.kind == DATE:
        if isinstance(value, datetime):
            raise TransformError("a date field needs a date, not a date and time")
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError as exc:
            raise TransformError("must be a date as YYYY-MM-DD") from exc
    if spec.kind == MONEY:
        return to_decimal(value)
    text = str(value)
    return text.upper() if spec.upper else text


@dataclass
class FieldCheck:
    """What validation may consult: Sage Pro's periods and chart, when known."""

    periods: Sequence[Period] | None = None
    chart: dict[str, bool] | None = None
    rules: dict[str, str] = field(
        default_factory=dict
    )  # field → where its value came from


def validate_fields(
    values: Mapping[str, Any], specs: Sequence[FieldSpec], check: FieldCheck
) -> list[FieldProblem]:
    """Check typed document values against their specs; return every problem.

    Period and account checks run only when `check` carries periods / a chart.
    """
    problems = []
    for spec in specs:
        value = values.get(spec.name)
        refusal = field_problem(spec, value, check)
        if refusal:
            rule = check.rules.get(spec.name, "")
            where = f"spec: {spec.describe()}" + (f"; {rule}" if rule else "")
            problems.append(
                FieldProblem(spec.name, refusal[1], value, where, refusal[0])
            )
    return problems


def field_problem(
    spec: FieldSpec, value: Any, check: FieldCheck
) -> tuple[str, str] | None:
    """Why one value breaks its spec, as (error code or "", message), or None."""
    if value is None or value == "":
        return ("", "is required") if spec.required else None
    if spec.kind == MONEY:
        if not isinstance(value, Decimal):
            return "", "must be a Decimal amount"
        if value <= 0:
            return "", "must be greater than 0.00"
        if value != value.quantize(CENT):
            return "", "has more than 2 decimal places"
        return None
    if spec.kind == DATE:
        if not isinstance(value, date) or isinstance(value, datetime):
            return "", "must be a date"
        if spec.open_period and check.periods is not None:
            return period_problem(value, check.periods)
        return None
    text = str(value).strip()
    if spec.width is not None and len(text) > spec.width:
        return "", f"is {len(text)} characters, Sage Pro takes at most {spec.width}"
    if spec.allowed and text.upper() not in spec.allowed:
        return "", f"must be one of {', '.join(spec.allowed)}"
    if spec.active_account and check.chart is not None:
        return account_problem(text, check.chart)
    return None


# --- checking a mapping when it is saved ---------------------------------------------


def leaf_paths(record: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every dot path in `record` that ends at a value (not a dict or a list)."""
    paths: list[str] = []
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            paths += leaf_paths(value, f"{path}.")
        elif isinstance(value, list):
            for n, item in enumerate(value[:3]):
                if isinstance(item, Mapping):
                    paths += leaf_paths(item, f"{path}.{n}.")
                else:
                    paths.append(f"{path}.{n}")
        else:
            paths.append(path)
    return paths


def path_problem(path: str, records: Sequence[Mapping[str, Any]]) -> str | None:
    """Why `path` cannot be a mapping's source, given recent source records: it is
    found in none of them. None when found, or when there are no records to ask."""
    path = path.strip()
    if not path or not records:
        return None
    if any(resolve_path(record, path) is not None for record in records):
        return None
    seen: dict[str, None] = {}
    for record in records:
        for leaf in leaf_paths(record):
            seen.setdefault(leaf, None)
    # The paths that share the most with the one asked for first, then the rest.
    wanted = path.lower().split(".")[-1]
    ranked = sorted(seen, key=lambda p: (wanted not in p.lower(), p.count("."), p))
    return (
        f"{path} is in none of the last {len(records)} stored records. "
        f"Paths they have: {', '.join(ranked[:8])}."
    )


def fixed_values(transforms: Any) -> list[Any]:
    """The values a transform list can produce whatever the source says: constants,
    a lookup table's values and its default."""
    if not isinstance(transforms, list):
        return []
    values: list[Any] = []
    for spec in transforms:
        if not isinstance(spec, dict):
            continue
        if spec.get("op") == "constant" and "value" in spec:
            values = [spec["value"]]  # a constant replaces whatever came before
        elif spec.get("op") == "lookup" and isinstance(spec.get("table"), dict):
            values += list(spec["table"].values())
            if "default" in spec:
                values.append(spec["default"])
    return values


def value_problem(spec: FieldSpec, value: Any) -> str | None:
    """Why Sage Pro would refuse `value` in the field `spec` on its own (type, width,
    allowed values; not periods or the chart), or None."""
    try:
        typed = coerce(value, spec)
    except (TransformError, TypeError) as exc:
        return str(exc)
    refusal = field_problem(spec, typed, FieldCheck())
    return refusal[1] if refusal else None
