"""Version history of the configuration, and rolling a row back to an earlier version.

Versioned: the rule models of this app (status maps, GL rules, field mappings, matching
rules, currency rates) and whatever other apps register with `register()` (connections
register from `integrations.config.versioning`).

django-reversion stores a copy of a row (a `Version`) each time it is saved inside a
revision; the revision says who and when. Admin requests get their revision from
`ConfigRevisionMiddleware`; commands and other code wrap `reversion.create_revision()`.

Secrets are never versioned: a connection's `password` is left out of its versions and
webhook secrets are not registered at all, so a rollback can never change a secret.

Two gaps in plain django-reversion are closed here:

- A row that was never saved inside a revision (created before versioning existed, or by
  `bulk_create`, as a new PayTrace connection's default status map is) would have no
  "before". The first time such a row is changed, a baseline version of its stored
  state is written first.
- reversion records saves, not deletions. Each deletion is recorded here as a version
  of the row as it was, in a revision commented "Deleted" with the user; rows deleted in
  one transaction (a connection and its status maps) share that revision. Rolling back
  to it creates the row again, and an owner registered with `owns_rows_by` (a
  connection) gets back the rows deleted with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import reversion
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.db import IntegrityError, models, transaction
from django.db.models.signals import post_save, pre_delete, pre_save
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.encoding import force_str
from reversion.models import Revision, Version
from reversion.revisions import _get_options

BASELINE_COMMENT = "Baseline: the stored state before its first recorded change"
DELETED_COMMENT = "Deleted"

# The revision that records the deletions of the current transaction, with the
# transaction's outermost atomic block (kept, so its identity can't be reused).
_deletions: ContextVar[tuple[object, Revision] | None] = ContextVar(
    "config_deletions", default=None
)

# Registered models in registration order, each with the field its owned rows point at
# it by ("" when a rollback of it restores nothing else).
_registered: dict[type[models.Model], str] = {}


class RollbackError(Exception):
    """A version can't be restored as it stands (a row it points to is gone, a clash)."""


# Machine endpoints that never save a versioned row: no revision to open per request.
_UNVERSIONED_PATHS = ("/webhooks/", "/sandbox/")


class ConfigRevisionMiddleware:
    """Wrap every non-GET request in a revision, without wrapping it in a transaction.

    Like reversion's RevisionMiddleware with `atomic = False`, except that the user is
    known from the start, so deletions (recorded as they happen) name them too. The
    admin's views open their own transactions; webhook and API views keep theirs: their
    rows must be stored even when a later step fails, which an outer transaction would
    undo. A request that saves no versioned row writes no revision.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in ("GET", "HEAD", "OPTIONS") or request.path.startswith(
            _UNVERSIONED_PATHS
        ):
            return self.get_response(request)
        with reversion.create_revision(atomic=False):
            if request.user.is_authenticated:
                reversion.set_user(request.user)
            response = self.get_response(request)
            if reversion.get_user() is None and request.user.is_authenticated:
                reversion.set_user(request.user)  # signed in by this request
            return response


def versioned_models() -> list[type[models.Model]]:
    return list(_registered)


def register(
    model: type[models.Model],
    *,
    exclude: tuple[str, ...] = (),
    owns_rows_by: str = "",
) -> None:
    """Version `model` (once), leaving `exclude` out of its versions.

    `owns_rows_by` names the field (e.g. `connection_id`) by which other versioned rows
    belong to `model`: rolling back a deleted one recreates the rows deleted with it.
    """
    if reversion.is_registered(model):
        return
    reversion.register(model, exclude=exclude)
    _registered[model] = owns_rows_by
    pre_save.connect(_record_baseline_before_save, sender=model)
    pre_delete.connect(_record_deletion, sender=model)
    post_save.connect(_comment_from_admin_log, sender=LogEntry)


def register_models() -> None:
    """Register this app's configuration models with reversion (from `ready()`)."""
    from mappings.models import (
        CurrencyRate,
        FieldMapping,
        GlRule,
        MatchingRule,
        StatusMap,
    )

    for model in (StatusMap, GlRule, FieldMapping, MatchingRule, CurrencyRate):
        register(model)


def versioned_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [
        cast("models.Field[Any, Any]", model._meta.get_field(name))
        for name in _get_options(model).fields
    ]


