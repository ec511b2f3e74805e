"""The PayTrace sandbox's state: tokens, transactions, batches and outbound events.

Card data: a transaction keeps the last four digits and the brand, never the full
number or the CSC (PCI DSS). Those arrive in the sale request and go no further than
the view that validates them.

Events: real PayTrace sends no webhooks of its own. The sandbox relays every
change as a Standard Webhooks event so the demo runs push-driven; each event is a row
written in the same database transaction as the change it reports, and its delivery
is queued in that transaction too (the django-q2 ORM broker shares the database).
"""

import hashlib
import logging
import secrets
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django_q.tasks import async_task
from standardwebhooks.webhooks import Webhook

from integrations.sandbox.paytrace.records import dumps, format_gateway_time

logger = logging.getLogger(__name__)

# Transaction ids and batch numbers are the row's primary key plus an offset, so the
# database hands them out without a counter row to lock.
TRANSACTION_ID_OFFSET = 500_000_000
BATCH_NUMBER_OFFSET = 1000
TOKEN_LIFETIME_SECONDS = 7200
DELIVERY_TIMEOUT_SECONDS = 10
# The first try plus five re-queues.
MAX_DELIVERY_ATTEMPTS = 6

BILLING_ADDRESS_KEYS = (
    "name",
    "street_address",
    "street_address2",
    "city",
    "state",
    "zip",
    "country",
)
SHIPPING_ADDRESS_KEYS = (
    "name",
    "street_address",
    "street_address2",
    "city",
    "county",
    "state",
    "zip",
    "country",
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccessToken(models.Model):
    """An OAuth bearer token. Only its SHA-256 digest is stored."""

    digest = models.CharField(max_length=64, unique=True)
    username = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"token for {self.username} until {self.expires_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def issue(cls, username: str) -> tuple[str, "AccessToken"]:
        """Create a token; return the secret (shown once) and its row."""
        token = secrets.token_urlsafe(32)
        now = timezone.now()
        row = cls.objects.create(
            digest=hash_token(token),
            username=username,
            created_at=now,
            expires_at=now + timedelta(seconds=TOKEN_LIFETIME_SECONDS),
        )
        return token, row

    @classmethod
    def find_valid(cls, token: str) -> "AccessToken | None":
        return cls.objects.filter(
            digest=hash_token(token), expires_at__gt=timezone.now()
        ).first()


class Batch(models.Model):
    """A settlement batch. Its number is the primary key plus BATCH_NUMBER_OFFSET."""

    settled_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"GB{self.number}"

    @property
    def number(self) -> int:
        return BATCH_NUMBER_OFFSET + self.pk

    @classmethod
    @transaction.atomic
    def settle_pending(cls, *, notify: bool = True) -> "Batch | None":
        """Settle every approved, unsettled sale into a new batch.

        Returns the batch, or None when nothing was waiting (no empty batch is made).
        """
        pending = list(
            Transaction.objects.select_for_update()
            .filter(
                transaction_type=Transaction.Type.SALE,
                status_code=Transaction.PENDING_SETTLEMENT_CODE,
            )
            .order_by("pk")
        )
        if not pending:
            return None
        now = timezone.now()
        batch = cls.objects.create(settled_at=now)
        for txn in pending:
            txn.batch = batch
            txn.settled_at = now
            txn.status_code = txn.status_message = f"GB{batch.number}"
            txn.save(
                update_fields=["batch", "settled_at", "status_code", "status_message"]
            )
            if notify:
                OutboundEvent.record(txn, OutboundEvent.Type.SETTLED)
        return batch


class Transaction(models.Model):
    """A card transaction as the gateway keeps it (sales and refunds)."""

    PENDING_SETTLEMENT_CODE = "Y"
    NOT_SETTLING_CODE = "N"

    # PayTrace's own values, so upper case.
    class Type(models.TextChoices):
        SALE = "SALE", "Sale"
        REFUND = "REFUND", "Refund"

    transaction_type = models.CharField(max_length=20, choices=Type.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    tax_amount = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True
    )
    invoice_id = models.CharField(max_length=100, blank=True)
    customer_reference_id = models.CharField(max_length=100, blank=True)
    description = models.CharField(max_length=255, blank=True)
    customer_id = models.CharField(max_length=100, blank=True)
    email = models.CharField(max_length=254, blank=True)
    card_last4 = models.CharField(max_length=4)
    card_brand = models.CharField(max_length=20, blank=True)
    expiration_month = models.PositiveSmallIntegerField()
    expiration_year = models.PositiveSmallIntegerField(help_text="two digits")
    billing_address = models.JSONField(default=dict, blank=True)
    shipping_address = models.JSONField(default=dict, blank=True)
    response_code = models.PositiveSmallIntegerField()
    approval_code = models.CharField(max_length=20, blank=True)
    approval_message = models.CharField(max_length=255, blank=True)
    avs_response = models.CharField(max_length=100, blank=True)
    csc_response = models.CharField(max_length=100, blank=True)
    status_code = models.CharField(max_length=20)
    status_message = models.CharField(max_length=255)
    created_through = models.CharField(max_length=20, default="API")
    created_by = models.CharField(max_length=150, blank=True)
    created_from_ip = models.CharField(max_length=45, blank=True)
    created_at = models.DateTimeField()
    settled_at = models.DateTimeField(null=True, blank=True)
    batch = models.ForeignKey(
        Batch,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="transactions",
    )
    # Set on refunds: the sale they refund. PayTrace's export does not show this link.
    original = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="refunds"
    )
    # Set on the sales a recurring schedule made (`recurrence/export_approved`).
    recurrence = models.ForeignKey(
        "Recurrence",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="transactions",
    )

    class Meta:
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.transaction_type} {self.transaction_id} {self.amount} {self.status_code}"

    @property
    def transaction_id(self) -> int:
        return TRANSACTION_ID_OFFSET + self.pk

    @staticmethod
    def pk_for(transaction_id: Any) -> int | None:
        """Turn a PayTrace transaction id into a primary key, or None if it can't be one."""
        try:
            pk = int(str(transaction_id)) - TRANSACTION_ID_OFFSET
        except ValueError:
            return None
        return pk if pk > 0 else None

    @classmethod
    def find(cls, transaction_id: Any) -> "Transaction | None":
        pk = cls.pk_for(transaction_id)
        return None if pk is None else cls.objects.filter(pk=pk).first()

    def is_pending_settlement(self) -> bool:
        return self.status_code == self.PENDING_SETTLEMENT_CODE

    def is_settled(self) -> bool:
        return self.batch_id is not None

    def is_declined(self) -> bool:
        return self.response_code == 102

    @classmethod
    @transaction.atomic
    def create_sale(
        cls,
        *,
        approved: bool,
        notify: bool = True,
        decline_message: str = "    DECLINE - Do not honor",
        **fields: Any,
    ) -> "Transaction":
        """Record an approved or declined sale and queue its event."""
        txn = cls(transaction_type=cls.Type.SALE, created_at=timezone.now(), **fields)
        if approved:
            txn.response_code = 101
            txn.status_code = cls.PENDING_SETTLEMENT_CODE
            txn.status_message = "Pending Settlement"
            txn.approval_message = "  EXACT MATCH - Approved and completed"
        else:
            txn.response_code = 102
            txn.status_code = cls.NOT_SETTLING_CODE
            txn.status_message = "Declined"
            txn.approval_code = ""
            txn.approval_message = decline_message
        txn.save()
        if approved:
            # Derived from the id so replays of a demo look alike.
            txn.approval_code = f"TAS{txn.pk % 1000:03d}"
            txn.save(update_fields=["approval_code"])
        if notify:
            event_type = (
                OutboundEvent.Type.APPROVED if approved else OutboundEvent.Type.DECLINED
            )
            OutboundEvent.record(txn, event_type)
        return txn

    @transaction.atomic
    def void(self, *, notify: bool = True) -> None:
        """Cancel a transaction that is pending settlement (the caller checks that)."""
        self.response_code = 109
        self.status_code = self.NOT_SETTLING_CODE
        self.status_message = "Voided"
        self.save(update_fields=["response_code", "status_code", "status_message"])
        if notify:
            OutboundEvent.record(self, OutboundEvent.Type.VOIDED)

    def refundable_amount(self) -> Decimal:
        refunded = self.refunds.exclude(status_message="Voided").aggregate(
            total=models.Sum("amount")
        )["total"]
        return self.amount - (refunded or Decimal("0"))

    @transaction.atomic
    def refund(
        self,
        amount: Decimal,
        *,
        created_by: str = "",
        from_ip: str = "",
        notify: bool = True,
    ) -> "Transaction":
        """Create a REFUND transaction against this settled sale and queue its event."""
        refund = Transaction.objects.create(
            transaction_type=self.Type.REFUND,
            amount=amount,
            currency=self.currency,
            invoice_id=self.invoice_id,
            customer_reference_id=self.customer_reference_id,
            description=self.description,
            customer_id=self.customer_id,
            email=self.email,
            card_last4=self.card_last4,
            card_brand=self.card_brand,
            expiration_month=self.expiration_month,
            expiration_year=self.expiration_year,
            billing_address=self.billing_address,
            shipping_address=self.shipping_address,
            response_code=106,
            status_code=self.PENDING_SETTLEMENT_CODE,
            status_message="Pending Settlement",
            created_by=created_by,
            created_from_ip=from_ip,
            created_at=timezone.now(),
            original=self,
        )
        if notify:
            OutboundEvent.record(refund, OutboundEvent.Type.REFUNDED)
        return refund

    def as_record(self) -> dict[str, Any]:
        """Render the transaction as a record of the v1 transaction export."""
        billing = self.billing_address or {}
        shipping = self.shipping_address or {}
        return {
            "transaction_id": self.transaction_id,
            "transaction_type": self.transaction_type,
            "amount": self.amount,
            "tax_amount": "" if self.tax_amount is None else f"{self.tax_amount:.2f}",
            "invoice_id": self.invoice_id,
            "customer_reference_id": self.customer_reference_id,
            "description": self.description,
            "customer_id": self.customer_id,
            "receipt_emailed_to": "",
            "credit_card": {
                "masked_number": "*" * 12 + self.card_last4,
                "expiration_month": self.expiration_month,
                "expiration_year": self.expiration_year,
            },
            "billing_address": {
                key: billing.get(key, "") for key in BILLING_ADDRESS_KEYS
            },
            "shipping_address": {
                key: shipping.get(key, "") for key in SHIPPING_ADDRESS_KEYS
            },
            "approval_code": self.approval_code,
            "approval_message": self.approval_message,
            "avs_response": self.avs_response,
            "csc_response": self.csc_response,
            "status_code": self.status_code,
            "status_message": self.status_message,
            "created": {
                "through": self.created_through,
                "at": format_gateway_time(self.created_at),
                "by": self.created_by,
                "from_ip": self.created_from_ip,
            },
            "settled": format_gateway_time(self.settled_at),
        }


