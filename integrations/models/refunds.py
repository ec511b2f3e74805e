"""Refunds and voids that reverse a sale's receipt (issue 14 point 1).

A PayTrace refund is its own transaction; `PaymentTransaction.original` links it to its
sale. These rows hold what the link and the reversal need before they can be made:
the refunds the portal itself asked PayTrace for (`ExpectedRefund`), the refunds and
voids that wait for their sale or its receipt (`PendingReversal`), and the fee a
connection's processor charges per refund (`RefundFee`).
"""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.models.connections import Connection
from integrations.models.payments import PaymentTransaction
from integrations.models.storage import StorableValuesMixin, money_in_range


class ExpectedRefund(StorableValuesMixin, models.Model):
    """A refund the portal asked PayTrace for: its transaction id names its sale, so
    the refund links to it when its event arrives (before any guess by references)."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="expected_refunds"
    )
    refund_transaction_id = models.CharField(max_length=40)
    original = models.ForeignKey(
        PaymentTransaction, on_delete=models.CASCADE, related_name="expected_refunds"
    )
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "refund_transaction_id"],
                name="expected_refund_unique_per_connection",
            ),
            money_in_range("expectedrefund", "amount"),
        ]

    def __str__(self) -> str:
        return f"refund {self.refund_transaction_id} of {self.original.transaction_id}"


class PendingReversal(models.Model):
    """A refund or void whose reversal cannot be decided yet: it waits for its sale,
    for the sale's receipt to post, or for a receipt send in flight to finish.

    Decided again when the sale's receipt is recorded (`refunds.after_receipt`) and by
    the sweeper; after `REFUND_WAIT_MINUTES` a `refund` review item asks a person.
    """

    class State(models.TextChoices):
        WAITING = "waiting", "Waiting"
        DONE = "done", "Decided"
        REVIEW = "review", "Sent to review"

    transaction = models.OneToOneField(
        PaymentTransaction, on_delete=models.CASCADE, related_name="pending_reversal"
    )
    original_transaction_id = models.CharField(
        max_length=40,
        blank=True,
        help_text="The sale, when the refund's event named it.",
    )
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.WAITING, db_index=True
    )
    reason = models.CharField(max_length=300, blank=True)
    waiting_since = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["waiting_since"]

    def __str__(self) -> str:
        return f"{self.transaction.transaction_id}: {self.reason or self.state}"


class RefundFee(StorableValuesMixin, models.Model):
    """The fee a PayTrace connection's processor charges per refund. A credit memo
    carries a fee only when this row is active with an amount above zero and a GL rule
    of purpose `refund_fee` chooses its account."""

    connection = models.OneToOneField(
        Connection, on_delete=models.CASCADE, related_name="refund_fee"
    )
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=Decimal("0.00")
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [money_in_range("refundfee", "amount")]

    def __str__(self) -> str:
        return f"{self.connection}: {self.amount} per refund"
