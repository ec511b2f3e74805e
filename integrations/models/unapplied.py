"""Unapplied cash: the rule that applies it by itself, the refunds reviewers make of it,
and the finance list of what still waits (`integrations.unapplied` does the work)."""

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.models.connections import Connection
from integrations.models.payments import PaymentTransaction, Posting
from integrations.models.storage import StorableValuesMixin, money_in_range
from mappings.formatting import format_money


class UnappliedCashRule(models.Model):
    """When an invoice appears later for a customer whose cash waits unapplied, apply
    it: per Sage Pro connection, only to the same customer's invoices, only cash no
    older than `max_age_days`."""

    class AmountMode(models.TextChoices):
        EXACT = "exact", "Exact amount only (the cash equals the invoice's balance)"
        UP_TO_BALANCE = "up_to_balance", "Up to the invoice's balance"

    sagepro = models.OneToOneField(
        Connection,
        on_delete=models.CASCADE,
        related_name="unapplied_cash_rule",
        limit_choices_to={"kind": Connection.Kind.SAGEPRO},
        verbose_name="Sage Pro connection",
    )
    enabled = models.BooleanField(default=True)
    amount_mode = models.CharField(
        "amount",
        max_length=20,
        choices=AmountMode.choices,
        default=AmountMode.EXACT,
        help_text="Exact: only when what waits equals the new invoice's balance. Up "
        "to the balance: what waits is applied up to the balance; the rest waits.",
    )
    max_age_days = models.PositiveIntegerField(
        "maximum age (days)",
        default=90,
        help_text="Cash posted longer ago than this is left for a person.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "unapplied cash rule"

    def __str__(self) -> str:
        state = "on" if self.enabled else "off"
        return f"Unapplied cash rule of {self.sagepro} ({state})"

    def describe(self) -> str:
        """The rule in words, for the payment's history."""
        mode = (
            "exact amount"
            if self.amount_mode == self.AmountMode.EXACT
            else "up to the invoice's balance"
        )
        return (
            f"unapplied cash rule of {self.sagepro.slug} ({mode}, same customer, "
            f"cash at most {self.max_age_days} days old)"
        )


class UnappliedRefund(StorableValuesMixin, models.Model):
    """A refund of unapplied cash a reviewer asked PayTrace for.

    The row is written (and committed) before PayTrace is called, so the cash counts as
    refunded while the call is under way and a second press cannot refund it twice.
    """

    class State(models.TextChoices):
        REQUESTED = "requested", "Requested (PayTrace is being asked)"
        REFUNDED = "refunded", "Refunded"
        REFUSED = "refused", "Refused by PayTrace"
        UNKNOWN = "unknown", "Unknown (PayTrace did not answer)"

    transaction = models.ForeignKey(
        PaymentTransaction,
        on_delete=models.PROTECT,
        related_name="unapplied_refunds",
        help_text="The sale whose unapplied cash is refunded.",
    )
    receipt = models.ForeignKey(
        Posting, on_delete=models.PROTECT, related_name="unapplied_refunds"
    )
    item = models.ForeignKey(
        "integrations.ReviewItem",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="unapplied_refunds",
    )
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.REQUESTED
    )
    refund_transaction_id = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    requested_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [money_in_range("unappliedrefund", "amount")]

    def __str__(self) -> str:
        return (
            f"Refund of {format_money(self.amount, self.currency)} unapplied cash of "
            f"{self.transaction.transaction_id} ({self.state})"
        )


class UnappliedCash(Posting):
    """The finance list "Unapplied cash": posted receipts with cash still waiting."""

    # Set on the list's rows, once for the page (`admin.unapplied.UnappliedCashList`):
    # the `unapplied.Waiting` of the receipt and the review item the row links to.
    waiting_now: Any
    review_item_now: Any

    class Meta:
        proxy = True
        verbose_name = "unapplied cash"
        verbose_name_plural = "unapplied cash"
