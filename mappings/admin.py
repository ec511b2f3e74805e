"""Status maps: edited in place by integration admins, read by everyone else."""

from django.contrib import admin

from mappings.models import StatusMap


@admin.register(StatusMap)
class StatusMapAdmin(admin.ModelAdmin):
    list_display = (
        "description",
        "connection",
        "priority",
        "event_type",
        "transaction_type",
        "status_code_pattern",
        "gateway_status",
        "payment_status",
        "action",
        "is_active",
    )
    # Shown only to users who may change status maps (Django drops them otherwise).
    list_editable = (
        "priority",
        "gateway_status",
        "payment_status",
        "action",
        "is_active",
    )
    list_filter = ("connection", "action", "payment_status", "is_active")
    list_select_related = ("connection",)
    ordering = ("connection", "priority", "id")
    search_fields = (
        "event_type",
        "transaction_type",
        "status_code_pattern",
        "status_message_pattern",
    )

    @admin.display(description="Rule")
    def description(self, obj: StatusMap) -> str:
        return obj.as_rule().describe()

# Field mappings have their own module: the suggestion helper lives with them.
from mappings import fieldmapping_admin  # noqa: E402,F401
