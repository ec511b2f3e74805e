"""Autopay: its settings per Sage Pro connection, its runs and their reports, and
"Run autopay now" (a preview of what would be charged, then a confirmation).

Integration admins edit the settings; whoever may add an autopay run (finance
reviewers, integration admins) sees the preview and starts a run. A run's page is its
report: what was charged, what failed and why, what was skipped and why.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from integrations import autopay
from integrations.admin.base import ReadOnlyAdmin, change_link, staff_user
from integrations.enrolment.forms import ScrubsCardNumbersOnError
from integrations.models import Connection
from integrations.models.autopay import AutopayAttempt, AutopayRun, AutopaySettings
from mappings.declines import parse_retry_days
from mappings.formatting import format_money

ADD_RUN = "integrations.add_autopayrun"


class WorkspaceMedia:
    css = {"all": ["portal/admin.css", "portal/dashboard.css", "portal/workspace.css"]}


class AutopaySettingsForm(ScrubsCardNumbersOnError, forms.ModelForm):
    class Meta:
        model = AutopaySettings
        fields = [
            "sagepro",
            "enabled",
            "days_from_due",
            "catch_up_days",
            "default_net_days",
            "max_amount",
            "retry_days",
            "finance_emails",
        ]
        widgets = {"finance_emails": forms.Textarea(attrs={"rows": 3, "cols": 50})}

    def clean_retry_days(self) -> str:
        text = self.cleaned_data.get("retry_days", "")
        try:
            days = parse_retry_days(text)
        except ValueError as exc:
            raise ValidationError(
                f"{exc}. Give days after each soft decline, e.g. '1, 3, 7' (or leave "
                "it empty to never retry)."
            ) from None
        return ", ".join(str(day) for day in days)

    def clean_finance_emails(self) -> str:
        return "\n".join(
            autopay.finance_addresses(self.cleaned_data.get("finance_emails", ""))
        )

    def clean_days_from_due(self) -> int:
        days = self.cleaned_data["days_from_due"]
        if not -60 <= days <= 60:
            raise ValidationError(
                "Give a number of days from -60 (before the due date) to 60 (after)."
            )
        return days

    def clean_max_amount(self) -> Any:
        amount = self.cleaned_data["max_amount"]
        if amount is not None and amount <= 0:
            raise ValidationError("The maximum must be more than zero.")
        return amount


@admin.register(AutopaySettings)
class AutopaySettingsAdmin(admin.ModelAdmin):
    form = AutopaySettingsForm
    list_display = (
        "sagepro",
        "enabled",
        "days_from_due",
        "catch_up_days",
        "max_amount",
        "retry_days",
        "updated_at",
    )
    list_filter = ("enabled",)
    Media = WorkspaceMedia

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "sagepro":
            kwargs["queryset"] = Connection.objects.filter(kind=Connection.Kind.SAGEPRO)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class RunNowForm(forms.Form):
    sagepro = forms.ModelChoiceField(
        queryset=Connection.objects.filter(
            kind=Connection.Kind.SAGEPRO, autopay_settings__isnull=False
        ).order_by("name"),
        empty_label=None,
        label="Sage Pro connection",
    )


@admin.register(AutopayRun)
class AutopayRunAdmin(ReadOnlyAdmin):
    list_display = (
        "run_date",
        "sagepro",
        "state",
        "charged_count",
        "charged",
        "failed_count",
        "skipped_count",
        "trigger",
        "started_at",
    )
    list_display_links = ("run_date",)
    list_filter = ("state", "sagepro", "trigger")
    list_select_related = ("sagepro",)
    date_hierarchy = "run_date"
    Media = WorkspaceMedia

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "run/",
                self.admin_site.admin_view(self.run_now_view),
                name="integrations_autopayrun_run",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Charged amount", ordering="charged_amount")
    def charged(self, obj: AutopayRun) -> str:
        return format_money(obj.charged_amount)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_run": request.user.has_perm(ADD_RUN),
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        if run is None:
            return super().change_view(request, object_id, form_url, extra_context)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"Autopay report, {run.run_date:%Y-%m-%d}",
            "opts": self.opts,
            "run": run,
            "report": autopay.report(run),
            "charged_amount": format_money(run.charged_amount),
            "started_by": _who(run),
            "can_run": request.user.has_perm(ADD_RUN),
            "media": self.media,
        }
        return TemplateResponse(
            request, "admin/integrations/autopayrun/report.html", context
        )

    def run_now_view(self, request: HttpRequest) -> HttpResponseBase:
        """Choose a connection, see what would be charged, confirm, run."""
        if not request.user.has_perm(ADD_RUN):
            raise PermissionDenied(
                "Running autopay needs the “Can add autopay run” permission (finance "
                "reviewers and integration admins have it)."
            )
        data = request.POST if request.method == "POST" else (request.GET or None)
        form = RunNowForm(data)
        plan = None
        changed = False
        if form.is_bound and form.is_valid():
            sagepro = form.cleaned_data["sagepro"]
            try:
                plan = autopay.plan_run(sagepro)
            except autopay.AutopayError as exc:
                form.add_error("sagepro", str(exc))
            else:
                confirmed = request.POST.get("confirmed", "")
                if request.method == "POST" and confirmed == plan.fingerprint:
                    run = autopay.run_autopay(
                        sagepro, trigger="manual", user=staff_user(request)
                    )
                    self._say_done(request, run)
                    return redirect("admin:integrations_autopayrun_change", run.pk)
                changed = bool(confirmed)
        context = {
            **self.admin_site.each_context(request),
            "title": "Run autopay now",
            "opts": self.opts,
            "form": form,
            "plan": plan,
            "changed": changed,
            "total": format_money(plan.total) if plan else "",
            "config": autopay.settings_for(plan.sagepro) if plan else None,
            "no_settings": not form.fields["sagepro"].queryset.exists(),  # type: ignore[attr-defined]
            "media": self.media,
        }
        return TemplateResponse(
            request, "admin/integrations/autopayrun/run_now.html", context
        )

    def _say_done(self, request: HttpRequest, run: AutopayRun) -> None:
        if run.state == AutopayRun.State.SKIPPED:
            self.message_user(
                request,
                "Another autopay run of this connection was under way; nothing was "
                "charged by this one. Its report appears in the list when it is done.",
                messages.WARNING,
            )
        elif run.state == AutopayRun.State.FAILED:
            self.message_user(
                request, f"The autopay run stopped: {run.error}", messages.ERROR
            )
        else:
            self.message_user(
                request,
                f"Autopay charged {run.charged_count} invoice(s), "
                f"{format_money(run.charged_amount)}; {run.failed_count} failed, "
                f"{run.skipped_count} skipped.",
                messages.SUCCESS,
            )


def _who(run: AutopayRun) -> str:
    user = run.started_by
    if user is None:
        return "the schedule" if run.trigger == "schedule" else run.trigger
    return user.get_full_name() or user.get_username()


@admin.register(AutopayAttempt)
class AutopayAttemptAdmin(ReadOnlyAdmin):
    """Every invoice of every run, to search an invoice's autopay history."""

    list_display = (
        "run_link",
        "custno",
        "invno",
        "amount",
        "attempt",
        "outcome",
        "reason",
        "next_try_on",
    )
    list_filter = ("outcome", "sagepro")
    search_fields = ("invno", "custno")
    list_select_related = ("run",)
    Media = WorkspaceMedia

    @admin.display(description="Run", ordering="run__run_date")
    def run_link(self, obj: AutopayAttempt) -> Any:
        return change_link(obj.run, f"{obj.run.run_date:%Y-%m-%d}", request=None)
