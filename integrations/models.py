"""Records of everything that crosses the boundary, and the state of every payment.

Trust model (after dj-stripe): an `InboundDelivery` row is written for every request the
webhook endpoint receives, valid or not, with card data already masked. Only a delivery
whose signature verified (or, for an unsigned silent post, that PayTrace confirmed by
lookup) produces an `Event`; only events are processed.
"""

import hashlib
import traceback
from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from integrations.crypto import EncryptedTextField
from integrations.redaction import redact_text
from mappings.models import GatewayStatus, PaymentStatus  # noqa: F401 - re-exported

CENT = Decimal("0.01")


# JSON nested deeper than this is refused on save: Python reads JSON recursively, and
# a row nested ~900 deep breaks every page that loads it (PayTrace records are 3 deep).
MAX_JSON_DEPTH = 64


class InvalidAmountError(ValueError):
    """An amount a money column cannot hold: not a finite number, or too large."""


class TooDeeplyNestedError(ValueError):
    """A JSON value nested deeper than MAX_JSON_DEPTH levels."""


def money_limit(max_digits: int, decimal_places: int) -> Decimal:
    """The largest magnitude a numeric(max_digits, decimal_places) column holds, to
    the cent. Cents, not the column's last place, so that SQLite (which compares and
    stores these as floats) never accepts a value that overflows the column when read."""
    return Decimal(10) ** (max_digits - decimal_places) - CENT


def money_in_range(
    model: str, field: str, max_digits: int = 14, decimal_places: int = 2
) -> models.CheckConstraint:
    """A constraint that keeps a money column finite and within its digits.

    PostgreSQL's numeric(p, s) enforces the digits itself but accepts NaN; SQLite
    enforces nothing, and a row it accepted (`1e+20`, `inf`, text) then breaks every
    query that loads it. NULL passes (nullable columns stay nullable).
    """
    limit = money_limit(max_digits, decimal_places)
    in_range = models.Q(**{f"{field}__gte": -limit, f"{field}__lte": limit})
    return models.CheckConstraint(
        condition=in_range | models.Q(**{f"{field}__isnull": True}),
        name=f"{model}_{field}_in_range",
        violation_error_message=f"{field} must be a number from {-limit} to {limit}.",
    )


class StorableValuesMixin:
    """Refuse, before saving, a value that would break every query loading the row:
    an amount its money column cannot hold, or JSON nested too deep to read back."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.check_storable(kwargs.get("update_fields"))
        super().save(*args, **kwargs)  # type: ignore[misc]

    def check_storable(self, fields: Iterable[str] | None = None) -> None:
        """Raise InvalidAmountError or TooDeeplyNestedError naming the field."""
        names = set(fields) if fields is not None else None
        for field in self._meta.concrete_fields:  # type: ignore[attr-defined]
            if names is not None and field.name not in names:
                continue
            value = getattr(self, field.attname)
            if value is None:
                continue
            if isinstance(field, models.DecimalField):
                problem = money_problem(value, field.max_digits, field.decimal_places)
                if problem:
                    raise InvalidAmountError(
                        f"{field.name} {problem} ({type(self).__name__} column "
                        f"numeric({field.max_digits},{field.decimal_places}))."
                    )
            elif isinstance(field, models.JSONField) and is_nested_deeper(
                value, MAX_JSON_DEPTH
            ):
                raise TooDeeplyNestedError(
                    f"{field.name} is nested more than {MAX_JSON_DEPTH} levels deep "
                    f"({type(self).__name__}); it is not stored."
                )


def is_nested_deeper(value: object, limit: int) -> bool:
    """Whether lists and dicts in `value` nest more than `limit` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[object] = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def money_problem(value: object, max_digits: int, decimal_places: int) -> str:
    """Why `value` cannot go into a numeric(max_digits, decimal_places) column, or ''.

    The value itself is never quoted: an "amount" may be a card number.
    """
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        return "is not a number"
    try:
        amount = (
            Decimal(value) if isinstance(value, (Decimal, int)) else Decimal(str(value))
        )
    except ArithmeticError:
        return "is not a number"
    if not amount.is_finite():
        return "is not a finite number"
    limit = money_limit(max_digits, decimal_places)
    if abs(amount) > limit:
        return (
            f"is out of range: at most {max_digits - decimal_places} digits before "
            f"the decimal point (up to {limit})"
        )
    return ""


