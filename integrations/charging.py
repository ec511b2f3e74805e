"""Charging an invoice on a card on file (issue 15), once per idempotency key.

`request_charge` is the one way in (the API, the admin's "Charge card on file" and
autopay all call it). Its steps, in order:

1. **Validate** (`ChargeRefused`, nothing stored): the key, the amount, the card
   (active, not expired) and the invoice, read fresh from Sage Pro (the mirror stands
   in when Sage Pro cannot be reached, and the charge says so): the card's customer's,
   open, and an amount above its balance only with `confirm_over_balance`.
2. **Record, then call**: the `Charge` row is inserted PENDING and committed before
   PayTrace hears of it. `(key_scope, idempotency_key)` is unique, so a second request
   with the key (concurrent, or from another process) reads the first one's row: the
   same request is a replay, another one an `IdempotencyConflict`.
3. **Claim and send**: PENDING → SENDING by a conditional UPDATE (one process wins),
   committed, then `sale/by_customer` with the charge's `reference` in the sale's
   description. Approved, declined (102/103, classified soft or hard) and refused
   (FAILED) are final; a timeout, a dropped connection or a 5xx is UNKNOWN.
4. **Never twice after a crash**: a charge left SENDING past `SENDING_GRACE` (the
   process died between PayTrace's answer and the commit) or UNKNOWN is looked up in
   PayTrace's export by its reference before anything else; found, its outcome is
   adopted; not found, and only then, it is sent again (claimed the same way).
   Replays do this, and so does `sweep_unknown` (every five minutes). A charge still
   unsettled `REVIEW_AFTER` after it was sent opens a review item.
5. **The cash flows back through the pipeline**: an approved sale's export record is
   fed to the pipeline as a poll would feed it (`polling.feed_record`), so the payment
   is matched to the invoice and its receipt posted once, however many paths bring it.

Declines are final here: this module never retries one (autopay decides retries, with
a new key per attempt).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations import mirror, polling
from integrations.cardnumbers import mask_card_numbers
from integrations.connectors.base import ConnectorError
from integrations.connectors.paytrace import DECLINE_CODES
from integrations.models import MirroredInvoice, PaymentTransaction, ReviewItem
from integrations.models.cards import CardOnFile
from integrations.models.charges import Charge
from integrations.models.failures import describe_failure
from mappings.declines import classify
from mappings.formatting import format_money

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# The largest amount a DecimalField(max_digits=14, decimal_places=2) holds.
MAX_AMOUNT = Decimal("999999999999.99")
KEY_MAX_LENGTH = 200
# Longer than any PayTrace call can take (the connector's timeout is 10 s): a charge
# SENDING for longer than this has no process waiting on its answer any more.
SENDING_GRACE = timedelta(seconds=60)
# A replay waits this long for a charge another request is sending.
REPLAY_WAIT_SECONDS = 5.0
# Charges still unsettled this long after they were sent go to a person.
REVIEW_AFTER = timedelta(minutes=30)
# Recorded but never claimed for this long: the requester is gone; nothing was sent.
ABANDON_PENDING_AFTER = timedelta(minutes=15)
# At most this many sales are asked of PayTrace for one charge (each only after a
# lookup found none of the earlier ones).
MAX_ATTEMPTS = 3

BALANCE_FROM_SAGEPRO = "sagepro"
BALANCE_FROM_MIRROR = "mirror"
# Plain ASCII decimal notation: no exponent, no separators, no other scripts' digits.
_AMOUNT = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?", re.ASCII)
REFERENCE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # base32, no 0/1/8/9


class ChargeRefused(Exception):
    """A bad charge request: nothing was recorded and nothing was charged.

    `field` names what to fix (`amount`, `invno`, `customer_id`,
    `confirm_over_balance`, `idempotency_key`); `message` says how, for a person.
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class IdempotencyConflict(Exception):
    """The idempotency key was already used with another card, invoice or amount."""

    def __init__(self, charge: Charge) -> None:
        super().__init__(
            f"This idempotency key was already used for charge {charge.reference} "
            "with another customer, invoice or amount; use a new key for a new charge."
        )
        self.charge = charge


@dataclass
class ChargeOutcome:
    charge: Charge
    replayed: bool  # True: the key was seen before; nothing new was charged


