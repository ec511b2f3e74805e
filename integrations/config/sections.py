"""Bundle sections: which models and fields a configuration bundle holds, and their JSON form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from django.db import models

from integrations.models import Connection
from mappings.models import (
    CurrencyRate,
    FieldMapping,
    GlRule,
    MatchingRule,
    StatusMap,
)

FORMAT = "payments-portal-config"
FORMAT_VERSION = 1

# Set when a connection is created; an existing connection keeps its own.
ENVIRONMENT_FIELDS = ("base_url", "username", "integrator_id", "transport")

# Fields of the configuration models deliberately left out of bundles. A test checks
# that every other field is exported, so a new field can't be forgotten silently.
NOT_EXPORTED = {
    # `agent`: each environment enrols its own on-site agent.
    Connection: {"id", "environment", "password", "agent", "created_at", "updated_at"},
    StatusMap: {"id"},
    GlRule: {"id"},
    FieldMapping: {"id"},
    MatchingRule: {"id"},
    CurrencyRate: {"id"},
}


class BundleError(Exception):
    """The bundle can't be imported; `problems` says which record and how to fix it."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Section:
    name: str
    label: str
    model: type[models.Model]
    fields: tuple[str, ...]
    key: tuple[str, ...]
    per_connection: bool = True
    # Listed in the order rows are tried, not by key (see the module docstring).
    ordered: bool = False
    # Fields added after bundles were first exported: a bundle without one gets its
    # default (an older environment's bundle still imports).
    added_later: tuple[tuple[str, object], ...] = ()

    @property
    def plural(self) -> str:
        return f"{self.label}s"

    @property
    def title(self) -> str:
        return self.plural[0].upper() + self.plural[1:]

    def key_of(self, record: dict) -> tuple:
        return tuple(record[name] for name in self.key)

    def describe(self, record: dict) -> str:
        """Name a record by its key, leaving out blank conditions."""
        parts = [
            f"{name} {record[name]!r}"
            for name in self.key
            if name != "connection" and record[name] not in ("", None)
        ]
        owner = f"{record['connection']}: " if self.per_connection else ""
        return f"{self.label} {owner}{', '.join(parts)}"


CONNECTIONS = Section(
    "connections",
    "connection",
    Connection,
    (
        "slug",
        "kind",
        "name",
        "base_url",
        "username",
        "integrator_id",
        "transport",
        "time_zone",
        "company_id",
        "sagepro",
        "payment_method",
        "suspense_account",
        "base_currency",
        "is_active",
    ),
    ("slug",),
    per_connection=False,
)
STATUS_MAPS = Section(
    "status_maps",
    "status map",
    StatusMap,
    (
        "connection",
        "priority",
        "event_type",
        "transaction_type",
        "status_code_pattern",
        "status_message_pattern",
        "response_code",
        "gateway_status",
        "payment_status",
        "action",
        "is_active",
    ),
    (
        "connection",
        "priority",
        "event_type",
        "transaction_type",
        "status_code_pattern",
        "status_message_pattern",
        "response_code",
    ),
    ordered=True,
)
GL_RULES = Section(
    "gl_rules",
    "GL rule",
    GlRule,
    (
        "connection",
        "name",
        "priority",
        "is_active",
        "transaction_types",
        "card_brands",
        "channels",
        "amount_min",
        "amount_max",
        "currency",
        "customer_pattern",
        "invoice_pattern",
        "product_category",
        "account",
        "purpose",
        "note",
    ),
    ("connection", "name"),
    ordered=True,
    added_later=(("purpose", "receipt"),),
)
FIELD_MAPPINGS = Section(
    "field_mappings",
    "field mapping",
    FieldMapping,
    (
        "connection",
        "document",
        "target_field",
        "source_path",
        "transforms",
        "position",
        "is_active",
    ),
    ("connection", "document", "target_field"),
)
MATCHING_RULES = Section(
    "matching_rules",
    "matching rule",
    MatchingRule,
    (
        "connection",
        "name",
        "priority",
        "is_active",
        "customer_pattern",
        "channels",
        "amount_min",
        "amount_max",
        "reference_mode",
        "strip_prefixes",
        "tolerance_type",
        "tolerance_value",
        "require_same_customer",
        "auto_apply",
        "allow_partial",
        "multiple_invoices",
        "order_numbers",
        "near_misses",
        "identify_payer",
        "by_amount",
        "max_combination",
        "duplicate_window_days",
    ),
    ("connection", "name"),
    ordered=True,
)
CURRENCY_RATES = Section(
    "currency_rates",
    "currency rate",
    CurrencyRate,
    ("currency", "base_currency", "valid_on", "rate", "source"),
    ("currency", "base_currency", "valid_on"),
    per_connection=False,
)
SECTIONS = (
    CONNECTIONS,
    STATUS_MAPS,
    GL_RULES,
    FIELD_MAPPINGS,
    MATCHING_RULES,
    CURRENCY_RATES,
)
CHILD_SECTIONS = (STATUS_MAPS, GL_RULES, FIELD_MAPPINGS, MATCHING_RULES)


# Values ---------------------------------------------------------------------------------


def to_json(model_field: models.Field[Any, Any], value: Any) -> object:
    """A model value as the bundle writes it."""
    if value is None:
        return None
    if isinstance(model_field, models.ForeignKey):
        return value.slug
    if isinstance(model_field, models.DecimalField):
        return str(value)
    if isinstance(model_field, models.DateField):
        return value.isoformat()
    return value


def concrete_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """The concrete field `name` of `model` (bundles hold no relations or generic keys)."""
    return cast("models.Field[Any, Any]", model._meta.get_field(name))


def from_json(model_field: models.Field[Any, Any], value: object) -> object:
    """A bundle value as the model stores it (foreign keys stay slugs)."""
    if value is None:
        return None
    if isinstance(model_field, models.DecimalField):
        if isinstance(value, float | bool):
            raise ValueError('write decimals as strings, e.g. "12.50"')
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a decimal number")
        return number.quantize(Decimal(1).scaleb(-model_field.decimal_places))
    if isinstance(model_field, models.DateField):
        if not isinstance(value, str):
            raise ValueError("write dates as YYYY-MM-DD strings")
        return date.fromisoformat(value)
    if isinstance(model_field, models.ForeignKey) and not isinstance(value, str):
        raise ValueError("write the connection's slug")
    return value


def export_row(section: Section, obj: models.Model) -> dict:
    record = {}
    for name in section.fields:
        model_field = concrete_field(section.model, name)
        value = (
            getattr(obj, name)
            if isinstance(model_field, models.ForeignKey)
            else getattr(obj, model_field.attname)
        )
        record[name] = to_json(model_field, value)
    return record


def sort_key(section: Section, record: dict) -> tuple:
    return tuple((record[name] is not None, record[name] or "") for name in section.key)
