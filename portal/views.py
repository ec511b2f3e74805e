import logging
import sys
from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import Error as DatabaseError
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Count, Min
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.views import defaults
from django.views.decorators.cache import cache_control
from django_q.models import OrmQ, Schedule
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from integrations.models import Event
from portal import metrics

logger = logging.getLogger(__name__)

WAITING_STATES = [Event.State.QUEUED, Event.State.PROCESSING, Event.State.FAILED]


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: whether this process answers and its database does.

    No authentication: load balancers and the demo launcher poll it. Anonymous callers
    get the status only; staff and /metrics scrapers also get the queue's numbers.
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
    if not metrics.is_allowed(request):
        return JsonResponse({"status": "ok"})
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


SWEEP_TASK = "integrations.tasks.sweep"


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return ""


def check_broker() -> str:
    """The task queue answers: Redis when configured, else the ORM broker's table."""
    if "redis" in settings.Q_CLUSTER:
        from django_q.brokers import get_broker

        if not get_broker().ping():
            return "Redis does not answer"
        return ""
    OrmQ.objects.exists()
    return ""


def check_workers() -> str:
    """A qcluster is running: its scheduler keeps the one-minute sweep on time."""
    if settings.Q_CLUSTER.get("sync"):
        return ""  # tasks run inline; there are no workers to wait for
    next_run = (
        Schedule.objects.filter(func=SWEEP_TASK)
        .order_by("next_run")
        .values_list("next_run", flat=True)
        .first()
    )
    if next_run is None:
        return "the sweep schedule is missing: run `manage.py migrate`"
    late = (timezone.now() - next_run).total_seconds()
    if late > settings.READINESS_WORKER_MAX_SECONDS:
        return (
            f"no worker has run the sweep for {int(late)} s: start `manage.py qcluster`"
        )
    return ""


READINESS_CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "workers": check_workers,
}


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database, the task broker and the workers; 503 names what failed.

    Answers carry check names and plain reasons only (no hosts, users or errors'
    text, which go to the log).
    """
    checks: dict[str, str] = {}
    for name, check in READINESS_CHECKS.items():
        try:
            problem = check()
        except Exception as exc:  # any failure is "not ready", never a 500
            logger.warning("readyz: the %s check failed: %s", name, exc)
            problem = f"{name} check failed ({type(exc).__name__})"
        checks[name] = problem or "ok"
    failed = [name for name, result in checks.items() if result != "ok"]
    body: dict[str, object] = {
        "status": "not ready" if failed else "ready",
        "checks": checks,
    }
    if failed:
        body["failed"] = failed
    return JsonResponse(body, status=503 if failed else 200)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for staff, METRICS_TOKEN bearers and allowed networks."""
    if not metrics.is_allowed(request):
        return HttpResponse(
            "Forbidden: /metrics needs `Authorization: Bearer <METRICS_TOKEN>`, a "
            "caller in METRICS_ALLOWED_NETWORKS, or a staff sign-in.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    try:
        body = generate_latest(metrics.build_registry())
    except DatabaseError as exc:
        logger.warning("metrics: the database cannot be reached: %s", exc)
        return HttpResponse(
            "The database cannot be reached; try again.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


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


# How long a caller is asked to wait when the database cannot be reached: about as long
# as a PostgreSQL restart or a managed database's failover takes.
DATABASE_RETRY_AFTER_SECONDS = 5


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500. A database that cannot be reached (restarting, failing over, out of
    connections) is not the caller's fault and not a bug: the answer is 503 with
    Retry-After, so a webhook relay, a poller or a browser tries again and nothing is
    lost (a webhook was not stored, so its retry is a first delivery). Anything else is
    Django's 500 page."""
    error = sys.exc_info()[1]
    if not isinstance(error, (OperationalError, InterfaceError)):
        return defaults.server_error(request)
    message = "The database is unavailable for a moment; try again in a few seconds."
    if request.path.startswith(("/api/", "/webhooks/", "/pay/api/")):
        response: HttpResponse = JsonResponse({"detail": message}, status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain")
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response
