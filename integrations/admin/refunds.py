"""Refunds and voids: the ones still waiting (for their sale or its receipt), the
refunds the portal asked PayTrace for, and each connection's refund fee.

The waiting rows and the expected refunds are records (read-only); a refund's own page
(`transactions.refund_panel`) shows its sale, its credit memo and what remains.
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.safestring import SafeString

from integrations.admin.base import PortalMedia, ReadOnlyAdmin, change_link
from integrations.models import Connection
from integrations.models.refunds import ExpectedRefund, PendingReversal, RefundFee
from mappings.formatting import format_money, format_when


@admin.register(PendingReversal)
class PendingReversalAdmin(ReadOnlyAdmin):
    list_display = ("transaction_link", "state", "reason", "since", "decided")
    list_filter = ("state",)
    search_fields = ("transaction__transaction_id", "original_transaction_id")
    list_select_related = ("transaction",)
    fields = (
        "transaction_link",
        "original_transaction_id",
        "state",
        "reason",
        "since",
        "decided",
    )
    readonly_fields = fields
    Media = PortalMedia

    @admin.display(description="Refund or void")
    def transaction_link(self, obj: PendingReversal) -> SafeString:
        return change_link(obj.transaction, obj.transaction)

    @admin.display(description="Waiting since", ordering="waiting_since")
    def since(self, obj: PendingReversal) -> str:
        return format_when(obj.waiting_since)

    @admin.display(description="Decided")
    def decided(self, obj: PendingReversal) -> str:
        return format_when(obj.decided_at) or "-"


@admin.register(ExpectedRefund)
class ExpectedRefundAdmin(ReadOnlyAdmin):
    list_display = ("refund_transaction_id", "sale", "amount_display", "requested_by")
    search_fields = ("refund_transaction_id", "original__transaction_id")
    list_select_related = ("original", "requested_by")
    fields = ("connection", "refund_transaction_id", "sale", "amount_display")
    readonly_fields = fields
    Media = PortalMedia

    @admin.display(description="Sale")
    def sale(self, obj: ExpectedRefund) -> SafeString:
        return change_link(obj.original, obj.original)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: ExpectedRefund) -> str:
        return format_money(obj.amount, obj.original.currency)


@admin.register(RefundFee)
class RefundFeeAdmin(admin.ModelAdmin):
    """What a connection's processor charges per refund. The fee is posted with the
    credit memo only when a GL rule of purpose "Refund fee" chooses its account."""

    list_display = ("connection", "amount", "is_active")
    fields = ("connection", "amount", "is_active")
    Media = PortalMedia

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "connection":
            kwargs["queryset"] = Connection.objects.filter(
                kind=Connection.Kind.PAYTRACE
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
