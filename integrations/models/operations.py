"""Runs and locks: leases, polls, settlement batches, reconciliations, alerts."""

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from integrations.models.connections import Connection
from integrations.models.payments import PaymentTransaction
from integrations.models.storage import StorableValuesMixin, money_in_range


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
        expires = now + timedelta(seconds=seconds)
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
    # Issue 13 (month-end): what a run started from the admin is doing, and the
    # report's headline (PayTrace total, Sage Pro total, what explains the difference).
    progress = models.CharField(max_length=200, blank=True)
    headline = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

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
        # Issue 14: every kind of money movement.
        CHARGEBACK = "chargeback", "Chargeback"
        REFUND_POSTED = "refund_posted", "Refund: credit memo posted"
        REFUND_PENDING = "refund_pending", "Refund: credit memo pending"
        REFUND_IN_REVIEW = "refund_in_review", "Refund: in review"
        REFUND_WAITING = "refund_waiting", "Refund: waiting for its sale"
        RECEIPT_REVERSED = "receipt_reversed", "Receipt reversed (voided after posting)"

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