def storable_text(text: str) -> str:
    """Text that any database column takes: card numbers masked, and characters that
    cannot be encoded (a lone surrogate from hostile JSON) escaped."""
    masked, _ = redact_text(text)
    return masked.encode("utf-8", "backslashreplace").decode("utf-8")


def validate_time_zone(value: str) -> None:
    if value not in available_timezones():
        raise ValidationError(
            f"{value!r} is not an IANA time zone such as America/Chicago."
        )


class Environment(models.TextChoices):
    DEV = "dev", "Development"
    QA = "qa", "QA"
    PROD = "prod", "Production"


class Connection(models.Model):
    """One external system the portal talks to, with its credentials encrypted at rest."""

    class Kind(models.TextChoices):
        PAYTRACE = "paytrace", "PayTrace"
        SAGEPRO = "sagepro", "Sage Pro gateway"
        STOREFRONT = "storefront", "eCommerce storefront"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    environment = models.CharField(
        max_length=10, choices=Environment.choices, default=Environment.DEV
    )
    base_url = models.URLField(
        max_length=300,
        help_text="PayTrace host root, or the Sage Pro gateway's /api/v1 URL.",
    )
    username = models.CharField(
        max_length=200, blank=True, help_text="PayTrace API user."
    )
    password = EncryptedTextField(
        blank=True, help_text="PayTrace API password or Sage Pro gateway API key."
    )
    integrator_id = models.CharField(
        max_length=40, blank=True, help_text="PayTrace integrator id."
    )
    time_zone = models.CharField(
        max_length=64,
        default="America/Los_Angeles",
        validators=[validate_time_zone],
        help_text="Zone of the gateway's local times (PayTrace dates carry none).",
    )
    company_id = models.CharField(
        max_length=2,
        blank=True,
        default="01",
        help_text="Sage Pro company id (2 characters).",
    )
    sagepro = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        limit_choices_to={"kind": "sagepro"},
        related_name="payment_sources",
        help_text="For a PayTrace connection: the Sage Pro company its payments post to.",
    )
    payment_method = models.CharField(
        max_length=20,
        default="CARD",
        help_text="Sage Pro receipt method for these payments.",
    )
    suspense_account = models.CharField(
        max_length=24, blank=True, help_text="GL account used when no GL rule matches."
    )
    base_currency = models.CharField(
        max_length=3, default="USD", help_text="Sage Pro company's base currency."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()}, {self.environment})"

    def save(self, *args: object, **kwargs: object) -> None:
        creating = self._state.adding
        super().save(*args, **kwargs)
        if creating and self.kind == self.Kind.PAYTRACE:
            from mappings.models import StatusMap

            StatusMap.seed_defaults(self)

    def active_webhook_secrets(self) -> list[str]:
        now = timezone.now()
        return [
            s.secret
            for s in self.webhook_secrets.filter(is_active=True)
            if s.expires_at is None or s.expires_at > now
        ]

    def paytrace(self):  # noqa: ANN201 - import cycle
        from integrations.connectors.paytrace import PayTraceConnector

        return PayTraceConnector(
            self.base_url,
            self.username,
            self.password,
            self.integrator_id,
            self.time_zone,
            timeout=settings.OUTBOUND_TIMEOUT_SECONDS,
        )

    def sage(self):  # noqa: ANN201 - import cycle
        from integrations.connectors.sagepro import SageProConnector

        return SageProConnector(
            self.base_url,
            self.password,
            self.company_id or "01",
            timeout=settings.OUTBOUND_TIMEOUT_SECONDS,
        )