@dataclass
class Invoice:
    """An invoice as the charge sees it: read fresh, or from the mirror."""

    invno: str
    custno: str
    balance: Decimal
    invamt: Decimal
    invdte: Any
    source: str  # BALANCE_FROM_SAGEPRO or BALANCE_FROM_MIRROR


@dataclass
class ChargePreview:
    """What "Confirm charge" would do, for the admin's confirmation page."""

    card: CardOnFile
    invno: str
    amount: Decimal | None
    invoice: Invoice | None
    problems: list[ChargeRefused] = field(default_factory=list)
    earlier: list[Charge] = field(default_factory=list)

    @property
    def over_balance(self) -> bool:
        return bool(self.invoice and self.amount and self.amount > self.invoice.balance)

    @property
    def from_mirror(self) -> bool:
        return bool(self.invoice and self.invoice.source == BALANCE_FROM_MIRROR)


# Validation ------------------------------------------------------------------------


def read_amount(value: object) -> Decimal:
    """A charge amount: a positive Decimal (or decimal text) with at most 2 places."""
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise ChargeRefused(
            'Give the amount as a string of dollars and cents, such as "12.34".',
            "amount",
        )
    text = str(value).strip()
    if text.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        raise ChargeRefused("The amount must be a finite number.", "amount")
    if not _AMOUNT.fullmatch(text):
        raise ChargeRefused(
            'The amount must be dollars and cents in plain digits, such as "12.34".',
            "amount",
        )
    try:
        amount = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        raise ChargeRefused("The amount is not a number.", "amount") from None
    if amount <= 0:
        raise ChargeRefused("The amount must be more than zero.", "amount")
    if amount > MAX_AMOUNT:
        raise ChargeRefused(f"The amount must be at most {MAX_AMOUNT}.", "amount")
    if amount != amount.quantize(CENT):
        raise ChargeRefused(
            "The amount has more than two decimal places; give whole cents.", "amount"
        )
    return amount.quantize(CENT)


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ChargeRefused("An idempotency key is required.", "idempotency_key")
    if len(key) > KEY_MAX_LENGTH:
        raise ChargeRefused(
            f"The idempotency key is longer than {KEY_MAX_LENGTH} characters.",
            "idempotency_key",
        )
    if not (key.isascii() and key.isprintable()):
        raise ChargeRefused(
            "The idempotency key must be printable ASCII.", "idempotency_key"
        )
    if mask_card_numbers(key, keyed=True)[1]:
        # The storage net would mask it, and the key would then never be found again.
        raise ChargeRefused(
            "The idempotency key looks like a card number: don't put card data in "
            "the key; use a random value such as a UUID.",
            "idempotency_key",
        )
    return key


def check_card(card: CardOnFile) -> None:
    if card.state != CardOnFile.State.ACTIVE:
        raise ChargeRefused(
            f"The card ending {card.last4} was removed; put a new card on file.",
            "customer_id",
        )
    if card.is_expired():
        raise ChargeRefused(
            f"The card ending {card.last4} expired at the end of {card.expiry}; "
            "put a new card on file.",
            "customer_id",
        )


def read_invoice(card: CardOnFile, invno: object) -> Invoice:
    """The invoice, read fresh from Sage Pro (the mirror when Sage Pro is out of
    reach); refused when unknown, another customer's, or not open."""
    if not isinstance(invno, str) or not invno.strip():
        raise ChargeRefused("Name the Sage Pro invoice to charge.", "invno")
    invno = invno.strip()
    if len(invno) > 20 or not invno.isprintable():
        raise ChargeRefused(
            "Not a Sage Pro invoice number (at most 20 characters).", "invno"
        )
    if mask_card_numbers(invno)[1]:
        # Never sent on to Sage Pro (it would land in a URL and its logs).
        raise ChargeRefused(
            "That looks like a card number, not an invoice number: don't put card "
            "data in invno.",
            "invno",
        )
    invoice = _fresh_invoice(card, invno)
    if invoice is None:
        raise ChargeRefused(f"Sage Pro has no invoice {shown(invno)}.", "invno")
    if mirror.mirror_key(invoice.custno) != mirror.mirror_key(card.custno):
        raise ChargeRefused(
            f"Invoice {invno} is not customer {card.custno}'s; charge it on that "
            "customer's card.",
            "invno",
        )
    if invoice.balance <= 0:
        raise ChargeRefused(
            f"Invoice {invno} is not open (balance {invoice.balance}); nothing to "
            "charge.",
            "invno",
        )
    return invoice


