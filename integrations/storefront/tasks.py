"""django-q2 entry points of the storefront flow. Thin: ids in, one call out."""

from typing import Any

from django.conf import settings
from django.db import transaction
from django_q.tasks import async_task


def queue_task(func: str, *args: Any) -> None:
    """Queue `integrations.storefront.tasks.<func>(*args)` so it runs only if the
    caller commits (as `integrations.queueing.queue` does for the pipeline's tasks)."""
    path = f"integrations.storefront.tasks.{func}"
    name = f"storefront-{func}-{'-'.join(map(str, args))}"
    if settings.Q_CLUSTER.get("orm"):
        async_task(path, *args, task_name=name)
    else:
        transaction.on_commit(lambda: async_task(path, *args, task_name=name))


def process_event(event_id: int) -> str:
    from integrations.storefront import flow

    return flow.process_event(event_id)


def advance_order(order_id: int) -> str:
    from integrations.storefront import flow

    return flow.advance(order_id)


def send_receipt(order_id: int) -> str:
    from integrations.storefront import flow

    return flow.send_receipt(order_id)


def sweep_orders() -> dict[str, int]:
    """Every minute (the integrator's schedule): orders waited too long go to review,
    stalled ones are advanced again."""
    from integrations.storefront import flow

    return flow.sweep_orders()