class WebhookSecret(models.Model):
    """A signing secret for inbound webhooks. Several may be active during a rotation."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="webhook_secrets"
    )
    label = models.CharField(max_length=60, blank=True)
    secret = EncryptedTextField(help_text="Standard Webhooks secret, whsec_…")
    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Stop accepting it after this time."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.label or f"secret #{self.pk}"


class InboundDelivery(StorableValuesMixin, models.Model):
    """Every request that reached a webhook endpoint, valid or not (card data masked)."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Signed webhook"
        SILENT_POST = "silent_post", "Legacy silent post"

    class SignatureResult(models.TextChoices):
        VALID = "valid", "Valid"
        INVALID = "invalid", "Invalid"
        UNSIGNED = "unsigned", "Unsigned (confirm by lookup)"
        CONFIRMED = "confirmed", "Confirmed by lookup"
        UNCONFIRMED = "unconfirmed", "Not confirmed by lookup"

    connection = models.ForeignKey(
        Connection,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    connection_slug = models.CharField(max_length=60, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.WEBHOOK)
    webhook_id = models.CharField(max_length=200, blank=True, db_index=True)
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True)
    body_size = models.PositiveIntegerField(default=0)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    signature_result = models.CharField(max_length=20, choices=SignatureResult.choices)
    failure_reason = models.CharField(
        max_length=60, blank=True, help_text="Machine-readable reason."
    )
    failure_detail = models.TextField(blank=True)
    response_status = models.PositiveSmallIntegerField(default=0)
    contains_card_data = models.BooleanField(
        default=False, help_text="Card data was found and masked."
    )
    event = models.ForeignKey(
        "Event",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "inbound deliveries"

    def __str__(self) -> str:
        return f"delivery #{self.pk} ({self.signature_result})"


class Event(StorableValuesMixin, models.Model):
    """A verified notification about one PayTrace transaction, processed by a worker."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead"

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        SILENT_POST = "silent_post", "Silent post"
        POLL = "poll", "Poll"

    connection = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="events"
    )
    event_id = models.CharField(
        max_length=200, help_text="The sender's id (webhook-id)."
    )
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.WEBHOOK
    )
    type = models.CharField(max_length=60)
    occurred_at = models.DateTimeField()
    transaction_id = models.CharField(max_length=40, blank=True, db_index=True)
    payload = models.JSONField(
        encoder=DjangoJSONEncoder, help_text="The event body with card data masked."
    )
    contains_card_data = models.BooleanField(
        default=False, help_text="The sender put card data in it; follow up with them."
    )
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.QUEUED, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_traceback = models.TextField(blank=True)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "event_id"], name="event_unique_per_connection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"

    def mark_failed(
        self, exc: BaseException, *, state: str = State.FAILED, error: str = ""
    ) -> None:
        """Keep the error (`error`, or the exception's own text) and its traceback."""
        self.state = state
        self.last_error = storable_text(error or f"{type(exc).__name__}: {exc}")[:2000]
        self.last_traceback = storable_text("".join(traceback.format_exception(exc)))[
            -8000:
        ]
        self.save(update_fields=["state", "last_error", "last_traceback"])


# How far along its life a transaction is. A status never replaces one of higher rank:
# an `approved` that arrives after `settled` is recorded and ignored.
GATEWAY_STATUS_RANK = {
    GatewayStatus.UNKNOWN: 0,
    GatewayStatus.AUTHORIZED: 10,
    GatewayStatus.APPROVED: 20,
    GatewayStatus.PENDING_SETTLEMENT: 25,
    GatewayStatus.SETTLED: 30,
    GatewayStatus.DECLINED: 40,
    GatewayStatus.VOIDED: 40,
    GatewayStatus.REFUNDED: 50,
}


class PaymentTransaction(StorableValuesMixin, models.Model):
    """One PayTrace transaction, as the portal last knew it."""

    connection = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="transactions"
    )
    transaction_id = models.CharField(max_length=40)
    transaction_type = models.CharField(max_length=20, blank=True)
    gateway_status = models.CharField(
        max_length=30, choices=GatewayStatus.choices, default=GatewayStatus.UNKNOWN
    )
    status_code = models.CharField(
        max_length=40, blank=True, help_text="PayTrace status_code (GB… = settled)."
    )
    status_message = models.CharField(max_length=200, blank=True)
    mapped_status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, blank=True
    )
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    tax_amount = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True
    )
    invoice_reference = models.CharField(max_length=60, blank=True, db_index=True)
    customer_reference = models.CharField(
        max_length=60, blank=True, help_text="PayTrace customer_id (vault)."
    )
    customer_po = models.CharField(
        max_length=60, blank=True, help_text="PayTrace customer_reference_id."
    )
    card_last4 = models.CharField(max_length=4, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    approval_code = models.CharField(max_length=20, blank=True)
    channel = models.CharField(max_length=40, blank=True)
    batch_number = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(
        null=True, blank=True, help_text="When PayTrace created it (UTC)."
    )
    settled_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Occurred time of the event that set the status.",
    )
    source_record = models.JSONField(
        default=dict,
        encoder=DjangoJSONEncoder,
        help_text="PayTrace's record, card data masked.",
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-first_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "transaction_id"],
                name="transaction_unique_per_connection",
            ),
            money_in_range("paymenttransaction", "amount"),
            money_in_range("paymenttransaction", "tax_amount"),
        ]

    def __str__(self) -> str:
        return f"PayTrace {self.transaction_id} {self.amount} {self.currency}"

    def record(
        self,
        action: str,
        detail: str = "",
        *,
        event: Event | None = None,
        user: object = None,
        **changes: object,
    ) -> "TransactionHistory":
        return self.history.create(
            action=action,
            detail=detail[:1000],
            event=event,
            user=user if getattr(user, "pk", None) else None,
            changes=_jsonable(changes),
        )


