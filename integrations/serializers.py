"""Serializers for the read API: transactions and review items as finance sees them."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from integrations.models import PaymentTransaction, Posting, ReviewItem
from integrations.queries import WithCashReceipt


class TransactionSerializer(serializers.ModelSerializer):
    """A PayTrace transaction and the Sage Pro cash receipt posted for it."""

    # `receipt_state`, `receipt_number` and `open_review_items` come from the viewset's
    # queryset (annotations and a prefetch), so a page costs the same few queries.
    connection = serializers.CharField(source="connection.slug", read_only=True)
    posting_state = serializers.ChoiceField(
        choices=Posting.State.choices,
        source="receipt_state",
        read_only=True,
        allow_null=True,
    )
    document_number = serializers.SerializerMethodField()
    open_review_kinds = serializers.SerializerMethodField()

    class Meta:
        model = PaymentTransaction
        fields = [
            "id",
            "connection",
            "transaction_id",
            "transaction_type",
            "amount",
            "currency",
            "invoice_reference",
            "customer_reference",
            "card_last4",
            "gateway_status",
            "mapped_status",
            "created_at",
            "settled_at",
            "posting_state",
            "document_number",
            "open_review_kinds",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_document_number(self, obj: WithCashReceipt) -> str | None:
        return obj.receipt_number or None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_open_review_kinds(self, obj: PaymentTransaction) -> list[str]:
        # `open_review_items` is the viewset's prefetch.
        return [item.kind for item in obj.open_review_items]  # type: ignore[attr-defined]


class ReviewItemSerializer(serializers.ModelSerializer):
    """A payment a person has to look at, with the transaction's amount and invoice."""

    transaction_id = serializers.CharField(
        source="transaction.transaction_id", read_only=True, allow_null=True
    )
    amount = serializers.DecimalField(
        source="transaction.amount",
        max_digits=14,
        decimal_places=2,
        read_only=True,
        allow_null=True,
    )
    invoice_reference = serializers.CharField(
        source="transaction.invoice_reference", read_only=True, allow_null=True
    )

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "kind",
            "state",
            "reason",
            "error_code",
            "transaction_id",
            "amount",
            "invoice_reference",
            "created_at",
            "resolved_at",
            "resolution",
        ]
        read_only_fields = fields
