"""Recurring schedules: the list with each schedule's next run, "Add" (a form, then a
preview: "Create schedule: $49.00 monthly from … on Visa …1111", then a confirmation),
"Cancel schedule" (with a confirmation) and "Sync from PayTrace".

PayTrace keeps the schedules and makes the charges; the rows here are the portal's
copy (`integrations.recurring`). Nothing on a schedule is edited in place: cancel it
and add another.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from integrations import recurring
from integrations.admin.base import staff_user
from integrations.enrolment.forms import ScrubsCardNumbersOnError
from integrations.models.autopay import RecurringSchedule
from integrations.models.cards import CardOnFile
from mappings.formatting import format_money

ADD = "integrations.add_recurringschedule"
CHANGE = "integrations.change_recurringschedule"


class WorkspaceMedia:
    css = {"all": ["portal/admin.css", "portal/dashboard.css", "portal/workspace.css"]}


class CardChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return (
            f"{obj.custno}: {obj.brand or 'Card'} …{obj.last4}, expires {obj.expiry}"
            f" ({obj.paytrace.name})"
        )


class ScheduleForm(ScrubsCardNumbersOnError, forms.Form):
    card = CardChoice(
        queryset=CardOnFile.objects.filter(state=CardOnFile.State.ACTIVE)
        .select_related("paytrace")
        .order_by("custno", "-created_at"),
        label="Card on file",
    )
    amount = forms.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=0.01,
        help_text="Charged each time, in dollars and cents.",
    )
    frequency = forms.ChoiceField(choices=RecurringSchedule.Frequency.choices)
    start_date = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The first charge's day (today or later).",
    )
    total_count = forms.IntegerField(
        label="Number of charges",
        min_value=0,
        max_value=recurring.MAX_COUNT,
        initial=0,
        help_text="0 charges until the schedule is cancelled.",
    )
    description = forms.CharField(max_length=255, required=False)
    invoice_reference = forms.CharField(
        max_length=20,
        required=False,
        help_text="Sent as each charge's invoice number: a Sage Pro invoice to pay, "
        "or empty to put the payments on the customer's account.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            data["request"] = recurring.check_request(
                card=data["card"],
                amount=data["amount"],
                frequency=data["frequency"],
                start_date=data["start_date"],
                total_count=data["total_count"],
                description=data.get("description", ""),
                invoice_reference=data.get("invoice_reference", ""),
            )
        except recurring.RecurringError as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, exc.message)
        return data


@admin.register(RecurringSchedule)
class RecurringScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "custno",
        "card_label",
        "money",
        "frequency",
        "next_run",
        "charges",
        "state",
        "recurrence_id",
    )
    list_filter = ("state", "frequency", "paytrace")
    search_fields = ("custno", "recurrence_id", "description", "invoice_reference")
    list_select_related = ("card",)
    fields = (
        "custno",
        "card",
        "amount",
        "frequency",
        "start_date",
        "total_count",
        "charges_made",
        "next_run",
        "state",
        "error",
        "description",
        "invoice_reference",
        "recurrence_id",
        "paytrace",
        "created_by",
        "created_at",
        "cancelled_by",
        "cancelled_at",
        "synced_at",
    )
    readonly_fields = fields
    Media = WorkspaceMedia

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "sync/",
                self.admin_site.admin_view(require_POST(self.sync_view)),
                name="integrations_recurringschedule_sync",
            ),
            path(
                "<int:schedule_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="integrations_recurringschedule_cancel",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Card")
    def card_label(self, obj: RecurringSchedule) -> str:
        return f"{obj.card.brand or 'Card'} …{obj.card.last4}"

    @admin.display(description="Amount", ordering="amount")
    def money(self, obj: RecurringSchedule) -> str:
        return format_money(obj.amount)

    @admin.display(description="Charges made")
    def charges(self, obj: RecurringSchedule) -> str:
        if obj.total_count:
            return f"{obj.charges_made} of {obj.total_count}"
        return str(obj.charges_made)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_sync": request.user.has_perm(CHANGE) or request.user.has_perm(ADD),
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        schedule = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_cancel": schedule is not None
            and request.user.has_perm(CHANGE)
            and schedule.state
            in (RecurringSchedule.State.ACTIVE, RecurringSchedule.State.UNKNOWN),
            "show_save": False,
            "show_save_and_continue": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def add_view(
        self,
        request: HttpRequest,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        """The form; a valid form shows the preview; the preview's confirmation
        (carrying what was shown) creates the schedule in PayTrace."""
        if not self.has_add_permission(request):
            raise PermissionDenied(
                "Setting up a recurring schedule needs the “Can add recurring "
                "schedule” permission."
            )
        form = ScheduleForm(
            request.POST or None, initial={"start_date": recurring.business_today()}
        )
        preview = None
        changed = False
        if request.method == "POST" and form.is_valid():
            preview = form.cleaned_data["request"]
            confirmed = request.POST.get("confirmed", "")
            if confirmed and confirmed == preview.fingerprint:
                schedule = recurring.create_schedule(
                    card=preview.card,
                    amount=preview.amount,
                    frequency=preview.frequency,
                    start_date=preview.start_date,
                    total_count=preview.total_count,
                    description=preview.description,
                    invoice_reference=preview.invoice_reference,
                    user=staff_user(request),
                )
                self._say_created(request, schedule)
                return redirect(
                    "admin:integrations_recurringschedule_change", schedule.pk
                )
            changed = bool(confirmed)
        context = {
            **self.admin_site.each_context(request),
            "title": "Add a recurring schedule",
            "opts": self.opts,
            "form": form,
            "preview": preview,
            "changed": changed,
            "media": self.media + form.media,
        }
        return TemplateResponse(
            request, "admin/integrations/recurringschedule/add.html", context
        )

    def _say_created(self, request: HttpRequest, schedule: RecurringSchedule) -> None:
        state = RecurringSchedule.State
        if schedule.state == state.ACTIVE:
            self.message_user(
                request,
                f"PayTrace made the schedule {schedule.recurrence_id}; the first charge "
                f"is on {schedule.next_run:%Y-%m-%d}."
                if schedule.next_run
                else f"PayTrace made the schedule {schedule.recurrence_id}.",
                messages.SUCCESS,
            )
        elif schedule.state == state.FAILED:
            self.message_user(request, schedule.error, messages.ERROR)
        else:
            self.message_user(request, schedule.error, messages.WARNING)

    def cancel_view(self, request: HttpRequest, schedule_id: int) -> HttpResponseBase:
        if not request.user.has_perm(CHANGE):
            raise PermissionDenied(
                "Cancelling a recurring schedule needs the “Can change recurring "
                "schedule” permission."
            )
        schedule = get_object_or_404(RecurringSchedule, pk=schedule_id)
        if request.method == "POST":
            try:
                recurring.cancel_schedule(schedule, staff_user(request))
            except recurring.RecurringError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(
                    request,
                    "Cancelled in PayTrace: no more charges are made on this schedule.",
                    messages.SUCCESS,
                )
            return redirect("admin:integrations_recurringschedule_change", schedule.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel the recurring schedule?",
            "opts": self.opts,
            "schedule": schedule,
            "amount": format_money(schedule.amount),
            "media": self.media,
        }
        return TemplateResponse(
            request, "admin/integrations/recurringschedule/cancel.html", context
        )

    def sync_view(self, request: HttpRequest) -> HttpResponseBase:
        if not (request.user.has_perm(CHANGE) or request.user.has_perm(ADD)):
            raise PermissionDenied(
                "Syncing schedules needs the permission to add or change them."
            )
        results = recurring.sync_all()
        if not results:
            self.message_user(request, "No PayTrace connection to sync.", messages.INFO)
        for slug, summary in results.items():
            level = messages.ERROR if summary.startswith("failed") else messages.SUCCESS
            self.message_user(request, f"{slug}: {summary}", level)
        return redirect("admin:integrations_recurringschedule_changelist")
