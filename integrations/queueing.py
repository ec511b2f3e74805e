"""Putting work on django-q2's queue, in the caller's transaction.

Every way an event enters the pipeline (a signed webhook, a silent post confirmed by
lookup, a poll of PayTrace's export) stores it and queues its processing through
`record_and_queue`, so a repeat is harmless and the event and its task commit or roll
back together.
"""

from typing import Any

from django.conf import settings
from django.db import transaction
from django_q.tasks import async_task

from integrations.models import Event


def queue(func: str, *args: Any) -> None:
    """Queue `integrations.tasks.<func>(*args)` so it runs only if the caller commits.

    On the ORM broker the task row is written in the caller's transaction and commits
    or rolls back with it. Another broker (Redis) publishes at once, so there the task
    is queued after the commit instead.
    """
    path = f"integrations.tasks.{func}"
    name = f"{func}-{'-'.join(map(str, args))}"
    if settings.Q_CLUSTER.get("orm"):
        async_task(path, *args, task_name=name)
    else:
        transaction.on_commit(lambda: async_task(path, *args, task_name=name))


def record_and_queue(event: Event) -> tuple[Event, bool]:
    """Store a new event once and queue its processing, in one transaction.

    Returns the stored event and whether it is new. A repeat of its (connection,
    event id) returns the stored event and queues nothing; any other refusal by the
    database (an `IntegrityError`) is raised.
    """
    with transaction.atomic():
        stored, created = event.record()
        if created:
            queue("process_event", stored.pk)
    return stored, created
