"""Overrides awaiting a finance manager's second signature (issue 16).

The list is where a finance manager finds what waits for them (the review queue links
to it); signing and refusing happen on the review item's page (`ReviewItemAdmin`),
next to the payment and the preview of what will be sent. The rows are records of who
asked for what and who decided: nobody adds, edits or deletes them here.
"""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString

from integrations.admin.base import (
    PortalMedia,
    ReadOnlyAdmin,
    change_link,
    format_age,
    mark_viewer,
    viewer_of,
)
from integrations.admin.review_forms import ReviewStateFilter
from integrations.models.review import OverrideRequest
from mappings.formatting import money_html

WAITING_TITLE = "Overrides awaiting signature"


class OverrideStateFilter(ReviewStateFilter):
    """Filter by state, showing the waiting ones unless asked otherwise."""

    default = OverrideRequest.State.WAITING

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [*OverrideRequest.State.choices, (self.ALL, "All")]


@admin.register(OverrideRequest)
class OverrideRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "item_link",
        "transaction",
        "amount",
        "change",
        "requested_by",
        "requested_at",
        "waiting_for",
        "state",
        "decided_by",
    )
    list_filter = (OverrideStateFilter,)
    list_select_related = ("item__transaction", "requested_by", "decided_by")
    fields = (
        "item",
        "posting",
        "state",
        "change",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
        "reason",
        "overrides",
    )
    readonly_fields = fields
    Media = PortalMedia

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        state = request.GET.get(OverrideStateFilter.parameter_name)
        title = (
            WAITING_TITLE
            if state in (None, OverrideRequest.State.WAITING)
            else "Overrides and their second signatures"
        )
        return super().changelist_view(
            request, {"title": title, **(extra_context or {})}
        )

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        mark_viewer(changelist.result_list, request)
        return changelist

    @admin.display(description="Review item", ordering="item")
    def item_link(self, obj: OverrideRequest) -> SafeString:
        return change_link(
            obj.item, f"Review item {obj.item_id} (sign here)", viewer_of(obj)
        )

    @admin.display(description="Transaction")
    def transaction(self, obj: OverrideRequest) -> str:
        txn = obj.item.transaction
        return txn.transaction_id if txn else "-"

    @admin.display(description="Amount")
    def amount(self, obj: OverrideRequest) -> SafeString | str:
        txn = obj.item.transaction
        return money_html(txn.amount, txn.currency) if txn else "-"

    @admin.display(description="Change")
    def change(self, obj: OverrideRequest) -> str:
        return obj.describe_changes()

    @admin.display(description="Waiting for")
    def waiting_for(self, obj: OverrideRequest) -> str:
        if obj.state != OverrideRequest.State.WAITING:
            return "-"
        return format_age(obj.requested_at)
