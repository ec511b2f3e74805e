"""Connections and their webhook secrets: the only records an integration admin edits here.

Secrets are write-only: a form takes a new value in an empty password input and the
page only ever says whether one is "set".
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from integrations.admin.base import (
    KEEP_CURRENT_HELP,
    PortalMedia,
    SecretStatusWidget,
    write_only_input,
)
from integrations.inbound import secret_problem
from integrations.models import Connection, WebhookSecret


def _formfield(db_field: models.Field, **kwargs: Any) -> forms.Field | None:
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ConnectionForm(forms.ModelForm):
    password = forms.CharField(
        label="Password / API key",
        required=False,
        strip=False,
        widget=write_only_input(),
        help_text=KEEP_CURRENT_HELP,
    )

    class Meta:
        model = Connection
        fields = [
            "name",
            "slug",
            "kind",
            "environment",
            "is_active",
            "base_url",
            "username",
            "password",
            "integrator_id",
            "company_id",
            "transport",
            "agent",
            "sagepro",
            "payment_method",
            "time_zone",
        ]
        formfield_callback = _formfield

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The form never carries the stored value, so an untouched field is unchanged.
        self.initial["password"] = ""

    def clean_password(self) -> str:
        return self.cleaned_data["password"] or self.instance.password


class WebhookSecretForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=write_only_input(),
        help_text="Entered once; never shown again.",
    )

    class Meta:
        model = WebhookSecret
        fields = ["label", "secret", "is_active", "expires_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["secret"] = ""
        field = self.fields["secret"]
        if self.instance.pk:
            # Rotate by adding a new secret and deactivating this one.
            field.disabled = True
            field.help_text = ""
            field.widget = SecretStatusWidget(bool(self.instance.secret))
        else:
            field.required = True

    def clean_secret(self) -> str:
        secret = self.cleaned_data["secret"]
        if not secret:
            return self.instance.secret
        # A secret the verifier cannot decode would refuse every delivery signed
        # with it; say so now rather than with 401s later.
        if problem := secret_problem(secret):
            raise forms.ValidationError(problem)
        return secret


class WebhookSecretInline(admin.TabularInline):
    model = WebhookSecret
    form = WebhookSecretForm
    extra = 1
    readonly_fields = ("secret_status", "created_at")

    def get_fields(self, request: HttpRequest, obj: object = None) -> tuple[str, ...]:
        secret = (
            "secret" if self.has_change_permission(request, obj) else "secret_status"
        )
        return ("label", secret, "is_active", "expires_at", "created_at")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return super().has_add_permission(request, obj) and self.has_change_permission(
            request, obj
        )

    @admin.display(description="Secret")
    def secret_status(self, obj: WebhookSecret) -> str:
        return "set" if obj.secret else "not set"


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ("name", "kind", "environment", "is_active", "base_url")
    list_filter = ("kind", "environment", "is_active")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("password_status", "created_at", "updated_at")
    inlines = [WebhookSecretInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "kind", "environment", "is_active"]}),
        (
            "Endpoint and credentials",
            {
                "fields": [
                    "base_url",
                    "username",
                    "password",
                    "password_status",
                    "integrator_id",
                    "company_id",
                    "transport",
                    "agent",
                ]
            },
        ),
        ("Posting", {"fields": ["sagepro", "payment_method", "time_zone"]}),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]
    Media = PortalMedia

    def get_fieldsets(
        self, request: HttpRequest, obj: Connection | None = None
    ) -> list:
        can_edit = (
            self.has_add_permission(request)
            if obj is None
            else self.has_change_permission(request, obj)
        )
        if can_edit:
            return self.fieldsets
        # A view-only page shows every field's value: leave the secret out entirely.
        return [
            (
                name,
                {
                    **options,
                    "fields": [f for f in options["fields"] if f != "password"],
                },
            )
            for name, options in self.fieldsets
        ]

    def formfield_for_dbfield(
        self, db_field: models.Field, request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if isinstance(db_field, models.URLField):
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="Password / API key stored")
    def password_status(self, obj: Connection) -> str:
        return "set" if obj.password else "not set"


# What came in ----------------------------------------------------------------------------
