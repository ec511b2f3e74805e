"""The review queue as a list: its columns, search, filters and paging.

`ReviewItemAdmin` (review_queue.py) takes these from `ReviewListMixin`; the item's
page and the decisions stay there.
"""

from django.contrib import admin
from django.utils.safestring import SafeString

from integrations.admin.base import change_link, format_age, short
from integrations.admin.review_forms import SUGGESTED_ACTIONS, ReviewStateFilter
from integrations.models import ReviewItem


class ReviewListMixin:
    list_display = (
        "kind",
        "transaction_link",
        "amount",
        "invoice_reference",
        "reason_short",
        "age",
        "state",
        "assigned_to",
        "suggested_action",
    )
    list_filter = (ReviewStateFilter, "kind")
    search_fields = (
        "transaction__transaction_id",
        "transaction__invoice_reference",
        "reason",
    )
    list_select_related = ("transaction", "assigned_to")

    @admin.display(description="Transaction", ordering="transaction__transaction_id")
    def transaction_link(self, obj: ReviewItem) -> SafeString | None:
        if obj.transaction is None:
            return None
        return change_link(obj.transaction, obj.transaction.transaction_id)

    @admin.display(description="Amount", ordering="transaction__amount")
    def amount(self, obj: ReviewItem) -> str | None:
        if obj.transaction is None:
            return None
        return f"{obj.transaction.amount} {obj.transaction.currency}"

    @admin.display(
        description="Invoice reference", ordering="transaction__invoice_reference"
    )
    def invoice_reference(self, obj: ReviewItem) -> str | None:
        return obj.transaction.invoice_reference if obj.transaction else None

    @admin.display(description="Reason")
    def reason_short(self, obj: ReviewItem) -> str:
        return short(obj.reason, 140)

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj: ReviewItem) -> str:
        return format_age(obj.created_at)

    @admin.display(description="Suggested action")
    def suggested_action(self, obj: ReviewItem) -> str:
        return SUGGESTED_ACTIONS.get(obj.kind, "")
