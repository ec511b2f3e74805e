"""Storefront order-to-cash (issue 14 point 4): a storefront's settings, the webhook
events it sent, its orders and their lines, and its refunds.

The customer mapping table is `mappings.PayerLink` on the storefront connection
(kind `customer_id` for the storefront's customer id, `email` for the e-mail).
"""

from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from integrations.models.connections import Connection
from integrations.models.inbound import InboundDelivery
from integrations.models.payments import PaymentTransaction
from integrations.models.review import ReviewItem
from integrations.models.storage import CENT, StorableValuesMixin, money_in_range


class StorefrontSettings(models.Model):
    """What a storefront connection belongs with, and how its orders become Sage Pro's."""

    connection = models.OneToOneField(
        Connection,
        on_delete=models.CASCADE,
        related_name="storefront_settings",
        limit_choices_to={"kind": "storefront"},
    )
    paytrace = models.ForeignKey(
        Connection,
        on_delete=models.PROTECT,
        related_name="storefronts",
        limit_choices_to={"kind": "paytrace"},
        help_text="The PayTrace connection that takes this storefront's payments.",
    )
    sagepro = models.ForeignKey(
        Connection,
        on_delete=models.PROTECT,
        related_name="storefront_companies",
        limit_choices_to={"kind": "sagepro"},
        help_text="The Sage Pro company its sales orders go to.",
    )
    reference_prefix = models.CharField(
        max_length=20,
        blank=True,
        help_text="A word a PayTrace invoice id may put before the order number "
        "(SHOP for SHOP-1001); #1001 and 1001 are always read.",
    )
    default_location = models.CharField(
        max_length=6, default="MAIN", help_text="Sage Pro location of order lines."
    )
    customer_letters = models.PositiveSmallIntegerField(
        default=4,
        help_text="New customer numbers: this many letters of the name, then a "
        "sequence (ADAB01), at most 6 characters.",
    )
    customer_terms = models.CharField(max_length=10, blank=True, default="PREPAID")
    wait_minutes = models.PositiveIntegerField(
        default=60,
        help_text="How long an order waits for its payment (or a payment for its "
        "order) before it goes to review.",
    )

    class Meta:
        verbose_name = "storefront settings"
        verbose_name_plural = "storefront settings"

    def __str__(self) -> str:
        return f"settings of {self.connection.slug}"


