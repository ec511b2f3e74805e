"""What came in: webhook deliveries as received and the events stored from them.

Both are records of what happened and read-only for everyone.
"""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.utils.safestring import SafeString

from integrations.admin.base import (
    PortalMedia,
    ReadOnlyAdmin,
    can_view,
    change_link,
    mark_viewer,
    pre,
    short,
    viewer_of,
)
from integrations.models import Connection, Event, InboundDelivery


class ConnectionAsText:
    """The record's connection as a link only for someone who may open connections
    (a finance reviewer may not: the link would be a 403)."""

    def get_fields(self, request: HttpRequest, obj: object = None) -> list:
        fields = list(super().get_fields(request, obj))  # type: ignore[misc]
        if can_view(request.user, Connection()):
            return fields
        return ["connection_name" if f == "connection" else f for f in fields]

    @admin.display(description="Connection")
    def connection_name(self, obj: InboundDelivery | Event) -> str:
        return str(obj.connection) if obj.connection_id else "-"


@admin.register(InboundDelivery)
class InboundDeliveryAdmin(ConnectionAsText, ReadOnlyAdmin):
    list_display = (
        "received_at",
        "connection_slug",
        "kind",
        "signature_result",
        "failure_reason",
        "response_status",
        "contains_card_data",
        "event_link",
    )
    list_filter = ("signature_result", "failure_reason", "kind", "contains_card_data")
    search_fields = ("webhook_id", "connection_slug")
    list_select_related = ("event",)
    fields = (
        "received_at",
        "connection",
        "connection_slug",
        "kind",
        "webhook_id",
        "remote_addr",
        "signature_result",
        "failure_reason",
        "failure_detail",
        "response_status",
        "contains_card_data",
        "event",
        "body_size",
        "headers_pretty",
        "body_pretty",
    )
    readonly_fields = (*fields, "connection_name")
    Media = PortalMedia

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        mark_viewer(changelist.result_list, request)
        return changelist

    @admin.display(description="Event")
    def event_link(self, obj: InboundDelivery) -> SafeString | None:
        if not obj.event:
            return None
        return change_link(obj.event, obj.event, viewer_of(obj))

    @admin.display(description="Headers (redacted)")
    def headers_pretty(self, obj: InboundDelivery) -> SafeString:
        return pre(obj.headers)

    @admin.display(description="Body (card data masked)")
    def body_pretty(self, obj: InboundDelivery) -> SafeString:
        return pre(obj.body)


@admin.register(Event)
class EventAdmin(ConnectionAsText, ReadOnlyAdmin):
    list_display = (
        "type",
        "event_id",
        "transaction_id",
        "state",
        "attempts",
        "received_at",
        "last_error_short",
    )
    list_filter = ("state", "type", "source")
    search_fields = ("event_id", "transaction_id")
    fields = (
        "connection",
        "event_id",
        "source",
        "type",
        "occurred_at",
        "transaction_id",
        "state",
        "attempts",
        "received_at",
        "started_at",
        "processed_at",
        "outcome",
        "contains_card_data",
        "last_error",
        "traceback_pretty",
        "payload_pretty",
    )
    readonly_fields = (*fields, "connection_name")
    Media = PortalMedia

    @admin.display(description="Last error", ordering="last_error")
    def last_error_short(self, obj: Event) -> str:
        return short(obj.last_error)

    @admin.display(description="Traceback")
    def traceback_pretty(self, obj: Event) -> SafeString | None:
        return pre(obj.last_traceback) if obj.last_traceback else None

    @admin.display(description="Payload (card data masked)")
    def payload_pretty(self, obj: Event) -> SafeString:
        return pre(obj.payload)
