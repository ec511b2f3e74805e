from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from mappings import gl, matching, payers
from mappings.fields import FieldRule
from mappings.gl import GlRuleData
from mappings.status import DEFAULT_RULES, StatusRule
from mappings.text import split_list


class PaymentStatus(models.TextChoices):
    """The Sage Pro side's view of a payment: what the status map produces."""

    PAID = "Paid"
    FAILED = "Failed"
    REFUNDED = "Refunded"
    VOIDED = "Voided"
    PENDING = "Pending"
    AUTHORIZED = "Authorized"


class GatewayStatus(models.TextChoices):
    """PayTrace's state of a transaction, normalised."""

    AUTHORIZED = "authorized"
    APPROVED = "approved"
    PENDING_SETTLEMENT = "pending_settlement"
    SETTLED = "settled"
    DECLINED = "declined"
    VOIDED = "voided"
    REFUNDED = "refunded"
    UNKNOWN = "unknown"


class StatusMap(models.Model):
    """One row of a connection's status map, edited by integration admins."""

    class Action(models.TextChoices):
        POST_RECEIPT = "post_receipt", "Post a cash receipt"
        RECORD_ONLY = "record_only", "Record only"
        REVERSE = "reverse", "Reverse the receipt"
        REVIEW = "review", "Send to review"

    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.CASCADE, related_name="status_maps"
    )
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower runs first; the first matching row wins."
    )
    event_type = models.CharField(
        max_length=60, blank=True, help_text="e.g. transaction.approved; blank = any."
    )
    transaction_type = models.CharField(
        max_length=20,
        blank=True,
        help_text="PayTrace transaction_type (SALE, REFUND…); blank = any.",
    )
    status_code_pattern = models.CharField(
        max_length=40,
        blank=True,
        help_text="Glob on status_code, e.g. GB*; blank = any.",
    )
    status_message_pattern = models.CharField(
        max_length=80,
        blank=True,
        help_text="Glob on status_message, case-insensitive, e.g. *VOID*.",
    )
    response_code = models.PositiveIntegerField(null=True, blank=True)
    # A status map never maps to "unknown": that is only where a transaction starts.
    gateway_status = models.CharField(
        max_length=30,
        choices=[c for c in GatewayStatus.choices if c[0] != GatewayStatus.UNKNOWN],
    )
    payment_status = models.CharField(
        max_length=20,
        choices=PaymentStatus.choices,
        help_text="Sage Pro payment status.",
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["connection", "priority", "id"]

    def __str__(self) -> str:
        return self.as_rule().describe()

    def as_rule(self) -> StatusRule:
        return StatusRule(
            gateway_status=self.gateway_status,
            payment_status=self.payment_status,
            action=self.action,
            event_type=self.event_type,
            transaction_type=self.transaction_type,
            status_code_pattern=self.status_code_pattern,
            status_message_pattern=self.status_message_pattern,
            response_code=self.response_code,
            priority=self.priority,
            id=self.pk,
        )

    @classmethod
    def rules_for(cls, connection: object) -> list[StatusRule]:
        return [
            row.as_rule()
            for row in cls.objects.filter(connection=connection, is_active=True)
        ]

    @classmethod
    def seed_defaults(cls, connection: models.Model) -> int:
        """Give a connection the default map, unless it already has one."""
        if StatusMap.objects.filter(connection_id=connection.pk).exists():
            return 0
        StatusMap.objects.bulk_create(
            StatusMap(
                connection_id=connection.pk,
                priority=rule.priority,
                event_type=rule.event_type,
                transaction_type=rule.transaction_type,
                status_code_pattern=rule.status_code_pattern,
                status_message_pattern=rule.status_message_pattern,
                response_code=rule.response_code,
                gateway_status=rule.gateway_status,
                payment_status=rule.payment_status,
                action=rule.action,
            )
            for rule in DEFAULT_RULES
        )
        return len(DEFAULT_RULES)


class GlRule(models.Model):
    """Which Sage Pro GL account a transaction hits. Ordered: the first match wins."""

    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.CASCADE, related_name="gl_rules"
    )
    name = models.CharField(max_length=100)
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower runs first; ties by id."
    )
    is_active = models.BooleanField(default=True)
    transaction_types = models.CharField(
        max_length=200,
        blank=True,
        help_text="Comma-separated PayTrace types (SALE, CAPTURE…); blank = any.",
    )
    card_brands = models.CharField(
        max_length=200,
        blank=True,
        help_text="Comma-separated (VISA, MASTERCARD, AMEX, DISCOVER); blank = any.",
    )
    channels = models.CharField(
        max_length=200,
        blank=True,
        help_text="Comma-separated created.through values (API, VT…); blank = any.",
    )
    amount_min = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True
    )
    amount_max = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True
    )
    currency = models.CharField(max_length=3, blank=True, help_text="Blank = any.")
    customer_pattern = models.CharField(
        max_length=60, blank=True, help_text="Glob on the customer number, e.g. WEB*."
    )
    invoice_pattern = models.CharField(
        max_length=60, blank=True, help_text="Glob on the invoice number, e.g. SO-*."
    )
    product_category = models.CharField(
        max_length=60,
        blank=True,
        help_text="Matches when an order line has this category.",
    )
    account = models.CharField(
        max_length=24, help_text="Sage Pro GL account, e.g. 1100-00."
    )
    purpose = models.CharField(
        max_length=20,
        choices=gl.Purpose.CHOICES,
        default=gl.Purpose.RECEIPT,
        help_text="Which document's account this rule chooses.",
    )
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["connection", "priority", "id"]
        verbose_name = "GL-account rule"

    def __str__(self) -> str:
        return f"{self.name} → {self.account}"

    def as_rule(self) -> GlRuleData:
        return GlRuleData(
            account=self.account,
            name=self.name,
            id=self.pk,
            priority=self.priority,
            transaction_types=split_list(self.transaction_types),
            card_brands=split_list(self.card_brands),
            channels=split_list(self.channels),
            amount_min=self.amount_min,
            amount_max=self.amount_max,
            currency=self.currency.strip().upper(),
            customer_pattern=self.customer_pattern,
            invoice_pattern=self.invoice_pattern,
            product_category=self.product_category,
            purpose=self.purpose,
        )

    @classmethod
    def rules_for(
        cls, connection: object, purpose: str = gl.Purpose.RECEIPT
    ) -> list[GlRuleData]:
        """The connection's active rules for one purpose (receipts unless named), as
        plain values, in the order they are tried."""
        return [
            row.as_rule()
            for row in cls.objects.filter(
                connection=connection, is_active=True, purpose=purpose
            )
        ]