class StorefrontEvent(StorableValuesMixin, models.Model):
    """One verified storefront webhook, stored once per webhook id, card data masked."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (topic not used)"
        FAILED = "failed", "Failed"

    connection = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="storefront_events"
    )
    webhook_id = models.CharField(max_length=200)
    topic = models.CharField(max_length=60)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    contains_card_data = models.BooleanField(default=False)
    delivery = models.ForeignKey(
        InboundDelivery,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="storefront_events",
    )
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.QUEUED, db_index=True
    )
    outcome = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "webhook_id"],
                name="storefront_event_unique_per_connection",
            )
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.webhook_id}"


class StorefrontOrder(StorableValuesMixin, models.Model):
    """A storefront order, from webhook to Sage Pro sales order with its cash applied.

    A payment that names an order not seen yet creates the row (state
    `waiting_order`, no order id) and the order fills it when it arrives.
    """

    class State(models.TextChoices):
        WAITING_PAYMENT = "waiting_payment", "Waiting for payment"
        WAITING_ORDER = "waiting_order", "Waiting for order (payment received)"
        PROCESSING = "processing", "Sending to Sage Pro"
        ORDERED = "ordered", "Ordered (receipt pending)"
        PAID = "paid", "Paid and applied"
        REVIEW = "review", "In review"
        CANCELLED = "cancelled", "Cancelled"

    connection = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="storefront_orders"
    )
    reference_key = models.CharField(
        max_length=40, help_text="The order number as references are compared (1001)."
    )
    order_id = models.CharField(max_length=40, blank=True)
    name = models.CharField(max_length=40, blank=True)
    number = models.CharField(max_length=40, blank=True)
    email = models.CharField(max_length=254, blank=True)
    customer_id = models.CharField(
        max_length=40, blank=True, help_text="The storefront's customer id."
    )
    customer_name = models.CharField(max_length=120, blank=True)
    billing_address = models.JSONField(default=dict, blank=True)
    ship_to = models.JSONField(default=dict, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    subtotal = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    tax = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    freight = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    financial_status = models.CharField(max_length=30, blank=True)
    cancelled = models.BooleanField(default=False)
    state = models.CharField(
        max_length=20,
        choices=State.choices,
        default=State.WAITING_PAYMENT,
        db_index=True,
    )
    state_reason = models.TextField(blank=True)
    custno = models.CharField("Sage Pro customer", max_length=20, blank=True)
    sono = models.CharField("Sage Pro sales order", max_length=20, blank=True)
    invno = models.CharField("Sage Pro invoice", max_length=20, blank=True)
    transaction = models.ForeignKey(
        PaymentTransaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="storefront_orders",
        help_text="The PayTrace payment, once matched.",
    )
    review_item = models.ForeignKey(
        ReviewItem,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="storefront_orders",
    )
    history = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    waiting_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "reference_key"],
                name="storefront_order_unique_reference",
            ),
            money_in_range("storefront_order", "subtotal"),
            money_in_range("storefront_order", "tax"),
            money_in_range("storefront_order", "freight"),
            money_in_range("storefront_order", "total"),
        ]

    def __str__(self) -> str:
        return f"order {self.name or self.reference_key}"

    def note(self, what: str, detail: str = "", **data: Any) -> None:
        """Add a line to the order's history (saved by the caller)."""
        self.history = [
            *self.history,
            {"at": timezone.now().isoformat(), "what": what, "detail": detail, **data},
        ][-200:]

    def move_to(self, state: str, what: str, detail: str = "") -> None:
        """Change the state, with a history line, and save."""
        self.state = state
        self.state_reason = detail if state == self.State.REVIEW else ""
        self.note(what, detail, state=state)
        self.save()

    def open_review(
        self, reason: str, *, code: str = "", kind: str = ReviewItem.Kind.ORDER
    ) -> ReviewItem:
        """Send the order to review (kind `order` unless told) with the reason, once."""
        with transaction.atomic():
            item = self.review_item
            if item is None or item.state != ReviewItem.State.OPEN:
                if self.transaction is not None:
                    item = ReviewItem.open(
                        self.transaction, kind, reason, error_code=code
                    )
                else:
                    item = ReviewItem.objects.create(
                        kind=kind, reason=reason, error_code=code
                    )
            elif item.reason != reason:
                item.reason = reason
                item.save(update_fields=["reason"])
            self.review_item = item
            self.move_to(self.State.REVIEW, "review", reason)
        return item

    @property
    def has_details(self) -> bool:
        return bool(self.order_id)


class StorefrontOrderLine(StorableValuesMixin, models.Model):
    order = models.ForeignKey(
        StorefrontOrder, on_delete=models.CASCADE, related_name="lines"
    )
    line_no = models.PositiveSmallIntegerField()
    sku = models.CharField(max_length=60, blank=True)
    title = models.CharField(max_length=200, blank=True)
    quantity = models.DecimalField(max_digits=12, decimal_places=2)
    price = models.DecimalField(max_digits=14, decimal_places=2)
    location = models.CharField(max_length=6, blank=True)
    taxable = models.BooleanField(default=True)

    class Meta:
        ordering = ["order", "line_no"]
        constraints = [
            money_in_range("storefront_line", "price"),
            money_in_range("storefront_line", "quantity", 12, 2),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.sku or self.title}"

    @property
    def extended(self) -> Decimal:
        return (self.quantity * self.price).quantize(CENT)


class StorefrontRefund(StorableValuesMixin, models.Model):
    """A refund the storefront reported, linked to the PayTrace refund of the order's
    payment once one is seen (helper "refunds" posts the credit memo)."""

    order = models.ForeignKey(
        StorefrontOrder, on_delete=models.CASCADE, related_name="refunds"
    )
    refund_id = models.CharField(max_length=40)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    note = models.CharField(max_length=200, blank=True)
    transaction = models.ForeignKey(
        PaymentTransaction,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="storefront_refunds",
        help_text="The PayTrace refund (its `original` is the order's payment).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "refund_id"], name="storefront_refund_unique"
            ),
            money_in_range("storefront_refund", "amount"),
        ]

    def __str__(self) -> str:
        return f"refund {self.refund_id} of {self.order}"
