"""Import plans: check a bundle against this database and list what an import changes."""

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from integrations.config.bundle import duplicate_keys
from integrations.config.sections import (
    CHILD_SECTIONS,
    CONNECTIONS,
    CURRENCY_RATES,
    ENVIRONMENT_FIELDS,
    FORMAT,
    FORMAT_VERSION,
    GL_RULES,
    MATCHING_RULES,
    SECTIONS,
    STATUS_MAPS,
    BundleError,
    Section,
    concrete_field,
    export_row,
    from_json,
    to_json,
)
from integrations.models import Connection, Environment
from mappings.models import (
    CurrencyRate,
)

# Import plan ----------------------------------------------------------------------------


@dataclass
class Change:
    action: str  # "create", "update" or "delete"
    section: Section
    label: str
    record: dict | None = None  # bundle form, for create and update
    obj: models.Model | None = None  # the target row, for update and delete
    fields: list[tuple[str, object, object]] = field(default_factory=list)

    def bundle_record(self) -> dict[str, Any]:
        """The record to write (creates and updates have one)."""
        assert self.record is not None, f"a {self.action} has no record"
        return self.record

    def target_row(self) -> models.Model:
        """The row to change (updates and deletes have one)."""
        assert self.obj is not None, f"a {self.action} has no row"
        return self.obj


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

    def fingerprint(self, bundle_hash: str = "") -> str:
        """A digest of everything the plan would do (and of the bundle's content).

        A preview is confirmed with it; the apply goes ahead only if the plan worked
        out at that moment has the same fingerprint, so nobody applies a diff they
        have not seen.
        """
        changes = [
            [
                c.action,
                c.section.name,
                c.label,
                [[name, repr(before), repr(after)] for name, before, after in c.fields],
            ]
            for c in self.changes
        ]
        data = [bundle_hash, self.environment, self.kept, changes]
        return hashlib.sha256(
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        ).hexdigest()

    def sections(self) -> list["SectionDiff"]:
        """The plan per section, for the admin's diff: added, changed, removed, kept."""
        return [
            SectionDiff(
                title=section.title,
                created=[
                    c
                    for c in self.changes
                    if c.section is section and c.action == "create"
                ],
                updated=[
                    c
                    for c in self.changes
                    if c.section is section and c.action == "update"
                ],
                deleted=[
                    c
                    for c in self.changes
                    if c.section is section and c.action == "delete"
                ],
                unchanged=self.unchanged[section.name],
                kept=self.kept if section is CONNECTIONS else [],
            )
            for section in SECTIONS
        ]


@dataclass(frozen=True)
class SectionDiff:
    title: str
    created: list[Change]
    updated: list[Change]
    deleted: list[Change]
    unchanged: int
    kept: list[str]

    @property
    def is_unchanged(self) -> bool:
        return not (self.created or self.updated or self.deleted)


_SIGNS = {"create": "+", "update": "~", "delete": "-"}


def plan_import(bundle: dict, *, environment: str | None = None) -> ImportPlan:
    """Check the bundle against this database and list what an import would change.

    Raises BundleError naming every record that is wrong and how to fix it.
    """
    return make_plan(validate_records(bundle), environment)


def make_plan(records: dict[str, list[dict]], environment: str | None) -> ImportPlan:
    slugs = [r["slug"] for r in records[CONNECTIONS.name]]
    plan = ImportPlan(
        environment=_target_environment(environment, records), connections=slugs
    )
    existing = {c.slug: c for c in Connection.objects.select_related("sagepro")}
    _plan_connections(plan, records[CONNECTIONS.name], existing)
    for section in CHILD_SECTIONS:
        targets = section.model._default_manager.filter(
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


def validate_records(bundle: dict) -> dict[str, list[dict]]:
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
    item = {**dict(section.added_later), **item}
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
        model_field = concrete_field(section.model, name)
        try:
            value = from_json(model_field, item[name])
        except ValueError as exc:
            problems.append(f"{where}: {name}: {exc}.")
            ok = False
            continue
        if isinstance(model_field, models.ForeignKey):
            record[name] = value
        else:
            record[name] = to_json(model_field, value)
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
        current = export_row(CONNECTIONS, obj)
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
        current = export_row(section, obj)
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
