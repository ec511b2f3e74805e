from django.contrib import admin, messages
from django.db.models import Model
from django.forms import ModelForm
from django.http import HttpRequest

from portal.models import AccessAuditEntry, ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens by prefix only: the key is shown once, when the token is made."""

    list_display = ("prefix", "name", "user", "created_at", "last_used_at")
    list_filter = ("user",)
    search_fields = ("prefix", "name", "user__username")
    fields = ("user", "name", "prefix", "created_at", "last_used_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")

    def get_readonly_fields(
        self, request: HttpRequest, obj: Model | None = None
    ) -> tuple[str, ...]:
        # A token's owner is fixed once it exists.
        if obj is not None:
            return ("user", *self.readonly_fields)
        return self.readonly_fields

    def save_model(
        self, request: HttpRequest, obj: ApiToken, form: ModelForm, change: bool
    ) -> None:
        key = None if change else obj.set_new_key()
        super().save_model(request, obj, form, change)
        if key is not None:
            self.message_user(
                request,
                f"The token's key is {key} — copy it now: it is stored hashed and "
                "is never shown again. Send it as `Authorization: Token <key>`.",
                messages.WARNING,
            )


@admin.register(AccessAuditEntry)
class AccessAuditEntryAdmin(admin.ModelAdmin):
    """The access audit log: read-only for everyone, superusers included."""

    list_display = ("at", "kind", "username", "actor", "ip_address", "detail")
    list_filter = ("kind",)
    search_fields = ("username", "actor", "detail", "ip_address")
    date_hierarchy = "at"
    readonly_fields = ("at", "kind", "username", "actor", "ip_address", "detail")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False
