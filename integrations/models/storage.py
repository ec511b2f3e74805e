"""Checks every stored row passes: money within its column, JSON not nested too deep."""

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import available_timezones

from django.core.exceptions import ValidationError
from django.db import connections, models, router

from integrations.redaction import redact_text

if TYPE_CHECKING:
    from django.contrib.auth.models import User

CENT = Decimal("0.01")


# JSON nested deeper than this is refused on save: Python reads JSON recursively, and
# a row nested ~900 deep breaks every page that loads it (PayTrace records are 3 deep).
MAX_JSON_DEPTH = 64


class InvalidAmountError(ValueError):
    """An amount a money column cannot hold: not a finite number, or too large."""


class TooDeeplyNestedError(ValueError):
    """A JSON value nested deeper than MAX_JSON_DEPTH levels."""


def money_limit(max_digits: int, decimal_places: int) -> Decimal:
    """The largest magnitude a numeric(max_digits, decimal_places) column holds, to
    the cent. Cents, not the column's last place, so that SQLite (which compares and
    stores these as floats) never accepts a value that overflows the column when read."""
    return Decimal(10) ** (max_digits - decimal_places) - CENT


def money_in_range(
    model: str, field: str, max_digits: int = 14, decimal_places: int = 2
) -> models.CheckConstraint:
    """A constraint that keeps a money column finite and within its digits.

    PostgreSQL's numeric(p, s) enforces the digits itself but accepts NaN; SQLite
    enforces nothing, and a row it accepted (`1e+20`, `inf`, text) then breaks every
    query that loads it. NULL passes (nullable columns stay nullable).
    """
    limit = money_limit(max_digits, decimal_places)
    in_range = models.Q(**{f"{field}__gte": -limit, f"{field}__lte": limit})
    return models.CheckConstraint(
        condition=in_range | models.Q(**{f"{field}__isnull": True}),
        name=f"{model}_{field}_in_range",
        violation_error_message=f"{field} must be a number from {-limit} to {limit}.",
    )


class StorableValuesMixin:
    """Refuse, before saving, a value that would break every query loading the row:
    an amount its money column cannot hold, or JSON nested too deep to read back."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.check_storable(kwargs.get("update_fields"))
        super().save(*args, **kwargs)  # type: ignore[misc]

    def check_storable(self, fields: Iterable[str] | None = None) -> None:
        """Raise InvalidAmountError or TooDeeplyNestedError naming the field."""
        names = set(fields) if fields is not None else None
        for field in self._meta.concrete_fields:  # type: ignore[attr-defined]
            if names is not None and field.name not in names:
                continue
            value = getattr(self, field.attname)
            if value is None:
                continue
            if isinstance(field, models.DecimalField):
                problem = money_problem(value, field.max_digits, field.decimal_places)
                if problem:
                    raise InvalidAmountError(
                        f"{field.name} {problem} ({type(self).__name__} column "
                        f"numeric({field.max_digits},{field.decimal_places}))."
                    )
            elif isinstance(field, models.JSONField) and is_nested_deeper(
                value, MAX_JSON_DEPTH
            ):
                raise TooDeeplyNestedError(
                    f"{field.name} is nested more than {MAX_JSON_DEPTH} levels deep "
                    f"({type(self).__name__}); it is not stored."
                )


_INSERT_SQL: dict[tuple[type, str, str], tuple[str, list[models.Field]]] = {}


def insert_row(obj: models.Model, *, unless_exists: Sequence[str] = ()) -> bool:
    """INSERT one new row for `obj` with one statement, and set its primary key.

    For the hot path of the webhook: the same row `obj.save()` would write (the
    storable checks, every field's `pre_save` and `get_db_prep_save`, so the card-data
    net still sees every value), without the ORM's per-call query compilation: the
    statement is built once per model. With `unless_exists` (the columns of a unique
    constraint), a row that would repeat one already stored is not written and False
    is returned (`ON CONFLICT DO NOTHING`: no savepoint, and under concurrency the
    second writer waits for the first and then writes nothing).
    """
    model = type(obj)
    if isinstance(obj, StorableValuesMixin):
        obj.check_storable()
    db = router.db_for_write(model)
    connection = connections[db]
    key = (model, connection.vendor, ",".join(unless_exists))
    if key not in _INSERT_SQL:
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        column = {f.name: f.column for f in fields}
        conflict = (
            f" ON CONFLICT ({', '.join(quote(column[n]) for n in unless_exists)}) DO NOTHING"
            if unless_exists
            else ""
        )
        sql = (
            f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "
            f"VALUES ({', '.join(['%s'] * len(fields))}){conflict} "
            f"RETURNING {quote(model._meta.pk.column)}"
        )
        _INSERT_SQL[key] = (sql, fields)
    sql, fields = _INSERT_SQL[key]
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding = False
    obj._state.db = db
    return True


def is_nested_deeper(value: object, limit: int) -> bool:
    """Whether lists and dicts in `value` nest more than `limit` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[object] = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def money_problem(value: object, max_digits: int, decimal_places: int) -> str:
    """Why `value` cannot go into a numeric(max_digits, decimal_places) column, or ''.

    The value itself is never quoted: an "amount" may be a card number.
    """
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        return "is not a number"
    try:
        amount = (
            Decimal(value) if isinstance(value, (Decimal, int)) else Decimal(str(value))
        )
    except ArithmeticError:
        return "is not a number"
    if not amount.is_finite():
        return "is not a finite number"
    limit = money_limit(max_digits, decimal_places)
    if abs(amount) > limit:
        return (
            f"is out of range: at most {max_digits - decimal_places} digits before "
            f"the decimal point (up to {limit})"
        )
    return ""


def storable_text(text: str) -> str:
    """Text that any database column takes: card numbers masked, and characters that
    cannot be encoded (a lone surrogate from hostile JSON) escaped."""
    masked, _ = redact_text(text)
    return masked.encode("utf-8", "backslashreplace").decode("utf-8")


def saved_user(user: object) -> "User | None":
    """`user` for a user column when it is a saved account; None for no user or an
    anonymous one."""
    return cast("User", user) if getattr(user, "pk", None) else None


def validate_time_zone(value: str) -> None:
    if value not in available_timezones():
        raise ValidationError(
            f"{value!r} is not an IANA time zone such as America/Chicago."
        )
