"""The local mirror of one Sage Pro company's reference data.

Per Sage Pro connection: customers, invoices (with their balances), GL accounts and
fiscal periods, kept current by `integrations.mirror` (an incremental sync from the
gateway's change feeds, point refreshes, and the receipts the portal posts), so that
matching, review candidates and the document checks read the database instead of the
gateway. Keys are stored as the gateway answers them: trimmed, upper case
(docs/sagepro-gateway.md §2). `synced_at` on a row is when the gateway read that
produced it was started: a later read never loses to an earlier one.
"""

from decimal import Decimal

from django.db import models
from django.utils import timezone

from integrations.models.connections import Connection
from integrations.models.storage import StorableValuesMixin, money_in_range

ZERO = Decimal("0.00")


class MirrorState(models.Model):
    """Where the mirror of one Sage Pro connection stands: cursors, syncs, errors."""

    connection = models.OneToOneField(
        Connection, on_delete=models.CASCADE, related_name="mirror_state"
    )
    invoice_cursor = models.CharField(
        max_length=200,
        blank=True,
        help_text="Where the invoice change feed continues ('' = from the start).",
    )
    customer_cursor = models.CharField(
        max_length=200,
        blank=True,
        help_text="Where the customer change feed continues ('' = from the start).",
    )
    synced_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last sync (of any kind) finished."
    )
    full_synced_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last full resync finished."
    )
    full_started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set while a full resync is under way (it resumes after a restart).",
    )
    gl_accounts_fetched_at = models.DateTimeField(null=True, blank=True)
    periods_fetched_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["connection__name"]
        verbose_name = "Sage Pro mirror"

    def __str__(self) -> str:
        return f"Mirror of {self.connection.name}"

    @classmethod
    def for_connection(cls, connection: Connection) -> "MirrorState":
        state, _ = cls.objects.get_or_create(connection=connection)
        return state


class MirroredCustomer(StorableValuesMixin, models.Model):
    """`ARCUST`, as the gateway's `GET /customers/{custno}` answers it."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="mirrored_customers"
    )
    custno = models.CharField(max_length=20)
    name = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    status = models.CharField(max_length=10, blank=True)
    credit_status = models.CharField(max_length=10, blank=True)
    balance = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    credit_limit = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    terms = models.CharField(max_length=60, blank=True)
    ar_account = models.CharField(max_length=24, blank=True)
    last_payment_date = models.DateField(null=True, blank=True)
    last_payment_amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=ZERO
    )
    details = models.JSONField(
        default=dict, blank=True, help_text="Contact and address, as the gateway sent."
    )
    # How a payer's billing name and e-mail are compared with the customer's
    # (`mappings.payers`): the name key, and every address as ";a@x.com;b@y.com;".
    name_key = models.CharField(max_length=120, blank=True)
    emails = models.CharField(max_length=400, blank=True)
    deleted = models.BooleanField(default=False)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["connection_id", "custno"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "custno"], name="mirroredcustomer_unique_key"
            ),
            money_in_range("mirroredcustomer", "balance"),
            money_in_range("mirroredcustomer", "credit_limit"),
            money_in_range("mirroredcustomer", "last_payment_amount"),
        ]
        indexes = [
            models.Index(
                fields=["connection", "name_key"], name="mirroredcustomer_name_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.custno} {self.name}".strip()


class MirroredInvoice(StorableValuesMixin, models.Model):
    """`ARMAST`, as the gateway's `GET /invoices/{invno}` answers it."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="mirrored_invoices"
    )
    invno = models.CharField(max_length=20)
    custno = models.CharField(max_length=20, blank=True)
    invamt = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    paidamt = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    balance = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    invdte = models.DateField(null=True, blank=True)
    artype = models.CharField(max_length=2, blank=True)
    ornum = models.CharField(max_length=40, blank=True)
    ponum = models.CharField(max_length=40, blank=True)
    # The numbers as a customer's reference is compared with them
    # (`mappings.references.reference_key`: no prefix word, punctuation or leading 0).
    invno_key = models.CharField(max_length=40, blank=True)
    ornum_key = models.CharField(max_length=40, blank=True)
    ponum_key = models.CharField(max_length=40, blank=True)
    deleted = models.BooleanField(default=False)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["connection_id", "invno"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "invno"], name="mirroredinvoice_unique_key"
            ),
            money_in_range("mirroredinvoice", "invamt"),
            money_in_range("mirroredinvoice", "paidamt"),
            money_in_range("mirroredinvoice", "balance"),
        ]
        indexes = [
            models.Index(
                fields=["connection", "custno"], name="mirroredinvoice_customer"
            ),
            models.Index(
                fields=["connection", "invno_key"], name="mirroredinvoice_invno_key"
            ),
            models.Index(
                fields=["connection", "ornum_key"], name="mirroredinvoice_ornum_key"
            ),
            models.Index(
                fields=["connection", "ponum_key"], name="mirroredinvoice_ponum_key"
            ),
        ]

    def __str__(self) -> str:
        return f"invoice {self.invno} ({self.custno}, balance {self.balance})"


class MirroredGlAccount(models.Model):
    """`GLACNT`, as `GET /gl-accounts` lists it (deleted accounts are not listed)."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="mirrored_gl_accounts"
    )
    glacnt = models.CharField(max_length=24)
    gldesc = models.CharField(max_length=100, blank=True)
    glstat = models.CharField(max_length=10, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["connection_id", "glacnt"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "glacnt"], name="mirroredglaccount_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.glacnt} {self.gldesc}".strip()


class MirroredPeriod(models.Model):
    """`SYCDFIS`, as `GET /periods` lists it."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="mirrored_periods"
    )
    yearprd = models.CharField(max_length=10)
    bdate = models.DateField()
    edate = models.DateField()
    pclosed = models.BooleanField(default=False)
    plocked = models.BooleanField(default=False)
    permlck = models.BooleanField(default=False)
    current = models.BooleanField(default=False)

    class Meta:
        ordering = ["connection_id", "yearprd"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "yearprd"], name="mirroredperiod_unique_key"
            )
        ]

    def __str__(self) -> str:
        return self.yearprd
