"""django-q2 entry points of the PayTrace sandbox."""

from django_q.tasks import async_task

from integrations.sandbox.paytrace.models import OutboundEvent


def deliver_event(event_pk: int) -> None:
    """Send one outbound event; re-queue it after a network error or a 5xx."""
    event = OutboundEvent.objects.get(pk=event_pk)
    if event.deliver():
        async_task("integrations.sandbox.paytrace.tasks.deliver_event", event.pk)
