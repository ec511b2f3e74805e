"""The state of every payment, its history, and the documents posted for it."""

import hashlib
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from integrations.models.connections import Connection
from integrations.models.failures import lease
from integrations.models.inbound import Event
from integrations.models.storage import (
    StorableValuesMixin,
    money_in_range,
    money_problem,
    saved_user,
)
from mappings.fields import business_date
from mappings.formatting import format_money
from mappings.models import GatewayStatus, PaymentStatus

if TYPE_CHECKING:
    from integrations.connectors.paytrace import PaymentRecord

# Transaction types whose payment a cash receipt records (PayTrace leaves it empty on
# some older records).
RECEIPT_TYPES = {"SALE", "CAPTURE", ""}

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
    original = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="refunds",
        help_text="For a refund: the sale it refunds.",
    )
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
    match_explanation = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="How the last automatic decision placed the payment: the rule, the "
        "evidence, the alternatives it rejected.",
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
        indexes = [
            # Duplicate detection asks for earlier payments by card and amount on
            # every payment: without it, each one reads the whole table.
            models.Index(
                fields=["connection", "card_last4", "amount"],
                name="transaction_card_amount",
            ),
            # The review queue and the payment list find a payment by its amount, its
            # card's last four, its id or its date (issue 13): exact matches and
            # ranges on these, never a scan of the table.
            models.Index(fields=["amount"], name="transaction_amount"),
            models.Index(fields=["card_last4"], name="transaction_card_last4"),
            models.Index(fields=["transaction_id"], name="transaction_id_lookup"),
            models.Index(fields=["created_at"], name="transaction_created"),
        ]

    def __str__(self) -> str:
        return (
            f"PayTrace {self.transaction_id} {format_money(self.amount, self.currency)}"
        )

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
            user=saved_user(user),
            changes=_jsonable(changes),
        )

    def copy_record(self, record: "PaymentRecord", source: dict[str, Any]) -> None:
        """Take PayTrace's facts from `record` (not yet saved); `source` is the record
        as stored, card data masked. A missing batch or time keeps the known one."""
        self.transaction_type = record.transaction_type
        self.amount = record.amount
        self.currency = record.currency
        self.tax_amount = record.tax_amount
        self.invoice_reference = record.invoice_id
        self.customer_reference = record.customer_id
        self.customer_po = record.customer_reference_id
        self.card_last4 = record.card_last4
        self.card_brand = record.card_brand
        self.approval_code = record.approval_code
        self.channel = record.channel
        self.status_code = record.status_code
        self.status_message = record.status_message
        self.batch_number = record.batch_number or self.batch_number
        self.created_at = record.created_at or self.created_at
        self.settled_at = record.settled_at or self.settled_at
        self.source_record = source

    def wants_receipt(self) -> bool:
        """Whether Sage Pro should hold a cash receipt for this payment."""
        return is_receipt_wanted(self.mapped_status, self.transaction_type)

    def posting_date(self) -> date:
        """The Sage Pro posting date: the payment's creation day in the business time zone."""
        when = self.created_at or self.first_seen_at
        return business_date(when, settings.BUSINESS_TIME_ZONE)


