from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django.utils.safestring import SafeString

from mappings.formatting import format_when
from portal import tokens
from portal.models import AccessAuditEntry, ApiToken
from portal.tokens import Scope, TokenError

TOKEN_TEMPLATES = "admin/portal/apitoken"
MANAGE_ALL = "portal.manage_all_apitoken"


def can_manage_all(request: HttpRequest) -> bool:
    return request.user.has_perm(MANAGE_ALL)


class LifetimeField(forms.IntegerField):
    """Days a new key lives: the default lifetime unless chosen, at most the maximum."""

    def __init__(self, **kwargs: Any) -> None:
        longest = tokens.max_lifetime_days()
        super().__init__(
            label="Lifetime (days)",
            min_value=1,
            max_value=longest,
            initial=tokens.default_lifetime().days,
            help_text=f"The key is refused after this many days (at most {longest}).",
            **kwargs,
        )


class TokenCreateForm(ModelForm):
    """A new token: its owner (for those who manage everyone's), name, scopes and
    lifetime. The owner's permissions must give each scope something to do."""

    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do; its owner's permissions still apply.",
    )
    lifetime_days = LifetimeField()
    # The signed-in user, when they may make tokens only for themselves.
    owner = None

    class Meta:
        model = ApiToken
        fields = ("user", "name")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        owner = self.owner or data.get("user")
        if owner is not None:
            problem = tokens.unusable_scope_problem(owner, data.get("scopes") or [])
            if problem:
                self.add_error("scopes", problem)
        return data


