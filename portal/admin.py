from django.contrib import admin, messages
from django.db.models import Model
from django.forms import ModelForm
from django.http import HttpRequest

from portal.models import ApiToken


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
