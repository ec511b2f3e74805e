"""Configuration bundles: export the configuration to JSON, import it into another portal.

Configuration built in Dev is promoted to QA and Production with one JSON file::

    {"format": "payments-portal-config", "version": 1,
     "connections": [...], "status_maps": [...], "gl_rules": [...],
     "field_mappings": [...], "matching_rules": [...], "currency_rates": [...]}

Rows are named by natural keys, never database ids:

- connections by `slug`; a PayTrace connection's `sagepro` is the Sage Pro connection's
  slug;
- status maps by (connection, priority and the match conditions), GL rules and
  matching rules by (connection, name), field mappings by (connection, document,
  target_field);
- currency rates by (currency, base_currency, valid_on).

Decimals are strings and dates ISO. Connections and field mappings are listed by key;
status maps, GL rules and matching rules in the order they are tried (connection, priority, then
creation order), because rows of equal priority run in creation order and an import
creates them in the bundle's order. Exporting the same configuration twice gives the
same bytes.

What is left out, and what an import leaves alone:

- Secrets (connection passwords and API keys, webhook secrets) are never exported and
  never changed by an import. New connections arrive without them; the import says
  which connections need them entered in this environment.
- A connection's `environment` belongs to the portal it lives in: not exported; new
  connections get the target's environment.
- `base_url`, `username` and `integrator_id` differ per environment. They are exported
  so a new connection can be created, but an existing connection keeps its own; the
  plan notes where they differ.
- Connections missing from the bundle are left alone. For each connection in the
  bundle, its status maps, GL rules, field mappings and matching rules become exactly
  the bundle's: rows the bundle doesn't have are deleted (the plan lists them).
- Currency rates are added and updated, never deleted: a target may load its own.
"""

import json
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import reversion
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction

from integrations.models import Connection, Environment
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
ENVIRONMENT_FIELDS = ("base_url", "username", "integrator_id")

# Fields of the configuration models deliberately left out of bundles. A test checks
# that every other field is exported, so a new field can't be forgotten silently.
NOT_EXPORTED = {
    Connection: {"id", "environment", "password", "created_at", "updated_at"},
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
        "note",
    ),
    ("connection", "name"),
    ordered=True,
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


def _to_json(model_field: models.Field, value: object) -> object:
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


def _from_json(model_field: models.Field, value: object) -> object:
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


def _export_row(section: Section, obj: models.Model) -> dict:
    record = {}
    for name in section.fields:
        model_field = section.model._meta.get_field(name)
        value = (
            getattr(obj, name)
            if isinstance(model_field, models.ForeignKey)
            else getattr(obj, model_field.attname)
        )
        record[name] = _to_json(model_field, value)
    return record


def _sort_key(section: Section, record: dict) -> tuple:
    return tuple((record[name] is not None, record[name] or "") for name in section.key)


# Export ---------------------------------------------------------------------------------


def export_bundle(slugs: Iterable[str] | None = None) -> dict:
    """The configuration as a bundle: every connection, or only those named."""
    connections = Connection.objects.select_related("sagepro")
    if slugs is not None:
        slugs = list(slugs)
        missing = sorted(set(slugs) - set(connections.values_list("slug", flat=True)))
        if missing:
            raise BundleError([f"No connection with slug {s!r}." for s in missing])
        connections = connections.filter(slug__in=slugs)
    connections = list(connections)
    bundle: dict = {"format": FORMAT, "version": FORMAT_VERSION}
    bundle["connections"] = sorted(
        (_export_row(CONNECTIONS, c) for c in connections),
        key=lambda r: r["slug"],
    )
    for section in CHILD_SECTIONS:
        rows = section.model.objects.filter(connection__in=connections).select_related(
            "connection"
        )
        if section.ordered:
            rows = rows.order_by("connection__slug", "priority", "id")
            bundle[section.name] = [_export_row(section, row) for row in rows]
        else:
            bundle[section.name] = sorted(
                (_export_row(section, row) for row in rows),
                key=lambda r, s=section: _sort_key(s, r),
            )
    bundle[CURRENCY_RATES.name] = sorted(
        (_export_row(CURRENCY_RATES, r) for r in CurrencyRate.objects.all()),
        key=lambda r: _sort_key(CURRENCY_RATES, r),
    )
    return bundle


