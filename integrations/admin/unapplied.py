"""Unapplied cash: the finance list of cash that waits, and the automatic rule."""

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from integrations import unapplied
from integrations.admin.base import PortalMedia, ReadOnlyAdmin, change_link, format_age
from integrations.models import ReviewItem
from integrations.models.unapplied import UnappliedCash, UnappliedCashRule
from mappings.formatting import format_money


class UnappliedCashList(ChangeList):
    """The page's rows with what waits on each and its review item, read once for the
    page (not once per row)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        waiting = unapplied.waiting_many(rows)
        items = _review_items([row.transaction_id for row in rows])
        for row in rows:
            row.waiting_now = waiting[row.pk]
            row.review_item_now = items.get(row.transaction_id)
        self.result_list = rows


def _review_items(transaction_ids: list[int]) -> dict[int | None, ReviewItem]:
    """Each payment's item the list links to: the oldest open one decides the cash;
    else the latest (a payment put on account was resolved, and its page still
    applies or refunds the cash)."""
    chosen: dict[int | None, ReviewItem] = {}
    for item in ReviewItem.objects.filter(transaction_id__in=transaction_ids).order_by(
        "created_at", "pk"
    ):
        # Oldest first: an open item is kept once found; until then the later
        # (resolved) item replaces the earlier.
        current = chosen.get(item.transaction_id)
        if current is None or current.state != ReviewItem.State.OPEN:
            chosen[item.transaction_id] = item
    return chosen


@admin.register(UnappliedCash)
class UnappliedCashAdmin(ReadOnlyAdmin):
    """Posted receipts whose unapplied cash still waits (applications and refunds on
    their way already taken off), oldest first; the review item's page decides it
    (apply to invoices, refund through PayTrace, or leave on account)."""

    list_display = (
        "customer",
        "receipt",
        "payment",
        "waiting",
        "age",
        "review_item",
    )
    list_display_links = None
    list_select_related = ("transaction",)
    search_fields = ("transaction__transaction_id", "document_number")
    ordering = ("posted_at", "pk")
    Media = PortalMedia

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .filter(pk__in=unapplied.waiting_receipt_ids())
            .select_related("transaction")
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return UnappliedCashList

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Whoever may see postings may see this list of them.
        return request.user.has_perm("integrations.view_posting")

    @admin.display(description="Customer")
    def customer(self, obj: UnappliedCash) -> str:
        return unapplied.receipt_customer(obj) or "-"

    @admin.display(description="Receipt", ordering="document_number")
    def receipt(self, obj: UnappliedCash) -> SafeString:
        url = reverse("admin:integrations_posting_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.document_number or obj.pk)

    @admin.display(description="Payment", ordering="transaction__transaction_id")
    def payment(self, obj: UnappliedCash) -> SafeString:
        txn = obj.transaction
        return change_link(
            txn, f"{txn.transaction_id} ({format_money(txn.amount, txn.currency)})"
        )

    @admin.display(description="Amount waiting")
    def waiting(self, obj: UnappliedCash) -> str:
        waiting = obj.waiting_now
        amount = waiting.amount if waiting is not None else unapplied.ZERO
        return format_money(amount, obj.transaction.currency)

    @admin.display(description="Age", ordering="posted_at")
    def age(self, obj: UnappliedCash) -> str:
        return format_age(obj.posted_at or obj.created_at)

    @admin.display(description="Review item")
    def review_item(self, obj: UnappliedCash) -> SafeString | str:
        item = obj.review_item_now
        if item is None:
            return "none"
        url = reverse("admin:integrations_reviewitem_change", args=[item.pk])
        return format_html(
            '<a href="{}">{} ({}, {})</a>',
            url,
            item.get_kind_display(),
            item.pk,
            item.get_state_display().lower(),
        )


@admin.register(UnappliedCashRule)
class UnappliedCashRuleAdmin(admin.ModelAdmin):
    """Per Sage Pro connection: when a new invoice appears for a customer whose cash
    waits, apply it (the customer must always match)."""

    list_display = ("sagepro", "enabled", "amount_mode", "max_age_days", "updated_at")
    list_filter = ("enabled",)
    fields = ("sagepro", "enabled", "amount_mode", "max_age_days", "customer_rule")
    readonly_fields = ("customer_rule",)
    Media = PortalMedia

    @admin.display(description="Customer")
    def customer_rule(self, obj: UnappliedCashRule | None) -> str:
        return (
            "Always the same customer: cash on one customer's account is applied only "
            "to that customer's invoices."
        )
