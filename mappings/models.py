from django.db import models

from mappings.status import DEFAULT_RULES, StatusRule


class StatusMap(models.Model):
    """One row of a connection's status map, edited by integration admins."""

    class PaymentStatus(models.TextChoices):
        PAID = "Paid"
        FAILED = "Failed"
        REFUNDED = "Refunded"
        VOIDED = "Voided"
        PENDING = "Pending"
        AUTHORIZED = "Authorized"

    class Action(models.TextChoices):
        POST_RECEIPT = "post_receipt", "Post a cash receipt"
        RECORD_ONLY = "record_only", "Record only"
        REVERSE = "reverse", "Reverse the receipt"
        REVIEW = "review", "Send to review"

    class GatewayStatus(models.TextChoices):
        AUTHORIZED = "authorized"
        APPROVED = "approved"
        PENDING_SETTLEMENT = "pending_settlement"
        SETTLED = "settled"
        DECLINED = "declined"
        VOIDED = "voided"
        REFUNDED = "refunded"

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
    gateway_status = models.CharField(max_length=30, choices=GatewayStatus.choices)
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
    def seed_defaults(cls, connection: object) -> int:
        """Give a connection the default map, unless it already has one."""
        if cls.objects.filter(connection=connection).exists():
            return 0
        cls.objects.bulk_create(
            cls(
                connection=connection,
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
