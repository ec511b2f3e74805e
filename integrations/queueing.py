"""Putting work on django-q2's queue.

Every way an event enters the pipeline (a signed webhook, a silent post confirmed by
lookup, a poll of PayTrace's export) stores it through `record_and_queue`: the event row
is the work item, and workers drain due events in batches (`integrations.batches`). What
remains is waking them:

- `DRAIN_WAKE_SECONDS = 0`: one `drain` task per event, written in the event's own
  transaction (on the ORM broker), so the two commit or roll back together.
- `DRAIN_WAKE_SECONDS > 0` (the default): an event's transaction writes no task. After it
  commits, the process queues one `drain` at most once per that many seconds, from a
  background thread, so a burst of a thousand events costs a handful of task rows. The
  wake-up is always queued after the events it is for have committed, so the drain it
  starts sees them. If the process dies in between, the events are stored all the same
  and the sweeper's minute schedule queues a drain for them (`processing.sweep`).
"""

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django_q.tasks import async_task

from integrations.models import Event

logger = logging.getLogger(__name__)


def queue(func: str, *args: Any) -> None:
    """Queue `integrations.tasks.<func>(*args)` so it runs only if the caller commits.

    On the ORM broker the task row is written in the caller's transaction and commits
    or rolls back with it. Another broker (Redis) publishes at once, so there the task
    is queued after the commit instead.
    """
    path = f"integrations.tasks.{func}"
    name = f"{func}-{'-'.join(map(str, args))}" if args else func
    if settings.Q_CLUSTER.get("orm"):
        async_task(path, *args, task_name=name)
    else:
        transaction.on_commit(lambda: async_task(path, *args, task_name=name))


class _Waker:
    """Queues a `drain` task at most once per `DRAIN_WAKE_SECONDS`, after commits."""

    def __init__(self) -> None:
        self._due = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Ask for a wake-up; called after an event's transaction has committed."""
        self._due.set()
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="drain-waker", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        interval = settings.DRAIN_WAKE_SECONDS
        while True:
            self._due.wait()
            self._due.clear()
            try:
                close_old_connections()
                queue("drain")
            except Exception:  # noqa: BLE001 - the sweeper queues a drain later
                logger.exception("could not queue a drain; the sweeper will")
            finally:
                connections.close_all()
            # Events committed during the pause set `_due` again: one more wake-up.
            time.sleep(interval)


_waker = _Waker()


def wake() -> None:
    """Make sure a worker drains the events the caller's transaction stores."""
    if settings.DRAIN_WAKE_SECONDS <= 0:
        queue("drain")
    else:
        transaction.on_commit(_waker.request)


def record_and_queue(event: Event) -> tuple[Event, bool]:
    """Store a new event once and wake a worker for it, in one transaction.

    Returns the stored event and whether it is new. A repeat of its (connection,
    event id) returns the stored event and wakes nobody; any other refusal by the
    database (an `IntegrityError`) is raised.
    """
    with transaction.atomic():
        stored, created = event.record()
        if created:
            wake()
    return stored, created