def _related_model(field: models.Field[Any, Any]) -> type[models.Model]:
    return cast("type[models.Model]", field.related_model)


# Baselines ------------------------------------------------------------------------------


def _record_baseline_before_save(
    sender: type[models.Model],
    instance: models.Model,
    raw: bool = False,
    **kwargs: object,
) -> None:
    if raw or instance._state.adding or instance.pk is None:
        return
    stored = sender._base_manager.filter(pk=instance.pk).first()
    if stored is not None:
        record_baseline(stored)


def record_baseline(obj: models.Model) -> None:
    """Write a version of `obj` as stored, in a revision of its own, unless it has one.

    Written directly rather than through `create_revision()`: a revision opened inside
    the caller's would merge into it and be saved only after the row has changed.
    """
    if Version.objects.get_for_object(obj).exists():
        return
    revision = Revision.objects.create(
        date_created=timezone.now(), user=None, comment=BASELINE_COMMENT
    )
    _write_version(obj, revision)


def _record_deletion(
    sender: type[models.Model], instance: models.Model, **kwargs: object
) -> None:
    if instance.pk is None:
        return
    stored = sender._base_manager.filter(pk=instance.pk).first()
    if stored is not None:
        _write_version(stored, _deletion_revision())


def _deletion_revision() -> Revision:
    """One revision for every deletion of the current transaction (a cascade is one)."""
    blocks = transaction.get_connection().atomic_blocks
    block = blocks[0] if blocks else None
    cached = _deletions.get()
    if block is not None and cached is not None and cached[0] is block:
        return cached[1]
    active = reversion.is_active()
    comment = reversion.get_comment() if active else ""
    revision = Revision.objects.create(
        date_created=timezone.now(),
        user=reversion.get_user() if active else None,
        comment=f"{DELETED_COMMENT} ({comment})" if comment else DELETED_COMMENT,
    )
    _deletions.set((block, revision))
    return revision


def is_deletion(version: Version) -> bool:
    comment: str = version.revision.comment
    return comment.startswith(DELETED_COMMENT)


def _write_version(obj: models.Model, revision: Revision) -> None:
    model = type(obj)
    options = _get_options(model)
    Version.objects.create(
        revision=revision,
        content_type=ContentType.objects.get_for_model(model),
        object_id=force_str(obj.pk),
        db=obj._state.db or "default",
        format=options.format,
        serialized_data=serializers.serialize(
            options.format, (obj,), fields=options.fields
        ),
        object_repr=force_str(obj),
    )


def _comment_from_admin_log(
    sender: type[LogEntry], instance: LogEntry, created: bool = False, **kwargs: object
) -> None:
    # The admin logs "Changed account." for every save; reuse it as the revision's
    # comment. `Revision.get_comment()` turns the admin's JSON message back into text.
    if created and reversion.is_active() and not reversion.get_comment():
        reversion.set_comment(instance.change_message)


# Reading versions -----------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    name: str
    label: str
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def previous_version(version: Version) -> Version | None:
    """The version of the same row saved just before this one, if any."""
    return (
        Version.objects.filter(
            content_type_id=version.content_type_id,
            object_id=version.object_id,
            db=version.db,
            pk__lt=version.pk,
        )
        .order_by("-pk")
        .first()
    )


def versions_of(version: Version) -> models.QuerySet[Version]:
    """Every version of the row `version` belongs to, newest first."""
    versions: models.QuerySet[Version] = Version.objects.filter(
        content_type_id=version.content_type_id,
        object_id=version.object_id,
        db=version.db,
    ).select_related("revision__user")
    return versions


def current_object(version: Version) -> models.Model | None:
    """The row as it is now, or None when it has been deleted."""
    obj: models.Model | None = version._model._base_manager.filter(
        pk=version.object_id
    ).first()
    return obj


def diff_versions(before: Version | None, after: Version) -> list[FieldChange]:
    """Field by field, `before` (None: the row did not exist) against `after`."""
    old = before.field_dict if before is not None else {}
    new = after.field_dict
    return [
        FieldChange(
            field.name,
            str(field.verbose_name),
            _display(field, old[field.attname]) if field.attname in old else "",
            _display(field, new.get(field.attname)),
        )
        for field in versioned_fields(after._model)
    ]


