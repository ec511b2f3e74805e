"""The access audit log (issue 16): sign-ins, failed sign-ins, sign-outs, and every
change to a user's roles, permissions or staff/superuser/active flags, with who made it.

The actor is the signed-in user of the request that made the change (`AuditActor`
middleware keeps it in a context variable); a change made outside a request (a
migration, a management command) has no actor and says "the system".
"""

import contextvars
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import (
    user_logged_in,
    user_logged_out,
    user_login_failed,
)
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

_actor: contextvars.ContextVar[str] = contextvars.ContextVar("audit_actor", default="")
_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "audit_ip", default=None
)
FLAGS = ("is_staff", "is_superuser", "is_active")


class AuditActor:
    """Remember, for the length of a request, who is making changes and from where."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        name = user.get_username() if user is not None and user.is_authenticated else ""
        tokens = _actor.set(name), _ip.set(client_ip(request))
        try:
            return self.get_response(request)
        finally:
            _actor.reset(tokens[0])
            _ip.reset(tokens[1])


def client_ip(request: HttpRequest | None) -> str | None:
    """The caller's address: REMOTE_ADDR, or behind reverse proxies the one they saw.

    Gunicorn leaves REMOTE_ADDR as the proxy's own address (it never rewrites it from
    X-Forwarded-For), so with CLIENT_IP_PROXY_COUNT set the address comes from
    X-Forwarded-For (see `_forwarded_for`). django-axes locks out by this same
    address."""
    if request is None:
        return None
    address = str(request.META.get("REMOTE_ADDR") or "")
    address = _forwarded_for(request, address)
    from ipaddress import ip_address

    try:
        return str(ip_address(address))
    except ValueError:
        return None


def _forwarded_for(request: HttpRequest, remote_addr: str) -> str:
    """Behind N reverse proxies that each append the address they saw to
    X-Forwarded-For, the client is the Nth entry from the right: entries further left
    were sent by the client and could say anything. Fewer than N entries means the
    request did not come through the proxies: keep REMOTE_ADDR."""
    count = getattr(settings, "CLIENT_IP_PROXY_COUNT", 0)
    header = str(request.META.get("HTTP_X_FORWARDED_FOR") or "")
    entries = [entry.strip() for entry in header.split(",") if entry.strip()]
    if count <= 0 or len(entries) < count:
        return remote_addr
    return entries[-count]


def typed_username(request: HttpRequest, credentials: dict | None = None) -> str:
    """The name a sign-in attempt typed, as django-axes records and locks it
    (AXES_USERNAME_CALLABLE): masked as the storage-wide card net (integrations.
    carddata) stores it, so axes looks up the same value it wrote."""
    from integrations.models.storage import storable_text

    typed = (credentials or {}).get("username")
    if typed is None and request is not None:
        typed = request.POST.get("username")
    return storable_text(str(typed or ""))[:150]


def record(kind: str, username: str, detail: str = "", **fields: Any) -> None:
    from portal.models import AccessAuditEntry

    AccessAuditEntry.objects.create(
        kind=kind,
        username=username[:150],
        actor=fields.get("actor", _actor.get())[:150],
        detail=detail,
        ip_address=fields.get("ip", _ip.get()),
    )


@receiver(user_logged_in)
def _signed_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    record(
        "signed_in",
        user.get_username(),
        actor=user.get_username(),
        ip=client_ip(request),
    )


@receiver(user_logged_out)
def _signed_out(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is not None:
        name = user.get_username()
        record("signed_out", name, actor=name, ip=client_ip(request))


@receiver(user_login_failed)
def _sign_in_failed(
    sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django already hides the password in `credentials`; only the name is kept.
    name = str(credentials.get(get_user_model().USERNAME_FIELD) or "")
    record("sign_in_failed", name, actor="", ip=client_ip(request))


def _names(model: type[Model], pks: Iterable[Any] | None) -> str:
    if not pks:
        return ""
    if model is Permission:
        perms = Permission.objects.filter(pk__in=pks).select_related("content_type")
        return ", ".join(
            sorted(f"{p.content_type.app_label}.{p.codename}" for p in perms)
        )
    rows = model._default_manager.filter(pk__in=pks)
    return ", ".join(sorted(str(row) for row in rows))


def _m2m_detail(action: str, model: type[Model], pks: Any) -> str | None:
    verb = {"post_add": "added", "post_remove": "removed", "post_clear": "cleared"}
    if action not in verb:
        return None
    if action == "post_clear":
        return "all removed"
    return f"{verb[action]}: {_names(model, pks)}"


@receiver(m2m_changed, sender=get_user_model().groups.through)
def _groups_changed(
    sender: Any, instance: Any, action: str, model: type, pk_set: Any, **kwargs: Any
) -> None:
    if isinstance(instance, Group):  # group.user_set.add(user, …)
        detail = _m2m_detail(action, get_user_model(), pk_set)
        if detail is not None:
            record("groups_changed", f"role {instance.name}", f"members {detail}")
        return
    detail = _m2m_detail(action, Group, pk_set)
    if detail is not None:
        record("groups_changed", instance.get_username(), f"roles {detail}")


@receiver(m2m_changed, sender=get_user_model().user_permissions.through)
def _permissions_changed(
    sender: Any, instance: Any, action: str, model: type, pk_set: Any, **kwargs: Any
) -> None:
    if not hasattr(instance, "get_username"):
        return
    detail = _m2m_detail(action, Permission, pk_set)
    if detail is not None:
        record("permissions_changed", instance.get_username(), f"permissions {detail}")


@receiver(m2m_changed, sender=Group.permissions.through)
def _role_permissions_changed(
    sender: Any, instance: Any, action: str, model: type, pk_set: Any, **kwargs: Any
) -> None:
    if not isinstance(instance, Group) or not _actor.get():
        # The roles' own permissions are given after every migrate (integrations.
        # roles): only a person's change to them is worth a line.
        return
    detail = _m2m_detail(action, Permission, pk_set)
    if detail is not None:
        record(
            "role_permissions_changed", f"role {instance.name}", f"permissions {detail}"
        )


@receiver(pre_save, sender=get_user_model())
def _remember_flags(sender: Any, instance: Any, **kwargs: Any) -> None:
    before = (
        sender.objects.filter(pk=instance.pk).values(*FLAGS).first()
        if instance.pk
        else None
    )
    instance._audit_flags_before = before


@receiver(post_save, sender=get_user_model())
def _flags_changed(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    before = getattr(instance, "_audit_flags_before", None)
    if created or before is None:
        flags = [flag for flag in FLAGS[:2] if getattr(instance, flag)]
        if created and flags:
            record(
                "flags_changed",
                instance.get_username(),
                f"created with {', '.join(flags)}",
            )
        return
    changes = [
        f"{flag} {before[flag]} → {getattr(instance, flag)}"
        for flag in FLAGS
        if before[flag] != getattr(instance, flag)
    ]
    if changes:
        record("flags_changed", instance.get_username(), "; ".join(changes))


# --- sign-in lockout (django-axes; issue 16) ------------------------------------------
@receiver(user_locked_out)
def _locked_out(
    sender: Any, request: HttpRequest, username: str | None, **kwargs: Any
) -> None:
    # Tries during the lockout send the signal again without counting a failure (axes
    # leaves `axes_failures_since_start` unset): only the try that locked is recorded.
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:
        return
    record(
        "locked_out",
        username or "",
        f"{failures} wrong passwords from this address: sign-in locked for "
        f"{_cool_off_minutes()} minutes",
        actor="",
        ip=client_ip(request),
    )


@receiver(post_delete, sender=AccessAttempt)
def _lockout_lifted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A deleted attempt row that had reached the limit was a lockout: its cool-off
    ended, or an administrator (the admin's access attempts, `axes_reset*`) lifted it."""
    if instance.failures_since_start < settings.AXES_FAILURE_LIMIT:
        return
    if instance.attempt_time + timedelta(minutes=_cool_off_minutes()) <= timezone.now():
        detail = "cool-off ended"
    else:
        detail = "lifted before the cool-off ended"
    record("unlocked", instance.username or "", detail, ip=instance.ip_address)


def _cool_off_minutes() -> int:
    cool_off = get_cool_off()
    return int(cool_off.total_seconds() // 60) if cool_off else 0
