"""Recurring billing: when a schedule's payments fall, and running the due ones.

A schedule's n-th payment (n from 0) falls on `start_on` plus n periods; a monthly,
quarterly or annual payment keeps the start's day of the month, or the month's last day
when it is shorter (a schedule starting January 31 pays February 28 or 29, then March
31). `next_on` is always payment number `repeat_count`.

Running the schedules (`run_due`) makes one sale by customer per payment that has
fallen due, catching up missed ones, each in its own database transaction with the
schedule row locked: two runs at once never make the same payment twice. A payment
counts towards `total_count` whether it was approved or declined (export_approved lists
only the approved ones).
"""

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from integrations.sandbox.paytrace.models import Recurrence, VaultCustomer
from integrations.sandbox.paytrace.vault import sell_by_customer

MONTHS = {
    Recurrence.Frequency.MONTHLY: 1,
    Recurrence.Frequency.QUARTERLY: 3,
    Recurrence.Frequency.ANNUALLY: 12,
}
DAYS = {Recurrence.Frequency.WEEKLY: 7, Recurrence.Frequency.BIWEEKLY: 14}
# A run never makes more than this many payments of one schedule (a schedule far in
# the past with `total_count` 0 would otherwise pay for years in one go).
MAX_CATCH_UP = 60


def add_months(start: date, months: int) -> date:
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def payment_date(start: date, frequency: str, number: int) -> date:
    """The date of payment `number` (0 = the first, on `start`)."""
    if frequency in DAYS:
        return start + timedelta(days=DAYS[Recurrence.Frequency(frequency)] * number)
    return add_months(start, MONTHS[Recurrence.Frequency(frequency)] * number)


def reschedule(recurrence: Recurrence) -> None:
    """Set `next_on` and `status` from the schedule's dates and counts (not saved)."""
    if recurrence.status == Recurrence.Status.CANCELLED:
        recurrence.next_on = None
        return
    if recurrence.total_count and recurrence.repeat_count >= recurrence.total_count:
        recurrence.status = Recurrence.Status.FINISHED
        recurrence.next_on = None
        return
    recurrence.status = Recurrence.Status.ACTIVE
    recurrence.next_on = payment_date(
        recurrence.start_on, recurrence.frequency, recurrence.repeat_count
    )


@dataclass(frozen=True)
class Payment:
    recurrence_id: int
    customer_id: str
    transaction_id: int
    amount: Decimal
    approved: bool
    approval_message: str
    scheduled_on: date

    def as_dict(self) -> dict[str, Any]:
        return {
            "recurrence_id": self.recurrence_id,
            "customer_id": self.customer_id,
            "transaction_id": self.transaction_id,
            "amount": self.amount,
            "approved": self.approved,
            "approval_message": self.approval_message,
            "scheduled_on": self.scheduled_on.strftime("%m/%d/%Y"),
        }


def run_due(today: date | None = None, *, notify: bool = True) -> list[Payment]:
    """Make every payment that has fallen due by `today`; return what was charged."""
    today = today or timezone.localdate()
    due = Recurrence.objects.filter(
        status=Recurrence.Status.ACTIVE, next_on__lte=today
    ).order_by("pk")
    payments: list[Payment] = []
    for recurrence_id in due.values_list("pk", flat=True):
        for _ in range(MAX_CATCH_UP):
            payment = _pay_once(recurrence_id, today, notify=notify)
            if payment is None:
                break
            payments.append(payment)
    return payments


@transaction.atomic
def _pay_once(recurrence_id: int, today: date, *, notify: bool) -> Payment | None:
    recurrence = Recurrence.objects.select_for_update().filter(pk=recurrence_id).first()
    if (
        recurrence is None
        or recurrence.status != Recurrence.Status.ACTIVE
        or recurrence.next_on is None
        or recurrence.next_on > today
    ):
        return None
    profile = VaultCustomer.objects.filter(customer_id=recurrence.customer_id).first()
    if profile is None:
        recurrence.status = Recurrence.Status.CANCELLED
        recurrence.next_on = None
        recurrence.updated_at = timezone.now()
        recurrence.save(update_fields=["status", "next_on", "updated_at"])
        return None
    scheduled_on = recurrence.next_on
    description = f"{recurrence.description} (recurring {recurrence.pk})".strip()
    txn = sell_by_customer(
        profile,
        recurrence.amount,
        invoice_id=recurrence.invoice_id,
        description=description,
        created_by="recurring",
        through="RECURRING",
        recurrence=recurrence,
        notify=notify,
        today=today,
    )
    recurrence.repeat_count += 1
    reschedule(recurrence)
    recurrence.updated_at = timezone.now()
    recurrence.save(update_fields=["repeat_count", "status", "next_on", "updated_at"])
    return Payment(
        recurrence_id=recurrence.pk,
        customer_id=profile.customer_id,
        transaction_id=txn.transaction_id,
        amount=txn.amount,
        approved=txn.response_code == 101,
        approval_message=txn.approval_message.strip(),
        scheduled_on=scheduled_on,
    )


def as_record(recurrence: Recurrence) -> dict[str, Any]:
    """Render a schedule as a record of `recurrence/export`."""
    return {
        "id": recurrence.pk,
        "customer_id": recurrence.customer_id,
        "amount": recurrence.amount,
        "frequency": recurrence.frequency,
        "start_date": recurrence.start_on.strftime("%m/%d/%Y"),
        "next_date": recurrence.next_on.strftime("%m/%d/%Y")
        if recurrence.next_on
        else "",
        "total_count": recurrence.total_count,
        "repeat_count": recurrence.repeat_count,
        "status": recurrence.status,
        "description": recurrence.description,
        "invoice_id": recurrence.invoice_id,
    }
