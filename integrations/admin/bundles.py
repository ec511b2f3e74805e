"""Configuration bundles in the admin: upload one, see its signature verdict and its
diff against this environment's configuration, apply it; and the list of the bundles
applied here, the newest being the version this environment runs.

Only who may add, change and delete everything a bundle touches (integration admins)
imports one. The apply form carries the bundle back with the plan's fingerprint; the
bundle is checked again (signature included) and applied only if the plan is still
the one shown.
"""

from typing import Any
from urllib.parse import quote_plus

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html

from integrations.admin.base import ReadOnlyAdmin, staff_user
from integrations.config import BundleError, history, load_bundle, plan_import
from integrations.config.signing import SignatureState, Verdict, check_bundle
from integrations.models.bundles import ConfigBundleApplied

TEMPLATES = "admin/integrations/configbundle"


class BundleUploadForm(forms.Form):
    bundle = forms.FileField(
        label="Bundle file",
        help_text="The JSON file `manage.py export_config` wrote in the source "
        "environment. Nothing changes until you apply it on the next page.",
    )


@admin.register(ConfigBundleApplied)
class ConfigBundleAppliedAdmin(ReadOnlyAdmin):
    list_display = (
        "version",
        "label",
        "source_environment",
        "signature_display",
        "applied_at",
        "applied_by_name",
        "summary",
    )
    list_filter = ("signature", "source_environment")
    search_fields = ("version", "label", "content_hash", "signer_key")
    fields = (
        "version",
        "label",
        "content_hash",
        "source_environment",
        "exported_at",
        "signature",
        "signer_key",
        "applied_at",
        "applied_by_name",
        "source",
        "summary",
        "plan_display",
    )
    readonly_fields = fields
    change_list_template = f"{TEMPLATES}/change_list.html"

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return super().has_view_permission(request, obj) or history.may_import(
            request.user
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="integrations_configbundleapplied_import",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Signature", ordering="signature")
    def signature_display(self, obj: ConfigBundleApplied) -> str:
        return obj.describe_signature()

    @admin.display(description="Plan applied")
    def plan_display(self, obj: ConfigBundleApplied) -> str:
        return format_html("<pre>{}</pre>", "\n".join(map(str, obj.plan_lines)))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "current": ConfigBundleApplied.current(),
            "can_import": history.may_import(request.user),
        }
        return super().changelist_view(request, extra_context)

    # Import -----------------------------------------------------------------------------

    def import_view(self, request: HttpRequest) -> HttpResponseBase:
        """Upload → verdict and diff → apply (confirmed with the plan's fingerprint)."""
        if not history.may_import(request.user):
            raise PermissionDenied(
                "Importing a configuration bundle needs the permissions to add, change "
                "and delete connections and mapping rules (the Integration admin "
                "group has them)."
            )
        if request.method == "POST" and "apply" in request.POST:
            return self._apply(request)
        form = BundleUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["bundle"]
            name = (upload.name or "the file")[:200]
            try:
                text = _read_upload(upload, name)
                document = load_bundle(text, name=name)
            except BundleError as exc:
                for problem in exc.problems:
                    form.add_error("bundle", problem)
            else:
                return self._preview(request, text.decode("utf-8"), document, name)
        return self._page(
            request, "upload.html", "Import a configuration bundle", {"form": form}
        )

    def _apply(self, request: HttpRequest) -> HttpResponseBase:
        name = request.POST.get("bundle_name", "")[:200] or "the bundle"
        text = request.POST.get("bundle_text", "")
        try:
            if len(text.encode("utf-8")) > settings.CONFIG_BUNDLE_MAX_BYTES:
                raise BundleError([_too_large(name)])
            document = load_bundle(text, name=name)
        except BundleError as exc:
            form = BundleUploadForm()
            form.add_error(
                None,
                f"{' '.join(exc.problems)} Upload the file again; nothing changed.",
            )
            return self._page(
                request, "upload.html", "Import a configuration bundle", {"form": form}
            )
        verdict = check_bundle(document)
        if _refusal(verdict):
            return self._preview(request, text, document, name)
        if verdict.state is SignatureState.UNSIGNED and not request.POST.get(
            "accept_unsigned"
        ):
            return self._preview(
                request,
                text,
                document,
                name,
                error="This bundle is not signed: tick “Apply it unsigned” to apply "
                "it anyway, or export it again where CONFIG_SIGNING_KEY is set.",
            )
        try:
            plan, record = history.apply_verified(
                verdict,
                source=f"admin upload {name}",
                user=staff_user(request),
                expect_fingerprint=request.POST.get("fingerprint", ""),
            )
        except history.StalePlanError as exc:
            return self._preview(request, text, document, name, error=str(exc))
        except BundleError as exc:
            return self._preview(
                request, text, document, name, error=" ".join(exc.problems)
            )
        except DatabaseError as exc:
            return self._preview(
                request,
                text,
                document,
                name,
                error=f"The database refused the change ({exc}); nothing was "
                "applied. Try again, or apply it with `manage.py import_config`.",
            )
        self.message_user(
            request,
            f"Applied bundle {record.version}: {plan.summary()}. This environment now "
            "runs it.",
            messages.SUCCESS,
        )
        if plan.secrets_needed:
            self.message_user(
                request,
                "Enter these secrets on the connections' pages, a bundle never holds "
                f"them: {'; '.join(plan.secrets_needed)}.",
                messages.WARNING,
            )
        return redirect("admin:integrations_configbundleapplied_changelist")

    def _preview(
        self,
        request: HttpRequest,
        text: str,
        document: dict,
        name: str,
        *,
        error: str = "",
    ) -> TemplateResponse:
        """The verdict and, for an acceptable bundle, its diff and the apply form."""
        verdict = check_bundle(document)
        refusal = _refusal(verdict)
        plan = None
        problems: list[str] = []
        if not refusal:
            try:
                plan = plan_import(verdict.content)
            except BundleError as exc:
                problems = exc.problems
        return self._page(
            request,
            "preview.html",
            f"Import {name}: check the diff",
            {
                "verdict": verdict,
                "refusal": refusal,
                "problems": problems,
                "error": error,
                "plan": plan,
                "sections": plan.sections() if plan else [],
                "fingerprint": (
                    plan.fingerprint(verdict.origin.content_hash) if plan else ""
                ),
                "bundle_text": text,
                "bundle_name": name,
                "unsigned": verdict.state is SignatureState.UNSIGNED,
                "too_big_to_post": _too_big_to_post(text),
                "current": ConfigBundleApplied.current(),
            },
        )

    def _page(
        self, request: HttpRequest, template: str, title: str, context: dict[str, Any]
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            f"{TEMPLATES}/{template}",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": title,
                **context,
            },
        )


