"""Autopay and recurring billing (issue 15; `integrations.autopay` and
`integrations.recurring` do the work).

Autopay charges the open invoices of customers whose card on file has `autopay` set,
when they fall due, once per invoice: each attempt is a `Charge` whose idempotency key
is the invoice and the attempt's number, so two runs at once make one charge. Soft
declines are tried again on the settings' schedule; a hard decline stops autopay on
the card and opens a review item.

Recurring schedules live in PayTrace (`recurrence/*`); the portal keeps a copy to list
them with their next run. The charges they make arrive through polling like any sale.
"""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.models.cards import CardOnFile
from integrations.models.charges import Charge
from integrations.models.connections import Connection
from integrations.models.storage import StorableValuesMixin, money_in_range


class AutopaySettings(models.Model):
    """Per Sage Pro connection: when invoices are charged, how much at most, and when
    a soft decline is tried again."""

    sagepro = models.OneToOneField(
        Connection,
        on_delete=models.CASCADE,
        related_name="autopay_settings",
        limit_choices_to={"kind": Connection.Kind.SAGEPRO},
        verbose_name="Sage Pro connection",
    )
    enabled = models.BooleanField(default=False)
    days_from_due = models.SmallIntegerField(
        "charge on (days from the due date)",
        default=0,
        help_text="0 charges on the due date, -3 three days before it, 5 five days after.",
    )
    catch_up_days = models.PositiveSmallIntegerField(
        default=7,
        help_text="An invoice whose charge day passed this many days ago or fewer is "
        "still charged (a run that did not happen is made up for); older ones are "
        "left for a person.",
    )
    default_net_days = models.PositiveSmallIntegerField(
        default=30,
        help_text="Net days when the customer's terms do not say (e.g. no 'Net 30').",
    )
    max_amount = models.DecimalField(
        "maximum per invoice",
        max_digits=14,
        decimal_places=2,
        default=Decimal("5000.00"),
        help_text="A larger balance is not charged; the report lists it.",
    )
    retry_days = models.CharField(
        "retry soft declines after (days)",
        max_length=60,
        default="1, 3, 7",
        help_text="Days after each soft decline before the next try, e.g. '1, 3, 7'. "
        "Hard declines are never retried.",
    )
    finance_emails = models.TextField(
        "e-mail the report to",
        blank=True,
        help_text="One address per line or comma-separated.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "autopay settings"
        verbose_name_plural = "autopay settings"
        constraints = [
            money_in_range("autopaysettings", "max_amount"),
            models.CheckConstraint(
                condition=models.Q(days_from_due__gte=-60, days_from_due__lte=60),
                name="autopaysettings_days_from_due_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Autopay of {self.sagepro} ({'on' if self.enabled else 'off'})"


class AutopayRun(models.Model):
    """One run of autopay over one Sage Pro connection, and its report."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (another run was under way)"

    sagepro = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="autopay_runs"
    )
    run_date = models.DateField(help_text="The business day the run charged for.")
    trigger = models.CharField(max_length=20, default="schedule")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.RUNNING
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    charged_count = models.PositiveIntegerField(default=0)
    charged_amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=Decimal("0")
    )
    failed_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    emailed_to = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [money_in_range("autopayrun", "charged_amount")]

    def __str__(self) -> str:
        return f"Autopay {self.run_date} of {self.sagepro} ({self.state})"


class AutopayAttempt(StorableValuesMixin, models.Model):
    """One invoice in one run: charged, declined, or skipped and why."""

    class Outcome(models.TextChoices):
        CHARGED = "charged", "Charged"
        SOFT_DECLINE = "soft_decline", "Declined, will be retried"
        HARD_DECLINE = "hard_decline", "Declined, autopay stopped"
        RETRIES_EXHAUSTED = "retries_exhausted", "Declined, no retries left"
        FAILED = "failed", "Failed (nothing charged)"
        UNKNOWN = "unknown", "Outcome unknown (being looked up)"
        SKIPPED = "skipped", "Skipped"

    run = models.ForeignKey(
        AutopayRun, on_delete=models.CASCADE, related_name="attempts"
    )
    card = models.ForeignKey(
        CardOnFile, on_delete=models.PROTECT, related_name="autopay_attempts"
    )
    sagepro = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    custno = models.CharField(max_length=20)
    invno = models.CharField(max_length=20)
    due_date = models.DateField(null=True, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    attempt = models.PositiveSmallIntegerField(
        default=0, help_text="1 for the first try, 2 for the first retry… (0: skipped)"
    )
    charge = models.ForeignKey(
        Charge,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="autopay_attempts",
    )
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    reason = models.TextField(blank=True)
    next_try_on = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "custno", "invno"]
        constraints = [money_in_range("autopayattempt", "amount")]
        indexes = [
            models.Index(fields=["sagepro", "invno"], name="autopayattempt_invoice")
        ]

    def __str__(self) -> str:
        return f"{self.invno}: {self.get_outcome_display()}"


class RecurringSchedule(StorableValuesMixin, models.Model):
    """A PayTrace recurring schedule on a card on file, as the portal last saw it."""

    class Frequency(models.TextChoices):
        # PayTrace's frequency codes are unverified (paytrace-api.md §4.4); the
        # sandbox takes these words.
        WEEKLY = "weekly", "Weekly"
        BIWEEKLY = "biweekly", "Every two weeks"
        MONTHLY = "monthly", "Monthly"
        QUARTERLY = "quarterly", "Quarterly"
        ANNUALLY = "annually", "Yearly"

    class State(models.TextChoices):
        CREATING = "creating", "Being created in PayTrace"
        ACTIVE = "active", "Active"
        FINISHED = "finished", "Finished (all charges made)"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "PayTrace refused it"
        UNKNOWN = "unknown", "Unknown (PayTrace did not answer)"

    card = models.ForeignKey(
        CardOnFile, on_delete=models.PROTECT, related_name="recurring_schedules"
    )
    paytrace = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="recurring_schedules"
    )
    recurrence_id = models.CharField("PayTrace schedule id", max_length=50, blank=True)
    custno = models.CharField("Sage Pro customer", max_length=20)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    frequency = models.CharField(max_length=10, choices=Frequency.choices)
    start_date = models.DateField()
    total_count = models.PositiveIntegerField(
        default=0, help_text="How many charges in all; 0 runs until cancelled."
    )
    description = models.CharField(max_length=255, blank=True)
    invoice_reference = models.CharField(
        max_length=20,
        blank=True,
        help_text="Sent as each charge's invoice_id (e.g. a contract number).",
    )
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.CREATING
    )
    next_run = models.DateField(null=True, blank=True)
    charges_made = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["next_run", "custno"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0),
                name="recurringschedule_amount_positive",
            ),
            money_in_range("recurringschedule", "amount"),
        ]

    def __str__(self) -> str:
        return f"{self.get_frequency_display()} {self.amount} for {self.custno}"
