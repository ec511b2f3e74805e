"""Workers drain due events in batches.

A `drain` task (queued by `queueing.wake`, and by the sweeper for events nobody woke a
worker for) takes up to `DRAIN_BATCH_SIZE` queued events at a time (`Event.claim_batch`)
and runs the pipeline's steps a phase at a time for the whole batch (`process_batch`):
the records, in one write transaction; the decisions, holding none; the postings and
review items, in one; then the receipts go to Sage Pro in batches
(`posting.send_postings`) and the events are marked processed in one statement. A
savepoint per event keeps one event's failure to itself, recorded exactly as the
one-event path records it (`processing.event_failed`).

The drain repeats while events are due, for at most half the task timeout, then hands
on to a fresh task if work remains, so no task outlives django-q2's timeout and other
tasks get their turn. A worker killed mid-batch leaves its events and postings claimed;
the sweeper hands them on once their claim expires, and a posting's next attempt asks
Sage Pro by idempotency key before sending again.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations import processing
from integrations.batchcache import batch_cache
from integrations.models import Connection, Event
from integrations.posting import send_postings
from integrations.queueing import queue
from mappings.status import Action

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
    """Run claimed events through the pipeline, a phase at a time for the batch.

    1. Each event's record on its transaction (`processing.upsert_event`), all in one
       write transaction, a savepoint each. Events are taken in (transaction id,
       arrival) order, so two drains lock transaction rows in the same order.
    2. Each payment's decision (`processing.choose_receipt`), holding no transaction:
       read on the mirror, and fresh from Sage Pro when it is not a clean match.
    3. The review items and postings those decisions call for, in one write
       transaction, a savepoint each.
    Then the receipts go to Sage Pro in batches, and the events are marked processed.
    A failure of one event is recorded on it alone (`processing.event_failed`).
    """
    shared: dict[int, Connection] = {}
    for event in events:
        # One instance per connection: its Sage Pro connection is read once a batch.
        event.connection = shared.setdefault(event.connection_id, event.connection)
    done: list[tuple[Event, str]] = []
    failed: list[tuple[Event, BaseException]] = []
    with batch_cache():
        in_lock_order = sorted(
            events, key=lambda e: (e.connection_id, e.transaction_id, e.pk)
        )
        decided = _each_in_one_transaction(
            [(event, event) for event in in_lock_order],
            processing.upsert_event,
            failed,
        )
        choices = []
        for event, decision in decided:
            if decision.action != Action.POST_RECEIPT:
                done.append((event, decision.outcome))
                continue
            try:
                choices.append(
                    (
                        event,
                        processing.choose_receipt(decision.transaction, event=event),
                    )
                )
            except Exception as exc:
                failed.append((event, exc))
        committed = _each_in_one_transaction(choices, processing.commit_choice, failed)
        _record_failures(failed)
        postings = [posting for _, (_, posting) in committed if posting is not None]
        if postings:
            send_postings(postings)
    done += [(event, outcome) for event, (outcome, _) in committed]
    _finish(done)


def _each_in_one_transaction(
    items: list[tuple[Event, Any]],
    step: Callable[[Any], Any],
    failed: list[tuple[Event, BaseException]],
) -> list[tuple[Event, Any]]:
    """`step(value)` for each (event, value) in `items`, in one write transaction with a
    savepoint each; returns [(event, result)] of those that worked and adds
    (event, exception) to `failed` for the others."""
    results = []
    with transaction.atomic():
        for event, value in items:
            try:
                with transaction.atomic():
                    results.append((event, step(value)))
            except Exception as exc:
                failed.append((event, exc))
    return results


def _record_failures(failed: list[tuple[Event, BaseException]]) -> None:
    for event, exc in failed:
        try:
            processing.event_failed(event, exc)
        except Exception:
            logger.exception(
                "event %s: the failure could not be recorded; the sweeper retries "
                "it after its claim expires",
                event.pk,
            )


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
