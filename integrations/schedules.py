"""The periodic jobs django-q2 runs, kept in step after every migrate."""

from datetime import time, timedelta

from django.conf import settings
from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django.utils import timezone


def schedules() -> dict[str, dict]:
    from django_q.models import Schedule

    return {
        "portal: sweep due retries and stalled work": {
            "func": "integrations.tasks.sweep",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
        },
        "portal: poll PayTrace exports": {
            "func": "integrations.tasks.poll_paytrace",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.PAYTRACE_POLL_MINUTES,
        },
        "portal: sync the Sage Pro mirrors": {
            "func": "integrations.mirror.sync_all",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.MIRROR_SYNC_MINUTES,
        },
        "portal: storefront orders: waits, stalled work, late refunds": {
            "func": "integrations.storefront.tasks.sweep_orders",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
        },
        # Issue 15: getting paid.
        "portal: autopay: charge due invoices": {
            "func": "integrations.autopay.run_scheduled",
            "schedule_type": Schedule.HOURLY,
        },
        "portal: look up charges whose answer was lost": {
            "func": "integrations.charging.sweep_unknown",
            "schedule_type": Schedule.MINUTES,
            "minutes": 5,
        },
        "portal: sync recurring schedules from PayTrace": {
            "func": "integrations.recurring.sync_all",
            "schedule_type": Schedule.HOURLY,
        },
        # Issue 16: raw deliveries past DELIVERY_RETENTION_DAYS (the audit trail stays).
        "portal: purge raw deliveries past retention": {
            "func": "integrations.retention.purge_expired",
            "schedule_type": Schedule.DAILY,
            "first_run": time(hour=10),
        },
        "portal: check alert conditions": {
            "func": "integrations.tasks.check_alerts",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
        },
        "portal: prune finished relay commands": {
            "func": "integrations.relay.commands.prune",
            "schedule_type": Schedule.DAILY,
            "first_run": time(hour=12),
        },
        "portal: nightly reconciliation": {
            "func": "integrations.reconciliation.reconcile_yesterday",
            "schedule_type": Schedule.DAILY,
            "first_run": time(hour=11),  # 03:00 Pacific, after the settlement sweep
        },
        "portal: record yesterday's settlement batches": {
            "func": "integrations.tasks.sweep_settlements",
            "schedule_type": Schedule.DAILY,
            "first_run": time(
                hour=9
            ),  # after PayTrace's batches close overnight (US time)
        },
    }


@receiver(post_migrate)
def ensure_schedules(sender: object, **kwargs: object) -> None:
    from django_q.models import Schedule

    if getattr(sender, "name", "") != "integrations":
        return
    for name, spec in schedules().items():
        spec = dict(spec)
        first_run = spec.pop("first_run", None)
        defaults = {**spec, "repeats": -1}
        schedule, created = Schedule.objects.update_or_create(
            name=name, defaults=defaults
        )
        if created and first_run is not None:
            now = timezone.now()
            start = now.replace(
                hour=first_run.hour, minute=first_run.minute, second=0, microsecond=0
            )
            schedule.next_run = start if start > now else start + timedelta(days=1)
            schedule.save(update_fields=["next_run"])
