"""Autopay: charge the cards on file of customers flagged for it when invoices fall due.

A run over one Sage Pro connection (`run_autopay`):

1. Takes the connection's lease (`autopay:<pk>`); a second run at the same time is
   recorded as SKIPPED and charges nothing. The lease is only a courtesy: what makes
   two runs safe is the idempotency key below.
2. Plans (`plan_run`, also the "Run autopay now" preview): for every active card with
   `autopay` set, the customer's open invoices (read fresh from Sage Pro when it
   answers, else the mirror) whose *charge day* (due date from `mappings.terms` plus
   `days_from_due`) is today or at most `catch_up_days` before. An invoice is skipped,
   with the reason in the report, when its balance is above the maximum, it is a credit
   memo, it was paid, another charge (any source) approved it or is under way, or an
   earlier autopay attempt on this card declined hard or failed.
3. Charges each planned invoice through `integrations.charging.request_charge` with
   the key `autopay:<sagepro pk>:<invno>:<attempt>`: attempt `n` of an invoice is one
   charge whoever asks, however often. The attempts already made are read from the
   `Charge` rows themselves (written before PayTrace is called), so a run that died
   halfway is continued, never repeated.
4. Acts on the answer: a soft decline is tried again `retry_days[n-1]` days later (the
   run of that day makes attempt `n+1`); after the last retry, or on a hard decline
   (autopay then stops on the card), a failure (PayTrace refused) or an unknown outcome
   left for the charging sweeper, the report says so, and all but the unknown open a
   review item.
5. Records every invoice as an `AutopayAttempt`, the totals on the `AutopayRun`, and
   e-mails the report to the settings' finance addresses.

`run_scheduled()` (hourly) runs each enabled connection once per business day.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from integrations.cardnumbers import might_hold_card_number
from integrations.connectors.base import ConnectorError
from integrations.models import Lease, MirroredCustomer, MirroredInvoice, ReviewItem
from integrations.models.autopay import AutopayAttempt, AutopayRun, AutopaySettings
from integrations.models.cards import CardOnFile
from integrations.models.charges import Charge
from integrations.models.connections import Connection
from integrations.models.storage import saved_user
from mappings.declines import SOFT, parse_retry_days
from mappings.fields import business_date
from mappings.formatting import format_money
from mappings.terms import due_date

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

KEY_SCOPE = "autopay"
LEASE_SECONDS = 30 * 60
ZERO = Decimal("0.00")
Outcome = AutopayAttempt.Outcome
IN_FLIGHT = (Charge.State.PENDING, Charge.State.SENDING, Charge.State.UNKNOWN)


class AutopayError(Exception):
    """A refusal shown to a person (e.g. "Run autopay now" on a connection without
    settings)."""


def business_today() -> date:
    return business_date(timezone.now(), settings.BUSINESS_TIME_ZONE)


def idempotency_key(sagepro: Connection, invno: str, attempt: int) -> str:
    return f"{KEY_SCOPE}:{sagepro.pk}:{invno}:{attempt}"


def lease_name(sagepro: Connection) -> str:
    return f"autopay:{sagepro.pk}"


def finance_addresses(text: str) -> list[str]:
    """The settings' e-mail list as addresses; raises ValidationError naming a bad one."""
    addresses = [part.strip() for part in re.split(r"[,;\s]+", text or "") if part]
    for address in addresses:
        if might_hold_card_number(address):
            raise ValidationError(
                "One of the addresses holds what looks like a card number; give the "
                "finance team's e-mail addresses only."
            )
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(
                f"{address!r} is not an e-mail address; give one address per line "
                "(or separate them with commas)."
            ) from None
    return list(dict.fromkeys(addresses))


# --- planning --------------------------------------------------------------------


