import logging
from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import Error as DatabaseError
from django.db.models import Count, Min
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django_q.models import OrmQ

from integrations.models import Event

logger = logging.getLogger(__name__)

WAITING_STATES = [Event.State.QUEUED, Event.State.PROCESSING, Event.State.FAILED]


def healthz(request: HttpRequest) -> JsonResponse:
    """Report whether the database answers and how far behind the workers are.

    No authentication: load balancers and the demo launcher poll it.
    """
    try:
        # Rows whose lock has passed are waiting for a worker; later ones are taken.
        queue_depth = OrmQ.objects.filter(lock__lte=timezone.now()).count()
        waiting = Event.objects.filter(state__in=WAITING_STATES).aggregate(
            oldest=Min("received_at"), count=Count("pk")
        )
    except DatabaseError as exc:
        # The error text can name hosts and users; it goes to the log, not the caller.
        logger.warning("healthz: the database cannot be reached: %s", exc)
        reason = f"the database cannot be reached ({type(exc).__name__})"
        return JsonResponse(
            {"status": "unavailable", "database": "unavailable", "reason": reason},
            status=503,
        )
    oldest = waiting["oldest"]
    age = (timezone.now() - oldest).total_seconds() if oldest else None
    return JsonResponse(
        {
            "status": "ok",
            "database": "ok",
            "queue_depth": queue_depth,
            "oldest_unprocessed_event_age_seconds": age,
            "events_waiting": waiting["count"],
        }
    )


FAVICON = Path(settings.BASE_DIR) / "static" / "favicon.ico"


@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> FileResponse:
    """The portal's icon at /favicon.ico, where browsers ask for it on every page."""
    return FileResponse(FAVICON.open("rb"), content_type="image/x-icon")


ADMIN_ACTIONS = {
    "changelist": "view",
    "change": "view",
    "history": "view",
    "add": "add",
    "delete": "delete",
}


def missing_permission(request: HttpRequest) -> str:
    """What the page at request.path needs, in words ("view connections"), or ""."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return ""
    if match.namespace != "admin" or not match.url_name:
        return ""
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        prefix = f"{opts.app_label}_{opts.model_name}_"
        if match.url_name.startswith(prefix):
            action = ADMIN_ACTIONS.get(match.url_name[len(prefix) :], "view")
            if action == "view" and model_admin.has_change_permission(request):
                return ""
            return f"{action} {opts.verbose_name_plural}"
    return ""


def who_to_ask() -> list[str]:
    """The people who can grant permissions: the superusers, by name."""
    users = get_user_model().objects.filter(is_superuser=True, is_active=True)
    return [u.get_full_name() or u.get_username() for u in users.order_by("pk")[:5]]


def permission_denied(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    """A 403 inside the admin's look: what is missing, and who can grant it."""
    reason = str(exception) if exception and str(exception) else ""
    context = {
        **admin.site.each_context(request),
        "title": "You don't have access to this page",
        "reason": reason,
        "missing": missing_permission(request),
        "ask": who_to_ask(),
    }
    return TemplateResponse(request, "403.html", context, status=403)
