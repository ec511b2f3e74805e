"""Finding out about payments by asking PayTrace, which sends no webhooks of its own.

The poll reads `transactions/export/by_date_range` over an overlapping window (a few
days, to cover export lag and late status changes), compares each record with what the
portal holds, and turns every new transaction or change of status into an event in
the same pipeline the webhooks feed. Events are deduplicated on (connection, event
id), and the pipeline makes at most one receipt per transaction, so a payment that is
both announced by webhook and found by the poll posts once.

A lease per connection keeps two runs from overlapping (a slow run and the next
scheduled one, or a backfill), on SQLite and PostgreSQL alike. django-q2's schedule
runs without catch-up, and the overlap makes up for any run that was missed.
"""

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError
from django.utils import timezone

from integrations import processing
from integrations.connectors.paytrace import normalize_record, parse_datetime
from integrations.models import (
    Connection,
    Event,
    Lease,
    PaymentTransaction,
    SettlementBatch,
    SyncRun,
)
from integrations.queueing import record_and_queue
from integrations.redaction import redact_data

logger = logging.getLogger(__name__)

LEASE_SECONDS = 15 * 60
CHUNK_DAYS = 1  # a backfill asks for one gateway day at a time, to show progress


@dataclass(frozen=True)
class Known:
    status_code: str
    settled_at: datetime | None
    amount: Decimal


def gateway_today(connection: Connection) -> date:
    return timezone.now().astimezone(ZoneInfo(connection.time_zone)).date()


def _days(start: date, end: date, step: int) -> Iterator[tuple[date, date]]:
    day = start
    while day <= end:
        last = min(end, day + timedelta(days=step - 1))
        yield day, last
        day = last + timedelta(days=1)


def poll(
    connection: Connection,
    *,
    start: date | None = None,
    end: date | None = None,
    kind: str = SyncRun.Kind.POLL,
    progress: Callable[[SyncRun, date, date], None] | None = None,
) -> SyncRun:
    """Read one connection's transactions for a window and feed what changed.

    The default window is the last `PAYTRACE_POLL_WINDOW_DAYS` gateway days up to
    today. Returns the run record (skipped when another run holds the lease).
    """
    end = end or gateway_today(connection)
    start = start or end - timedelta(days=settings.PAYTRACE_POLL_WINDOW_DAYS - 1)
    run = SyncRun(connection=connection, kind=kind, window_start=start, window_end=end)
    holder = uuid.uuid4().hex
    lease = f"paytrace-poll:{connection.pk}"
    if not Lease.acquire(lease, holder, LEASE_SECONDS):
        run.state, run.finished_at = SyncRun.State.SKIPPED, timezone.now()
        run.save()
        logger.info("poll of %s skipped: another run holds the lease", connection.slug)
        return run
    run.save()
    try:
        client = connection.paytrace()
        step = CHUNK_DAYS if kind == SyncRun.Kind.BACKFILL else (end - start).days + 1
        for first, last in _days(start, end, step):
            feed_records(connection, client.export_by_date_range(first, last), run)
            run.save(update_fields=["fetched", "new", "changed", "unchanged"])
            if progress:
                progress(run, first, last)
        run.state = SyncRun.State.SUCCEEDED
    except Exception as exc:
        # One line, and the run says why: the poll_failing alert shows it.
        run.state, run.error = SyncRun.State.FAILED, processing.describe_failure(exc)
        logger.warning("poll of %s failed: %s", connection.slug, run.error)
    finally:
        run.finished_at = timezone.now()
        run.save()
        Lease.release(lease, holder)
    return run


def feed_records(
    connection: Connection, records: list[dict[str, Any]], run: SyncRun
) -> None:
    """Turn each new or changed record into an event for the pipeline.

    A record that cannot be read still becomes an event, once: the worker sends it to
    review at once with the error named, and the rest of the window goes on.
    """
    normalized = []
    for record in records:
        try:
            normalized.append((record, normalize_record(record, connection.time_zone)))
        except Exception as exc:
            if _queue_unreadable(connection, record, exc):
                run.new += 1
            else:
                run.unchanged += 1
    ids = [rec.transaction_id for _, rec in normalized]
    known = {
        row["transaction_id"]: Known(
            row["status_code"], row["settled_at"], row["amount"]
        )
        for row in PaymentTransaction.objects.filter(
            connection=connection, transaction_id__in=ids
        ).values("transaction_id", "status_code", "settled_at", "amount")
    }
    run.fetched += len(records)
    for record, rec in normalized:
        before = known.get(rec.transaction_id)
        if before == Known(rec.status_code, rec.settled_at, rec.amount):
            run.unchanged += 1
            continue
        if _queue_event(connection, record, rec):
            if before is None:
                run.new += 1
            else:
                run.changed += 1
        else:
            run.unchanged += 1  # an earlier poll already queued this very state


