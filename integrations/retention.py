"""Retention: raw webhook requests are purged after a while; the audit trail stays.

An `InboundDelivery` is the raw request as it arrived (headers and body, card data
masked), kept so an operator can see what a sender sent. Past
`DELIVERY_RETENTION_DAYS` it is deleted. What the request produced stays: the event
(a PayTrace `Event` or a `StorefrontEvent`, whose payload is the body as verified),
the transaction, its history, postings and review decisions. Nothing on that side
depends on the raw row: `StorefrontEvent.delivery` is `SET_NULL`, and the link the
other way (`InboundDelivery.event`) goes away with the delivery.

A silent post still waiting for PayTrace to confirm it (`unsigned`, no event yet) is
kept whatever its age: the lookup task reads it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from integrations.models import InboundDelivery

BATCH_SIZE = 1000


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    days: int
    deleted: int
    batches: int
    dry_run: bool

    def summary(self) -> str:
        when = self.cutoff.strftime("%Y-%m-%d %H:%M UTC")
        if self.dry_run:
            return (
                f"Dry run: {self.deleted} raw deliveries received before {when} "
                f"(older than {self.days} days) would be deleted; nothing was deleted."
            )
        return (
            f"Deleted {self.deleted} raw deliveries received before {when} (older "
            f"than {self.days} days) in {self.batches} batches; events, "
            "transactions, postings and review decisions are kept."
        )


def expired_deliveries(cutoff: datetime) -> QuerySet[InboundDelivery]:
    """Raw deliveries received before `cutoff`, except silent posts awaiting lookup."""
    return InboundDelivery.objects.filter(received_at__lt=cutoff).exclude(
        signature_result=InboundDelivery.SignatureResult.UNSIGNED,
        event__isnull=True,
    )


def purge_deliveries(
    days: int,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[str], None] | None = None,
) -> PurgeResult:
    """Delete raw deliveries older than `days` days, `batch_size` rows a transaction.

    Each batch commits on its own, so a long purge holds no lock for long and an
    interrupted one keeps what it did; running it again finds only what is left.
    """
    if days < 1:
        raise ValueError("days must be 1 or more")
    if batch_size < 1:
        raise ValueError("batch_size must be 1 or more")
    cutoff = timezone.now() - timedelta(days=days)
    expired = expired_deliveries(cutoff)
    if dry_run:
        return PurgeResult(cutoff, days, expired.count(), 0, dry_run=True)
    deleted = batches = 0
    while True:
        with transaction.atomic():
            ids = list(expired.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            # QuerySet.delete() applies SET_NULL to the storefront events that name them.
            _, per_model = InboundDelivery.objects.filter(pk__in=ids).delete()
        deleted += per_model.get(InboundDelivery._meta.label, 0)
        batches += 1
        if progress:
            progress(f"batch {batches}: deleted {len(ids)} (total {deleted})")
    return PurgeResult(cutoff, days, deleted, batches, dry_run=False)


def purge_expired() -> str:
    """The daily schedule: purge past DELIVERY_RETENTION_DAYS (0: keep everything)."""
    days = settings.DELIVERY_RETENTION_DAYS
    if not days:
        return "DELIVERY_RETENTION_DAYS is 0: raw deliveries are kept forever."
    return purge_deliveries(days).summary()
