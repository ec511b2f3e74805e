import logging

from django.db import Error as DatabaseError
from django.db.models import Count, Min
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
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