def feed_record(connection: Connection, record: dict[str, Any]) -> bool:
    """Feed one export record into the pipeline exactly as a poll would.

    The event id is the poll's, so a later poll of the same state adds nothing (and
    this adds nothing after such a poll). Returns whether an event was queued. An
    unreadable record raises `InvalidRecord` (the caller has it from PayTrace and
    decides; the poll would send it to review).
    """
    return _queue_event(
        connection, record, normalize_record(record, connection.time_zone)
    )


def _queue_event(connection: Connection, record: dict[str, Any], rec: Any) -> bool:
    settled = rec.settled_at.isoformat() if rec.settled_at else ""
    event_id = f"poll:{rec.transaction_id}:{rec.status_code}:{settled}:{rec.amount}"
    event = Event.from_export(
        connection,
        event_id,
        record,
        source=Event.Source.POLL,
        transaction_id=rec.transaction_id,
        occurred_at=rec.settled_at or rec.created_at,
    )
    return record_and_queue(event)[1]


def _queue_unreadable(connection: Connection, record: Any, exc: Exception) -> bool:
    """Queue a record normalize_record refused, named by its content (so the next
    poll's overlapping window does not queue it again)."""
    logger.warning(
        "poll of %s: a record cannot be read, it goes to review: %s",
        connection.slug,
        processing.describe_failure(exc),
    )
    data, _ = redact_data(record)
    text = json.dumps(data, cls=DjangoJSONEncoder, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()
    txid = str(record.get("transaction_id", "")) if isinstance(record, dict) else ""
    try:
        _, created = record_and_queue(
            Event.from_export(
                connection,
                f"poll:unreadable:{digest[:32]}",
                record,
                source=Event.Source.POLL,
                transaction_id=txid
                if processing.TRANSACTION_ID.fullmatch(txid)
                else "",
            )
        )
    except (DatabaseError, ValueError) as db_exc:  # NaN, a surrogate, too deep
        logger.warning(
            "poll of %s: an unreadable record cannot be stored either: %s",
            connection.slug,
            processing.describe_failure(db_exc),
        )
        return False
    return created


def sweep_settlements(connection: Connection, day: date | None = None) -> SyncRun:
    """Record the settlement batches of one gateway day and feed their transactions."""
    day = day or gateway_today(connection) - timedelta(days=1)
    run = SyncRun.objects.create(
        connection=connection,
        kind=SyncRun.Kind.SETTLEMENT,
        window_start=day,
        window_end=day,
    )
    try:
        client = connection.paytrace()
        for summary in client.export_batches(day, day):
            number = str(summary.get("batch_number", "")).strip()
            if not number:
                continue
            records = client.batch_transactions(number)
            _record_batch(connection, number, summary, records)
            feed_records(connection, records, run)
        run.state = SyncRun.State.SUCCEEDED
    except Exception as exc:
        run.state, run.error = SyncRun.State.FAILED, processing.describe_failure(exc)
        logger.warning("settlement sweep of %s failed: %s", connection.slug, run.error)
    run.finished_at = timezone.now()
    run.save()
    return run


def _money(value: Any) -> Decimal:
    return Decimal(str(value or "0")).quantize(Decimal("0.01"))


def _record_batch(
    connection: Connection,
    number: str,
    summary: dict[str, Any],
    records: list[dict[str, Any]],
) -> None:
    raw, _ = redact_data(summary)
    SettlementBatch.objects.update_or_create(
        connection=connection,
        batch_number=number,
        defaults={
            "settled_at": parse_datetime(
                summary.get("batch_date") or "", connection.time_zone
            ),
            "transaction_count": int(summary.get("transaction_count") or len(records)),
            "net_amount": _money(summary.get("net_amount")),
            "sales_count": int(summary.get("sales_count") or 0),
            "sales_amount": _money(summary.get("sales_amount")),
            "refund_count": int(summary.get("refund_count") or 0),
            "refund_amount": _money(summary.get("refund_amount")),
            "transaction_ids": sorted(str(r.get("transaction_id")) for r in records),
            "raw": raw,
            "fetched_at": timezone.now(),
        },
    )


def poll_all() -> list[SyncRun]:
    return [
        poll(c)
        for c in Connection.objects.filter(
            kind=Connection.Kind.PAYTRACE, is_active=True
        )
    ]


def sweep_all_settlements() -> list[SyncRun]:
    return [
        sweep_settlements(c)
        for c in Connection.objects.filter(
            kind=Connection.Kind.PAYTRACE, is_active=True
        )
    ]