class FieldMapping(models.Model):
    """Target field of a Sage Pro document ← a source path and a chain of transforms."""

    class Document(models.TextChoices):
        CASH_RECEIPT = "cash_receipt", "Cash receipt"
        SALES_ORDER = "sales_order", "Sales order"
        CUSTOMER = "customer", "Customer"
        GL_BATCH = "gl_batch", "GL batch"

    connection = models.ForeignKey(
        "integrations.Connection",
        on_delete=models.CASCADE,
        related_name="field_mappings",
    )
    document = models.CharField(
        max_length=20, choices=Document.choices, default=Document.CASH_RECEIPT
    )
    target_field = models.CharField(
        max_length=40, help_text="Field of the Sage Pro gateway document, e.g. invno."
    )
    source_path = models.CharField(
        max_length=200,
        blank=True,
        help_text="Dot path into the source record, e.g. created.at.",
    )
    transforms = models.JSONField(
        default=list,
        blank=True,
        help_text='Applied in order, e.g. [{"op": "upper"}, {"op": "pad", "width": 10, "align": "right"}].',
    )
    position = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["connection", "document", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "document", "target_field"],
                name="one_mapping_per_target_field",
            )
        ]

    def __str__(self) -> str:
        return (
            f"{self.document}.{self.target_field} ← {self.source_path or '(constant)'}"
        )

    def as_rule(self) -> FieldRule:
        return FieldRule(
            target_field=self.target_field,
            source_path=self.source_path,
            transforms=tuple(self.transforms),
            document=self.document,
            id=self.pk,
        )

    @classmethod
    def rules_for(
        cls, connection: object, document: str = Document.CASH_RECEIPT
    ) -> list[FieldRule]:
        """The connection's active mappings of `document`, as plain values, in order."""
        return [
            row.as_rule()
            for row in cls.objects.filter(
                connection=connection, document=document, is_active=True
            )
        ]