def _jsonable(values: dict) -> dict:
    return {
        key: str(value) if isinstance(value, Decimal) else value
        for key, value in values.items()
    }


class TransactionHistory(StorableValuesMixin, models.Model):
    """What happened to a transaction, in order: status changes, stale events, decisions."""

    transaction = models.ForeignKey(
        PaymentTransaction, on_delete=models.CASCADE, related_name="history"
    )
    at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=40)
    detail = models.TextField(blank=True)
    changes = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["at", "id"]
        verbose_name_plural = "transaction history"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action}"


class Posting(StorableValuesMixin, models.Model):
    """One document sent (or to be sent) to Sage Pro, at most once."""

    class Kind(models.TextChoices):
        CASH_RECEIPT = "cash_receipt", "Cash receipt"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        IN_PROGRESS = "in_progress", "In progress"
        POSTED = "posted", "Posted"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead"
        NEEDS_REVIEW = "needs_review", "Needs review"

    transaction = models.ForeignKey(
        PaymentTransaction, on_delete=models.PROTECT, related_name="postings"
    )
    sagepro = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="postings"
    )
    kind = models.CharField(
        max_length=20, choices=Kind.choices, default=Kind.CASH_RECEIPT
    )
    idempotency_key = models.CharField(max_length=120, unique=True)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.PENDING, db_index=True
    )
    payload = models.JSONField(
        default=dict,
        encoder=DjangoJSONEncoder,
        help_text="The document as sent to Sage Pro.",
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    document_number = models.CharField(
        max_length=40, blank=True, help_text="Sage Pro receipt number."
    )
    gl_account = models.CharField(
        max_length=24, blank=True, help_text="The account the GL rules chose."
    )
    gl_rule = models.ForeignKey(
        "mappings.GlRule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="postings",
    )
    gl_trace = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="Every rule tried: matched or skipped, and why.",
    )
    overrides = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="Values a reviewer corrected, by target field.",
    )
    exchange_rate = models.DecimalField(
        max_digits=18, decimal_places=8, null=True, blank=True
    )
    rate_on = models.DateField(
        null=True, blank=True, help_text="Date of the exchange rate used."
    )
    unapplied_amount = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True
    )
    response = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    last_error = models.TextField(blank=True)
    last_error_code = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["transaction", "kind"],
                name="one_posting_per_transaction_and_kind",
            ),
            money_in_range("posting", "unapplied_amount"),
            money_in_range("posting", "exchange_rate", 18, 8),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.transaction.transaction_id} ({self.state})"

    @staticmethod
    def key_for(connection: Connection, transaction_id: str, kind: str) -> str:
        """Derive the idempotency key from (connection, transaction id, document kind)."""
        digest = hashlib.sha256(
            f"{connection.pk}|{transaction_id}|{kind}".encode()
        ).hexdigest()[:16]
        return f"pt{connection.pk}-{transaction_id}-{kind}-{digest}"


