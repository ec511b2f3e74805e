"""Storefront orders: the list by state, each order's page (lines, customer, Sage Pro
sales order and invoice, payment and receipt, state and history), the webhooks a
storefront sent, and its settings."""

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from integrations.admin.base import (
    PortalMedia,
    ReadOnlyAdmin,
    ReadOnlyInline,
    change_link,
    pre,
    short_time,
)
from integrations.models import Posting
from integrations.models.storefront import (
    StorefrontEvent,
    StorefrontOrder,
    StorefrontOrderLine,
    StorefrontRefund,
    StorefrontSettings,
)
from integrations.storefront import flow
from mappings.formatting import format_money


@admin.register(StorefrontSettings)
class StorefrontSettingsAdmin(admin.ModelAdmin):
    list_display = (
        "connection",
        "paytrace",
        "sagepro",
        "reference_prefix",
        "default_location",
        "wait_minutes",
    )
    Media = PortalMedia


class LineInline(ReadOnlyInline):
    model = StorefrontOrderLine
    fields = (
        "line_no",
        "sku",
        "title",
        "quantity",
        "price_shown",
        "location",
        "taxable",
    )
    readonly_fields = fields

    @admin.display(description="Price")
    def price_shown(self, obj: StorefrontOrderLine) -> str:
        return format_money(obj.price, obj.order.currency)


class RefundInline(ReadOnlyInline):
    model = StorefrontRefund
    fields = ("refund_id", "amount_shown", "note", "paytrace_refund", "created_at")
    readonly_fields = fields

    @admin.display(description="Amount")
    def amount_shown(self, obj: StorefrontRefund) -> str:
        return format_money(obj.amount, obj.order.currency)

    @admin.display(description="PayTrace refund")
    def paytrace_refund(self, obj: StorefrontRefund) -> str:
        if obj.transaction is None:
            return "not seen yet"
        return change_link(obj.transaction, obj.transaction.transaction_id)