def is_receipt_wanted(mapped_status: str, transaction_type: str) -> bool:
    """Whether a payment in this status and of this type wants a cash receipt (for
    rows read as values, where there is no PaymentTransaction to ask)."""
    return (
        mapped_status == PaymentStatus.PAID
        and (transaction_type or "").upper() in RECEIPT_TYPES
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
        CREDIT_MEMO = "credit_memo", "Credit memo and refund"
        RECEIPT_REVERSAL = "receipt_reversal", "Receipt reversal"
        APPLICATION = "application", "Application of unapplied cash"
        GL_BATCH = "gl_batch", "GL batch"
        CUSTOMER = "customer", "Customer"
        SALES_ORDER = "sales_order", "Sales order"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        IN_PROGRESS = "in_progress", "In progress"
        POSTED = "posted", "Posted"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead"
        NEEDS_REVIEW = "needs_review", "Needs review"
        CANCELLED = "cancelled", "Cancelled (nothing to post)"

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
    not_sent = models.BooleanField(
        default=False,
        help_text="Our own validation stopped the document: nothing reached Sage Pro, "
        "so it is built again from the current rows before it is sent.",
    )
    decided_automatically = models.BooleanField(
        default=False,
        help_text="The matching rules placed the payment without a person.",
    )
    match_rule = models.ForeignKey(
        "mappings.MatchingRule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="postings",
        help_text="The matching rule that decided (blank: the built-in standard rule "
        "or a reviewer).",
    )
    match_method = models.CharField(max_length=20, blank=True)
    payer_link = models.ForeignKey(
        "mappings.PayerLink",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="postings",
        help_text="The customer mapping that identified the payer.",
    )
    decision = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="The automatic decision that created the posting, explained.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A transaction has one receipt, one credit memo (a refund is its own
            # transaction), one reversal and one sales order; applications of its
            # unapplied cash and GL batches (chargebacks) may be several, each with
            # its own idempotency key.
            models.UniqueConstraint(
                fields=["transaction", "kind"],
                condition=models.Q(
                    kind__in=[
                        "cash_receipt",
                        "credit_memo",
                        "receipt_reversal",
                        "sales_order",
                    ]
                ),
                name="one_posting_per_transaction_and_kind",
            ),
            money_in_range("posting", "unapplied_amount"),
            money_in_range("posting", "exchange_rate", 18, 8),
        ]
        indexes = [
            # /metrics' latency histogram reads the postings posted in its window
            # (portal/metrics.py): state first, then the posted_at range.
            models.Index(fields=["state", "posted_at"], name="posting_state_posted_at"),
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

    @classmethod
    def claim(cls, posting_id: int) -> "Posting | None":
        """Take the posting for one send attempt, or None when it is posted, held by a
        live worker, backing off, or waiting for a person. The attempt is counted and
        committed before anything is sent; used-up attempts make it dead."""
        now = timezone.now()
        with transaction.atomic():
            posting = (
                cls.objects.select_for_update()
                .select_related("sagepro", "transaction")
                .filter(pk=posting_id)
                .first()
            )
            if posting is None:
                return None
            if (
                posting.state == cls.State.IN_PROGRESS
                and posting.started_at
                and posting.started_at > now - lease()
            ):
                return None
            if (
                posting.state == cls.State.FAILED
                and posting.next_attempt_at
                and posting.next_attempt_at > now
            ):
                return None
            if posting.state not in (
                cls.State.PENDING,
                cls.State.FAILED,
                cls.State.IN_PROGRESS,
            ):
                return None
            if posting.attempts >= settings.POSTING_MAX_ATTEMPTS:
                posting.mark_dead(
                    posting.last_error
                    or "Attempts exhausted (a worker stopped mid-posting each time)."
                )
                return None
            posting.state = cls.State.IN_PROGRESS
            posting.attempts += 1
            posting.started_at = now
            posting.save(update_fields=["state", "attempts", "started_at"])
            return posting

    @classmethod
    def claim_pending(cls, postings: list["Posting"]) -> list["Posting"]:
        """Take the pending ones of `postings` for one send attempt each, in one
        transaction; returns them as claimed (fresh rows). Rows in any other state,
        or held by another worker, are left to `claim`, one by one."""
        now = timezone.now()
        by_pk = {p.pk: p for p in postings}
        with transaction.atomic():
            claimed: list[Posting] = list(
                cls.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("sagepro")
                .filter(
                    pk__in=list(by_pk),
                    state=cls.State.PENDING,
                    attempts__lt=settings.POSTING_MAX_ATTEMPTS,
                )
            )
            cls.objects.filter(pk__in=[p.pk for p in claimed]).update(
                state=cls.State.IN_PROGRESS,
                attempts=models.F("attempts") + 1,
                started_at=now,
            )
        for posting in claimed:
            posting.state = cls.State.IN_PROGRESS
            posting.attempts += 1
            posting.started_at = now
            posting.transaction = by_pk[posting.pk].transaction  # already loaded
        return claimed

    def mark_posted(
        self,
        result: dict[str, Any],
        *,
        recovered: bool = False,
        number: str | None = None,
        label: str = "receipt",
    ) -> None:
        """Record that Sage Pro holds the document, and close its dead, validation and
        not-supported items.

        Nothing in Sage Pro's answer may stop us from recording that (an unreadable
        unapplied amount is left empty; the whole answer is kept). `recovered`: found by
        idempotency key after an attempt whose outcome was unknown. `number` is the
        document's number (a receipt's is `receipt_no`); `label` names it in history.
        """
        from integrations.models.review import ReviewItem

        with transaction.atomic(savepoint=False):  # a batch keeps one per posting
            self.state = self.State.POSTED
            if number is None:
                number = str(result.get("receipt_no", ""))
            self.document_number = number[:40]
            self.unapplied_amount = _amount_or_none(result.get("unapplied_amount"))
            self.response = result
            self.posted_at = timezone.now()
            self.next_attempt_at = None
            self.last_error = self.last_error if recovered else ""
            self.not_sent = self.not_sent if recovered else False
            self.save()
            note = (
                " (found by idempotency key after an unknown outcome)"
                if recovered
                else ""
            )
            self.transaction.record(
                "posted",
                f"Sage Pro {label} {self.document_number}{note}",
                receipt=self.document_number,
            )
            ReviewItem.objects.filter(
                posting=self,
                state=ReviewItem.State.OPEN,
                kind__in=[
                    ReviewItem.Kind.DEAD,
                    ReviewItem.Kind.VALIDATION,
                    ReviewItem.Kind.UNSUPPORTED_DOCUMENT,
                ],
            ).update(
                state=ReviewItem.State.RESOLVED,
                resolved_at=timezone.now(),
                resolution=f"Posted as {label} {self.document_number}",
            )

    def mark_dead(self, reason: str) -> None:
        """Stop retrying and ask a person (a dead-letter review item)."""
        from integrations.models.review import ReviewItem

        self.state = self.State.DEAD
        self.next_attempt_at = None
        self.save()
        ReviewItem.open(
            self.transaction,
            ReviewItem.Kind.DEAD,
            f"Gave up after {self.attempts} attempts: {reason}",
            posting=self,
            error_code=self.last_error_code,
        )

    def store(self, fields: dict[str, Any]) -> None:
        """Keep the document about to be sent on the row (the columns that changed)."""
        changed = {
            name: value
            for name, value in fields.items()
            if getattr(self, name) != value
        }
        if changed:
            Posting.objects.filter(pk=self.pk).update(**changed)
            for name, value in changed.items():
                setattr(self, name, value)

    def mark_not_sent(self, fields: dict[str, Any], reasons: str, code: str) -> None:
        """Our own validation stopped the document: nothing was sent; a person decides."""
        from integrations.models.review import ReviewItem

        with transaction.atomic():
            for name, value in fields.items():
                setattr(self, name, value)
            self.state = self.State.NEEDS_REVIEW
            self.next_attempt_at = None
            self.last_error = reasons[:2000]
            self.last_error_code = code[:40]
            self.not_sent = True
            self.save()
            ReviewItem.open(
                self.transaction,
                ReviewItem.Kind.VALIDATION,
                f"{reasons}. Correct the value and retry.",
                posting=self,
                error_code=code[:40],
            )


def _amount_or_none(value: Any) -> Decimal | None:
    """Read an amount from a remote answer; None when it cannot be stored."""
    if value is None or money_problem(value, 14, 2):
        return None
    return Decimal(value) if isinstance(value, (Decimal, int)) else Decimal(str(value))


class DeadLetter(Posting):
    """The dead-letter queue: postings that exhausted their attempts."""

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"
