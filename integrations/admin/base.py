"""What every admin page of the portal shares: read-only records, formatting, secrets.

Secrets are write-only everywhere: forms take a new value in an empty password input
and pages only ever say whether one is "set".
"""

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from django import forms
from django.contrib import admin
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models
from django.forms.renderers import BaseRenderer
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from mappings.formatting import format_when

KEEP_CURRENT_HELP = "Leave blank to keep the current value."


class PortalMedia:
    css = {"all": ["portal/admin.css"]}


def pre(value: object) -> SafeString:
    """A string as it is, anything else as indented JSON, in a <pre>."""
    text = (
        value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
    )
    return format_html('<pre class="portal-pre">{}</pre>', text)


def short(text: str, length: int = 80) -> str:
    return Truncator(text).chars(length)


def change_link(
    obj: models.Model,
    label: object,
    user: AbstractBaseUser | AnonymousUser | None = None,
    *,
    request: HttpRequest | None = None,
) -> SafeString:
    """A link to the object's change page, reading `label`.

    Given the viewing `user` (or the `request`), a link that user could not follow
    (no view permission on the model: a 403) is the plain label instead.
    """
    opts = obj._meta
    if user is None and request is not None:
        user = request.user
    if user is not None and not can_view(user, obj):
        return format_html("{}", label)
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label)


def can_view(user: Any, obj: models.Model) -> bool:
    """Whether `user` may open the change page of `obj`'s model (view or change)."""
    opts = obj._meta
    return any(
        user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")
        for action in ("view", "change")
    )


def mark_viewer(rows: Iterable[models.Model], request: HttpRequest) -> None:
    """Remember on each row of a list page who is looking, so a column can show a
    link only to a user who may follow it (`change_link(..., viewer_of(row))`)."""
    for row in rows:
        row._portal_viewer = request.user  # type: ignore[attr-defined]


def viewer_of(row: models.Model) -> AbstractBaseUser | AnonymousUser | None:
    return getattr(row, "_portal_viewer", None)


def short_time(value: datetime | None) -> str | None:
    """The time in the business time zone, named (`2026-12-06 06:22 PST`)."""
    return format_when(value) if value else None


def format_age(since: datetime, now: datetime | None = None) -> str:
    """Say how long ago `since` was, roughly: "12 min", "3 h", "4 d"."""
    seconds = max(0, int(((now or timezone.now()) - since).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def staff_user(request: HttpRequest) -> AbstractBaseUser:
    """The signed-in user of an admin page (the admin site lets only staff in)."""
    return cast(AbstractBaseUser, request.user)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class ReadOnly:
    """Nobody adds, changes or deletes these rows here; the view permission shows them."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnly, admin.ModelAdmin):
    """A record of something that happened: viewable with the view permission only."""


class ReadOnlyInline(ReadOnly, admin.TabularInline):
    extra = 0
    can_delete = False


class SecretStatusWidget(forms.Widget):
    """Stands in for a stored secret: says "set" or "not set", never the value."""

    def __init__(self, is_set: bool) -> None:
        super().__init__()
        self.is_set = is_set

    def render(
        self,
        name: str,
        value: object,
        attrs: dict | None = None,
        renderer: BaseRenderer | None = None,
    ) -> SafeString:
        return format_html(
            '<span class="portal-secret-status">{}</span>',
            "set" if self.is_set else "not set",
        )


def write_only_input() -> forms.PasswordInput:
    """A password input that never renders the stored value."""
    return forms.PasswordInput(
        render_value=False, attrs={"autocomplete": "new-password"}
    )
