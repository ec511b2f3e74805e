"""Chargebacks in the admin: record one for a payment, move it to won or lost, and
import the processor's dispute report. Every change shows the GL batch it posts
first (`integrations.chargebacks.BatchPlan`) and happens only on confirmation; an
import shows each row's verdict first and imports the good rows only when the admin
confirms having seen the bad ones."""

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.safestring import SafeString

from integrations import chargebacks
from integrations.admin.base import ReadOnlyAdmin, change_link, staff_user
from integrations.models import Connection, PaymentTransaction
from integrations.models.chargebacks import (
    Chargeback,
    ChargebackEvent,
    DisputeImport,
)
from mappings import disputes
from mappings.formatting import format_money

ADD_CHARGEBACK = "integrations.add_chargeback"
CHANGE_CHARGEBACK = "integrations.change_chargeback"
ADD_IMPORT = "integrations.add_disputeimport"
TEMPLATES = "admin/integrations/chargeback"


def _require(request: HttpRequest, perm: str, what: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(f"{what} needs the “{perm}” permission.")


def _paytrace_connections() -> QuerySet:
    return Connection.objects.filter(
        kind=Connection.Kind.PAYTRACE, sagepro__isnull=False
    )


class NewChargebackForm(forms.Form):
    connection = forms.ModelChoiceField(queryset=Connection.objects.none())
    transaction_id = forms.CharField(
        label="PayTrace transaction id", max_length=40, help_text="The disputed sale."
    )
    case_number = forms.CharField(max_length=40, help_text="The processor's case.")
    amount = forms.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0.01")
    )
    fee = forms.DecimalField(
        label="Dispute fee",
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0.00"),
        required=False,
        help_text="Optional: what the processor charged for the dispute.",
    )
    reason_code = forms.CharField(max_length=20, required=False)
    reason_text = forms.CharField(label="Reason", max_length=200, required=False)
    opened_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    due_on = forms.DateField(
        label="Respond by",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["connection"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = _paytrace_connections()
        if field.queryset.count() == 1:
            field.initial = field.queryset.first()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        connection, tid = data.get("connection"), data.get("transaction_id")
        if connection and tid:
            txn = PaymentTransaction.objects.filter(
                connection=connection, transaction_id=tid.strip()
            ).first()
            if txn is None:
                self.add_error(
                    "transaction_id",
                    f"No payment {tid.strip()} of {connection.slug} is known to the "
                    "portal.",
                )
            data["transaction"] = txn
        return data


class ResolveForm(forms.Form):
    state = forms.ChoiceField(
        choices=[
            (Chargeback.State.WON, "Won: the money came back"),
            (Chargeback.State.LOST, "Lost: the money is gone"),
        ],
        widget=forms.RadioSelect,
    )
    on = forms.DateField(
        label="Decided on", widget=forms.DateInput(attrs={"type": "date"})
    )


class UploadForm(forms.Form):
    connection = forms.ModelChoiceField(queryset=Connection.objects.none())
    report = forms.FileField(
        label="Dispute report (CSV)",
        help_text=f"At most {disputes.MAX_BYTES:,} bytes.",
    )
    date_format = forms.ChoiceField(
        choices=[("", "Saved (or guessed from the file)")]
        + list(disputes.DATE_FORMATS.items()),
        required=False,
    )
    save_mapping = forms.BooleanField(
        initial=True,
        required=False,
        label="Save these columns for this connection's next report",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["connection"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = _paytrace_connections()
        if field.queryset.count() == 1:
            field.initial = field.queryset.first()
        for name, (label, required) in disputes.FIELDS.items():
            self.fields[f"col_{name}"] = forms.CharField(
                label=f"Column: {label.lower()}",
                max_length=100,
                required=False,
                help_text="The column's header. Blank: the saved one (or a guess)"
                + ("" if required else "; optional"),
            )

    def clean_report(self) -> Any:
        upload = self.cleaned_data["report"]
        if upload.size > disputes.MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; a dispute report may be at most "
                f"{disputes.MAX_BYTES:,} bytes. Split it and import each part."
            )
        return upload

    def mapping(self, connection: Connection) -> disputes.ReportMapping | None:
        """The columns typed in over the saved ones; None when nothing is given or
        saved (the import then guesses from the file's header)."""
        saved = chargebacks.saved_mapping(connection)
        columns = dict(saved.columns) if saved else {}
        typed = {
            name: self.cleaned_data.get(f"col_{name}", "").strip()
            for name in disputes.FIELDS
        }
        columns.update({k: v for k, v in typed.items() if v})
        date_format = self.cleaned_data.get("date_format") or (
            saved.date_format if saved else ""
        )
        if not columns and not date_format:
            return None
        return disputes.ReportMapping(columns, date_format or "%Y-%m-%d")


class EventInline(admin.TabularInline):
    model = ChargebackEvent
    extra = 0
    can_delete = False
    fields = ("state", "on", "amount", "batch", "source", "created_by", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="GL batch")
    def batch(self, obj: ChargebackEvent) -> str:
        posting = obj.posting
        if posting is None:
            return "-"
        number = posting.document_number or "not in Sage Pro yet"
        return f"{number} ({posting.get_state_display()})"


@admin.register(Chargeback)
class ChargebackAdmin(ReadOnlyAdmin):
    list_display = (
        "case_number",
        "payment",
        "amount_display",
        "state",
        "opened_on",
        "due_on",
        "resolved_on",
        "reason_code",
        "source",
    )
    list_filter = ("state", "source", "connection")
    search_fields = ("case_number", "transaction__transaction_id", "reason_code")
    list_select_related = ("transaction",)
    fields = (
        "case_number",
        "payment",
        "amount_display",
        "fee_amount",
        "state",
        "reason_code",
        "reason_text",
        "opened_on",
        "due_on",
        "resolved_on",
        "source",
        "dispute_import",
        "created_by",
        "created_at",
    )
    readonly_fields = fields
    inlines = (EventInline,)
    change_form_template = f"{TEMPLATES}/change_form.html"
    change_list_template = f"{TEMPLATES}/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("new/", view(self.new_view), name="integrations_chargeback_new"),
            path(
                "<int:pk>/resolve/",
                view(self.resolve_view),
                name="integrations_chargeback_resolve",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Payment")
    def payment(self, obj: Chargeback) -> SafeString:
        return change_link(obj.transaction, obj.transaction.transaction_id)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: Chargeback) -> str:
        return format_money(obj.amount, obj.currency)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_add_chargeback": request.user.has_perm(ADD_CHARGEBACK),
            "can_import": request.user.has_perm(ADD_IMPORT),
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_resolve": request.user.has_perm(CHANGE_CHARGEBACK),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _page(
        self, request: HttpRequest, title: str, context: dict[str, Any]
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            f"{TEMPLATES}/action.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": title,
                **context,
            },
        )

    def new_view(self, request: HttpRequest) -> HttpResponseBase:
        """Record a chargeback: the form, then its GL batch, then (confirmed) done."""
        _require(request, ADD_CHARGEBACK, "Recording a chargeback")
        form = NewChargebackForm(request.POST or None)
        plan = None
        changed = False
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                plan = chargebacks.preview_open(
                    data["transaction"],
                    case_number=data["case_number"],
                    amount=data["amount"],
                    opened_on=data["opened_on"],
                    fee=data["fee"] or Decimal("0.00"),
                )
            except chargebacks.ChargebackError as exc:
                form.add_error(None, str(exc))
            else:
                confirmed = request.POST.get("confirm", "")
                changed = bool(confirmed) and confirmed != plan.fingerprint
                if confirmed and not changed:
                    chargeback = chargebacks.open_chargeback(
                        data["transaction"],
                        case_number=data["case_number"],
                        amount=data["amount"],
                        opened_on=data["opened_on"],
                        due_on=data["due_on"],
                        reason_code=data["reason_code"],
                        reason_text=data["reason_text"],
                        fee=data["fee"] or Decimal("0.00"),
                        user=staff_user(request),
                    )
                    self.message_user(
                        request,
                        f"Chargeback {chargeback.case_number} recorded; its GL batch "
                        "is on its way to Sage Pro.",
                        messages.SUCCESS,
                    )
                    return redirect(
                        "admin:integrations_chargeback_change", chargeback.pk
                    )
        return self._page(
            request,
            "Record a chargeback",
            {"form": form, "plan": plan, "changed": changed, "submit": "Record it"},
        )

    def resolve_view(self, request: HttpRequest, pk: int) -> HttpResponseBase:
        """Move an opened chargeback to won or lost, its batch previewed first."""
        _require(request, CHANGE_CHARGEBACK, "Deciding a chargeback")
        chargeback = get_object_or_404(Chargeback, pk=pk)
        form = ResolveForm(request.POST or None)
        plan = None
        changed = False
        if request.method == "POST" and form.is_valid():
            state, on = form.cleaned_data["state"], form.cleaned_data["on"]
            try:
                plan = chargebacks.preview_resolve(chargeback, state, on)
                confirmed = request.POST.get("confirm", "")
                changed = bool(confirmed) and confirmed != plan.fingerprint
                if confirmed and not changed:
                    chargebacks.resolve_chargeback(
                        chargeback, state, on, user=staff_user(request)
                    )
                    self.message_user(
                        request,
                        f"Chargeback {chargeback.case_number} is {state}; its GL "
                        "batch is on its way to Sage Pro.",
                        messages.SUCCESS,
                    )
                    return redirect("admin:integrations_chargeback_change", pk)
            except chargebacks.ChargebackError as exc:
                form.add_error(None, str(exc))
                plan = None
        return self._page(
            request,
            f"Decide chargeback {chargeback.case_number}",
            {
                "form": form,
                "plan": plan,
                "changed": changed,
                "chargeback": chargeback,
                "submit": "Record the decision",
            },
        )


@admin.register(DisputeImport)
class DisputeImportAdmin(ReadOnlyAdmin):
    list_display = (
        "file_name",
        "connection",
        "state",
        "row_count",
        "good_count",
        "bad_count",
        "created_count",
        "created_by",
        "created_at",
    )
    list_filter = ("state", "connection")
    fields = (
        "file_name",
        "connection",
        "state",
        "sha256",
        "created_by",
        "created_at",
        "imported_at",
    )
    readonly_fields = fields
    change_form_template = f"{TEMPLATES}/import_result.html"
    change_list_template = f"{TEMPLATES}/import_list.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "upload/",
                view(self.upload_view),
                name="integrations_disputeimport_upload",
            ),
            path(
                "<int:pk>/confirm/",
                view(self.confirm_view),
                name="integrations_disputeimport_confirm",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        record = self.get_object(request, object_id)
        if record is not None:
            extra_context = {
                **(extra_context or {}),
                "record": record,
                "rows": _result_rows(record),
                "can_import": request.user.has_perm(ADD_IMPORT),
                "confirm_url": reverse(
                    "admin:integrations_disputeimport_confirm", args=[record.pk]
                ),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def upload_view(self, request: HttpRequest) -> HttpResponseBase:
        """Upload a report: its rows are checked and shown; nothing is imported yet."""
        _require(request, ADD_IMPORT, "Importing a dispute report")
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            connection = form.cleaned_data["connection"]
            upload = form.cleaned_data["report"]
            content = upload.read(disputes.MAX_BYTES + 1)
            mapping = form.mapping(connection)
            record = chargebacks.preview_import(
                connection,
                upload.name or "report.csv",
                content,
                user=staff_user(request),
                mapping=mapping,
            )
            if record.state == DisputeImport.State.IMPORTED:
                self.message_user(
                    request,
                    "This file was imported already (same content): nothing changed.",
                    messages.WARNING,
                )
            elif (
                record.state == DisputeImport.State.PREVIEWED
                and form.cleaned_data.get("save_mapping")
            ):
                chargebacks.save_mapping(
                    connection, chargebacks.mapping_of(record), staff_user(request)
                )
            return redirect("admin:integrations_disputeimport_change", record.pk)
        saved = {}
        if form.fields["connection"].initial is not None:
            mapping = chargebacks.saved_mapping(form.fields["connection"].initial)
            saved = dict(mapping.columns) if mapping else {}
        return TemplateResponse(
            request,
            f"{TEMPLATES}/upload.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Import a dispute report",
                "form": form,
                "saved": saved,
            },
        )

    def confirm_view(self, request: HttpRequest, pk: int) -> HttpResponseBase:
        """Import the good rows of a previewed report (POST only)."""
        _require(request, ADD_IMPORT, "Importing a dispute report")
        record = get_object_or_404(DisputeImport, pk=pk)
        if request.method != "POST":
            return redirect("admin:integrations_disputeimport_change", pk)
        if record.bad_count and not request.POST.get("skip_bad"):
            self.message_user(
                request,
                f"Nothing was imported: tick that you have seen the "
                f"{record.bad_count} bad rows and want the {record.good_count} good "
                "ones imported without them.",
                messages.ERROR,
            )
            return redirect("admin:integrations_disputeimport_change", pk)
        done = chargebacks.confirm_import(record, user=staff_user(request))
        self.message_user(
            request,
            f"Imported: {done.created_count} new chargebacks, {done.changed_count} "
            f"state changes, {done.unchanged_count} already recorded; "
            f"{done.bad_count} bad rows left out.",
            messages.SUCCESS,
        )
        return redirect("admin:integrations_disputeimport_change", done.pk)


def _result_rows(record: DisputeImport) -> list[dict[str, Any]]:
    labels = chargebacks.ACTION_LABELS
    rows = []
    for entry in record.results:
        errors = entry.get("errors") or []
        done = entry.get("done", "")
        rows.append(
            {
                **entry,
                "bad": bool(errors),
                "outcome": "; ".join(errors)
                if errors
                else (
                    ("Done: " if done else "Will be: ")
                    + labels.get(done or entry.get("action", ""), "")
                ),
            }
        )
    return rows
