"""The storage-wide safety net: no card number reaches a database column.

The edges mask what they receive (`integrations.redaction`), but a card number can
still arrive by a path nobody thought of: an id, a slug, a reviewer's note, an error
message echoing its input, a task result. So every value the ORM writes to a text,
JSON or pickled column passes through the same masking function on its way to the
database: `Model.save()`, `create()`, `QuerySet.update()`, `bulk_create()` and
`bulk_update()` all prepare their values with `Field.get_db_prep_save`, which is
where the net sits. The Python object keeps its value; only the stored copy is masked.

Columns that must never change are left alone: encrypted secrets (ciphertext), password
hashes, sessions, django-q2's signed task packages, the idempotency keys and hashes we
generate, and primary keys. In a unique column the masked digits are replaced with
letters keyed on the whole number, so two different card numbers with the same last
four never become one row.
"""

from collections.abc import Sequence
from typing import Any

from django.db import models
from picklefield.fields import PickledObjectField

from integrations.cardnumbers import could_hold_card_number
from integrations.crypto import EncryptedTextField
from integrations.redaction import Masked, MaskedData, mask_value

# "app_label.model.field" of the columns whose exact value is the point.
EXEMPT_COLUMNS = frozenset(
    {
        "auth.user.password",
        "sessions.session.session_key",
        "sessions.session.session_data",
        "django_q.ormq.payload",  # signed pickled task; our task args are ids
        "django_q.task.id",
        "integrations.posting.idempotency_key",
        "integrations.configbundleapplied.content_hash",
        "portal.apitoken.digest",
        "portal.apitoken.prefix",
        "authtoken.token.key",
        "sandbox_paytrace.accesstoken.digest",
        "sandbox_sagepro.cashreceipt.idemkey",
        "sandbox_sagepro.cashreceipt.reqhash",
    }
)

_MASKED_TYPES = (
    models.CharField,
    models.TextField,
    models.JSONField,
    PickledObjectField,
)
_PLAIN, _KEYED = "plain", "keyed"
_POLICY_ATTR = "_card_data_policy"


def policy_for(field: models.Field) -> str | None:
    """How the net treats a column: None (left alone), plain masking, or keyed."""
    if not isinstance(field, _MASKED_TYPES) or isinstance(field, EncryptedTextField):
        return None
    if field.primary_key:
        return None
    model = getattr(field, "model", None)
    if model is None:  # an expression's output field (bulk_update)
        return _PLAIN
    if f"{model._meta.label_lower}.{field.name}" in EXEMPT_COLUMNS:
        return None
    return _KEYED if _is_unique(field, model) else _PLAIN


def _is_unique(field: models.Field, model: type[models.Model]) -> bool:
    if field.unique:
        return True
    together: list[Sequence[str]] = [*model._meta.unique_together]
    together += [
        c.fields
        for c in model._meta.constraints
        if isinstance(c, models.UniqueConstraint)
    ]
    return any(field.name in fields for fields in together)


def mask_for_storage(field: models.Field, value: Any) -> Any:
    """The value as the column may store it."""
    if value is None or hasattr(value, "as_sql") or value == "":
        return value
    if isinstance(value, (Masked, MaskedData)):
        return value  # masked by `redaction` already: scanning again finds nothing
    policy = field.__dict__.get(_POLICY_ATTR, False)
    if policy is False:
        policy = policy_for(field)
        field.__dict__[_POLICY_ATTR] = policy
    if policy is None or (type(value) is str and not could_hold_card_number(value)):
        return value
    masked, found = mask_value(value, keyed=policy == _KEYED)
    if found and isinstance(masked, str) and isinstance(field, models.CharField):
        # A number in exponent form (`5.1e15`) is longer once masked; PostgreSQL
        # would refuse the row rather than store a cut value.
        masked = masked[: field.max_length]
    return masked


_original_get_db_prep_save = models.Field.get_db_prep_save


def _get_db_prep_save(self: models.Field, value: Any, connection: Any) -> Any:
    return _original_get_db_prep_save(self, mask_for_storage(self, value), connection)


def install() -> None:
    """Put the net under every ORM write (idempotent)."""
    if models.Field.get_db_prep_save is not _get_db_prep_save:
        models.Field.get_db_prep_save = _get_db_prep_save  # type: ignore[method-assign]