class RotateForm(forms.Form):
    lifetime_days = LifetimeField()


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(ApiToken.State.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        state = self.value()
        if state is None:
            return queryset
        return queryset.filter(ApiToken.in_state(state))


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens by prefix only: a key is shown once, on the page after it is made (or
    rotated), and never again. Tokens are revoked, never deleted, so the list keeps
    every key that ever worked. Without `portal.manage_all_apitoken`, a user sees
    and manages only their own tokens."""

    form = TokenCreateForm
    list_display = (
        "prefix",
        "name",
        "user",
        "scopes_shown",
        "expires_shown",
        "last_used_shown",
        "state_shown",
    )
    list_select_related = ("user",)
    search_fields = ("prefix", "name", "user__username")
    ordering = ("-created_at", "-id")
    actions = ["revoke_selected"]
    change_form_template = f"{TOKEN_TEMPLATES}/change_form.html"
    readonly_fields = (
        "user",
        "prefix",
        "state_shown",
        "scopes_shown",
        "created_at",
        "expires_shown",
        "last_used_shown",
        "revoked_at",
        "rotated_at",
        "rotated_from",
        "successor_shown",
    )

    class Media:
        css = {"all": ("portal/api_tokens.css",)}

    # Who sees what ------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        rows = super().get_queryset(request)
        return rows if can_manage_all(request) else rows.filter(user=request.user)

    def get_list_filter(self, request: HttpRequest) -> tuple:
        # Another user's name is not shown to someone who sees only their own tokens.
        return (
            (TokenStateFilter, "user")
            if can_manage_all(request)
            else (TokenStateFilter,)
        )

    def has_change_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return super().has_change_permission(request, obj) and self._may_manage(
            request, obj
        )

    def has_view_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return super().has_view_permission(request, obj) and self._may_manage(
            request, obj
        )

    def has_delete_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False  # revoke instead: the row is the audit trail of a key

    def _may_manage(self, request: HttpRequest, obj: Model | None) -> bool:
        owner_id = getattr(obj, "user_id", None)
        return obj is None or owner_id == request.user.pk or can_manage_all(request)

    # The form -----------------------------------------------------------------------

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> list:
        if obj is not None:
            return ["name", *self.readonly_fields]
        owner = ["user"] if can_manage_all(request) else []
        return [*owner, "name", "scopes", "lifetime_days"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: Model | None = None
    ) -> tuple[str, ...]:
        return self.readonly_fields if obj is not None else ()

    def get_form(
        self,
        request: HttpRequest,
        obj: Model | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[ModelForm]:
        if obj is not None:
            return super().get_form(request, obj, change, form=ModelForm, **kwargs)
        form = super().get_form(request, obj, change, **kwargs)
        owner = None if can_manage_all(request) else request.user
        return type("TokenCreateForm", (form,), {"owner": owner})

    def add_view(
        self,
        request: HttpRequest,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The next page shows the key; "save and add another" would skip it.
        extra = {"show_save_and_add_another": False, "show_save_and_continue": False}
        return super().add_view(request, form_url, {**extra, **(extra_context or {})})

    def save_model(
        self, request: HttpRequest, obj: ApiToken, form: ModelForm, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        if not can_manage_all(request):
            obj.user = request.user  # type: ignore[assignment]
        obj.scopes = list(form.cleaned_data["scopes"])
        days = form.cleaned_data["lifetime_days"]
        # Kept on the object only until `response_add` shows it.
        obj.new_key = obj.issue(timedelta(days=days))  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        return self.key_page(request, obj, obj.new_key)  # type: ignore[attr-defined]

    def key_page(self, request: HttpRequest, token: ApiToken, key: str) -> HttpResponse:
        """The one page that shows a key, never cached by the browser."""
        context = {
            **self.admin_site.each_context(request),
            "title": "Copy the new key now",
            "opts": self.opts,
            "token": token,
            "key": key,
            "old": token.rotated_from,
            "expires": format_when(token.expires_at),
            "old_until": format_when(token.rotated_from.expires_at)
            if token.rotated_from
            else "",
        }
        response = TemplateResponse(request, f"{TOKEN_TEMPLATES}/key.html", context)
        add_never_cache_headers(response)
        return response

    # Rotate and revoke --------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<int:token_id>/rotate/",
                view(self.rotate_view),
                name="portal_apitoken_rotate",
            ),
            path(
                "<int:token_id>/revoke/",
                view(self.revoke_view),
                name="portal_apitoken_revoke",
            ),
            *super().get_urls(),
        ]

    def _token_for_change(self, request: HttpRequest, token_id: int) -> ApiToken:
        token = get_object_or_404(self.get_queryset(request), pk=token_id)
        if not self.has_change_permission(request, token):
            raise PermissionDenied
        return token

    def rotate_view(self, request: HttpRequest, token_id: int) -> HttpResponse:
        """Confirm (and choose the new key's lifetime), then make the new key and
        show it once; the old key keeps working for the overlap."""
        token = self._token_for_change(request, token_id)
        form = RotateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            days = form.cleaned_data["lifetime_days"]
            try:
                new, key = ApiToken.objects.rotate(token.pk, timedelta(days=days))
            except TokenError as refusal:
                messages.error(request, refusal.message)
                return redirect(self._change_url(token))
            return self.key_page(request, new, key)
        problem = token.rotation_problem(timezone.now())
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rotate token {token.prefix}…?",
            "opts": self.opts,
            "token": token,
            "form": form,
            "problem": problem,
            "overlap_hours": int(tokens.rotation_overlap().total_seconds() // 3600),
        }
        return TemplateResponse(request, f"{TOKEN_TEMPLATES}/rotate.html", context)

    def revoke_view(self, request: HttpRequest, token_id: int) -> HttpResponse:
        """Confirm, then refuse the key from now on."""
        token = self._token_for_change(request, token_id)
        if request.method == "POST" and request.POST.get("confirm") == str(token.pk):
            try:
                token.revoke()
            except TokenError as refusal:
                messages.error(request, refusal.message)
            else:
                messages.success(
                    request, f"Token {token.prefix}… is revoked: its key is refused."
                )
            return redirect(self._change_url(token))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Revoke token {token.prefix}…?",
            "opts": self.opts,
            "token": token,
        }
        return TemplateResponse(request, f"{TOKEN_TEMPLATES}/revoke.html", context)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        live = list(queryset.filter(revoked_at__isnull=True).select_related("user"))
        for token in live:
            token.revoke()
        self.message_user(request, f"Revoked {len(live)} token(s).", messages.SUCCESS)

    def _change_url(self, token: ApiToken) -> str:
        return reverse("admin:portal_apitoken_change", args=[token.pk])

    # Columns ------------------------------------------------------------------------

    @admin.display(description="Scopes")
    def scopes_shown(self, obj: ApiToken) -> str:
        return obj.scopes_text()

    @admin.display(description="Expires", ordering="expires_at")
    def expires_shown(self, obj: ApiToken) -> str:
        return format_when(obj.expires_at)

    @admin.display(description="Last used", ordering="last_used_at")
    def last_used_shown(self, obj: ApiToken) -> str:
        return format_when(obj.last_used_at) or "never"

    @admin.display(description="State")
    def state_shown(self, obj: ApiToken) -> SafeString:
        state = obj.state()
        return format_html(
            '<span class="token-state token-{}">{}</span>', state.value, state.label
        )

    @admin.display(description="Replaced by")
    def successor_shown(self, obj: ApiToken) -> str:
        successor = ApiToken.objects.filter(rotated_from=obj).first()
        return f"{successor.prefix}…" if successor else "-"


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