class ReviewItem(models.Model):
    """A payment a person has to look at."""

    class Kind(models.TextChoices):
        UNMATCHED = "unmatched", "No matching open invoice"
        VALIDATION = "validation", "Sage Pro refused the document"
        DEAD = "dead", "Posting gave up after retries"
        UNMAPPED_STATUS = "unmapped_status", "Status not in the status map"
        CARD_DATA = "card_data", "Sender included card data"
        REVERSAL = "reversal", "Voided or refunded after its receipt posted"
        OVERPAYMENT = "overpayment", "Paid more than the invoice balance"
        UNDERPAYMENT = "underpayment", "Paid less than the invoice balance"
        POSSIBLE_DUPLICATE = "possible_duplicate", "Possibly paid twice"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"
        DISMISSED = "dismissed", "Dismissed"

    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.OPEN, db_index=True
    )
    transaction = models.ForeignKey(
        PaymentTransaction,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="review_items",
    )
    posting = models.ForeignKey(
        Posting,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="review_items",
    )
    event = models.ForeignKey(
        Event,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="review_items",
    )
    reason = models.TextField()
    error_code = models.CharField(max_length=40, blank=True)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolution = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # One open item of a kind per transaction: reprocessing never piles up copies.
            models.UniqueConstraint(
                fields=["transaction", "kind"],
                condition=models.Q(state="open"),
                name="one_open_review_item_per_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.transaction or self.event}"


class ReviewDecision(StorableValuesMixin, models.Model):
    """Who decided what about a review item, and when. Never edited."""

    item = models.ForeignKey(
        ReviewItem, on_delete=models.CASCADE, related_name="decisions"
    )
    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL
    )
    action = models.CharField(max_length=40)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.user} at {self.at:%Y-%m-%d %H:%M}"


class Lease(models.Model):
    """A named lock that expires by itself: 'never two runs at once' on any database.

    Acquired by inserting the row, or by taking it over once it has expired (a
    conditional update), so a crashed holder blocks others only until the expiry.
    """

    name = models.CharField(max_length=100, unique=True)
    holder = models.CharField(max_length=100)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder} until {self.expires_at:%H:%M:%S}"

    @classmethod
    def acquire(cls, name: str, holder: str, seconds: int) -> bool:
        from django.db import IntegrityError, transaction

        now = timezone.now()
        expires = now + timezone.timedelta(seconds=seconds)
        if cls.objects.filter(name=name, expires_at__lte=now).update(
            holder=holder, expires_at=expires
        ):
            return True
        try:
            with transaction.atomic():
                cls.objects.create(name=name, holder=holder, expires_at=expires)
        except IntegrityError:
            return False
        return True

    @classmethod
    def release(cls, name: str, holder: str) -> None:
        cls.objects.filter(name=name, holder=holder).delete()


class SyncRun(models.Model):
    """One poll, backfill or settlement sweep against PayTrace, and what it found."""

    class Kind(models.TextChoices):
        POLL = "poll", "Scheduled poll"
        BACKFILL = "backfill", "Backfill"
        SETTLEMENT = "settlement", "Settlement sweep"

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (another run was in progress)"

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="sync_runs"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.RUNNING
    )
    window_start = models.DateField(null=True, blank=True)
    window_end = models.DateField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    fetched = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(
        default=0, help_text="Transactions the portal had not seen."
    )
    changed = models.PositiveIntegerField(
        default=0, help_text="Known transactions whose status or amount changed."
    )
    unchanged = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.connection.slug} {self.started_at:%Y-%m-%d %H:%M} ({self.state})"