class CurrencyRate(models.Model):
    """How many units of `base_currency` one unit of `currency` was worth on a day."""

    currency = models.CharField(max_length=3)
    base_currency = models.CharField(max_length=3, default="USD")
    rate = models.DecimalField(max_digits=18, decimal_places=8)
    valid_on = models.DateField()
    source = models.CharField(max_length=60, blank=True)

    class Meta:
        ordering = ["currency", "base_currency", "-valid_on"]
        constraints = [
            models.UniqueConstraint(
                fields=["currency", "base_currency", "valid_on"],
                name="one_rate_per_day",
            ),
            models.CheckConstraint(
                condition=models.Q(rate__gt=0), name="rate_positive"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"1 {self.currency} = {self.rate} {self.base_currency} on {self.valid_on}"
        )


class SuggestionFeedback(models.Model):
    """An admin accepted or rejected a suggested mapping; later suggestions learn from it."""

    document = models.CharField(max_length=20, choices=FieldMapping.Document.choices)
    target_field = models.CharField(max_length=40)
    source_path = models.CharField(max_length=200)
    source_key = models.CharField(
        max_length=80,
        help_text="The source field's name, normalised (last path segment).",
    )
    accepted = models.BooleanField()
    user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["document", "target_field"])]

    def __str__(self) -> str:
        verdict = "accepted" if self.accepted else "rejected"
        return f"{self.target_field} ← {self.source_path} {verdict}"


STANDARD_PREFIXES = ",".join(matching.DEFAULT_PREFIXES)