def _fresh_invoice(card: CardOnFile, invno: str) -> Invoice | None:
    try:
        data = card.sagepro.sage().get_invoice(invno)
    except ConnectorError as exc:
        logger.warning(
            "charge: Sage Pro could not be read for invoice %s, using the mirror: %s",
            invno,
            describe_failure(exc),
        )
        row = MirroredInvoice.objects.filter(
            connection=card.sagepro, invno=mirror.mirror_key(invno), deleted=False
        ).first()
        if row is None:
            row = MirroredInvoice.objects.filter(
                connection=card.sagepro, invno=invno, deleted=False
            ).first()
        if row is None:
            return None
        return Invoice(
            invno=row.invno,
            custno=row.custno,
            balance=row.balance,
            invamt=row.invamt,
            invdte=row.invdte,
            source=BALANCE_FROM_MIRROR,
        )
    if data is None:
        return None
    return Invoice(
        invno=str(data.get("invno") or invno).strip(),
        custno=str(data.get("custno") or ""),
        balance=Decimal(str(data.get("balance") or "0")),
        invamt=Decimal(str(data.get("invamt") or "0")),
        invdte=data.get("invdte"),
        source=BALANCE_FROM_SAGEPRO,
    )


def shown(text: str) -> str:
    """Text from a request, fit to echo in a message (card numbers masked)."""
    return mask_card_numbers(text)[0]


def check_over_balance(amount: Decimal, invoice: Invoice, confirmed: bool) -> None:
    if amount > invoice.balance and not confirmed:
        raise ChargeRefused(
            f"{amount} is more than invoice {invoice.invno}'s balance "
            f"{invoice.balance}; confirm the amount above the balance to charge it.",
            "confirm_over_balance",
        )


def fingerprint(card: CardOnFile, invno: str, amount: Decimal) -> str:
    text = f"{card.vault_customer_id}\0{invno.strip()}\0{amount.quantize(CENT)}"
    return hashlib.sha256(text.encode()).hexdigest()


def new_reference() -> str:
    return "PTL-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(12))


def new_admin_key() -> str:
    """A key for one rendering of the admin's confirmation page (letters only: the
    storage net could take a long run of digits for a card number)."""
    return "admin-" + "".join(
        secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(24)
    )


# The request -----------------------------------------------------------------------


def request_charge(
    *,
    card: CardOnFile,
    invno: str,
    amount: Decimal,
    idempotency_key: str,
    key_scope: str,
    source: str,
    requested_by: User | None,
    requested_by_name: str = "",
    confirm_over_balance: bool = False,
) -> ChargeOutcome:
    """Charge `amount` on `card` for Sage Pro invoice `invno`, once per key.

    Call it outside `transaction.atomic()`: the charge is committed before PayTrace
    is called. Raises ChargeRefused (nothing stored) or IdempotencyConflict.
    """
    key = check_key(idempotency_key)
    amount = read_amount(amount)
    invno = invno.strip() if isinstance(invno, str) else invno
    wanted = fingerprint(card, str(invno), amount)
    existing = Charge.objects.filter(key_scope=key_scope, idempotency_key=key).first()
    if existing is not None:
        return _replay(existing, wanted)

    check_card(card)
    invoice = read_invoice(card, invno)
    check_over_balance(amount, invoice, confirm_over_balance)
    name = requested_by_name or (
        requested_by.get_username() if requested_by is not None else ""
    )
    charge = Charge(
        reference=new_reference(),
        key_scope=key_scope,
        idempotency_key=key,
        request_fingerprint=wanted,
        source=source,
        requested_by=requested_by,
        requested_by_name=name[:150],
        card=card,
        paytrace=card.paytrace,
        sagepro=card.sagepro,
        custno=card.custno,
        invno=invoice.invno,
        amount=amount,
        invoice_balance=invoice.balance,
        balance_source=invoice.source,
        over_balance_confirmed=amount > invoice.balance,
    )
    try:
        with transaction.atomic():
            charge.save()
    except IntegrityError:
        # Another request with the key got there first (the unique constraint).
        existing = Charge.objects.filter(
            key_scope=key_scope, idempotency_key=key
        ).first()
        if existing is None:
            raise
        return _replay(existing, wanted)
    _send(charge)
    return ChargeOutcome(charge=charge, replayed=False)