@admin.register(StorefrontOrder)
class StorefrontOrderAdmin(admin.ModelAdmin):
    list_display = (
        "order",
        "state",
        "customer_name",
        "total_shown",
        "custno",
        "sono",
        "invno",
        "payment",
        "created",
    )
    list_filter = ("state", "connection")
    search_fields = ("name", "reference_key", "email", "customer_name", "sono", "invno")
    list_select_related = ("transaction", "connection")
    inlines = (LineInline, RefundInline)
    change_form_template = "admin/integrations/storefrontorder/change_form.html"
    fieldsets = (
        (
            "Order",
            {
                "fields": (
                    "state",
                    "state_reason",
                    "connection",
                    "name",
                    "order_id",
                    "financial_status",
                    "cancelled",
                )
            },
        ),
        (
            "Customer",
            {
                "fields": (
                    "customer_name",
                    "email",
                    "customer_id",
                    "custno",
                    "billing_shown",
                    "ship_to_shown",
                )
            },
        ),
        (
            "Money",
            {
                "fields": (
                    "currency",
                    "subtotal_shown",
                    "tax_shown",
                    "freight_shown",
                    "total_shown",
                )
            },
        ),
        (
            "Sage Pro and PayTrace",
            {"fields": ("sono", "invno", "payment", "documents", "review")},
        ),
    )
    Media = PortalMedia

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(f) for _, options in self.fieldsets for f in options["fields"]]

    @admin.display(description="Order", ordering="reference_key")
    def order(self, obj: StorefrontOrder) -> str:
        return obj.name or f"#{obj.reference_key}"

    @admin.display(description="Total", ordering="total")
    def total_shown(self, obj: StorefrontOrder) -> str:
        return format_money(obj.total, obj.currency) if obj.has_details else "-"

    @admin.display(description="Subtotal")
    def subtotal_shown(self, obj: StorefrontOrder) -> str:
        return format_money(obj.subtotal, obj.currency) if obj.has_details else "-"

    @admin.display(description="Tax")
    def tax_shown(self, obj: StorefrontOrder) -> str:
        return format_money(obj.tax, obj.currency) if obj.has_details else "-"

    @admin.display(description="Freight")
    def freight_shown(self, obj: StorefrontOrder) -> str:
        return format_money(obj.freight, obj.currency) if obj.has_details else "-"

    @admin.display(description="Received", ordering="created_at")
    def created(self, obj: StorefrontOrder) -> str | None:
        return short_time(obj.created_at)

    @admin.display(description="Payment")
    def payment(self, obj: StorefrontOrder) -> str:
        txn = obj.transaction
        if txn is None:
            return "none yet"
        return change_link(
            txn, f"PayTrace {txn.transaction_id} ({format_money(txn.amount)})"
        )

    @admin.display(description="Billing address")
    def billing_shown(self, obj: StorefrontOrder) -> str:
        return _address(obj.billing_address)

    @admin.display(description="Ship to")
    def ship_to_shown(self, obj: StorefrontOrder) -> str:
        return _address(obj.ship_to)

    @admin.display(description="Sage Pro documents")
    def documents(self, obj: StorefrontOrder) -> str:
        if obj.transaction is None:
            return "none yet"
        postings = obj.transaction.postings.filter(
            kind__in=[Posting.Kind.SALES_ORDER, Posting.Kind.CASH_RECEIPT]
        ).order_by("created_at")
        if not postings:
            return "none yet"
        return format_html_join(
            mark_safe("<br>"),
            "{}: {} {}",
            (
                (
                    change_link(p, p.get_kind_display()),
                    p.get_state_display(),
                    p.document_number,
                )
                for p in postings
            ),
        )

    @admin.display(description="Review")
    def review(self, obj: StorefrontOrder) -> str:
        item = obj.review_item
        if item is None:
            return "-"
        return change_link(item, f"{item.get_state_display()}: {item.reason[:120]}")

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/retry/",
                self.admin_site.admin_view(self.retry_view),
                name="integrations_storefrontorder_retry",
            ),
            *super().get_urls(),
        ]

    def retry_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """GET: what a retry will send; POST: do it, if the order did not change."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        order = get_object_or_404(StorefrontOrder, pk=pk)
        preview = flow.preview_retry(order)
        back = reverse("admin:integrations_storefrontorder_change", args=[pk])
        if request.method == "POST":
            if request.POST.get("fingerprint") != preview.fingerprint:
                self.message_user(
                    request,
                    "The order changed since the preview; nothing was sent. Look "
                    "at it again.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(back)
            outcome = flow.retry_order(order, request.user)
            self.message_user(request, outcome.capitalize() + ".", messages.INFO)
            return HttpResponseRedirect(back)
        return TemplateResponse(
            request,
            "admin/integrations/storefrontorder/retry_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Retry storefront order {order.name}",
                "opts": self.model._meta,
                "preview": preview,
                "back": back,
            },
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        order = StorefrontOrder.objects.filter(pk=object_id).first()
        extra = {**(extra_context or {})}
        if order is not None:
            flow.link_refunds(order)
            extra["history"] = [
                {**entry, "when": _when(entry.get("at"))}
                for entry in reversed(order.history or [])
            ]
            extra["show_save"] = extra["show_save_and_continue"] = False
            extra["can_retry"] = (
                order.state == StorefrontOrder.State.REVIEW
                and self.has_change_permission(request, order)
            )
        return super().change_view(request, object_id, form_url, extra)


def _when(at: Any) -> str:
    try:
        return short_time(datetime.fromisoformat(str(at))) or ""
    except ValueError:
        return str(at or "")


def _address(value: dict[str, Any] | None) -> str:
    value = value or {}
    parts = [
        value.get("company") or value.get("name"),
        value.get("address1"),
        value.get("address2"),
        " ".join(
            str(p)
            for p in (value.get("city"), value.get("state"), value.get("zip"))
            if p
        ),
        value.get("country"),
    ]
    return ", ".join(str(p) for p in parts if p) or "-"


@admin.register(StorefrontEvent)
class StorefrontEventAdmin(ReadOnlyAdmin):
    list_display = ("webhook_id", "topic", "state", "outcome", "received_at")
    list_filter = ("state", "topic", "connection")
    search_fields = ("webhook_id", "outcome")
    readonly_fields = ("payload_shown",)
    exclude = ("payload",)
    Media = PortalMedia

    @admin.display(description="Payload (card data masked)")
    def payload_shown(self, obj: StorefrontEvent) -> str:
        return pre(obj.payload)
