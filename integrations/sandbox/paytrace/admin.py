"""Read-only views of the PayTrace sandbox: what it recorded and what it sent."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from integrations.admin.base import ReadOnlyAdmin
from integrations.sandbox.paytrace.models import (
    Batch,
    ClientKey,
    HostedFieldsToken,
    OutboundEvent,
    Recurrence,
    Transaction,
    VaultCustomer,
)


class OutboundEventInline(admin.TabularInline):
    model = OutboundEvent
    fields = ("type", "webhook_id", "status", "attempts", "last_status", "delivered_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    list_display = [
        "transaction_id",
        "transaction_type",
        "amount",
        "invoice_id",
        "card_brand",
        "card_last4",
        "status_code",
        "status_message",
        "created_at",
        "settled_at",
    ]
    list_filter = ["transaction_type", "status_code", "card_brand"]
    search_fields = [
        "invoice_id",
        "customer_reference_id",
        "customer_id",
        "description",
    ]
    date_hierarchy = "created_at"
    inlines = [OutboundEventInline]

    @admin.display(description="transaction id", ordering="pk")
    def transaction_id(self, obj: Transaction) -> int:
        return obj.transaction_id


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "settled_at"]


@admin.register(OutboundEvent)
class OutboundEventAdmin(ReadOnlyAdmin):
    list_display = [
        "webhook_id",
        "type",
        "transaction",
        "status",
        "attempts",
        "last_status",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "type"]
    search_fields = ["webhook_id"]


@admin.register(VaultCustomer)
class VaultCustomerAdmin(ReadOnlyAdmin):
    """Profiles of the sandbox's vault: the last four digits, brand and expiry only."""

    list_display = [
        "customer_id",
        "card_brand",
        "card_last4",
        "expiry",
        "email",
        "decline_with",
        "created_through",
        "updated_at",
    ]
    list_filter = ["card_brand", "decline_with", "created_through"]
    search_fields = ["customer_id", "email"]
    exclude = ["billing_address"]

    @admin.display(description="expiry")
    def expiry(self, obj: VaultCustomer) -> str:
        return f"{obj.expiration_month:02d}/{obj.expiration_year}"


@admin.register(Recurrence)
class RecurrenceAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "customer_id",
        "amount",
        "frequency",
        "start_on",
        "next_on",
        "repeat_count",
        "total_count",
        "status",
        "invoice_id",
    ]
    list_filter = ["status", "frequency"]
    search_fields = ["customer_id", "invoice_id", "description"]


@admin.register(HostedFieldsToken)
class HostedFieldsTokenAdmin(ReadOnlyAdmin):
    """Tokens the hosted fields issued; the token itself is kept only as a digest."""

    list_display = [
        "pk",
        "card_brand",
        "card_last4",
        "expiration_month",
        "expiration_year",
        "created_at",
        "expires_at",
        "used_at",
    ]
    exclude = ["digest", "enc_key"]


@admin.register(ClientKey)
class ClientKeyAdmin(ReadOnlyAdmin):
    list_display = ["pk", "created_by", "created_at", "expires_at"]
    exclude = ["digest"]