def diff_current(version: Version) -> list[FieldChange]:
    """What rolling back to `version` would change: the row now against the version."""
    obj = current_object(version)
    values = version.field_dict
    return [
        FieldChange(
            field.name,
            str(field.verbose_name),
            _display(field, getattr(obj, field.attname)) if obj is not None else "",
            _display(field, values.get(field.attname)),
        )
        for field in versioned_fields(version._model)
    ]


def _display(field: models.Field[Any, Any], value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(field, models.ForeignKey):
        related = _related_model(field)._base_manager.filter(pk=value).first()
        return f"{related} (#{value})" if related else f"#{value} (deleted)"
    if isinstance(field, models.JSONField):
        return json.dumps(value, sort_keys=True)
    if isinstance(field, models.DecimalField):
        # A version stores what was typed ("1000"), the row what the column holds
        # ("1000.00"): show both at the column's places so equal amounts read equal.
        try:
            places = Decimal(1).scaleb(-(field.decimal_places or 0))
            return str(Decimal(str(value)).quantize(places))
        except (InvalidOperation, ValueError):
            return str(value)
    if value == "":
        return "(blank)"
    return str(value)


# Rolling back ---------------------------------------------------------------------------


def can_roll_back(user: User | AnonymousUser, version: Version) -> bool:
    """Change permission on the model; recreating a deleted row needs add too."""
    opts = version._model._meta
    perms = [f"{opts.app_label}.change_{opts.model_name}"]
    if current_object(version) is None:
        perms.append(f"{opts.app_label}.add_{opts.model_name}")
    return user.has_perms(perms)


def roll_back(version: Version, user: object) -> models.Model:
    """Restore the row's versioned fields exactly as in `version`, as a new revision.

    A deleted row is created again with its old id. A deleted connection comes back
    with the configuration rows deleted with it, and without secrets: they have to be
    entered again.
    """
    with transaction.atomic(), reversion.create_revision():
        obj = _restore(version)
        reversion.set_user(user)
        reversion.set_comment(f"Rolled back to version {version.pk} by {user}")
    return obj


def _restore(version: Version) -> models.Model:
    model = version._model
    obj = current_object(version)
    creating = obj is None
    if obj is None:
        obj = model()
    values = version.field_dict
    for field in versioned_fields(model):
        setattr(obj, field.attname, values[field.attname])
    fields = [f for f in versioned_fields(model) if not f.primary_key]
    _check_references(obj, fields)
    try:
        with transaction.atomic():
            if creating:
                # Not `obj.save()`: a new PayTrace connection seeds default status
                # maps, and a restored one gets its own back below instead.
                models.Model.save(obj, force_insert=True)
            else:
                names = [f.name for f in fields]
                if any(f.name == "updated_at" for f in model._meta.concrete_fields):
                    names.append("updated_at")
                obj.save(update_fields=names)
    except IntegrityError as exc:
        raise RollbackError(
            f"{model._meta.verbose_name} {obj} can't be restored: it clashes with an "
            f"existing row ({exc}). Change or delete that row first."
        ) from exc
    owner_field = _registered.get(model, "")
    if creating and owner_field:
        _restore_deleted_with(obj, owner_field)
    return obj


def _check_references(obj: models.Model, fields: list[models.Field[Any, Any]]) -> None:
    for field in fields:
        if not isinstance(field, models.ForeignKey):
            continue
        value = getattr(obj, field.attname)
        related = _related_model(field)
        if value is None or related._base_manager.filter(pk=value).exists():
            continue
        raise RollbackError(
            f"{type(obj)._meta.verbose_name} {obj} points to "
            f"{related._meta.verbose_name} #{value}, which has been "
            "deleted. Roll that back first."
        )


def _restore_deleted_with(owner: models.Model, owner_field: str) -> None:
    """Bring back the rows that were deleted in the same transaction as `owner`."""
    last = (
        Version.objects.get_for_object(owner)
        .select_related("revision")
        .order_by("-pk")
        .first()
    )
    if last is None or not is_deletion(last):
        return
    for version in last.revision.version_set.exclude(pk=last.pk).order_by("pk"):
        belongs = version.field_dict.get(owner_field) == owner.pk
        if belongs and current_object(version) is None:
            _restore(version)
