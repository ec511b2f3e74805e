"""Recurring billing: schedules kept in PayTrace (`recurrence/*`) on a card on file.

The portal asks PayTrace to create or cancel a schedule and keeps a copy of it
(`RecurringSchedule`) to list it with its next run; `sync_all()` (hourly) reads every
schedule back from PayTrace (`recurrence/export`) and brings the copies up to date.
PayTrace makes the charges itself; they arrive through polling like any sale and post
to the customer the vault id belongs to (the `PayerLink` enrolment made), on account
or to the invoice named in the schedule's `invoice_reference`.

Creating is recorded before PayTrace is called (state CREATING, committed): a reply
that never came leaves the row UNKNOWN, and the next sync adopts the schedule
PayTrace made (same profile, amount, frequency and start date) or, if PayTrace has
none, marks it FAILED, so a schedule is never created twice by a retry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.db.models import Q
from django.utils import timezone

from integrations.connectors.base import ConnectorError
from integrations.models.autopay import RecurringSchedule
from integrations.models.cards import CardOnFile
from integrations.models.connections import Connection
from integrations.models.failures import describe_failure
from integrations.models.storage import saved_user
from mappings.fields import business_date
from mappings.formatting import format_money

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

State = RecurringSchedule.State
Frequency = RecurringSchedule.Frequency
MAX_AMOUNT = Decimal("99999.99")
MAX_COUNT = 999
MAX_YEARS_AHEAD = 2
# A schedule whose creation got no answer is looked for in PayTrace's export; not
# found after this long, PayTrace never made it.
UNKNOWN_GRACE = timedelta(minutes=5)
PAYTRACE_DATE = "%m/%d/%Y"
STATUS_STATES = {
    "active": State.ACTIVE,
    "finished": State.FINISHED,
    "completed": State.FINISHED,
    "cancelled": State.CANCELLED,
    "canceled": State.CANCELLED,
    "deleted": State.CANCELLED,
}


class RecurringError(Exception):
    """A request a person must fix; `field` names what to fix."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ScheduleRequest:
    """A checked request to create a schedule (what the preview shows)."""

    card: CardOnFile
    amount: Decimal
    frequency: str
    start_date: date
    total_count: int
    description: str
    invoice_reference: str

    @property
    def summary(self) -> str:
        count = (
            "until cancelled"
            if not self.total_count
            else f"{self.total_count} time{'s' if self.total_count != 1 else ''}"
        )
        return (
            f"Create schedule: {format_money(self.amount)} "
            f"{Frequency(self.frequency).label.lower()} from {self.start_date:%Y-%m-%d} "
            f"({count}) on {self.card.brand or 'card'} …{self.card.last4} "
            f"for customer {self.card.custno}"
        )

    @property
    def fingerprint(self) -> str:
        import hashlib

        text = "|".join(
            str(part)
            for part in (
                self.card.pk,
                self.amount,
                self.frequency,
                self.start_date,
                self.total_count,
                self.description,
                self.invoice_reference,
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()


def business_today() -> date:
    from django.conf import settings

    return business_date(timezone.now(), settings.BUSINESS_TIME_ZONE)


def check_request(
    *,
    card: CardOnFile,
    amount: object,
    frequency: object,
    start_date: object,
    total_count: object = 0,
    description: object = "",
    invoice_reference: object = "",
    today: date | None = None,
) -> ScheduleRequest:
    """Check every field; raise RecurringError naming the first bad one."""
    today = today or business_today()
    if card.state != CardOnFile.State.ACTIVE:
        raise RecurringError(
            f"The card ending {card.last4} was removed; choose an active card.", "card"
        )
    if card.is_expired(today):
        raise RecurringError(
            f"The card ending {card.last4} expired ({card.expiry}); put a new card on "
            "file first.",
            "card",
        )
    value = _amount(amount)
    if frequency not in Frequency.values:
        raise RecurringError(
            "Choose a frequency: " + ", ".join(Frequency.labels).lower() + ".",
            "frequency",
        )
    if not isinstance(start_date, date) or isinstance(start_date, datetime):
        raise RecurringError("Give the first charge's date (YYYY-MM-DD).", "start_date")
    if start_date < today:
        raise RecurringError(
            f"The start date {start_date:%Y-%m-%d} is in the past; give today "
            f"({today:%Y-%m-%d}) or later.",
            "start_date",
        )
    if start_date > today + timedelta(days=366 * MAX_YEARS_AHEAD):
        raise RecurringError(
            f"The start date is more than {MAX_YEARS_AHEAD} years away.", "start_date"
        )
    if isinstance(total_count, bool) or not isinstance(total_count, int):
        raise RecurringError(
            "Give the number of charges as a whole number (0: until cancelled).",
            "total_count",
        )
    if not 0 <= total_count <= MAX_COUNT:
        raise RecurringError(
            f"Give 0 (until cancelled) to {MAX_COUNT} charges.", "total_count"
        )
    text = _text(description, 255, "description")
    reference = _text(invoice_reference, 20, "invoice_reference")
    from integrations.cardnumbers import might_hold_card_number

    if might_hold_card_number(text):
        raise RecurringError(
            "The description holds what looks like a card number; PayTrace shows it "
            "on every charge. Describe the service instead.",
            "description",
        )
    if might_hold_card_number(reference):
        raise RecurringError(
            "That looks like a card number; give an invoice or contract number.",
            "invoice_reference",
        )
    return ScheduleRequest(
        card=card,
        amount=value,
        frequency=str(frequency),
        start_date=start_date,
        total_count=total_count,
        description=text,
        invoice_reference=reference,
    )


def _amount(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise RecurringError(
            "Give the amount in dollars and cents, e.g. 49.00.", "amount"
        )
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise RecurringError(
            "The amount must be a number of dollars and cents, e.g. 49.00.", "amount"
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise RecurringError("The amount must be more than zero.", "amount")
    if amount > MAX_AMOUNT:
        raise RecurringError(f"The amount must be at most {MAX_AMOUNT}.", "amount")
    if amount != amount.quantize(Decimal("0.01")):
        raise RecurringError("Give whole cents (at most two decimals).", "amount")
    return amount.quantize(Decimal("0.01"))


def _text(value: object, limit: int, field: str) -> str:
    text = " ".join(str(value or "").split())
    if len(text) > limit:
        raise RecurringError(f"At most {limit} characters.", field)
    if not text.isprintable():
        raise RecurringError("Only printable characters, please.", field)
    return text


def create_schedule(
    *,
    card: CardOnFile,
    amount: object,
    frequency: object,
    start_date: object,
    total_count: object = 0,
    description: object = "",
    invoice_reference: object = "",
    user: AbstractBaseUser | None,
) -> RecurringSchedule:
    """Create the schedule in PayTrace and keep its copy. Call outside
    `transaction.atomic()`: the row is committed before PayTrace is called."""
    request = check_request(
        card=card,
        amount=amount,
        frequency=frequency,
        start_date=start_date,
        total_count=total_count,
        description=description,
        invoice_reference=invoice_reference,
    )
    schedule = RecurringSchedule.objects.create(
        card=card,
        paytrace=card.paytrace,
        custno=card.custno,
        amount=request.amount,
        frequency=request.frequency,
        start_date=request.start_date,
        total_count=request.total_count,
        description=request.description,
        invoice_reference=request.invoice_reference,
        state=State.CREATING,
        next_run=request.start_date,
        created_by=saved_user(user),
    )
    recurrence = {
        "amount": str(request.amount),
        "start_date": request.start_date.strftime(PAYTRACE_DATE),
        "frequency": request.frequency,
        "total_count": request.total_count,
        "description": request.description,
        "invoice_id": request.invoice_reference,
    }
    try:
        reply = card.paytrace.paytrace().create_recurrence(
            customer_id=card.vault_customer_id, recurrence=recurrence
        )
    except ConnectorError as exc:
        unknown = exc.transient or getattr(exc, "outcome_unknown", False)
        schedule.state = State.UNKNOWN if unknown else State.FAILED
        schedule.error = (
            "PayTrace did not answer; the next sync finds out whether it made the "
            f"schedule ({describe_failure(exc)})"
            if unknown
            else f"PayTrace refused the schedule: {exc}"
        )[:2000]
        schedule.save(update_fields=["state", "error"])
        return schedule
    record = reply.get("recurrence") if isinstance(reply, dict) else None
    if not isinstance(record, dict) or not str(record.get("id") or "").strip():
        schedule.state = State.UNKNOWN
        schedule.error = (
            "PayTrace's reply named no schedule id; the next sync looks for it."
        )
        schedule.save(update_fields=["state", "error"])
        return schedule
    _apply(schedule, record)
    return schedule


def cancel_schedule(
    schedule: RecurringSchedule, user: AbstractBaseUser | None
) -> RecurringSchedule:
    """Cancel the schedule in PayTrace (no more charges) and mark the copy."""
    if schedule.state in (State.CANCELLED, State.FINISHED, State.FAILED):
        raise RecurringError(
            f"The schedule is already {schedule.get_state_display().lower()}."
        )
    if not schedule.recurrence_id:
        raise RecurringError(
            "PayTrace has not confirmed this schedule yet; sync from PayTrace first "
            "(it may not exist)."
        )
    try:
        schedule.paytrace.paytrace().delete_recurrence(schedule.recurrence_id)
    except ConnectorError as exc:
        if exc.transient:
            raise RecurringError(
                f"PayTrace did not answer ({describe_failure(exc)}); nothing changed. "
                "Try again in a minute."
            ) from None
        # Refused: it may be finished or gone already; the export says which.
        sync_connection(schedule.paytrace)
        schedule.refresh_from_db()
        if schedule.state == State.ACTIVE:
            raise RecurringError(f"PayTrace refused to cancel it: {exc}") from None
        return schedule
    schedule.state = State.CANCELLED
    schedule.cancelled_at = timezone.now()
    schedule.cancelled_by = saved_user(user)
    schedule.next_run = None
    schedule.save(update_fields=["state", "cancelled_at", "cancelled_by", "next_run"])
    return schedule


# --- sync ----------------------------------------------------------------------------


def sync_all() -> dict[str, str]:
    """The hourly task: bring every PayTrace connection's schedules up to date."""
    results: dict[str, str] = {}
    connections = Connection.objects.filter(
        kind=Connection.Kind.PAYTRACE, is_active=True
    ).filter(Q(recurring_schedules__isnull=False) | Q(cards_on_file__isnull=False))
    for paytrace in connections.distinct():
        try:
            counts = sync_connection(paytrace)
        except ConnectorError as exc:
            logger.warning("Recurring sync of %s failed: %s", paytrace.slug, exc)
            results[paytrace.slug] = f"failed: {describe_failure(exc)}"
            continue
        results[paytrace.slug] = ", ".join(f"{k} {v}" for k, v in counts.items())
    return results


def sync_connection(paytrace: Connection) -> dict[str, int]:
    """Read every schedule from PayTrace; update the copies, adopt the ones whose
    creation got no answer, and add the ones made outside the portal on a card on
    file."""
    records = paytrace.paytrace().export_recurrences()
    counts = {"updated": 0, "adopted": 0, "added": 0, "failed": 0}
    known = {
        s.recurrence_id: s
        for s in RecurringSchedule.objects.filter(paytrace=paytrace).exclude(
            recurrence_id=""
        )
    }
    waiting = list(
        RecurringSchedule.objects.filter(
            paytrace=paytrace,
            recurrence_id="",
            state__in=(State.UNKNOWN, State.CREATING),
        ).select_related("card")
    )
    cards = {
        c.vault_customer_id: c
        for c in CardOnFile.objects.filter(paytrace=paytrace).order_by("created_at")
    }
    for record in records:
        if not isinstance(record, dict):
            continue
        rid = str(record.get("id") or "").strip()
        if not rid:
            continue
        schedule = known.get(rid)
        if schedule is None:
            schedule = _match_waiting(waiting, record)
            if schedule is not None:
                waiting.remove(schedule)
                counts["adopted"] += 1
        if schedule is None:
            card = cards.get(str(record.get("customer_id") or ""))
            schedule = _add_outside(paytrace, card, record)
            if schedule is None:
                continue
            counts["added"] += 1
        else:
            counts["updated"] += 1
        _apply(schedule, record)
    cutoff = timezone.now() - UNKNOWN_GRACE
    for schedule in waiting:
        if schedule.created_at < cutoff:
            schedule.state = State.FAILED
            schedule.error = (
                "PayTrace has no such schedule: it was never made, nothing will be "
                "charged. Create it again if it is still wanted."
            )
            schedule.synced_at = timezone.now()
            schedule.save(update_fields=["state", "error", "synced_at"])
            counts["failed"] += 1
    return counts


def _match_waiting(
    waiting: list[RecurringSchedule], record: dict[str, Any]
) -> RecurringSchedule | None:
    for schedule in waiting:
        if (
            str(record.get("customer_id") or "") == schedule.card.vault_customer_id
            and _decimal(record.get("amount")) == schedule.amount
            and str(record.get("frequency") or "") == schedule.frequency
            and _date(record.get("start_date")) == schedule.start_date
        ):
            return schedule
    return None


def _add_outside(
    paytrace: Connection, card: CardOnFile | None, record: dict[str, Any]
) -> RecurringSchedule | None:
    """A schedule made outside the portal on a card on file, so the list shows it."""
    amount = _decimal(record.get("amount"))
    start = _date(record.get("start_date"))
    frequency = str(record.get("frequency") or "")
    if (
        card is None
        or amount is None
        or amount <= 0
        or start is None
        or frequency not in Frequency.values
    ):
        return None
    return RecurringSchedule(
        card=card,
        paytrace=paytrace,
        custno=card.custno,
        amount=amount,
        frequency=frequency,
        start_date=start,
        description=str(record.get("description") or "")[:255],
        invoice_reference=str(record.get("invoice_id") or "")[:20],
        error="Made outside the portal; found by the sync.",
    )


def _apply(schedule: RecurringSchedule, record: dict[str, Any]) -> None:
    schedule.recurrence_id = str(record.get("id") or schedule.recurrence_id)[:50]
    status = str(record.get("status") or "active").strip().lower()
    state = STATUS_STATES.get(status, State.ACTIVE)
    if schedule.state == State.CANCELLED and state == State.ACTIVE:
        state = State.CANCELLED  # cancelled here; PayTrace's copy is stale
    schedule.state = state
    schedule.next_run = (
        _date(record.get("next_date")) if state == State.ACTIVE else None
    )
    count = record.get("repeat_count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        schedule.charges_made = count
    total = record.get("total_count")
    if isinstance(total, int) and not isinstance(total, bool) and 0 <= total <= 100000:
        schedule.total_count = total
    if state == State.ACTIVE and schedule.error.startswith("PayTrace did not answer"):
        schedule.error = ""
    schedule.synced_at = timezone.now()
    schedule.save()


def _date(value: object) -> date | None:
    if not isinstance(value, str) or not value.strip():
        return None
    for shape in (PAYTRACE_DATE, "%Y-%m-%d"):
        try:
            return datetime.strptime(value.strip(), shape).date()  # noqa: DTZ007 - a date
        except ValueError:
            continue
    return None


def _decimal(value: object) -> Decimal | None:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None