def dump_bundle(bundle: dict) -> str:
    return json.dumps(bundle, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def read_bundle(path: str | Path) -> dict:
    """Load the bundle in file `path`, refusing files over CONFIG_BUNDLE_MAX_BYTES.

    The size is checked before anything is read, and the bytes are read once and
    parsed once. Raises BundleError, naming the file and the fix.
    """
    limit = settings.CONFIG_BUNDLE_MAX_BYTES
    try:
        with open(path, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise BundleError([f"{path} is not a file: pass the bundle's file."])
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise BundleError([_too_large(path, limit, size)])
            # A file that grew since the check is still never read past the limit.
            data = file.read(limit + 1)
    except OSError as exc:
        raise BundleError(
            [f"Can't read {path}: {exc.strerror}; pass the file export_config wrote."]
        ) from exc
    if len(data) > limit:
        raise BundleError([_too_large(path, limit, len(data))])
    return load_bundle(data, name=str(path))


def _too_large(path: str | Path, limit: int, size: int) -> str:
    return (
        f"{path} is {size:,} bytes, more than CONFIG_BUNDLE_MAX_BYTES "
        f"({limit:,} bytes); a configuration bundle is far smaller. Check it is the "
        "file export_config wrote, or raise the setting."
    )


def load_bundle(text: str | bytes, name: str = "The file") -> dict:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError(
                [
                    f"{name} is not UTF-8 text (byte {exc.start} is invalid): "
                    "export it again with export_config."
                ]
            ) from None
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError([f"{name} is not JSON: {exc}."]) from exc
    except RecursionError:
        raise BundleError(
            [f"{name} nests too deeply to be a configuration bundle."]
        ) from None
    if not isinstance(bundle, dict):
        raise BundleError([f"{name} is not a configuration bundle (not an object)."])
    if _nests_deeper(bundle, MAX_DEPTH):
        raise BundleError(
            [
                f"{name} nests more than {MAX_DEPTH} levels deep; a configuration "
                "bundle is not that deep. Export it again with export_config."
            ]
        )
    return bundle


# A bundle is sections → records → fields → a small JSON value at most.
MAX_DEPTH = 16


def _nests_deeper(value: object, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        children = (
            value.values()
            if isinstance(value, dict)
            else value
            if isinstance(value, list)
            else None
        )
        if children is None:
            continue
        if depth > limit:
            return True
        stack += [(child, depth + 1) for child in children]
    return False


def duplicate_keys(bundle: dict) -> list[str]:
    """Records of a section that share a key (an import couldn't tell them apart)."""
    problems = []
    for section in SECTIONS:
        records = bundle.get(section.name)
        if not isinstance(records, list):
            continue
        seen = Counter(
            section.key_of(r)
            for r in records
            if isinstance(r, dict) and all(k in r for k in section.key)
        )
        for record in records:
            if not isinstance(record, dict) or not all(
                k in record for k in section.key
            ):
                continue
            if seen.pop(section.key_of(record), 0) > 1:
                problems.append(
                    f"Several {section.name} have the key of {section.describe(record)}: "
                    f"keep one, or make their {' / '.join(section.key)} differ."
                )
    return problems


# Import plan ----------------------------------------------------------------------------


@dataclass
class Change:
    action: str  # "create", "update" or "delete"
    section: Section
    label: str
    record: dict | None = None  # bundle form, for create and update
    obj: models.Model | None = None  # the target row, for update and delete
    fields: list[tuple[str, object, object]] = field(default_factory=list)


@dataclass
class ImportPlan:
    environment: str
    connections: list[str]
    changes: list[Change] = field(default_factory=list)
    unchanged: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    # Per-environment fields that differ and are kept, by connection.
    kept: list[str] = field(default_factory=list)
    secrets_needed: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def count(self, section: Section, action: str) -> int:
        return sum(
            1 for c in self.changes if c.section is section and c.action == action
        )

    def summary(self) -> str:
        parts = []
        for section in SECTIONS:
            counts = [
                f"{self.count(section, action)} {verb}"
                for action, verb in (
                    ("create", "new"),
                    ("update", "changed"),
                    ("delete", "deleted"),
                )
                if self.count(section, action)
            ]
            if counts:
                parts.append(f"{section.plural}: {', '.join(counts)}")
        return "; ".join(parts) or "nothing to change"

    def lines(self) -> list[str]:
        """The plan as an operator reads it: one block per section."""
        out = []
        if self.count(CONNECTIONS, "create"):
            out.append(f"New connections will be in environment {self.environment!r}.")
        for section in SECTIONS:
            changes = [c for c in self.changes if c.section is section]
            out.append(
                f"{section.title}: {self.count(section, 'create')} to create, "
                f"{self.count(section, 'update')} to update, "
                f"{self.count(section, 'delete')} to delete, "
                f"{self.unchanged[section.name]} unchanged"
            )
            for change in changes:
                out.append(f"  {_SIGNS[change.action]} {change.action} {change.label}")
                out += [
                    f"      {name}: {before!r} → {after!r}"
                    for name, before, after in change.fields
                ]
            if section is CONNECTIONS:
                out += [f"  = keep {line}" for line in self.kept]
        out += [f"Warning: {w}" for w in self.warnings]
        if self.secrets_needed:
            out.append("Secrets to enter in this environment (never imported):")
            out += [f"  {line}" for line in self.secrets_needed]
        return out


_SIGNS = {"create": "+", "update": "~", "delete": "-"}


def plan_import(bundle: dict, *, environment: str | None = None) -> ImportPlan:
    """Check the bundle against this database and list what an import would change.

    Raises BundleError naming every record that is wrong and how to fix it.
    """
    return _plan(_validate(bundle), environment)


def _plan(records: dict[str, list[dict]], environment: str | None) -> ImportPlan:
    slugs = [r["slug"] for r in records[CONNECTIONS.name]]
    plan = ImportPlan(
        environment=_target_environment(environment, records), connections=slugs
    )
    existing = {c.slug: c for c in Connection.objects.select_related("sagepro")}
    _plan_connections(plan, records[CONNECTIONS.name], existing)
    for section in CHILD_SECTIONS:
        targets = section.model.objects.filter(
            connection__slug__in=slugs
        ).select_related("connection")
        if section.ordered:
            targets = targets.order_by("connection__slug", "priority", "id")
        _plan_rows(plan, section, records[section.name], list(targets), delete=True)
    _plan_rows(
        plan,
        CURRENCY_RATES,
        records[CURRENCY_RATES.name],
        list(CurrencyRate.objects.all()),
        delete=False,
    )
    plan.warnings += _priority_ties(records)
    plan.secrets_needed = _secrets_needed(records[CONNECTIONS.name], existing)
    return plan


def _validate(bundle: dict) -> dict[str, list[dict]]:
    """Check format, shape, types and references; return the records, normalised."""
    if bundle.get("format") != FORMAT:
        raise BundleError(
            [
                f"Not a configuration bundle: 'format' is {bundle.get('format')!r}, "
                f"expected {FORMAT!r}. Export one with `manage.py export_config`."
            ]
        )
    if bundle.get("version") != FORMAT_VERSION:
        raise BundleError(
            [
                f"Bundle version {bundle.get('version')!r} is not supported; this "
                f"portal reads version {FORMAT_VERSION}. Export it again with a "
                "portal of the same release."
            ]
        )
    problems = []
    unknown = set(bundle) - {"format", "version"} - {s.name for s in SECTIONS}
    if unknown:
        problems.append(
            f"Unknown top-level keys {sorted(unknown)}: remove them "
            f"(a bundle has {[s.name for s in SECTIONS]})."
        )
    records: dict[str, list[dict]] = {}
    for section in SECTIONS:
        raw = bundle.get(section.name)
        if not isinstance(raw, list):
            problems.append(
                f"'{section.name}' is missing or not a list: add it (it may be empty)."
            )
            records[section.name] = []
            continue
        records[section.name] = [
            record
            for index, item in enumerate(raw)
            if (record := _parse_record(section, index, item, problems)) is not None
        ]
    if problems:
        raise BundleError(problems)
    problems += duplicate_keys(records)
    problems += _check_references(records)
    if problems:
        raise BundleError(problems)
    return records


def _parse_record(
    section: Section, index: int, item: object, problems: list[str]
) -> dict | None:
    where = f"{section.name}[{index}]"
    if not isinstance(item, dict):
        problems.append(f"{where} is not an object.")
        return None
    missing = [name for name in section.fields if name not in item]
    unknown = sorted(set(item) - set(section.fields))
    if missing:
        problems.append(f"{where} lacks {missing}: add them.")
    if unknown:
        problems.append(
            f"{where} has fields this portal doesn't know, {unknown}: remove them."
        )
    if missing or unknown:
        return None
    where = f"{where} ({section.describe(item)})"
    record, values, ok = {}, {}, True
    for name in section.fields:
        model_field = section.model._meta.get_field(name)
        try:
            value = _from_json(model_field, item[name])
        except ValueError as exc:
            problems.append(f"{where}: {name}: {exc}.")
            ok = False
            continue
        if isinstance(model_field, models.ForeignKey):
            record[name] = value
        else:
            record[name] = _to_json(model_field, value)
            values[model_field.attname] = value
    if not ok:
        return None
    if section is CONNECTIONS and item["kind"] not in Connection.Kind.values:
        problems.append(
            f"{where}: unknown connection kind {item['kind']!r}; use one of "
            f"{Connection.Kind.values}."
        )
        return None
    # The model's own checks (choices, lengths, time zones). Per-environment URLs such
    # as http://sagepro:8080 are not checked: they are the target's business.
    try:
        section.model(**values).full_clean(
            exclude=["connection", "sagepro", "base_url", "password"],
            validate_unique=False,
            validate_constraints=False,
        )
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            problems.append(f"{where}: {name}: {' '.join(messages)}")
        return None
    return record


def _check_references(records: dict[str, list[dict]]) -> list[str]:
    problems = []
    kinds = {r["slug"]: r["kind"] for r in records[CONNECTIONS.name]}
    for record in records[CONNECTIONS.name]:
        target = record["sagepro"]
        if target is None:
            continue
        kind = kinds.get(target)
        if kind is None:
            kind = (
                Connection.objects.filter(slug=target)
                .values_list("kind", flat=True)
                .first()
            )
        if kind is None:
            problems.append(
                f"Connection {record['slug']!r} posts to Sage Pro connection "
                f"{target!r}, which is neither in the bundle nor in this database: "
                f"export it too (--connection {target}) or create it here first."
            )
        elif kind != Connection.Kind.SAGEPRO:
            problems.append(
                f"Connection {record['slug']!r}: sagepro {target!r} is a {kind} "
                "connection, not a Sage Pro one: point it at a Sage Pro connection."
            )
    for section in CHILD_SECTIONS:
        for index, record in enumerate(records[section.name]):
            if record["connection"] not in kinds:
                problems.append(
                    f"{section.name}[{index}] ({section.describe(record)}): connection "
                    f"{record['connection']!r} is not in the bundle's connections: "
                    "add the connection to the bundle or remove the row."
                )
    return problems


def _target_environment(environment: str | None, records: dict) -> str:
    if environment is not None:
        if environment not in Environment.values:
            raise BundleError(
                [
                    f"Unknown environment {environment!r}; use one of {Environment.values}."
                ]
            )
        return environment
    here = set(Connection.objects.values_list("environment", flat=True))
    if len(here) == 1:
        return here.pop()
    if not here:
        return Connection._meta.get_field("environment").default
    new = {r["slug"] for r in records[CONNECTIONS.name]} - set(
        Connection.objects.values_list("slug", flat=True)
    )
    if new:
        raise BundleError(
            [
                f"This database has connections in several environments "
                f"({', '.join(sorted(here))}), so new connections "
                f"({', '.join(sorted(new))}) need one named: pass --environment."
            ]
        )
    return ""


def _plan_connections(
    plan: ImportPlan, records: list[dict], existing: dict[str, Connection]
) -> None:
    for record in records:
        obj = existing.get(record["slug"])
        label = f"connection {record['slug']}"
        if obj is None:
            plan.changes.append(
                Change(
                    "create",
                    CONNECTIONS,
                    f"{label} ({record['kind']}, {record['name']!r})",
                    record=record,
                )
            )
            continue
        current = _export_row(CONNECTIONS, obj)
        change = Change("update", CONNECTIONS, label, record=record, obj=obj)
        for name in CONNECTIONS.fields:
            if current[name] == record[name]:
                continue
            if name in ENVIRONMENT_FIELDS:
                plan.kept.append(
                    f"{record['slug']} {name} {current[name]!r} (the bundle has "
                    f"{record[name]!r}): kept, it is set per environment"
                )
            else:
                change.fields.append((name, current[name], record[name]))
        if change.fields:
            plan.changes.append(change)
        else:
            plan.unchanged[CONNECTIONS.name] += 1


def _plan_rows(
    plan: ImportPlan,
    section: Section,
    records: list[dict],
    targets: list[models.Model],
    *,
    delete: bool,
) -> None:
    by_key: dict[tuple, list[tuple[models.Model, dict]]] = defaultdict(list)
    for obj in targets:
        current = _export_row(section, obj)
        by_key[section.key_of(current)].append((obj, current))
    for record in records:
        matches = by_key.get(section.key_of(record))
        if not matches:
            plan.changes.append(
                Change("create", section, section.describe(record), record=record)
            )
            continue
        obj, current = matches.pop(0)
        fields = [
            (name, current[name], record[name])
            for name in section.fields
            if current[name] != record[name]
        ]
        if fields:
            plan.changes.append(
                Change(
                    "update",
                    section,
                    section.describe(record),
                    record=record,
                    obj=obj,
                    fields=fields,
                )
            )
        else:
            plan.unchanged[section.name] += 1
    leftovers = [pair for pairs in by_key.values() for pair in pairs]
    for obj, current in leftovers:
        if delete:
            plan.changes.append(
                Change(
                    "delete",
                    section,
                    f"{section.describe(current)} (not in the bundle)",
                    obj=obj,
                )
            )
        else:
            plan.unchanged[section.name] += 1


def _priority_ties(records: dict[str, list[dict]]) -> list[str]:
    warnings = []
    for section in (STATUS_MAPS, GL_RULES, MATCHING_RULES):
        counts = Counter(
            (r["connection"], r["priority"]) for r in records[section.name]
        )
        for (slug, priority), count in sorted(counts.items()):
            if count > 1:
                warnings.append(
                    f"{count} {section.plural} of {slug} share "
                    f"priority {priority}; they run in creation order, which an "
                    "import into an existing database may not keep. Give them "
                    "distinct priorities."
                )
    return warnings


def _secrets_needed(records: list[dict], existing: dict[str, Connection]) -> list[str]:
    lines = []
    for record in records:
        obj = existing.get(record["slug"])
        needs = []
        if obj is None or not obj.password:
            needs.append(
                "its API key"
                if record["kind"] == Connection.Kind.SAGEPRO
                else "its password"
            )
        if record["kind"] == Connection.Kind.PAYTRACE and (
            obj is None or not obj.webhook_secrets.filter(is_active=True).exists()
        ):
            needs.append("a webhook secret")
        if needs:
            lines.append(f"{record['slug']}: {' and '.join(needs)}")
    return lines


# Import ---------------------------------------------------------------------------------


def apply_bundle(
    bundle: dict,
    *,
    comment: str,
    environment: str | None = None,
    user: object = None,
    progress: Callable[[str], None] | None = None,
) -> ImportPlan:
    """Make this database's configuration the bundle's, all or nothing.

    Recorded as one revision commented `comment`, plus one for the rows it deleted.

    The plan is worked out again inside the transaction, so it describes exactly what
    was applied even if the database changed since it was shown. The bundle is checked
    before the transaction begins: on SQLite the transaction holds the database's
    write lock, which webhooks wait for.
    """
    records = _validate(bundle)
    with transaction.atomic(), reversion.create_revision():
        # Set first: the deletions, recorded as they happen, quote it too.
        reversion.set_comment(comment)
        if user is not None:
            reversion.set_user(user)
        plan = _plan(records, environment)
        by_slug = _apply_connections(plan)
        if progress:
            progress(f"Connections: {len(plan.connections)} applied")
        for section in (*CHILD_SECTIONS, CURRENCY_RATES):
            _apply_rows(plan, section, by_slug)
            if progress:
                progress(f"{section.title}: {len(bundle[section.name])} applied")
    return plan


def _apply_connections(plan: ImportPlan) -> dict[str, Connection]:
    changes = [c for c in plan.changes if c.section is CONNECTIONS]
    for change in changes:
        if change.action == "create":
            obj = Connection(environment=plan.environment)
            _assign(obj, change.record, skip=("sagepro",))
            # Not `obj.save()`: that seeds a new PayTrace connection's default status
            # map, and an import gives it exactly the bundle's instead.
            models.Model.save(obj, force_insert=True)
            change.obj = obj
        else:
            _assign(change.obj, change.record, skip=("sagepro", *ENVIRONMENT_FIELDS))
            # Only the bundle's fields: the stored secret is not even rewritten.
            change.obj.save(update_fields=[*_CONNECTION_UPDATED, "updated_at"])
    by_slug = {c.slug: c for c in Connection.objects.all()}
    # Second pass: a connection may point at a Sage Pro connection created above.
    for change in changes:
        target = change.record["sagepro"]
        obj = by_slug[change.record["slug"]]
        if obj.sagepro_id != (by_slug[target].pk if target else None):
            obj.sagepro = by_slug[target] if target else None
            obj.save(update_fields=["sagepro", "updated_at"])
    return by_slug


_CONNECTION_UPDATED = [
    name for name in CONNECTIONS.fields if name not in ("sagepro", *ENVIRONMENT_FIELDS)
]


def _apply_rows(
    plan: ImportPlan, section: Section, by_slug: dict[str, Connection]
) -> None:
    changes = [c for c in plan.changes if c.section is section]
    # Deletions first, so a row that moves priority never meets its old self.
    for change in changes:
        if change.action == "delete":
            change.obj.delete()
    for change in changes:
        if change.action == "update":
            _assign(change.obj, change.record, by_slug=by_slug)
            change.obj.save()
        elif change.action == "create":
            obj = section.model()
            _assign(obj, change.record, by_slug=by_slug)
            obj.save()
            change.obj = obj


def _assign(
    obj: models.Model,
    record: dict,
    *,
    skip: Sequence[str] = (),
    by_slug: dict[str, Connection] | None = None,
) -> None:
    for name, value in record.items():
        if name in skip:
            continue
        model_field = type(obj)._meta.get_field(name)
        if isinstance(model_field, models.ForeignKey):
            setattr(obj, name, by_slug[value] if value is not None else None)
        else:
            setattr(obj, model_field.attname, _from_json(model_field, value))
