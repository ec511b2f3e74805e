"""Replaying the dead-letter queue: postings that gave up after their retries.

A replay sends dead postings again one by one, oldest payment first, in a single
worker, and only one replay runs at a time (a lease), so two people pressing "replay
everything" at once never race each other or post out of order.
"""

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from integrations import processing, review
from integrations.models import Lease, Posting

LEASE_NAME = "dead-letter-replay"
LEASE_SECONDS = 30 * 60


class ReplayInProgressError(Exception):
    pass


def dead_letters(
    *, ids: Iterable[int] | None = None, since: datetime | None = None
) -> QuerySet[Posting]:
    """Dead postings, oldest payment first; `since` keeps those whose last attempt
    was at or after it."""
    postings = Posting.objects.filter(state=Posting.State.DEAD)
    if ids is not None:
        postings = postings.filter(pk__in=list(ids))
    if since is not None:
        postings = postings.filter(started_at__gte=since)
    return postings.order_by("transaction__created_at", "created_at", "pk")


def replay_fingerprint(postings: Iterable[Posting]) -> str:
    """Changes whenever the dead letters a replay would send change."""
    rows = [(p.pk, str(p.transaction.amount), p.transaction.currency) for p in postings]
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:20]


def replay(
    *,
    ids: Iterable[int] | None = None,
    since: datetime | None = None,
    user_id: int | None = None,
) -> dict[str, int]:
    """Send dead postings again in chronological order. Raises ReplayInProgressError
    when another replay is running."""
    holder = uuid.uuid4().hex
    if not Lease.acquire(LEASE_NAME, holder, LEASE_SECONDS):
        raise ReplayInProgressError(
            "Another dead-letter replay is running; wait for it to finish."
        )
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    counts = {"replayed": 0, "posted": 0, "still_failing": 0}
    try:
        for posting in dead_letters(ids=ids, since=since):
            if not review.retry_posting(posting, user, queue_send=False):
                continue
            counts["replayed"] += 1
            outcome = processing.send_posting(posting.pk)
            counts["posted" if outcome.startswith("posted") else "still_failing"] += 1
    finally:
        Lease.release(LEASE_NAME, holder)
    return counts
