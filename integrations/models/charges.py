"""Charges the portal makes on cards on file (issue 15; `integrations.charging` does
the work).

A charge is written and committed before PayTrace is called, keyed by its
idempotency key, so one key never charges twice: a second request with the key reads
the first one's row. Its `reference` travels in the PayTrace sale's `description`, so
a charge whose answer was lost (the process died after PayTrace approved, a timeout)
is found in PayTrace's export before anything is charged again.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.models.cards import CardOnFile
from integrations.models.connections import Connection
from integrations.models.payments import PaymentTransaction
from integrations.models.storage import StorableValuesMixin, money_in_range


class Charge(StorableValuesMixin, models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Recorded, not sent yet"
        SENDING = "sending", "Sent to PayTrace, no answer yet"
        APPROVED = "approved", "Approved"
        DECLINED = "declined", "Declined"
        FAILED = "failed", "Refused by PayTrace (nothing charged)"
        UNKNOWN = "unknown", "Outcome unknown: being looked up"

    class Source(models.TextChoices):
        API = "api", "API"
        ADMIN = "admin", "Charged by a person"
        AUTOPAY = "autopay", "Autopay"

    FINISHED = (State.APPROVED, State.DECLINED, State.FAILED)

    reference = models.CharField(
        max_length=32,
        unique=True,
        help_text="Sent in the PayTrace sale's description; how a lost answer is found.",
    )
    # Keys are per caller: `user:<id>` for the API and the admin, `autopay` for the
    # schedule. The same key from two callers is two charges.
    key_scope = models.CharField(max_length=40)
    idempotency_key = models.CharField(max_length=200)
    request_fingerprint = models.CharField(
        max_length=64, help_text="SHA-256 of the request's card, invoice and amount."
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    requested_by_name = models.CharField(
        max_length=150, blank=True, help_text="Who asked, as they were named then."
    )
    card = models.ForeignKey(
        CardOnFile, on_delete=models.PROTECT, related_name="charges"
    )
    paytrace = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="charges"
    )
    sagepro = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="+")
    custno = models.CharField(max_length=20)
    invno = models.CharField(max_length=20)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    invoice_balance = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="The invoice's balance when the charge was asked for.",
    )
    over_balance_confirmed = models.BooleanField(default=False)
    # Issue 15 (charging): where `invoice_balance` was read. "mirror" when Sage Pro
    # could not be reached and the portal's copy of the invoice stood in for it.
    balance_source = models.CharField(
        max_length=10,
        blank=True,
        help_text="Where the balance was read: sagepro (fresh) or mirror (Sage Pro "
        "could not be reached).",
    )
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.PENDING
    )
    transaction_id = models.CharField(max_length=20, blank=True)
    response_code = models.IntegerField(null=True, blank=True)
    approval_code = models.CharField(max_length=20, blank=True)
    approval_message = models.CharField(max_length=255, blank=True)
    decline_category = models.CharField(
        max_length=10, blank=True, help_text="soft (may be retried) or hard"
    )
    error = models.TextField(blank=True, help_text="Why it failed or is unknown.")
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Times PayTrace was called (a lost answer is looked up)."
    )
    payment = models.ForeignKey(
        PaymentTransaction,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="charges",
        help_text="The payment the pipeline made of the approved sale.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key_scope", "idempotency_key"],
                name="charge_unique_idempotency_key",
            ),
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="charge_amount_positive"
            ),
            money_in_range("charge", "amount"),
            money_in_range("charge", "invoice_balance"),
        ]
        indexes = [
            models.Index(fields=["sagepro", "invno"], name="charge_invoice"),
            models.Index(fields=["state", "sent_at"], name="charge_state"),
        ]

    def __str__(self) -> str:
        return f"Charge {self.reference}: {self.amount} on {self.invno} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED
