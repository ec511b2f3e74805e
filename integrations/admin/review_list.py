"""The review queue as a list: its columns, search, filters, paging and totals.

`ReviewItemAdmin` (review_queue.py) takes these from `ReviewListMixin`; the item's
page and the decisions stay there. Search and filters are shared with the payment
list (`finding.py`); every column is read by the one list query (its query count does
not grow with the rows).
"""

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from integrations import wording
from integrations.admin.base import change_link, format_age, mark_viewer, viewer_of
from integrations.admin.finding import (
    PER_PAGE,
    SEARCH_HELP,
    AssignedFilter,
    DateRangeFilter,
    customer_expression,
    payer_annotations,
    payer_html,
    search_payments,
    totals_context,
)
from integrations.admin.review_forms import SUGGESTED_ACTIONS, ReviewStateFilter
from integrations.models import ReviewItem
from integrations.models.review import OverrideRequest
from mappings.formatting import format_when, money_html


class PaymentDateFilter(DateRangeFilter):
    """The payment's date (when PayTrace took it), not the item's."""

    title = "payment date"
    field_path = "transaction__created_at"


class OpenedDateFilter(DateRangeFilter):
    title = "opened"
    field_path = "created_at"
    parameter_from = "opened_from"
    parameter_to = "opened_to"


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object


class ReviewListMixin(_AdminBase):
    list_display = (
        "kind",
        "transaction_link",
        "amount",
        "customer",
        "payer",
        "invoice_reference",
        "reason_short",
        "age",
        "state",
        "assigned_to",
    )
    list_filter = (
        ReviewStateFilter,
        AssignedFilter,
        "kind",
        PaymentDateFilter,
        OpenedDateFilter,
    )
    # Read by the admin to show the search box; `get_search_results` does the work.
    search_fields = ("transaction__transaction_id",)
    search_help_text = SEARCH_HELP
    list_select_related = ("transaction", "assigned_to")
    list_per_page = PER_PAGE
    list_max_show_all = PER_PAGE  # "Show all" only when it is one page anyway

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        return queryset.annotate(
            customer_number=customer_expression("transaction__"),
            **payer_annotations("transaction__"),
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Amount, last four, ids, customer, payer; words also match the reason."""
        found = search_payments(
            queryset,
            search_term,
            prefix="transaction__",
            extra=lambda term: Q(reason__icontains=term),
        )
        return found, False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context is not None:
            context.update(self._overrides_link(request))
        if context and "cl" in context:
            context["totals"] = {
                **totals_context(
                    context["cl"],
                    amount="transaction__amount",
                    currency="transaction__currency",
                ),
                "noun": "item",
                "nouns": "items",
            }
        return response

    @staticmethod
    def _overrides_link(request: HttpRequest) -> dict[str, Any]:
        """The way from the queue to the corrections awaiting a finance manager's
        second signature, for those who may see them."""
        if not request.user.has_perm("integrations.view_overriderequest"):
            return {}
        return {
            "overrides_waiting": OverrideRequest.objects.filter(
                state=OverrideRequest.State.WAITING
            ).count(),
            "overrides_url": reverse("admin:integrations_overriderequest_changelist"),
        }

    @admin.display(description="Transaction", ordering="transaction__transaction_id")
    def transaction_link(self, obj: ReviewItem) -> SafeString | None:
        if obj.transaction is None:
            return None
        return change_link(
            obj.transaction, obj.transaction.transaction_id, viewer_of(obj)
        )

    @admin.display(description="Amount", ordering="transaction__amount")
    def amount(self, obj: ReviewItem) -> SafeString | None:
        if obj.transaction is None:
            return None
        return money_html(obj.transaction.amount, obj.transaction.currency)

    @admin.display(description="Customer", ordering="customer_number")
    def customer(self, obj: Any) -> str:
        return getattr(obj, "customer_number", None) or ""

    @admin.display(description="Payer", ordering="payer_name")
    def payer(self, obj: Any) -> SafeString | str:
        return payer_html(obj)

    @admin.display(description="Invoice", ordering="transaction__invoice_reference")
    def invoice_reference(self, obj: ReviewItem) -> str | None:
        return obj.transaction.invoice_reference if obj.transaction else None

    @admin.display(description="Reason and what to do")
    def reason_short(self, obj: ReviewItem) -> SafeString:
        return format_html(
            '{}<span class="portal-suggested">{}</span>',
            wording.short_reason(obj),
            SUGGESTED_ACTIONS.get(obj.kind, ""),
        )

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj: ReviewItem) -> SafeString:
        return format_html(
            '<span title="opened {}">{}</span>',
            format_when(obj.created_at),
            format_age(obj.created_at),
        )

    @admin.display(description="Suggested action")
    def suggested_action(self, obj: ReviewItem) -> str:
        return SUGGESTED_ACTIONS.get(obj.kind, "")

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        mark_viewer(changelist.result_list, request)
        return changelist