class SettlementBatch(StorableValuesMixin, models.Model):
    """A PayTrace settlement batch, from the daily sweep of `batches/export`."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="settlement_batches"
    )
    batch_number = models.CharField(max_length=20)
    settled_at = models.DateTimeField(null=True, blank=True)
    transaction_count = models.PositiveIntegerField(default=0)
    net_amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=Decimal("0")
    )
    sales_count = models.PositiveIntegerField(default=0)
    sales_amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=Decimal("0")
    )
    refund_count = models.PositiveIntegerField(default=0)
    refund_amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=Decimal("0")
    )
    currency = models.CharField(max_length=3, default="USD")
    transaction_ids = models.JSONField(
        default=list, blank=True, help_text="From batches/transaction_list."
    )
    raw = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    fetched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-settled_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "batch_number"], name="one_batch_per_number"
            ),
            money_in_range("settlementbatch", "net_amount"),
            money_in_range("settlementbatch", "sales_amount"),
            money_in_range("settlementbatch", "refund_amount"),
        ]
        verbose_name_plural = "settlement batches"

    def __str__(self) -> str:
        return f"Batch {self.batch_number}: {self.transaction_count} for {self.net_amount} {self.currency}"


class ReconciliationRun(models.Model):
    """A reconciliation of PayTrace against Sage Pro over a date range."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="reconciliations"
    )
    date_from = models.DateField()
    date_to = models.DateField()
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.RUNNING
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    buckets = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="Bucket → {count, amount}.",
    )
    batch_totals = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    ties_out = models.BooleanField(null=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Reconciliation {self.date_from}…{self.date_to} ({self.state})"


class ReconciliationLine(StorableValuesMixin, models.Model):
    class Bucket(models.TextChoices):
        POSTED = "posted", "Posted"
        PENDING = "pending", "Pending"
        IN_REVIEW = "in_review", "In review"
        DEAD = "dead", "Dead"
        MISSING = "missing_in_sage", "Missing in Sage Pro"
        NOT_NEEDED = "no_receipt_needed", "No receipt needed (declined, voided, refund)"
        ORPHAN = "orphan_receipt", "Sage Pro receipt without a PayTrace transaction"

    run = models.ForeignKey(
        ReconciliationRun, on_delete=models.CASCADE, related_name="lines"
    )
    bucket = models.CharField(max_length=20, choices=Bucket.choices, db_index=True)
    payment = models.ForeignKey(
        PaymentTransaction, null=True, blank=True, on_delete=models.SET_NULL
    )
    transaction_id = models.CharField(
        max_length=40, blank=True, help_text="PayTrace transaction id."
    )
    receipt_no = models.CharField(max_length=40, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["run", "bucket", "transaction_id"]
        indexes = [models.Index(fields=["run", "bucket"])]
        constraints = [money_in_range("reconciliationline", "amount")]

    def __str__(self) -> str:
        return f"{self.transaction_id or self.receipt_no}: {self.bucket}"


class Alert(models.Model):
    """A condition someone was told about: one alert per condition per window, then a
    recovery notice when it clears."""

    key = models.CharField(
        max_length=120,
        db_index=True,
        help_text="The condition, e.g. poll_failing:paytrace-sandbox.",
    )
    message = models.TextField()
    opened_at = models.DateTimeField(default=timezone.now)
    last_notified_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    notifications = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"],
                condition=models.Q(resolved_at__isnull=True),
                name="one_open_alert_per_condition",
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} ({'open' if self.resolved_at is None else 'resolved'})"


class DeadLetter(Posting):
    """The dead-letter queue: postings that exhausted their attempts."""

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"
