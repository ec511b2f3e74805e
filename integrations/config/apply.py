"""Applying a bundle: make this database's configuration the bundle's, all or nothing."""

from collections.abc import Callable, Sequence

import reversion
from django.db import models, transaction

from integrations.config import plan as planning
from integrations.config.plan import ImportPlan
from integrations.config.sections import (
    CHILD_SECTIONS,
    CONNECTIONS,
    CURRENCY_RATES,
    ENVIRONMENT_FIELDS,
    Section,
    concrete_field,
    from_json,
)
from integrations.models import Connection

# Import ---------------------------------------------------------------------------------


def apply_bundle(
    bundle: dict,
    *,
    comment: str,
    environment: str | None = None,
    user: object = None,
    progress: Callable[[str], None] | None = None,
    on_applied: Callable[[ImportPlan], None] | None = None,
) -> ImportPlan:
    """Make this database's configuration the bundle's, all or nothing.

    Recorded as one revision commented `comment`, plus one for the rows it deleted.

    The plan is worked out again inside the transaction, so it describes exactly what
    was applied even if the database changed since it was shown. The bundle is checked
    before the transaction begins: on SQLite the transaction holds the database's
    write lock, which webhooks wait for.

    `on_applied(plan)` runs last inside the transaction: it records the import, or
    raises to roll everything back.
    """
    records = planning.validate_records(bundle)
    with transaction.atomic(), reversion.create_revision():
        # Set first: the deletions, recorded as they happen, quote it too.
        reversion.set_comment(comment)
        if user is not None:
            reversion.set_user(user)
        plan = planning.make_plan(records, environment)
        by_slug = _apply_connections(plan)
        if progress:
            progress(f"Connections: {len(plan.connections)} applied")
        for section in (*CHILD_SECTIONS, CURRENCY_RATES):
            _apply_rows(plan, section, by_slug)
            if progress:
                progress(f"{section.title}: {len(bundle[section.name])} applied")
        if on_applied:
            on_applied(plan)
    return plan


def _apply_connections(plan: ImportPlan) -> dict[str, Connection]:
    changes = [c for c in plan.changes if c.section is CONNECTIONS]
    for change in changes:
        record = change.bundle_record()
        if change.action == "create":
            obj = Connection(environment=plan.environment)
            _assign(obj, record, skip=("sagepro",))
            # Not `obj.save()`: that seeds a new PayTrace connection's default status
            # map, and an import gives it exactly the bundle's instead.
            models.Model.save(obj, force_insert=True)
            change.obj = obj
        else:
            row = change.target_row()
            _assign(row, record, skip=("sagepro", *ENVIRONMENT_FIELDS))
            # Only the bundle's fields: the stored secret is not even rewritten.
            row.save(update_fields=[*_CONNECTION_UPDATED, "updated_at"])
    by_slug = {c.slug: c for c in Connection.objects.all()}
    # Second pass: a connection may point at a Sage Pro connection created above.
    for change in changes:
        record = change.bundle_record()
        target = record["sagepro"]
        connection = by_slug[record["slug"]]
        if connection.sagepro_id != (by_slug[target].pk if target else None):
            connection.sagepro = by_slug[target] if target else None
            connection.save(update_fields=["sagepro", "updated_at"])
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
            change.target_row().delete()
    for change in changes:
        if change.action == "update":
            row = change.target_row()
            _assign(row, change.bundle_record(), by_slug=by_slug)
            row.save()
        elif change.action == "create":
            obj = section.model()
            _assign(obj, change.bundle_record(), by_slug=by_slug)
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
        model_field = concrete_field(type(obj), name)
        if isinstance(model_field, models.ForeignKey):
            assert by_slug is not None  # callers skip the foreign keys otherwise
            setattr(obj, name, by_slug[value] if value is not None else None)
        else:
            setattr(obj, model_field.attname, from_json(model_field, value))
