"""Month-end for finance: a reconciliation run started from the admin, run by a worker.

`start` writes the run row at once (state running, "Waiting for a worker") and queues
`run` on django-q2 after the commit; `run` classifies the transactions and writes
each step's progress on the row, which the run's page shows while it refreshes itself.
`headline` turns a finished run's stored totals into the report's opening lines, each
with the list behind it.
"""

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.urls import reverse
from django_q.tasks import async_task

from integrations import reconciliation
from integrations.models import (
    Connection,
    Lease,
    ReconciliationLine,
    ReconciliationRun,
)

logger = logging.getLogger(__name__)

Bucket = ReconciliationLine.Bucket
ZERO = Decimal("0.00")
WAITING = "Waiting for a worker to start the run."
# Longer than a month of transactions takes to classify (minutes at 100k).
LEASE_SECONDS = 3600


def last_month(today: date | None = None) -> tuple[date, date]:
    """The first and last day of the month before `today` (business time zone)."""
    today = today or reconciliation.business_today()
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def start(
    connection: Connection,
    date_from: date,
    date_to: date,
    *,
    user: AbstractBaseUser | None = None,
) -> ReconciliationRun:
    """Create the run and queue its work (after the commit, so the worker finds it)."""
    if connection.kind != Connection.Kind.PAYTRACE:
        raise reconciliation.ReconciliationError(
            f"{connection.name} is a {connection.get_kind_display()} connection; "
            "choose a PayTrace connection."
        )
    if connection.sagepro_id is None:
        raise reconciliation.ReconciliationError(
            f"{connection.name} has no Sage Pro connection; set one on it first."
        )
    run = reconciliation.create_run(
        connection, date_from, date_to, user=user, progress=WAITING
    )
    transaction.on_commit(
        lambda: async_task(
            "integrations.monthend.run",
            run.pk,
            group="month-end",
            # A month can take minutes, past the cluster's default timeout; a
            # redelivery meanwhile finds the lease taken and leaves the run alone.
            timeout=LEASE_SECONDS,
        )
    )
    return run


def run(run_id: int) -> str:
    """The task: reconcile a run created by `start`; safe to run twice.

    A lease keeps two workers off the same run; a run a crashed worker left half
    done (still running, some lines written) starts again from no lines."""
    job = ReconciliationRun.objects.select_related("connection").get(pk=run_id)
    if job.state != ReconciliationRun.State.RUNNING:
        return f"run {run_id} is {job.state}; nothing to do"
    lease, holder = f"month-end-run:{run_id}", f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not Lease.acquire(lease, holder, LEASE_SECONDS):
        return f"run {run_id} is being worked on by another worker"
    try:
        job.lines.all().delete()
        return _run(job)
    finally:
        Lease.release(lease, holder)


def _run(job: ReconciliationRun) -> str:
    run_id = job.pk

    def say(message: str) -> None:
        logger.info(message)
        ReconciliationRun.objects.filter(pk=run_id).update(progress=message[:200])

    try:
        reconciliation.execute_run(job, progress=say)
    except Exception as exc:
        ReconciliationRun.objects.filter(pk=run_id).update(
            progress=f"Failed: {exc}"[:200]
        )
        raise
    return reconciliation.summarize(job)


# --- the report's headline -------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    key: str
    label: str
    count: int
    amount: Decimal
    url: str


@dataclass(frozen=True)
class Headline:
    currency: str
    paytrace_total: Decimal
    sage_total: Decimal
    difference: Decimal
    explanations: list[Explanation]
    other: Decimal
    unapplied: Decimal
    unapplied_url: str
    settled_not_posted_count: int
    settled_not_posted_amount: Decimal
    settled_not_posted_url: str


def lines_url(run: ReconciliationRun, explains: str) -> str:
    query = urlencode({"run__id__exact": run.pk, "explains": explains})
    return f"{reverse('admin:integrations_reconciliationline_changelist')}?{query}"


def headline(run: ReconciliationRun) -> Headline | None:
    """The stored headline of a finished run (None for a run made before it existed)."""
    data = run.headline
    if not data:
        return None
    explained = data.get("explained", {})
    explanations = [
        Explanation(
            key=key,
            label=label,
            count=explained.get(key, {}).get("count", 0),
            amount=Decimal(explained.get(key, {}).get("amount", "0.00")),
            url=lines_url(run, key),
        )
        for key, label in reconciliation.EXPLANATIONS.items()
    ]
    review_url = reverse("admin:integrations_reviewitem_changelist")
    settled = data.get("settled_not_posted", {})
    return Headline(
        currency=data.get("currency") or "USD",
        paytrace_total=Decimal(data["paytrace_total"]),
        sage_total=Decimal(data["sage_total"]),
        difference=Decimal(data["difference"]),
        explanations=[e for e in explanations if e.count],
        other=Decimal(data.get("other", "0.00")),
        unapplied=Decimal(data.get("unapplied", "0.00")),
        unapplied_url=f"{review_url}?kind__exact=overpayment",
        settled_not_posted_count=settled.get("count", 0),
        settled_not_posted_amount=Decimal(settled.get("amount", "0.00")),
        settled_not_posted_url=lines_url(run, "settled_not_posted"),
    )
