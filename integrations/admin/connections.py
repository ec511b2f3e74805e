"""Connections and their webhook secrets: the only records an integration admin edits here.

Secrets are write-only: a form takes a new value in an empty password input and the
page only ever says whether one is "set".
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from integrations.admin.base import (
    KEEP_CURRENT_HELP,
    PortalMedia,
    SecretStatusWidget,
    write_only_input,
)
from integrations.admin.rules import chart_check
from integrations.inbound import secret_problem
from integrations.models import Connection, WebhookSecret
from mappings import fields as fm
from mappings import gl

METHOD_SPEC = next(s for s in fm.CASH_RECEIPT_SPECS if s.name == "method")

BASE_URL_HELP: dict[str, str] = {
    Connection.Kind.PAYTRACE: "PayTrace's host root, e.g. https://api.paytrace.com.",
    Connection.Kind.SAGEPRO: "The Sage Pro gateway's URL ending in /api/v1; leave it "
    "blank for a company reached through an on-site agent.",
}

COMMON_FIELDS = ["name", "slug", "kind", "environment", "is_active"]
# The fields each kind uses, by fieldset; the form of a kind has only these.
KIND_FIELDSETS: dict[str, list[tuple[str, list[str]]]] = {
    Connection.Kind.PAYTRACE: [
        (
            "Endpoint and credentials",
            [
                "base_url",
                "username",
                "password",
                "password_status",
                "integrator_id",
                "time_zone",
            ],
        ),
        ("Posting", ["sagepro", "payment_method", "suspense_account"]),
    ],
    Connection.Kind.SAGEPRO: [
        (
            "Endpoint and credentials",
            [
                "base_url",
                "password",
                "password_status",
                "company_id",
                "transport",
                "agent",
            ],
        ),
        ("Posting", ["suspense_account"]),
    ],
    Connection.Kind.STOREFRONT: [
        (
            "Endpoint and credentials",
            ["base_url", "username", "password", "password_status"],
        ),
        ("Posting", ["sagepro", "payment_method", "suspense_account", "time_zone"]),
    ],
}


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
            "suspense_account",
            "time_zone",
        ]
        formfield_callback = _formfield

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The form never carries the stored value, so an untouched field is unchanged.
        self.initial["password"] = ""

    def clean_password(self) -> str:
        return self.cleaned_data["password"] or self.instance.password

    def clean_payment_method(self) -> str:
        value = self.cleaned_data["payment_method"].strip().upper()
        if problem := fm.value_problem(METHOD_SPEC, value):
            raise forms.ValidationError(
                f"{value} {problem}: Sage Pro's receipt method is "
                f"{METHOD_SPEC.describe()}."
            )
        return value

    def clean_suspense_account(self) -> str:
        value = self.cleaned_data["suspense_account"].strip().upper()
        if problem := gl.account_format_problem(value):
            raise forms.ValidationError(f"{problem}.")
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        account = data.get("suspense_account") or ""
        if not account or "suspense_account" in self.errors:
            return data
        kind = data.get("kind") or self.instance.kind
        if kind == Connection.Kind.SAGEPRO:
            sage_conn = self.instance if self.instance.pk else None
        else:
            sage_conn = data.get("sagepro")
        problem, self.chart_warning = chart_check(
            account, sage_conn, "the suspense account"
        )
        if problem:
            self.add_error("suspense_account", problem)
        return data

    chart_warning = ""


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
    change_form_template = "admin/integrations/connection/change_form.html"
    # Every field, for an add page that does not know its kind yet.
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
        (
            "Posting",
            {
                "fields": [
                    "sagepro",
                    "payment_method",
                    "suspense_account",
                    "time_zone",
                ]
            },
        ),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]
    Media = PortalMedia

    @staticmethod
    def kind_of(request: HttpRequest, obj: Connection | None) -> str:
        """The kind the page is for: the row's, or the one chosen on an add page."""
        if obj is not None:
            return obj.kind
        kind = request.POST.get("kind") or request.GET.get("kind") or ""
        return kind if kind in KIND_FIELDSETS else ""

    def get_fieldsets(
        self, request: HttpRequest, obj: Connection | None = None
    ) -> list:
        kind = self.kind_of(request, obj)
        fieldsets: list[Any] = list(self.fieldsets)
        if kind:
            fieldsets = [
                (None, {"fields": COMMON_FIELDS}),
                *[(name, {"fields": fields}) for name, fields in KIND_FIELDSETS[kind]],
                ("Record", {"fields": ["created_at", "updated_at"]}),
            ]
        can_edit = (
            self.has_add_permission(request)
            if obj is None
            else self.has_change_permission(request, obj)
        )
        if can_edit:
            return fieldsets
        # A view-only page shows every field's value: leave the secret out entirely.
        return [
            (
                name,
                {
                    **options,
                    "fields": [f for f in options["fields"] if f != "password"],
                },
            )
            for name, options in fieldsets
        ]

    def get_urls(self) -> list[URLPattern]:
        test = self.admin_site.admin_view(require_POST(self.test_connection_view))
        return [
            path("<path:object_id>/test/", test, name="integrations_connection_test"),
            *super().get_urls(),
        ]

    def test_connection_view(
        self, request: HttpRequest, object_id: str
    ) -> HttpResponse:
        """Run the connection's check with its stored settings; save nothing."""
        connection = self.get_object(request, unquote(object_id))
        if connection is None:
            raise Http404
        if not self.has_change_permission(request, connection):
            raise PermissionDenied
        result = connection.check_connection()
        request.session[f"connection_check:{connection.pk}"] = {
            "ok": result.ok,
            "summary": result.summary,
            "fix": result.fix,
            "detail": result.detail,
        }
        return HttpResponseRedirect(
            reverse("admin:integrations_connection_change", args=[connection.pk])
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        connection = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if connection is not None:
            context["connection_check"] = request.session.pop(
                f"connection_check:{connection.pk}", None
            )
            context["webhook_urls"] = [
                (what, request.build_absolute_uri(url))
                for what, url in connection.webhook_paths()
            ]
            context["may_test"] = self.has_change_permission(request, connection)
        return super().change_view(request, object_id, form_url, context)

    def save_model(
        self, request: HttpRequest, obj: Connection, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if getattr(form, "chart_warning", ""):
            self.message_user(request, form.chart_warning, messages.WARNING)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        help_text = BASE_URL_HELP.get(self.kind_of(request, obj))
        if help_text and "base_url" in form.base_fields:
            form.base_fields["base_url"].help_text = help_text
        if obj is None and "kind" in form.base_fields:
            # An add page reloads with ?kind= when the kind is chosen (static/portal/
            # actions.js), so it shows only the fields that kind uses.
            form.base_fields["kind"].widget.attrs["data-portal-reload-param"] = "kind"
        return form

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