@dataclass
class PlannedInvoice:
    """One invoice a run would charge, or skip and why."""

    card: CardOnFile
    custno: str
    invno: str
    amount: Decimal
    due_date: date | None
    charge_on: date | None
    attempt: int = 0  # the attempt to make; 0 when skipped
    skip: str = ""  # why it is not charged; empty when it is
    next_try_on: date | None = None
    terms_rule: str = ""

    @property
    def to_charge(self) -> bool:
        return not self.skip

    @property
    def key(self) -> str:
        return f"{self.card.pk}:{self.invno}:{self.amount}:{self.attempt}"


@dataclass
class Plan:
    sagepro: Connection
    today: date
    items: list[PlannedInvoice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def to_charge(self) -> list[PlannedInvoice]:
        return [item for item in self.items if item.to_charge]

    @property
    def skipped(self) -> list[PlannedInvoice]:
        return [item for item in self.items if not item.to_charge]

    @property
    def total(self) -> Decimal:
        return sum((item.amount for item in self.to_charge), ZERO)

    @property
    def fingerprint(self) -> str:
        """Changes whenever what would be charged changes (the preview's confirmation
        carries it)."""
        text = "|".join(sorted(item.key for item in self.to_charge))
        return hashlib.sha256(f"{self.today}|{text}".encode()).hexdigest()


def settings_for(sagepro: Connection) -> AutopaySettings:
    found = AutopaySettings.objects.filter(sagepro=sagepro).first()
    if found is None:
        raise AutopayError(
            f"{sagepro.name} has no autopay settings; add them under Autopay settings "
            "first."
        )
    return found


def plan_run(
    sagepro: Connection,
    *,
    today: date | None = None,
    autopay_settings: AutopaySettings | None = None,
    refresh: bool = True,
) -> Plan:
    """What a run today would charge and skip, without charging anything."""
    config = autopay_settings or settings_for(sagepro)
    today = today or business_today()
    plan = Plan(sagepro=sagepro, today=today)
    retry_days = _retry_days(config, plan)
    cards = list(
        CardOnFile.objects.filter(
            sagepro=sagepro, autopay=True, state=CardOnFile.State.ACTIVE
        ).order_by("custno", "pk")
    )
    if not cards:
        return plan
    custnos = sorted({card.custno for card in cards})
    still_open = _refresh(sagepro, custnos, plan) if refresh else None
    terms = dict(
        MirroredCustomer.objects.filter(
            connection=sagepro, custno__in=custnos
        ).values_list("custno", "terms")
    )
    invoices: dict[str, list[MirroredInvoice]] = defaultdict(list)
    for invoice in (
        MirroredInvoice.objects.filter(
            connection=sagepro, custno__in=custnos, deleted=False
        )
        .exclude(balance=0)
        .order_by("invdte", "invno")
    ):
        invoices[invoice.custno].append(invoice)
    charges = _charges(sagepro, [i.invno for rows in invoices.values() for i in rows])
    for card in cards:
        for invoice in invoices.get(card.custno, []):
            item = _plan_invoice(
                config,
                card,
                invoice,
                terms.get(card.custno, ""),
                charges.get(invoice.invno, []),
                retry_days,
                today,
                still_open.get(card.custno) if still_open is not None else None,
            )
            if item is not None:
                plan.items.append(item)
    return plan


def _retry_days(config: AutopaySettings, plan: Plan) -> list[int]:
    try:
        return parse_retry_days(config.retry_days)
    except ValueError as exc:
        plan.notes.append(
            f"The retry days {config.retry_days!r} cannot be read ({exc}); soft "
            "declines are not retried until they are fixed."
        )
        return []


def _refresh(
    sagepro: Connection, custnos: list[str], plan: Plan
) -> dict[str, set[str]]:
    """Read each customer (for its terms) and its open invoices from Sage Pro into
    the mirror; answer the open invoice numbers per customer that Sage Pro answered
    for (a customer it did not answer for is left to the mirror)."""
    from integrations.mirror import (
        mirror_key,
        refresh_customer,
        refresh_open_invoices,
    )

    still_open: dict[str, set[str]] = {}
    try:
        gateway = sagepro.sage()
    except Exception as exc:  # a connection without credentials, say
        plan.notes.append(f"Sage Pro could not be read ({exc}); used the mirror.")
        return still_open
    failed: list[str] = []
    for custno in custnos:
        try:
            refresh_customer(sagepro, custno, gateway=gateway)
            rows = refresh_open_invoices(sagepro, custno, gateway=gateway)
        except ConnectorError as exc:
            failed.append(custno)
            logger.warning(
                "Autopay of %s: open invoices of %s not read: %s",
                sagepro.slug,
                custno,
                exc,
            )
            continue
        still_open[custno] = {mirror_key(row.get("invno")) for row in rows}
    if failed:
        plan.notes.append(
            "Sage Pro did not answer for "
            + ", ".join(failed)
            + "; their invoices were taken from the mirror (each charge still reads "
            "the invoice fresh before charging)."
        )
    return still_open


def _charges(sagepro: Connection, invnos: list[str]) -> dict[str, list[Charge]]:
    found: dict[str, list[Charge]] = defaultdict(list)
    for charge in Charge.objects.filter(sagepro=sagepro, invno__in=invnos).order_by(
        "created_at", "pk"
    ):
        found[charge.invno].append(charge)
    return found


def attempt_number(charge: Charge) -> int:
    """The attempt an autopay charge was (from its key), 0 for any other charge."""
    if charge.key_scope != KEY_SCOPE:
        return 0
    tail = charge.idempotency_key.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _plan_invoice(
    config: AutopaySettings,
    card: CardOnFile,
    invoice: MirroredInvoice,
    terms: str,
    charges: list[Charge],
    retry_days: list[int],
    today: date,
    still_open: set[str] | None,
) -> PlannedInvoice | None:
    """The plan for one invoice, or None when today is not its day (not due yet, or
    its day passed more than `catch_up_days` ago)."""
    if invoice.invdte is None:
        due, rule = None, "no invoice date"
        charge_on = None
    else:
        found = due_date(invoice.invdte, terms, config.default_net_days)
        due, rule = found.on, found.rule
        charge_on = due + timedelta(days=config.days_from_due)
    item = PlannedInvoice(
        card=card,
        custno=card.custno,
        invno=invoice.invno,
        amount=invoice.balance,
        due_date=due,
        charge_on=charge_on,
        terms_rule=rule,
    )
    window_start = today - timedelta(days=config.catch_up_days)
    autopay_charges = sorted(
        (c for c in charges if attempt_number(c)), key=attempt_number
    )
    last = autopay_charges[-1] if autopay_charges else None
    attempt = attempt_number(last) + 1 if last else 1
    day = charge_on
    waiting = False
    if last is not None and last.card_id != card.pk:
        # A new card after the old one declined: its enrolment day counts as a
        # charge day, so "send an enrolment link, then switch autopay on" charges it.
        enrolled = business_date(card.created_at, settings.BUSINESS_TIME_ZONE)
        day = max(charge_on, enrolled) if charge_on else enrolled
    elif (
        last is not None
        and last.state == Charge.State.DECLINED
        and last.decline_category == SOFT
    ):
        n = attempt_number(last)
        if n > len(retry_days):
            item.skip = _stopped_reason(last, f"no retries left after {n} tries")
        else:
            day = _next_try(last, retry_days[n - 1])
            item.next_try_on = day
            waiting = day is not None and day > today
    elif last is not None and last.state in (
        Charge.State.FAILED,
        Charge.State.DECLINED,
    ):
        item.skip = _stopped_reason(last, "autopay does not charge this card again")
    if day is None:
        if not item.skip:
            item.skip = "no invoice date in Sage Pro, so no due date; charge it by hand"
        return item if invoice.balance > 0 else None
    if day < window_start or (day > today and not waiting):
        return None
    if waiting:
        item.skip = (
            f"declined softly ({last.approval_message.strip() if last else ''}); "
            f"next try on {day:%Y-%m-%d}"
        )
        return item
    if item.skip:
        return item
    item.skip = _skip_reason(config, card, invoice, charges, today, still_open)
    if not item.skip:
        item.attempt = attempt
    return item


def _next_try(last: Charge, days: int) -> date:
    recorded = (
        AutopayAttempt.objects.filter(charge=last)
        .exclude(next_try_on=None)
        .values_list("next_try_on", flat=True)
        .first()
    )
    if recorded is not None:
        return recorded
    return business_date(last.created_at, settings.BUSINESS_TIME_ZONE) + timedelta(
        days=days
    )


def _stopped_reason(last: Charge, what: str) -> str:
    said = (
        last.approval_message.strip() or last.error.strip() or last.get_state_display()
    )
    return (
        f"attempt {attempt_number(last)} on {last.created_at:%Y-%m-%d} was "
        f"{last.get_state_display().lower()} ({said}); {what}: see the review item"
    )


def _skip_reason(
    config: AutopaySettings,
    card: CardOnFile,
    invoice: MirroredInvoice,
    charges: list[Charge],
    today: date,
    still_open: set[str] | None,
) -> str:
    """Why an invoice due today is not charged, or "" when it is."""
    if invoice.artype.strip().upper() == "C" or invoice.balance < 0:
        return "a credit memo (negative balance): nothing to charge"
    if still_open is not None and invoice.invno not in still_open:
        return "paid (Sage Pro no longer lists it as open)"
    for charge in charges:
        if charge.state == Charge.State.APPROVED:
            return (
                f"already charged: {charge.reference} "
                f"({charge.get_source_display().lower()}, {charge.created_at:%Y-%m-%d})"
            )
        if charge.state in IN_FLIGHT:
            return f"a charge is under way: {charge.reference} ({charge.get_state_display().lower()})"
    if invoice.balance > config.max_amount:
        return (
            f"the balance {format_money(invoice.balance)} is above the autopay "
            f"maximum of {format_money(config.max_amount)}; charge it by hand"
        )
    if card.is_expired(today):
        return f"the card {card} expired ({card.expiry}); send an enrolment link"
    return ""


# --- the run -----------------------------------------------------------------------


def run_autopay(
    sagepro: Connection,
    *,
    today: date | None = None,
    trigger: str = "schedule",
    user: AbstractBaseUser | None = None,
) -> AutopayRun:
    """Charge what is due on one Sage Pro connection today; record and e-mail the
    report. Safe to run twice, also at the same time."""
    config = settings_for(sagepro)
    today = today or business_today()
    holder = uuid.uuid4().hex
    run = AutopayRun.objects.create(
        sagepro=sagepro,
        run_date=today,
        trigger=trigger[:20],
        started_by=saved_user(user),
    )
    if not Lease.acquire(lease_name(sagepro), holder, LEASE_SECONDS):
        run.state = AutopayRun.State.SKIPPED
        run.finished_at = timezone.now()
        run.error = "Another autopay run of this connection was under way."
        run.save(update_fields=["state", "finished_at", "error"])
        return run
    try:
        plan = plan_run(sagepro, today=today, autopay_settings=config)
        _carry_out(run, plan, config)
        run.state = AutopayRun.State.FINISHED
        run.error = "\n".join(plan.notes)
    except Exception as exc:
        logger.exception("Autopay of %s failed", sagepro.slug)
        run.state = AutopayRun.State.FAILED
        run.error = f"The run stopped: {type(exc).__name__}: {exc}"[:2000]
    finally:
        Lease.release(lease_name(sagepro), holder)
    run.finished_at = timezone.now()
    run.save()
    _email_report(run, config)
    return run


def _carry_out(run: AutopayRun, plan: Plan, config: AutopaySettings) -> None:
    stopped: dict[int, str] = {}  # card pk → why autopay stopped during this run
    for item in plan.items:
        if item.to_charge and item.card.pk in stopped:
            item.skip = stopped[item.card.pk]
        if not item.to_charge:
            _record(run, item, Outcome.SKIPPED, item.skip, next_try_on=item.next_try_on)
            run.skipped_count += 1
            continue
        try:
            outcome = _charge(run, item, config)
        except Exception as exc:
            # A bug, not a refusal: logged with its traceback, the run goes on.
            logger.exception("Autopay of invoice %s failed", item.invno)
            outcome = _record(
                run,
                item,
                Outcome.FAILED,
                f"an unexpected error ({type(exc).__name__}); nothing is known to be "
                "charged; the error is in the log",
            )
        if outcome.outcome == Outcome.CHARGED:
            run.charged_count += 1
            run.charged_amount += outcome.amount
        elif outcome.outcome == Outcome.SKIPPED:
            run.skipped_count += 1
        else:
            run.failed_count += 1
        if outcome.outcome == Outcome.HARD_DECLINE:
            stopped[item.card.pk] = (
                f"autopay stopped on this card after invoice {item.invno} declined "
                "hard in this run"
            )
        run.save(
            update_fields=[
                "charged_count",
                "charged_amount",
                "failed_count",
                "skipped_count",
            ]
        )


def _charge(
    run: AutopayRun, item: PlannedInvoice, config: AutopaySettings
) -> AutopayAttempt:
    from integrations import charging

    card = item.card
    try:
        result = charging.request_charge(
            card=card,
            invno=item.invno,
            amount=item.amount,
            idempotency_key=idempotency_key(run.sagepro, item.invno, item.attempt),
            key_scope=KEY_SCOPE,
            source=Charge.Source.AUTOPAY,
            requested_by=None,
            requested_by_name="autopay",
        )
    except charging.ChargeRefused as exc:
        return _record(run, item, Outcome.SKIPPED, f"not charged: {exc.message}")
    except charging.IdempotencyConflict as exc:
        reason = (
            f"attempt {item.attempt} was already made for another amount "
            f"({exc.charge.reference}, {format_money(exc.charge.amount)}); a person "
            "must look at it"
        )
        attempt = _record(run, item, Outcome.FAILED, reason, charge=exc.charge)
        _open_review(exc.charge, reason)
        return attempt
    charge = result.charge
    if result.replayed:
        # Another run made this attempt at the same time (the key is the invoice and
        # the attempt): it reports the charge and acts on it; this one only says so.
        return _record(
            run,
            item,
            Outcome.SKIPPED,
            f"another autopay run made attempt {item.attempt} at the same time "
            f"({charge.reference}: {charge.get_state_display().lower()})",
            charge=charge,
        )
    state = charge.state
    if state == Charge.State.APPROVED:
        return _record(
            run,
            item,
            Outcome.CHARGED,
            f"approved ({charge.approval_code or charge.transaction_id})",
            charge=charge,
        )
    if state == Charge.State.DECLINED:
        return _declined(run, item, charge, config)
    if state == Charge.State.FAILED:
        reason = (
            f"PayTrace refused the charge: {charge.error or charge.approval_message}"
        )
        attempt = _record(run, item, Outcome.FAILED, reason, charge=charge)
        _open_review(
            charge,
            f"Autopay could not charge invoice {item.invno} of customer "
            f"{item.custno} on {card}: {reason}. Nothing was charged and autopay "
            "will not try this invoice again on this card; fix the cause and charge "
            "it from the invoice (“Charge card on file”).",
        )
        return attempt
    return _record(
        run,
        item,
        Outcome.UNKNOWN,
        "PayTrace's answer was lost; the charge is being looked up by its reference "
        f"{charge.reference} (never charged again before it is found)",
        charge=charge,
    )


def _declined(
    run: AutopayRun, item: PlannedInvoice, charge: Charge, config: AutopaySettings
) -> AutopayAttempt:
    card = item.card
    words = charge.approval_message.strip() or "no reason given"
    if charge.decline_category == SOFT:
        try:
            retry_days = parse_retry_days(config.retry_days)
        except ValueError:
            retry_days = []
        if item.attempt <= len(retry_days):
            next_try = run.run_date + timedelta(days=retry_days[item.attempt - 1])
            return _record(
                run,
                item,
                Outcome.SOFT_DECLINE,
                f"declined: {words} (temporary); to be tried again on {next_try:%Y-%m-%d}",
                charge=charge,
                next_try_on=next_try,
            )
        reason = f"declined: {words}; no retries left after {item.attempt} tries"
        attempt = _record(run, item, Outcome.RETRIES_EXHAUSTED, reason, charge=charge)
        _open_review(
            charge,
            f"Autopay gave up on invoice {item.invno} of customer {item.custno}: "
            f"{card} was declined {item.attempt} times, last with the issuer's words "
            f"“{words}”. Ask the customer to pay or for another card (send an "
            "enrolment link), then charge the invoice from its page.",
        )
        return attempt
    reason = (
        f"declined: {words} (the card will not work again); autopay stopped on {card}"
    )
    attempt = _record(run, item, Outcome.HARD_DECLINE, reason, charge=charge)
    stopped = CardOnFile.objects.filter(pk=card.pk, autopay=True).update(
        autopay=False,
        autopay_stopped_at=timezone.now(),
        autopay_stopped_reason=(
            f"Invoice {item.invno} declined on {run.run_date:%Y-%m-%d}: {words}"
        )[:1000],
    )
    if stopped:
        card.autopay = False
    _open_review(
        charge,
        f"Autopay stopped for customer {item.custno}: {card} was declined for invoice "
        f"{item.invno} ({format_money(item.amount)}) with the issuer's words "
        f"“{words}”, which means the card will not work again. Fix: send the "
        "customer an enrolment link for a new card, then switch autopay on for the "
        "new card; autopay then charges the invoice.",
    )
    return attempt


def _record(
    run: AutopayRun,
    item: PlannedInvoice,
    outcome: str,
    reason: str,
    *,
    charge: Charge | None = None,
    next_try_on: date | None = None,
) -> AutopayAttempt:
    return AutopayAttempt.objects.create(
        run=run,
        card=item.card,
        sagepro=run.sagepro,
        custno=item.custno,
        invno=item.invno,
        due_date=item.due_date,
        amount=item.amount,
        attempt=item.attempt if outcome != Outcome.SKIPPED else 0,
        charge=charge,
        outcome=outcome,
        reason=reason,
        next_try_on=next_try_on,
    )


def _open_review(charge: Charge, reason: str) -> ReviewItem:
    """One open item per charge: a second run answered with the same charge (a replay)
    finds the first one's."""
    existing = ReviewItem.objects.filter(
        charge=charge, kind=ReviewItem.Kind.CHARGE, state=ReviewItem.State.OPEN
    ).first()
    if existing is not None:
        return existing
    return ReviewItem.objects.create(
        kind=ReviewItem.Kind.CHARGE, transaction=None, charge=charge, reason=reason
    )


# --- the report and its e-mail -------------------------------------------------------


@dataclass(frozen=True)
class ReportLine:
    """One invoice of a run's report, ready to show."""

    custno: str
    invno: str
    amount: str
    card: str
    attempt: int
    outcome: str
    outcome_label: str
    reason: str
    next_try_on: date | None
    charge_reference: str
    charge_id: int | None


@dataclass
class Report:
    run: AutopayRun
    charged: list[ReportLine]
    failed: list[ReportLine]
    skipped: list[ReportLine]

    @property
    def is_empty(self) -> bool:
        return not (self.charged or self.failed or self.skipped)


def card_label(card: CardOnFile) -> str:
    return f"{card.brand or 'Card'} …{card.last4} ({card.expiry})"


def report(run: AutopayRun) -> Report:
    """The run's invoices in three tables: charged, failed (declined, refused,
    unknown) and skipped, each by customer and invoice."""
    lines: dict[str, list[ReportLine]] = {"charged": [], "failed": [], "skipped": []}
    for attempt in run.attempts.select_related("card", "charge").order_by(
        "custno", "invno", "pk"
    ):
        line = ReportLine(
            custno=attempt.custno,
            invno=attempt.invno,
            amount=format_money(attempt.amount),
            card=card_label(attempt.card),
            attempt=attempt.attempt,
            outcome=attempt.outcome,
            outcome_label=attempt.get_outcome_display(),
            reason=attempt.reason,
            next_try_on=attempt.next_try_on,
            charge_reference=attempt.charge.reference if attempt.charge else "",
            charge_id=attempt.charge_id,
        )
        if attempt.outcome == Outcome.CHARGED:
            lines["charged"].append(line)
        elif attempt.outcome == Outcome.SKIPPED:
            lines["skipped"].append(line)
        else:
            lines["failed"].append(line)
    return Report(run=run, **lines)


def _email_report(run: AutopayRun, config: AutopaySettings) -> None:
    """Send the finished run's report to finance, once (a run that charged, declined
    and skipped nothing sends nothing)."""
    if run.state not in (AutopayRun.State.FINISHED, AutopayRun.State.FAILED):
        return
    try:
        to = finance_addresses(config.finance_emails)
    except ValidationError as exc:
        logger.warning("Autopay report of run %s not e-mailed: %s", run.pk, exc)
        return
    data = report(run)
    if not to or (data.is_empty and run.state == AutopayRun.State.FINISHED):
        return
    if (
        run.state == AutopayRun.State.FAILED
        and AutopayRun.objects.filter(
            sagepro=run.sagepro, run_date=run.run_date, emailed_at__isnull=False
        ).exists()
    ):
        return  # the hourly retries of a failing day send one e-mail, not one an hour
    # Claim the sending first: a run is e-mailed once even if this is called twice.
    if not AutopayRun.objects.filter(pk=run.pk, emailed_at=None).update(
        emailed_at=timezone.now(), emailed_to=", ".join(to)
    ):
        return
    context = {
        "report": data,
        "run": run,
        "charged_amount": format_money(run.charged_amount),
        "page_path": reverse("admin:integrations_autopayrun_change", args=[run.pk]),
    }
    subject = (
        f"Autopay {run.run_date:%Y-%m-%d}: {run.charged_count} charged "
        f"({format_money(run.charged_amount)}), {run.failed_count} failed, "
        f"{run.skipped_count} skipped"
    )
    if run.state == AutopayRun.State.FAILED:
        subject = f"Autopay {run.run_date:%Y-%m-%d} stopped with an error"
    try:
        send_mail(
            subject,
            render_to_string("integrations/autopay/report_email.txt", context),
            settings.DEFAULT_FROM_EMAIL,
            to,
            html_message=render_to_string(
                "integrations/autopay/report_email.html", context
            ),
        )
    except Exception:
        logger.exception("Autopay report of run %s not e-mailed", run.pk)
        AutopayRun.objects.filter(pk=run.pk).update(emailed_at=None, emailed_to="")
        return
    run.refresh_from_db(fields=["emailed_at", "emailed_to"])


# --- the schedule ------------------------------------------------------------------


def run_scheduled() -> list[str]:
    """The hourly task: run each enabled connection once per business day (a run
    finished today → nothing)."""
    today = business_today()
    done: list[str] = []
    for config in AutopaySettings.objects.filter(
        enabled=True, sagepro__is_active=True
    ).select_related("sagepro"):
        if _ran_today(config.sagepro, today):
            continue
        run = run_autopay(config.sagepro, today=today, trigger="schedule")
        done.append(
            f"{config.sagepro.slug}: {run.state}, {run.charged_count} charged, "
            f"{run.failed_count} failed, {run.skipped_count} skipped"
        )
    return done


def _ran_today(sagepro: Connection, today: date) -> bool:
    # A failed run is tried again next hour; one still running holds the lease, so
    # the new run is recorded as skipped.
    return AutopayRun.objects.filter(
        sagepro=sagepro, run_date=today, state=AutopayRun.State.FINISHED
    ).exists()