def _refusal(verdict: Verdict) -> str:
    """Why this environment won't apply the bundle, or ""."""
    if verdict.state is SignatureState.REFUSED:
        return f"{verdict.reason[0].upper()}{verdict.reason[1:]}"
    if verdict.state is SignatureState.UNSIGNED and not settings.CONFIG_ALLOW_UNSIGNED:
        return (
            "The bundle is not signed, and this environment accepts signed bundles "
            "only (CONFIG_ALLOW_UNSIGNED is off): export it again where "
            "CONFIG_SIGNING_KEY is set."
        )
    return ""


def _too_big_to_post(text: str) -> bool:
    """Whether the apply form, carrying the bundle back, would exceed what Django
    accepts in a request (DATA_UPLOAD_MAX_MEMORY_SIZE): the diff is shown, but
    applying is left to import_config."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return limit is not None and len(quote_plus(text)) + 4096 > limit


def _read_upload(upload: UploadedFile, name: str) -> bytes:
    """The uploaded bytes, refusing a file over CONFIG_BUNDLE_MAX_BYTES unread."""
    limit = settings.CONFIG_BUNDLE_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise BundleError([_too_large(name)])
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise BundleError([_too_large(name)])
    return data


def _too_large(name: str) -> str:
    limit = settings.CONFIG_BUNDLE_MAX_BYTES
    return (
        f"{name} is larger than CONFIG_BUNDLE_MAX_BYTES ({limit:,} bytes); a "
        "configuration bundle is far smaller. Check it is the file export_config "
        "wrote."
    )
