"""Applying a checked bundle and recording it: which version this environment runs.

`import_config` and the admin's import page both come here once the signature check
(`signing.check_bundle`) has let a bundle through; the record is written in the
transaction that applies the bundle, so there is never a change without its record or
a record without its change.
"""

from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

from integrations.config.apply import apply_bundle
from integrations.config.plan import ImportPlan
from integrations.config.sections import CHILD_SECTIONS, SECTIONS
from integrations.config.signing import SignatureState, Verdict
from integrations.models.bundles import ConfigBundleApplied
from integrations.models.storage import saved_user


def import_permissions() -> list[str]:
    """What applying a bundle does, as permissions: add and change every kind of row
    it holds, and delete the per-connection rules it replaces."""
    perms = []
    for section in SECTIONS:
        meta = section.model._meta
        actions = (
            ("add", "change", "delete")
            if section in CHILD_SECTIONS
            else ("add", "change")
        )
        perms += [f"{meta.app_label}.{action}_{meta.model_name}" for action in actions]
    return perms


def may_import(user: User | AnonymousUser) -> bool:
    return user.is_active and user.has_perms(import_permissions())


class StalePlanError(Exception):
    """The configuration changed since the plan was shown; nothing was applied."""

    def __init__(self, plan: ImportPlan) -> None:
        self.plan = plan
        super().__init__(
            "The configuration changed since this diff was shown, so nothing was "
            "applied. Check the new diff below and apply again."
        )


def apply_verified(
    verdict: Verdict,
    *,
    source: str,
    comment: str = "",
    user: AbstractBaseUser | AnonymousUser | None = None,
    environment: str | None = None,
    expect_fingerprint: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[ImportPlan, ConfigBundleApplied]:
    """Apply the bundle the verdict let through and record it, all or nothing.

    `comment` names the configuration history's revision (default: the version and
    `source`). With `expect_fingerprint`, the plan worked out inside the transaction
    must be the one that was previewed; otherwise StalePlanError, and everything
    rolls back.
    Raises BundleError for a bundle that can't be imported.
    """
    assert verdict.state is not SignatureState.REFUSED, "check the verdict first"
    origin = verdict.origin
    records: list[ConfigBundleApplied] = []

    def record(plan: ImportPlan) -> None:
        if (
            expect_fingerprint is not None
            and plan.fingerprint(origin.content_hash) != expect_fingerprint
        ):
            raise StalePlanError(plan)
        records.append(
            ConfigBundleApplied.objects.create(
                version=origin.version,
                content_hash=origin.content_hash,
                label=origin.label,
                source_environment=origin.environment,
                exported_at=origin.exported_at,
                signature=(
                    ConfigBundleApplied.Signature.VERIFIED
                    if verdict.is_signed
                    else ConfigBundleApplied.Signature.UNSIGNED
                ),
                signer_key=verdict.key if verdict.is_signed else "",
                applied_by=saved_user(user),
                applied_by_name=user.get_username() if user is not None else "",
                source=source[:300],
                summary=plan.summary(),
                plan_lines=plan.lines(),
            )
        )

    # The bundle is checked before apply_bundle's transaction begins (see there); the
    # record is written inside it.
    plan = apply_bundle(
        verdict.content,
        comment=comment or f"Imported bundle {origin.version} ({source})",
        environment=environment,
        user=user if user is not None and user.is_authenticated else None,
        progress=progress,
        on_applied=record,
    )
    (record_row,) = records
    return plan, record_row
