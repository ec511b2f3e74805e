"""Chargebacks: disputes a processor reports, their state changes and GL batches, and
the dispute-report imports that create them (PayTrace has no chargeback API)."""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from integrations.models.connections import Connection
from integrations.models.payments import PaymentTransaction, Posting
from integrations.models.storage import StorableValuesMixin, money_in_range
from mappings.formatting import format_money


class ChargebackState(models.TextChoices):
    OPENED = "opened", "Opened"
    WON = "won", "Won"
    LOST = "lost", "Lost"


class Chargeback(StorableValuesMixin, models.Model):
    """One dispute of one payment, as the processor reported it."""

    State = ChargebackState

    class Source(models.TextChoices):
        FORM = "form", "Admin form"
        IMPORT = "import", "Dispute report import"

    connection = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="chargebacks"
    )
    transaction = models.ForeignKey(
        PaymentTransaction, on_delete=models.PROTECT, related_name="chargebacks"
    )
    case_number = models.CharField(max_length=40)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    fee_amount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=0,
        help_text="The processor's dispute fee, booked when the case opens.",
    )
    reason_code = models.CharField(max_length=20, blank=True)
    reason_text = models.CharField(max_length=200, blank=True)
    state = models.CharField(
        max_length=10, choices=ChargebackState.choices, default=ChargebackState.OPENED
    )
    opened_on = models.DateField()
    due_on = models.DateField(null=True, blank=True, help_text="Respond by.")
    resolved_on = models.DateField(null=True, blank=True)
    source = models.CharField(
        max_length=10, choices=Source.choices, default=Source.FORM
    )
    dispute_import = models.ForeignKey(
        "DisputeImport",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chargebacks",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_on", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "case_number"],
                name="chargeback_case_unique_per_connection",
            ),
            money_in_range("chargeback", "amount"),
            money_in_range("chargeback", "fee_amount"),
        ]

    def __str__(self) -> str:
        return (
            f"Chargeback {self.case_number} "
            f"{format_money(self.amount, self.currency)} ({self.state})"
        )


class ChargebackEvent(StorableValuesMixin, models.Model):
    """One state of a chargeback (opened, won, lost), once, with its GL batch."""

    chargeback = models.ForeignKey(
        Chargeback, on_delete=models.CASCADE, related_name="events"
    )
    state = models.CharField(max_length=10, choices=ChargebackState.choices)
    on = models.DateField(help_text="The date the state took effect (the batch date).")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    posting = models.ForeignKey(
        Posting,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="chargeback_events",
        help_text="The GL batch this state change posts.",
    )
    source = models.CharField(
        max_length=10, choices=Chargeback.Source.choices, default="form"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["on", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["chargeback", "state"], name="one_chargeback_event_per_state"
            ),
            money_in_range("chargebackevent", "amount"),
        ]

    def __str__(self) -> str:
        return f"{self.chargeback.case_number} {self.state} on {self.on}"


class DisputeReportMapping(models.Model):
    """Which column of a connection's dispute report holds what (saved once)."""

    connection = models.OneToOneField(
        Connection, on_delete=models.CASCADE, related_name="dispute_mapping"
    )
    columns = models.JSONField(
        default=dict, blank=True, help_text="Field name → the column header."
    )
    date_format = models.CharField(max_length=20, default="%Y-%m-%d")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Dispute report columns of {self.connection.slug}"


class DisputeImport(StorableValuesMixin, models.Model):
    """One upload of a dispute report: previewed, then imported (or not)."""

    class State(models.TextChoices):
        PREVIEWED = "previewed", "Previewed (nothing imported)"
        IMPORTED = "imported", "Imported"
        REFUSED = "refused", "Refused (file unreadable)"

    connection = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="dispute_imports"
    )
    file_name = models.CharField(max_length=200)
    sha256 = models.CharField(max_length=64, db_index=True)
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.PREVIEWED
    )
    row_count = models.PositiveIntegerField(default=0)
    good_count = models.PositiveIntegerField(default=0)
    bad_count = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    changed_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the file could not be read.")
    notes = models.JSONField(default=list, blank=True)
    rows = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="The file's rows (card numbers masked): line and cells.",
    )
    results = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="Each row's outcome: line, case, errors or what was done.",
    )
    mapping = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    imported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The same file imports once per connection.
            models.UniqueConstraint(
                fields=["connection", "sha256"],
                condition=models.Q(state="imported"),
                name="dispute_file_imported_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_state_display()})"
