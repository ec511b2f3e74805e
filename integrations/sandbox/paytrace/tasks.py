"""django-q2 entry points of the PayTrace sandbox."""

from django_q.tasks import async_task

from integrations.sandbox.paytrace.models import OutboundEvent


def deliver_event(event_pk: int) -> None:
    """Send one outbound event; re-queue it after a network error or a 5xx."""
    event = OutboundEvent.objects.get(pk=event_pk)
    if event.deliver():
        async_task("integrations.sandbox.paytrace.tasks.deliver_event", event.pk)


def run_recurrences(today: str = "") -> int:
    """Make the recurring payments due by `today` (MM/DD/YYYY; default the gateway's
    today); return how many sales were made. Safe to run twice, also at once."""
    from datetime import datetime

    from integrations.sandbox.paytrace.recurrence import run_due

    day = datetime.strptime(today, "%m/%d/%Y").date() if today else None  # noqa: DTZ007
    return len(run_due(day))