def _replay(charge: Charge, wanted: str) -> ChargeOutcome:
    if charge.request_fingerprint != wanted:
        raise IdempotencyConflict(charge)
    if not charge.is_finished:
        charge = _wait_for(charge)
    if not charge.is_finished:
        charge = settle(charge)
    return ChargeOutcome(charge=charge, replayed=True)


def _wait_for(charge: Charge) -> Charge:
    """Wait briefly while another request sends the charge."""
    deadline = time.monotonic() + REPLAY_WAIT_SECONDS
    while charge.state in (Charge.State.PENDING, Charge.State.SENDING):
        if _is_stale(charge) or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
        charge.refresh_from_db()
    return charge


def _is_stale(charge: Charge, now: Any = None) -> bool:
    """Whether no process is waiting on this charge's PayTrace call any more."""
    now = now or timezone.now()
    if charge.state == Charge.State.PENDING:
        return charge.created_at < now - SENDING_GRACE
    if charge.state == Charge.State.SENDING:
        return charge.sent_at is None or charge.sent_at < now - SENDING_GRACE
    return charge.state == Charge.State.UNKNOWN


# Sending ---------------------------------------------------------------------------


def _claim(charge: Charge) -> bool:
    """PENDING (or a charge a lookup did not find) → SENDING, by one process only."""
    now = timezone.now()
    claimed = Charge.objects.filter(
        pk=charge.pk,
        state=charge.state,
        attempts=charge.attempts,
        sent_at=charge.sent_at,
    ).update(state=Charge.State.SENDING, sent_at=now, attempts=F("attempts") + 1)
    charge.refresh_from_db()
    return bool(claimed)


def _send(charge: Charge) -> Charge:
    """Claim the charge and ask PayTrace for the sale; record what it answered."""
    if not _claim(charge):
        return charge
    try:
        reply = charge.paytrace.paytrace().sale_by_customer(
            customer_id=charge.card.vault_customer_id,
            amount=charge.amount,
            invoice_id=charge.invno,
            description=f"{charge.reference} invoice {charge.invno}",
        )
    except ConnectorError as exc:
        if exc.transient or exc.outcome_unknown:
            return _finish(
                charge, Charge.State.UNKNOWN, error=describe_failure(exc), final=False
            )
        return _finish(charge, Charge.State.FAILED, error=describe_failure(exc))
    except Exception as exc:  # a bug: the sale may have gone through; look it up
        logger.exception("charge %s: the call to PayTrace failed", charge.reference)
        return _finish(
            charge, Charge.State.UNKNOWN, error=describe_failure(exc), final=False
        )
    return _record_reply(charge, reply)


