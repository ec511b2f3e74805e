"""What an API token may do (its scopes) and how long its key lives.

A token may do only what its scopes AND its user's permissions allow: the scope says
which API the key was made for, the permission says whether its owner may do that at
all. Each scope lists the permissions that make it useful (any one of them); the admin
refuses a scope its owner could not use, and docs/api-tokens.md has the table.
"""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser, AnonymousUser

    # Whoever owns or asks for a token: a user with permissions (or nobody).
    Owner = AbstractUser | AnonymousUser


class Scope(models.TextChoices):
    PAYMENTS_READ = "payments:read", "Read payments, review items and charges"
    CHARGES_CREATE = "charges:create", "Charge invoices on cards on file"
    MAPPINGS_SUGGEST = "mappings:suggest", "Ask for and rate field-mapping suggestions"


# The owner's permissions that give each scope something to do (any one is enough).
SCOPE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    Scope.PAYMENTS_READ: (
        "integrations.view_paymenttransaction",
        "integrations.view_reviewitem",
        "integrations.view_charge",
    ),
    Scope.CHARGES_CREATE: ("integrations.add_charge",),
    Scope.MAPPINGS_SUGGEST: (
        "mappings.add_fieldmapping",
        "mappings.change_fieldmapping",
    ),
}


class TokenError(Exception):
    """A token action refused for a reason a person can fix (shown to them as is)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _days(name: str, default: int) -> int:
    # Read at call time, so tests may override them; portal/settings_tokens.py holds
    # the checked values once it is imported by the settings.
    return int(getattr(settings, name, default))


def default_lifetime() -> timedelta:
    return timedelta(days=_days("API_TOKEN_LIFETIME_DAYS", 90))


def default_expiry() -> datetime:
    """When a key made now expires, by default."""
    return timezone.now() + default_lifetime()


def max_lifetime_days() -> int:
    return _days("API_TOKEN_MAX_LIFETIME_DAYS", 365)


def rotation_overlap() -> timedelta:
    return timedelta(hours=_days("API_TOKEN_ROTATION_OVERLAP_HOURS", 24))


def expiring_soon() -> timedelta:
    return timedelta(days=_days("API_TOKEN_EXPIRING_SOON_DAYS", 14))


def check_lifetime(lifetime: timedelta) -> timedelta:
    """`lifetime`, or TokenError when it is not between a day and the maximum."""
    longest = max_lifetime_days()
    if not timedelta(days=1) <= lifetime <= timedelta(days=longest):
        raise TokenError(
            f"A key may live from 1 to {longest} days (API_TOKEN_MAX_LIFETIME_DAYS); "
            "choose a lifetime in that range."
        )
    return lifetime


def can_use_scope(user: "Owner", scope: str) -> bool:
    """Whether `user`'s permissions let a token with `scope` do anything."""
    return any(user.has_perm(perm) for perm in SCOPE_PERMISSIONS.get(scope, ()))


def scopes_for(user: "Owner") -> list[str]:
    """Every scope `user`'s permissions give something to do, in the table's order."""
    return [scope for scope in Scope.values if can_use_scope(user, scope)]


def unusable_scope_problem(user: "Owner", scopes: list[str]) -> str:
    """Why `user` cannot hold one of `scopes` ("" when all are usable)."""
    for scope in scopes:
        if not can_use_scope(user, scope):
            needs = " or ".join(SCOPE_PERMISSIONS[scope])
            name = user.get_username()
            return (
                f"{name}'s permissions give the scope {scope} nothing to do (it "
                f"needs {needs}): leave it out, or first give {name} a role that has "
                "that permission."
            )
    return ""