class MatchingRule(models.Model):
    """How a payment is matched to an open invoice, like a reconciliation model.

    Ordered by priority; the first rule whose conditions fit the payment decides the
    reference comparison, the amount tolerance and whether a match may be applied
    without a person. "No tolerance" means the amounts must be equal.
    """

    class ReferenceMode(models.TextChoices):
        EXACT = "exact", "Exact"
        NORMALIZED = (
            "normalized",
            "Exact after normalising (prefixes, spaces, leading zeros)",
        )

    class Tolerance(models.TextChoices):
        NONE = "none", "No tolerance (exact amount)"
        PERCENT = "percent", "Percentage of the invoice balance"
        FIXED = "fixed", "Fixed amount"

    connection = models.ForeignKey(
        "integrations.Connection",
        on_delete=models.CASCADE,
        related_name="matching_rules",
    )
    name = models.CharField(max_length=100)
    priority = models.PositiveIntegerField(default=100)
    is_active = models.BooleanField(default=True)
    customer_pattern = models.CharField(
        max_length=60, blank=True, help_text="Glob on the customer number; blank = any."
    )
    channels = models.CharField(
        max_length=200,
        blank=True,
        help_text="Comma-separated created.through values; blank = any.",
    )
    amount_min = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True
    )
    amount_max = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True
    )
    reference_mode = models.CharField(
        max_length=20, choices=ReferenceMode.choices, default=ReferenceMode.NORMALIZED
    )
    strip_prefixes = models.CharField(
        max_length=300,
        blank=True,
        default=STANDARD_PREFIXES,
        help_text="Comma-separated words removed before a number ('Invoice #10045', "
        "'PO 7781'); a word is removed standing alone or glued to the number, never "
        "from another word.",
    )
    tolerance_type = models.CharField(
        max_length=10, choices=Tolerance.choices, default=Tolerance.PERCENT
    )
    tolerance_value = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        default=matching.STANDARD["tolerance_value"],
        help_text="Percent (e.g. 1.5) or amount (e.g. 0.50).",
    )
    require_same_customer = models.BooleanField(
        default=True,
        help_text="The payer's customer, when it is known, must own the invoice.",
    )
    auto_apply = models.BooleanField(
        default=True, help_text="Apply without review when everything matches."
    )
    allow_partial = models.BooleanField(
        default=True,
        help_text="Apply any underpayment and leave the invoice open, instead of sending it to review.",
    )
    multiple_invoices = models.BooleanField(
        default=True,
        help_text="A reference naming several invoices ('10045, 10046', "
        "'10045-10047') pays them together when their balances add up to the amount "
        "within the tolerance.",
    )
    order_numbers = models.BooleanField(
        default=True,
        help_text="A reference may name the Sage Pro sales order (ORNUM) or the "
        "customer's PO number (PONUM) instead of the invoice.",
    )
    near_misses = models.BooleanField(
        default=True,
        help_text="A reference one edit or one transposition away from an invoice "
        "pays it only when the customer is known, the amount is exactly its balance "
        "and no other open invoice of the customer has that balance.",
    )
    identify_payer = models.BooleanField(
        default=True,
        help_text="Find the Sage Pro customer from the payer (customer mapping, "
        "PayTrace customer id, e-mail, billing name) when the reference does not say.",
    )
    by_amount = models.BooleanField(
        default=True,
        help_text="With the customer known and no usable reference, pay the one open "
        "invoice (or the one combination of a few) whose balance equals the amount.",
    )
    max_combination = models.PositiveSmallIntegerField(
        default=3,
        validators=[MaxValueValidator(matching.MAX_COMBINATION)],
        help_text="The most open invoices one payment is matched to by amount alone "
        f"(1 = single invoices only; at most {matching.MAX_COMBINATION}).",
    )
    duplicate_window_days = models.PositiveIntegerField(
        default=7,
        help_text="Same card, amount and invoice within this many days under another transaction id → possible duplicate.",
    )

    class Meta:
        ordering = ["connection", "priority", "id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.priority})"

    def as_rule(self) -> matching.Rule:
        return matching.Rule(
            name=self.name,
            reference_mode=self.reference_mode,
            strip_prefixes=split_list(self.strip_prefixes, upper=False),
            tolerance_type=self.tolerance_type,
            tolerance_value=self.tolerance_value,
            require_same_customer=self.require_same_customer,
            auto_apply=self.auto_apply,
            allow_partial=self.allow_partial,
            customer_pattern=self.customer_pattern,
            channels=split_list(self.channels, upper=False),
            amount_min=self.amount_min,
            amount_max=self.amount_max,
            duplicate_window_days=self.duplicate_window_days,
            priority=self.priority,
            id=self.pk,
            multiple_invoices=self.multiple_invoices,
            order_numbers=self.order_numbers,
            near_misses=self.near_misses,
            identify_payer=self.identify_payer,
            by_amount=self.by_amount,
            max_combination=self.max_combination,
        )

    @classmethod
    def rules_for(cls, connection: object) -> list[matching.Rule]:
        """The connection's active rules, as plain values."""
        return [
            row.as_rule()
            for row in cls.objects.filter(connection=connection, is_active=True)
        ]


class PayerLink(models.Model):
    """The customer mapping table: "this payer is this Sage Pro customer".

    Keyed by one thing a payment says about its payer (a PayTrace customer id, an
    e-mail, a billing name, a card's brand, last four and expiry), normalised by
    `mappings.payers`. Active links identify payers in matching; a reviewer's
    "remember" creates one at once, and reviewers' repeated decisions propose one
    (`MatchingProposal`) for an admin to accept.
    """

    class Kind(models.TextChoices):
        CUSTOMER_ID = "customer_id", "PayTrace customer id"
        EMAIL = "email", "E-mail"
        NAME = "name", "Billing name"
        CARD = "card", "Card (brand, last four, expiry)"

    class Source(models.TextChoices):
        REVIEWER = "reviewer", "A reviewer's decision"
        PROPOSAL = "proposal", "An accepted proposal"
        ADMIN = "admin", "Entered by an admin"

    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.CASCADE, related_name="payer_links"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    key = models.CharField(
        max_length=payers.MAX_KEY,
        help_text="As normalised: e-mail lower case; names without case, "
        "punctuation and words like Inc or LLC; ids upper case.",
    )
    custno = models.CharField("Sage Pro customer", max_length=20)
    is_active = models.BooleanField(default=True)
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.ADMIN
    )
    evidence = models.TextField(
        blank=True, help_text="Why the link was made: the decisions behind it."
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
        ordering = ["connection", "kind", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "kind", "key"], name="payerlink_unique_key"
            )
        ]
        verbose_name = "customer mapping"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key} → {self.custno}"

    def save(self, *args: object, **kwargs: object) -> None:
        self.key = normalise_payer_key(self.kind, self.key)
        self.custno = self.custno.strip().upper()
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def as_link(self) -> payers.Link:
        return payers.Link(self.kind, self.key, self.custno, self.pk, self.source)

    @classmethod
    def links_for(
        cls, connection: object, keys: dict[str, str] | None = None
    ) -> list[payers.Link]:
        """The connection's active links; with `keys` ({kind: key}, a payer's), only
        those naming one of them (one indexed lookup, however big the table)."""
        rows = cls.objects.filter(connection=connection, is_active=True)
        if keys is not None:
            rows = rows.filter(key__in=list(keys.values()), kind__in=list(keys))
        return [row.as_link() for row in rows]