class OutboundEvent(models.Model):
    """A signed event the sandbox sends to the portal's webhook, and how that went.

    `body` holds the exact text that is signed and sent; retries reuse it and the
    `webhook_id`, with a fresh timestamp and signature.
    """

    class Type(models.TextChoices):
        APPROVED = "transaction.approved"
        DECLINED = "transaction.declined"
        SETTLED = "transaction.settled"
        VOIDED = "transaction.voided"
        REFUNDED = "transaction.refunded"

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    type = models.CharField(max_length=40, choices=Type.choices)
    transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, related_name="events"
    )
    webhook_id = models.CharField(max_length=64, unique=True)
    body = models.TextField()
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.type} {self.webhook_id} ({self.status})"

    @classmethod
    def record(cls, txn: Transaction, event_type: str) -> "OutboundEvent":
        """Store the event for a change and queue its delivery.

        Call inside the transaction that makes the change: the row and the queued task
        commit or roll back with it.
        """
        now = timezone.now()
        data = txn.as_record()
        if txn.original is not None:
            # The relay names a refund's sale; PayTrace's export does not show it.
            data["original_transaction_id"] = txn.original.transaction_id
        body = {
            "type": event_type,
            "occurred_at": now.isoformat().replace("+00:00", "Z"),
            "data": data,
        }
        event = cls.objects.create(
            type=event_type,
            transaction=txn,
            webhook_id=f"msg_{uuid.uuid4().hex}",
            body=dumps(body),
            created_at=now,
        )
        async_task("integrations.sandbox.paytrace.tasks.deliver_event", event.pk)
        return event

    def signed_headers(self, moment: datetime) -> dict[str, str]:
        signature = Webhook(settings.DEMO_WEBHOOK_SECRET).sign(
            self.webhook_id, moment, self.body
        )
        return {
            "Content-Type": "application/json",
            "webhook-id": self.webhook_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature,
        }

    def deliver(self) -> bool:
        """POST the event once and record the outcome; return True to try again.

        2xx means delivered (a receiver's "duplicate" 200 included). A network error
        or a 5xx is worth another try until MAX_DELIVERY_ATTEMPTS; any other status
        is final.
        """
        if self.status != self.Status.PENDING:
            return False
        self.attempts += 1
        retry = False
        try:
            response = requests.post(
                settings.SANDBOX_PAYTRACE_WEBHOOK_URL,
                data=self.body.encode(),
                headers=self.signed_headers(timezone.now()),
                timeout=DELIVERY_TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            self.last_status = None
            self.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            retry = True
        else:
            self.last_status = response.status_code
            if 200 <= response.status_code < 300:
                self.status = self.Status.DELIVERED
                self.delivered_at = timezone.now()
                self.last_error = ""
            else:
                self.last_error = response.text[:1000]
                retry = response.status_code >= 500
        if self.status == self.Status.PENDING and not (
            retry and self.attempts < MAX_DELIVERY_ATTEMPTS
        ):
            self.status = self.Status.FAILED
            retry = False
        self.save(
            update_fields=[
                "status",
                "attempts",
                "last_status",
                "last_error",
                "delivered_at",
            ]
        )
        logger.info(
            "sandbox event %s attempt %s: %s %s",
            self.webhook_id,
            self.attempts,
            self.status,
            self.last_status or self.last_error[:100],
        )
        return retry


# The customer vault, hosted fields and recurring billing (issue 15) ----------------
# None of these rows holds a card number or a CSC: the last four digits, the brand and
# the expiry are all the sandbox keeps, as the portal does.

CLIENT_KEY_LIFETIME = timedelta(minutes=30)
HOSTED_TOKEN_LIFETIME = timedelta(minutes=15)


class ClientKey(models.Model):
    """A Protect.js `clientKey` (`payment_fields/token/create`): lets one page's hosted
    fields tokenize cards for 30 minutes. Only its SHA-256 digest is stored."""

    digest = models.CharField(max_length=64, unique=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"client key for {self.created_by} until {self.expires_at:%H:%M:%S}"

    @classmethod
    def issue(cls, username: str) -> tuple[str, "ClientKey"]:
        key = secrets.token_urlsafe(32)
        now = timezone.now()
        row = cls.objects.create(
            digest=hash_token(key),
            created_by=username,
            created_at=now,
            expires_at=now + CLIENT_KEY_LIFETIME,
        )
        return key, row

    @classmethod
    def find_valid(cls, key: str) -> "ClientKey | None":
        return cls.objects.filter(
            digest=hash_token(key), expires_at__gt=timezone.now()
        ).first()


class HostedFieldsToken(models.Model):
    """What the hosted fields made of one card: an `hpf_token` (stored as its SHA-256)
    and its `enc_key`, good for one vault call within 15 minutes."""

    digest = models.CharField(max_length=64, unique=True)
    enc_key = models.CharField(max_length=64)
    card_last4 = models.CharField(max_length=4)
    card_brand = models.CharField(max_length=20, blank=True)
    expiration_month = models.PositiveSmallIntegerField()
    expiration_year = models.PositiveSmallIntegerField(help_text="four digits")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "hosted-fields token"

    def __str__(self) -> str:
        state = "used" if self.used_at else "unused"
        return f"{self.card_brand} ending {self.card_last4} ({state})"


class VaultCustomer(models.Model):
    """A customer profile of the vault: a card on file under the merchant's own id."""

    class CardState(models.TextChoices):
        """A sandbox-only override of how the card answers (`_card_state`)."""

        OK = "ok"
        INSUFFICIENT_FUNDS = "insufficient_funds"
        LOST_STOLEN = "lost_stolen"

    customer_id = models.CharField(max_length=100, unique=True)
    card_last4 = models.CharField(max_length=4)
    card_brand = models.CharField(max_length=20, blank=True)
    expiration_month = models.PositiveSmallIntegerField()
    expiration_year = models.PositiveSmallIntegerField(help_text="four digits")
    billing_address = models.JSONField(default=dict, blank=True)
    email = models.CharField(max_length=254, blank=True)
    decline_with = models.CharField(
        max_length=20, choices=CardState.choices, default=CardState.OK
    )
    created_through = models.CharField(max_length=20, default="pt_protect")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["customer_id"]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.card_brand} ending {self.card_last4}"

    def is_expired(self, today: date | None = None) -> bool:
        """A card works through the last day of its expiry month."""
        today = today or timezone.localdate()
        return (self.expiration_year, self.expiration_month) < (today.year, today.month)

    def as_record(self) -> dict[str, Any]:
        """Render the profile as a record of `customer/export`."""
        billing = self.billing_address or {}
        return {
            "customer_id": self.customer_id,
            "credit_card": {
                "masked_number": "*" * 12 + self.card_last4,
                "expiration_month": self.expiration_month,
                "expiration_year": self.expiration_year,
                # A sandbox extra: whether PayTrace's export names the brand is unverified.
                "card_type": self.card_brand,
            },
            "billing_address": {
                key: billing.get(key, "") for key in BILLING_ADDRESS_KEYS
            },
            "email": self.email,
            "created": format_gateway_time(self.created_at),
        }


class Recurrence(models.Model):
    """A recurring-billing schedule on a vault profile (`recurrence/*`)."""

    class Frequency(models.TextChoices):
        WEEKLY = "weekly"
        BIWEEKLY = "biweekly"
        MONTHLY = "monthly"
        QUARTERLY = "quarterly"
        ANNUALLY = "annually"

    class Status(models.TextChoices):
        ACTIVE = "active"
        FINISHED = "finished"
        CANCELLED = "cancelled"

    # The vault id as text, not a foreign key: deleting the profile cancels its
    # schedules and keeps them (and the sales they made) on record.
    customer_id = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    frequency = models.CharField(max_length=20, choices=Frequency.choices)
    start_on = models.DateField()
    next_on = models.DateField(null=True, blank=True)
    total_count = models.PositiveIntegerField(help_text="0 runs until cancelled")
    repeat_count = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.ACTIVE
    )
    description = models.CharField(max_length=255, blank=True)
    invoice_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["status", "next_on"])]

    def __str__(self) -> str:
        return f"recurrence {self.pk}: {self.amount} {self.frequency} ({self.status})"
