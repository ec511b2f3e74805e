"""Cards on file (issue 15): what the portal keeps of a card stored in PayTrace's vault.

Only the vault `customer_id`, the brand, the last four digits and the expiry are kept,
with the Sage Pro customer the card pays for. The card number and the security code
never reach the portal: the enrolment page takes them in PayTrace's hosted fields
(Protect.js), which hand the portal an `hpf_token`/`enc_key` pair, and the portal turns
that pair into a vault profile (`integrations.cards` does the work).
"""

import calendar
from datetime import date

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.models.connections import Connection
from integrations.models.storage import StorableValuesMixin


class CardOnFile(StorableValuesMixin, models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        REMOVED = "removed", "Removed"

    paytrace = models.ForeignKey(
        Connection,
        on_delete=models.PROTECT,
        related_name="cards_on_file",
        limit_choices_to={"kind": Connection.Kind.PAYTRACE},
        verbose_name="PayTrace connection",
    )
    sagepro = models.ForeignKey(
        Connection,
        on_delete=models.PROTECT,
        related_name="+",
        limit_choices_to={"kind": Connection.Kind.SAGEPRO},
        verbose_name="Sage Pro connection",
    )
    custno = models.CharField("Sage Pro customer", max_length=20)
    vault_customer_id = models.CharField(
        "PayTrace vault id",
        max_length=50,
        help_text="The vault profile's customer_id: the only handle on the card.",
    )
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField("last four", max_length=4)
    exp_month = models.PositiveSmallIntegerField("expiry month")
    exp_year = models.PositiveSmallIntegerField("expiry year", help_text="four digits")
    billing_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    # Autopay (integrations.autopay): charge this customer's invoices when due.
    autopay = models.BooleanField(
        default=False, help_text="Charge this customer's invoices when they fall due."
    )
    autopay_stopped_at = models.DateTimeField(null=True, blank=True)
    autopay_stopped_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = "card on file"
        verbose_name_plural = "cards on file"
        ordering = ["custno", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["paytrace", "vault_customer_id"],
                name="cardonfile_unique_vault_id",
            ),
            # One card per Sage Pro customer is the one autopay charges.
            models.UniqueConstraint(
                fields=["sagepro", "custno"],
                condition=models.Q(autopay=True, state="active"),
                name="cardonfile_one_autopay_card",
            ),
            models.CheckConstraint(
                condition=models.Q(exp_month__gte=1, exp_month__lte=12),
                name="cardonfile_exp_month_valid",
            ),
        ]
        indexes = [models.Index(fields=["sagepro", "custno"], name="cardonfile_cust")]

    def __str__(self) -> str:
        return f"{self.brand or 'Card'} ending {self.last4} ({self.custno})"

    @property
    def expires_on(self) -> date:
        """The last day the card can be charged."""
        last_day = calendar.monthrange(self.exp_year, self.exp_month)[1]
        return date(self.exp_year, self.exp_month, last_day)

    @property
    def expiry(self) -> str:
        return f"{self.exp_month:02d}/{self.exp_year % 100:02d}"

    def is_expired(self, today: date | None = None) -> bool:
        return self.expires_on < (today or timezone.localdate())


class EnrolmentLink(models.Model):
    """A link a customer opens to put a card on file themselves.

    Only the SHA-256 digest of the link's secret is stored; it works once, until
    `expires_at`, for one Sage Pro customer (and, when `card` is set, replaces that
    card)."""

    digest = models.CharField(max_length=64, unique=True, editable=False)
    paytrace = models.ForeignKey(
        Connection,
        on_delete=models.CASCADE,
        related_name="+",
        limit_choices_to={"kind": Connection.Kind.PAYTRACE},
    )
    sagepro = models.ForeignKey(
        Connection,
        on_delete=models.CASCADE,
        related_name="+",
        limit_choices_to={"kind": Connection.Kind.SAGEPRO},
    )
    custno = models.CharField("Sage Pro customer", max_length=20)
    card = models.ForeignKey(
        CardOnFile,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="enrolment_links",
        help_text="The card this link replaces, if any.",
    )
    email = models.EmailField(blank=True, help_text="Who the link was sent to.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    result = models.ForeignKey(
        CardOnFile,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The card the link put on file.",
    )

    class Meta:
        verbose_name = "card enrolment link"

    def __str__(self) -> str:
        return (
            f"Enrolment link for {self.custno} until {self.expires_at:%Y-%m-%d %H:%M}"
        )

    def is_usable(self) -> bool:
        return self.used_at is None and self.expires_at > timezone.now()