def normalise_payer_key(kind: str, value: str) -> str:
    if kind == PayerLink.Kind.EMAIL:
        return payers.email_key(value) or value.strip().lower()
    if kind == PayerLink.Kind.NAME:
        return payers.name_key(value)
    return payers.customer_id_key(value)


class MatchingProposal(models.Model):
    """A rule or mapping the portal learned from reviewers, for an admin to accept.

    Counted from reviewers' decisions: when the same pattern (a payer placed at the
    same customer; a reference style the standard reading missed) is resolved the
    same way `LEARN_AFTER` times and never otherwise, the proposal opens. Accepting
    it creates the payer link or adds the word to the rule's prefixes; from then on
    it decides payments by itself.
    """

    LEARN_AFTER = 3

    class Kind(models.TextChoices):
        PAYER_LINK = "payer_link", "Customer mapping"
        PREFIX = "prefix", "Reference word to remove"

    class State(models.TextChoices):
        LEARNING = "learning", "Learning (not enough decisions yet)"
        OPEN = "open", "Proposed"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    connection = models.ForeignKey(
        "integrations.Connection",
        on_delete=models.CASCADE,
        related_name="matching_proposals",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # payer_link: the payer key kind ("email" ...); prefix: "prefix".
    subject = models.CharField(max_length=20)
    key = models.CharField(max_length=payers.MAX_KEY)
    value = models.CharField(
        max_length=60, help_text="The customer (mapping) or the word (prefix)."
    )
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.LEARNING
    )
    agreeing = models.PositiveIntegerField(default=0)
    disagreeing = models.PositiveIntegerField(default=0)
    evidence = models.JSONField(
        default=list,
        blank=True,
        help_text="The decisions it was learned from: transaction, item, reviewer.",
    )
    rule = models.ForeignKey(
        MatchingRule,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="proposals",
        help_text="The rule a prefix is added to (blank: the standard rule, created).",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["state", "-agreeing", "-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "kind", "subject", "key", "value"],
                name="matchingproposal_unique",
            )
        ]
        verbose_name = "learned proposal"

    def __str__(self) -> str:
        if self.kind == self.Kind.PAYER_LINK:
            label = payers.KIND_LABELS.get(self.subject, self.subject)
            return f"{label} {self.key} is customer {self.value}"
        return f"Remove {self.value!r} before invoice numbers"
