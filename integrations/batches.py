"""Workers drain due events in batches.

A `drain` task (queued by `queueing.wake`, and by the sweeper for events nobody woke a
worker for) takes up to `DRAIN_BATCH_SIZE` queued events at a time (`Event.claim_batch`),
runs steps 2 and 3 of the pipeline for each (`processing.plan_event`), sends the
receipts those decisions created in batches (`posting.send_postings`), and marks the
events processed in one statement. One failing event never blocks or rolls back the
others: each event's work is its own transaction, and its failure is recorded on it
exactly as the one-event path records it (`processing.event_failed`).

The drain repeats while events are due, for at most half the task timeout, then hands
on to a fresh task if work remains, so no task outlives django-q2's timeout and other
tasks get their turn. A worker killed mid-batch leaves its events and postings claimed;
the sweeper hands them on once their claim expires, and a posting's next attempt asks
Sage Pro by idempotency key before sending again.
"""

import logging
import time

from django.conf import settings
from django.utils import timezone

from integrations import processing
from integrations.models import Event, Posting
from integrations.posting import send_postings
from integrations.queueing import queue

logger = logging.getLogger(__name__)


def drain() -> str:
    """Process due events in batches until none are left (or the time budget is)."""
    started = time.monotonic()
    budget = max(0.5, settings.Q_CLUSTER.get("timeout", 60) / 2)
    batches = events = 0
    while True:
        claimed = Event.claim_batch(settings.DRAIN_BATCH_SIZE)
        if not claimed:
            break
        process_batch(claimed)
        batches += 1
        events += len(claimed)
        if time.monotonic() - started > budget:
            if Event.objects.filter(state=Event.State.QUEUED).exists():
                queue("drain")  # hand on: another task drains the rest
            break
    return f"{events} events in {batches} batches"


def process_batch(events: list[Event]) -> None:
    """Run claimed events through the pipeline, sending their receipts in batches."""
    plans: dict[int, tuple[Event, str, Posting | None]] = {}
    for event in events:
        try:
            outcome, posting = processing.plan_event(event)
        except Exception as exc:
            try:
                processing.event_failed(event, exc)
            except Exception:
                logger.exception(
                    "event %s: the failure could not be recorded; the sweeper retries "
                    "it after its claim expires",
                    event.pk,
                )
            continue
        plans[event.pk] = (event, outcome, posting)
    postings = [p.pk for _, _, p in plans.values() if p is not None]
    if postings:
        send_postings(postings)
    _finish([(event, outcome) for event, outcome, _ in plans.values()])


def _finish(done: list[tuple[Event, str]]) -> None:
    """Mark the events processed, with their outcomes, in one statement."""
    now = timezone.now()
    for event, outcome in done:
        event.state = Event.State.PROCESSED
        event.processed_at = now
        event.outcome = outcome[:200]
        event.last_error = ""
    Event.objects.bulk_update(
        [event for event, _ in done],
        ["state", "processed_at", "outcome", "last_error"],
    )