def _record_reply(charge: Charge, reply: dict[str, Any]) -> Charge:
    code = _int(reply.get("response_code"))
    message = str(reply.get("approval_message") or "")[:255]
    fields: dict[str, Any] = {
        "transaction_id": str(reply.get("transaction_id") or "")[:20],
        "response_code": code,
        "approval_code": str(reply.get("approval_code") or "")[:20],
        "approval_message": message,
    }
    if reply.get("success") is True:
        charge = _finish(charge, Charge.State.APPROVED, **fields)
        feed_sale(charge)
        return charge
    if code in DECLINE_CODES:
        verdict = classify(code, message)
        return _finish(
            charge,
            Charge.State.DECLINED,
            decline_category=verdict.category,
            error=verdict.why,
            **fields,
        )
    return _finish(
        charge,
        Charge.State.FAILED,
        error=f"PayTrace did not approve the sale: {reply.get('status_message') or ''}",
        **fields,
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _finish(charge: Charge, state: str, *, final: bool = True, **fields: Any) -> Charge:
    for name, value in fields.items():
        setattr(charge, name, value)
    charge.state = state
    charge.finished_at = timezone.now() if final else None
    charge.save()
    if state == Charge.State.APPROVED:
        logger.info("charge %s approved (%s)", charge.reference, charge.transaction_id)
    elif state != Charge.State.UNKNOWN:
        logger.info("charge %s %s", charge.reference, state)
    else:
        logger.warning("charge %s outcome unknown: %s", charge.reference, charge.error)
    return charge


# Settling lost answers -------------------------------------------------------------


def settle(charge: Charge) -> Charge:
    """Find out what happened to a charge whose answer was lost, before anything is
    charged again: look it up by reference; adopt what PayTrace has; send it again
    only when PayTrace has none and nobody is sending it."""
    if charge.is_finished or not _is_stale(charge):
        return charge
    if charge.state == Charge.State.PENDING:
        return _send(charge)  # never sent: nothing to look up
    try:
        found = lookup(charge)
    except ConnectorError as exc:
        logger.warning(
            "charge %s: PayTrace lookup failed: %s",
            charge.reference,
            describe_failure(exc),
        )
        _mark_unknown(charge, f"Looking it up failed: {describe_failure(exc)}")
        return _review_if_overdue(charge)
    if found is not None:
        return _adopt(charge, found)
    sent = charge.sent_at or charge.created_at
    if sent > timezone.now() - SENDING_GRACE:
        # A sale that timed out a moment ago may not be in the export yet: look again
        # later rather than risk charging twice.
        return charge
    if charge.attempts >= MAX_ATTEMPTS:
        _mark_unknown(
            charge,
            f"PayTrace has no sale with reference {charge.reference} after "
            f"{charge.attempts} attempts; not sent again.",
        )
        return _review_if_overdue(charge)
    logger.info(
        "charge %s: PayTrace has no sale with its reference; sending it again",
        charge.reference,
    )
    return _send(charge)


def lookup(charge: Charge) -> dict[str, Any] | None:
    """The sale PayTrace made for this charge, found by its reference (None: none)."""
    sent = charge.sent_at or charge.created_at
    connection = charge.paytrace
    tz = ZoneInfo(connection.time_zone)
    start = sent.astimezone(tz).date() - timedelta(days=1)
    end = max(polling.gateway_today(connection), start)
    records = connection.paytrace().find_by_reference(
        charge.reference, start, end, customer_id=charge.card.vault_customer_id
    )
    sales = [
        r
        for r in records
        if str(r.get("transaction_type") or "SALE").upper() == "SALE"
        and charge.reference in str(r.get("description") or "")
    ]
    approved = [r for r in sales if _record_state(r) == Charge.State.APPROVED]
    if len(approved) > 1:
        logger.error(
            "charge %s: PayTrace holds %d approved sales with its reference",
            charge.reference,
            len(approved),
        )
    return (approved or sales or [None])[0]


def _record_state(record: dict[str, Any]) -> str:
    """What an export record says of a sale (paytrace-api.md §7.2)."""
    status = str(record.get("status_code") or "").strip().upper()
    message = str(record.get("status_message") or "").upper()
    if status == "Y" or status.startswith("GB") or "SETTLED" in message:
        return Charge.State.APPROVED
    if "DECL" in message or _int(record.get("response_code")) in DECLINE_CODES:
        return Charge.State.DECLINED
    return Charge.State.FAILED  # voided, or not going to settle for another reason


def _adopt(charge: Charge, record: dict[str, Any]) -> Charge:
    state = _record_state(record)
    message = str(record.get("approval_message") or "")[:255]
    fields: dict[str, Any] = {
        "transaction_id": str(record.get("transaction_id") or "")[:20],
        "approval_code": str(record.get("approval_code") or "")[:20],
        "approval_message": message,
    }
    logger.info(
        "charge %s: found PayTrace's sale %s by reference (%s)",
        charge.reference,
        fields["transaction_id"],
        state,
    )
    if state == Charge.State.APPROVED:
        charge = _finish(
            charge, state, error="", response_code=charge.response_code or 101, **fields
        )
        feed_sale(charge, record)
        return charge
    if state == Charge.State.DECLINED:
        code = _int(record.get("response_code")) or 102
        verdict = classify(code, message)
        return _finish(
            charge,
            state,
            response_code=code,
            decline_category=verdict.category,
            error=verdict.why,
            **fields,
        )
    return _finish(
        charge,
        Charge.State.FAILED,
        error="PayTrace's sale with this reference was not approved: "
        f"{record.get('status_message') or record.get('status_code') or ''}",
        **fields,
    )


def _mark_unknown(charge: Charge, error: str) -> None:
    Charge.objects.filter(pk=charge.pk, state=charge.state).update(
        state=Charge.State.UNKNOWN, error=error
    )
    charge.refresh_from_db()


def _review_if_overdue(charge: Charge) -> Charge:
    sent = charge.sent_at or charge.created_at
    if charge.is_finished or sent > timezone.now() - REVIEW_AFTER:
        return charge
    if ReviewItem.objects.filter(
        charge=charge, kind=ReviewItem.Kind.CHARGE, state=ReviewItem.State.OPEN
    ).exists():
        return charge
    ReviewItem.objects.create(
        transaction=None,
        charge=charge,
        kind=ReviewItem.Kind.CHARGE,
        reason=(
            f"Charge {charge.reference} of {format_money(charge.amount, 'USD')} on "
            f"invoice {charge.invno} (customer {charge.custno}, card ending "
            f"{charge.card.last4}) has no known outcome since "
            f"{sent:%Y-%m-%d %H:%M} UTC: {charge.error} Look for the sale in "
            "PayTrace's virtual terminal (search its description for the reference) "
            "before charging the invoice again."
        ),
    )
    return charge


# The cash --------------------------------------------------------------------------


def feed_sale(charge: Charge, record: dict[str, Any] | None = None) -> None:
    """Feed the approved sale to the pipeline as a poll would, and link the payment
    once it exists. A failure here loses nothing: the next poll finds the sale."""
    try:
        if record is None:
            record = charge.paytrace.paytrace().export_by_id(charge.transaction_id)
        if record is not None:
            polling.feed_record(charge.paytrace, record)
    except Exception as exc:
        logger.warning(
            "charge %s: feeding sale %s to the pipeline failed (the poll will find "
            "it): %s",
            charge.reference,
            charge.transaction_id,
            describe_failure(exc),
        )
    link_payment(charge)


def link_payment(charge: Charge) -> Charge:
    """Set `charge.payment` once the pipeline has made the sale a payment."""
    if charge.payment_id or not charge.transaction_id:
        return charge
    payment = PaymentTransaction.objects.filter(
        connection=charge.paytrace, transaction_id=charge.transaction_id
    ).first()
    if payment is not None:
        Charge.objects.filter(pk=charge.pk, payment__isnull=True).update(
            payment=payment
        )
        charge.payment = payment
    return charge


# The admin's preview ---------------------------------------------------------------


def preview_charge(
    card: CardOnFile, invno: str, amount: Decimal | str | None
) -> ChargePreview:
    """What charging `amount` (None: the balance) on `card` for `invno` would do,
    with every reason it would be refused; nothing is stored or sent."""
    preview = ChargePreview(card=card, invno=invno, amount=None, invoice=None)
    try:
        check_card(card)
    except ChargeRefused as refusal:
        preview.problems.append(refusal)
    try:
        preview.invoice = read_invoice(card, invno)
    except ChargeRefused as refusal:
        preview.problems.append(refusal)
    if amount in (None, "") and preview.invoice is not None:
        amount = preview.invoice.balance
    if amount not in (None, ""):
        try:
            preview.amount = read_amount(amount)
        except ChargeRefused as refusal:
            preview.problems.append(refusal)
    preview.earlier = list(
        Charge.objects.filter(sagepro=card.sagepro, invno=str(invno).strip())
        .filter(
            Q(state=Charge.State.APPROVED)
            | Q(state__in=[Charge.State.PENDING, Charge.State.SENDING])
            | Q(state=Charge.State.UNKNOWN)
        )
        .select_related("card")[:10]
    )
    return preview


# The schedule ----------------------------------------------------------------------


def sweep_unknown() -> dict[str, int]:
    """Settle the charges whose answer was lost, link approved charges to their
    payments, and give up on charges recorded but never sent (every five minutes)."""
    now = timezone.now()
    counts = {"looked_up": 0, "settled": 0, "abandoned": 0, "linked": 0}
    stale = Charge.objects.filter(
        Q(state=Charge.State.UNKNOWN)
        | Q(state=Charge.State.SENDING, sent_at__lt=now - SENDING_GRACE)
    ).select_related("card", "paytrace")
    for charge in stale:
        counts["looked_up"] += 1
        try:
            if settle(charge).is_finished:
                counts["settled"] += 1
        except Exception:
            logger.exception("sweep: settling charge %s failed", charge.reference)
    counts["abandoned"] = Charge.objects.filter(
        state=Charge.State.PENDING, created_at__lt=now - ABANDON_PENDING_AFTER
    ).update(
        state=Charge.State.FAILED,
        finished_at=now,
        error="Recorded but never sent to PayTrace (the request was interrupted); "
        "nothing was charged. Ask again with a new key.",
    )
    for charge in Charge.objects.filter(
        state=Charge.State.APPROVED, payment__isnull=True
    ).exclude(transaction_id="")[:200]:
        if link_payment(charge).payment_id:
            counts["linked"] += 1
    return counts
