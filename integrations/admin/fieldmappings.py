"""Admin for field mappings, with the "Suggest mappings…" helper.

The helper page takes a connection, a document and a sample record, shows one row per
target field with the suggested source path, its confidence and reasons, and lets the
admin accept (creates or updates the FieldMapping, records accepted feedback) or
reject (records rejected feedback and suggests again, so the row shows the next
candidate) row by row. Plain form posts; the JS only tidies the sample.
"""

import json
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from integrations import config_impact
from integrations.admin.rules import ImpactPreviewMixin
from integrations.models import Connection
from mappings import fields as fm
from mappings.api import load_feedback, record_feedback
from mappings.models import FieldMapping
from mappings.suggest import Suggestion, suggest_mappings
from mappings.suggest_targets import TARGETS

# The sample the page starts with: a PayTrace v1 export record.
EXAMPLE_SAMPLE = {
    "transaction_id": 500000123,
    "transaction_type": "SALE",
    "amount": 250.5,
    "tax_amount": "12.00",
    "invoice_id": "SO-10045",
    "customer_reference_id": "PO-7781",
    "description": "",
    "customer_id": "ACME",
    "receipt_emailed_to": "",
    "credit_card": {
        "masked_number": "************1111",
        "expiration_month": 9,
        "expiration_year": 27,
    },
    "billing_address": {
        "name": "Inland Supply Co",
        "street_address": "100 W Main Ave",
        "city": "Spokane",
        "state": "WA",
        "zip": "99201",
        "country": "US",
    },
    "approval_code": "TAS123",
    "status_code": "GB812",
    "status_message": "GB812",
    "created": {
        "through": "API",
        "at": "3/4/2025 2:07:09 PM",
        "by": "apiuser",
        "from_ip": "203.0.113.9",
    },
    "settled": "3/4/2025 8:15:00 PM",
}


def _source_connections() -> QuerySet[Connection]:
    return Connection.objects.exclude(kind=Connection.Kind.SAGEPRO).order_by("name")


class SuggestForm(forms.Form):
    connection = forms.ModelChoiceField(
        queryset=_source_connections(),
        help_text="The source connection the mapping belongs to.",
    )
    document = forms.ChoiceField(
        choices=[
            (value, label)
            for value, label in FieldMapping.Document.choices
            if value in TARGETS
        ],
        initial=FieldMapping.Document.CASH_RECEIPT,
        help_text="The Sage Pro document to fill.",
    )
    sample = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 18, "cols": 80, "spellcheck": "false"}),
        help_text="One source record as JSON, e.g. a PayTrace export record.",
    )

    def clean_sample(self) -> dict:
        try:
            sample = json.loads(self.cleaned_data["sample"], parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"This is not valid JSON: {exc}") from exc
        if not isinstance(sample, dict):
            raise forms.ValidationError("The sample must be a JSON object.")
        return sample


def target_fields(document: str) -> dict[str, fm.FieldSpec | None]:
    """The fields a Sage Pro document knows, with their spec where there is one."""
    if document == FieldMapping.Document.CASH_RECEIPT:
        return {spec.name: spec for spec in fm.CASH_RECEIPT_SPECS}
    return {target.name: None for target in TARGETS.get(document, ())}


class FieldMappingForm(forms.ModelForm):
    """Checked on save, each error on the field it is about: the target is a field of
    the document, the source path exists in the connection's recent records, the
    transforms are usable, and a constant or lookup value fits the target's spec."""

    class Meta:
        model = FieldMapping
        fields = (
            "connection",
            "document",
            "target_field",
            "source_path",
            "transforms",
            "position",
            "is_active",
        )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        document = data.get("document") or FieldMapping.Document.CASH_RECEIPT
        target = (data.get("target_field") or "").strip()
        known = target_fields(document)
        if target and target not in known:
            label = FieldMapping.Document(document).label.lower()
            self.add_error(
                "target_field",
                f"{target} is not a field of the Sage Pro {label}"
                + (f": use one of {', '.join(known)}." if known else "."),
            )
        transforms = data.get("transforms")
        if "transforms" in data and (problems := fm.transform_errors(transforms)):
            self.add_error("transforms", "; ".join(problems))
            transforms = None
        spec = known.get(target)
        if spec is not None and transforms:
            for value in fm.fixed_values(transforms):
                if problem := fm.value_problem(spec, value):
                    self.add_error(
                        "transforms",
                        f"{target} would be {value!r}, which {problem} "
                        f"({spec.describe()}).",
                    )
                    break
        path = (data.get("source_path") or "").strip()
        connection = data.get("connection")
        if (
            path
            and connection is not None
            and (problem := config_impact.source_path_problem(connection, path))
        ):
            self.add_error("source_path", problem)
        return data


@admin.register(FieldMapping)
class FieldMappingAdmin(ImpactPreviewMixin, admin.ModelAdmin):
    form = FieldMappingForm
    list_display = (
        "connection",
        "document",
        "target_field",
        "source_path",
        "transforms",
        "is_active",
    )
    list_filter = ("connection", "document", "is_active")
    list_select_related = ("connection",)
    search_fields = ("target_field", "source_path")
    ordering = ("connection", "document", "position", "id")
    change_list_template = "admin/mappings/fieldmapping/change_list.html"

    def impact_of(self, row: FieldMapping) -> config_impact.Impact | None:
        """The mapping as it would be saved against the one in force for its field."""
        if row.document != FieldMapping.Document.CASH_RECEIPT:
            return None  # only cash receipts are built from payments today
        stored = (
            FieldMapping.objects.filter(
                connection=row.connection,
                document=row.document,
                target_field=row.target_field,
                is_active=True,
            )
            .exclude(pk=row.pk)
            .first()
        )
        if row.pk is not None:
            current = FieldMapping.objects.filter(pk=row.pk, is_active=True).first()
            stored = current or stored
        before = stored.as_rule() if stored else None
        after = row.as_rule() if row.is_active else None
        if any(r and r.source_path.startswith("invoice.") for r in (before, after)):
            # The invoice is Sage Pro's, read when a receipt is built; the preview
            # makes no Sage Pro calls, so it cannot say what the mapping would give.
            return None
        samples = config_impact.recent_samples(row.connection)
        return config_impact.field_impact(
            samples, row.target_field, before, after, row.connection.time_zone
        )

    def get_urls(self) -> list[URLPattern]:
        suggest = path(
            "suggest/",
            self.admin_site.admin_view(self.suggest_view),
            name="mappings_fieldmapping_suggest",
        )
        return [suggest, *super().get_urls()]

    def may_suggest(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) or self.has_change_permission(request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "may_suggest": self.may_suggest(request),
        }
        return super().changelist_view(request, extra_context)

    def suggest_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.may_suggest(request):
            raise PermissionDenied
        if request.method == "POST":
            form = SuggestForm(request.POST)
        else:
            form = SuggestForm(
                initial={
                    "sample": json.dumps(EXAMPLE_SAMPLE, indent=2),
                    "connection": _source_connections().first(),
                }
            )
        rows: list[dict] = []
        if form.is_valid():
            data = form.cleaned_data
            if "accept" in request.POST:
                self._accept(request, data, request.POST["accept"])
            elif "reject" in request.POST:
                self._reject(request, data, request.POST["reject"])
            rows = self._rows(data)
        context = {
            **self.admin_site.each_context(request),
            "title": "Suggest mappings",
            "opts": self.opts,
            "form": form,
            "rows": rows,
            "media": self.media + form.media,
        }
        return TemplateResponse(
            request, "admin/mappings/fieldmapping/suggest.html", context
        )

    def _rows(self, data: dict) -> list[dict]:
        """One row per target field: the suggestion and the mapping in force."""
        document = data["document"]
        current = {
            m.target_field: m
            for m in FieldMapping.objects.filter(
                connection=data["connection"], document=document
            )
        }
        suggestions: list[Suggestion] = suggest_mappings(
            document, data["sample"], load_feedback(document)
        )
        return [
            {"suggestion": s, "mapping": current.get(s.target_field)}
            for s in suggestions
        ]

    def _accept(self, request: HttpRequest, data: dict, target_field: str) -> None:
        fields = [f.name for f in TARGETS[data["document"]]]
        source_path = request.POST.get(f"path_{target_field}", "").strip()
        if target_field not in fields:
            self.message_user(
                request,
                f"{target_field} is not a field of this document.",
                messages.ERROR,
            )
            return
        if not source_path:
            self.message_user(
                request, f"No source path to accept for {target_field}.", messages.ERROR
            )
            return
        existing = FieldMapping.objects.filter(
            connection=data["connection"],
            document=data["document"],
            target_field=target_field,
        ).first()
        allowed = (
            self.has_change_permission(request, existing)
            if existing
            else self.has_add_permission(request)
        )
        if not allowed:
            raise PermissionDenied
        if existing is None:
            position = fields.index(target_field)
            FieldMapping.objects.create(
                connection=data["connection"],
                document=data["document"],
                target_field=target_field,
                source_path=source_path,
                position=position,
            )
        else:
            existing.source_path = source_path
            existing.is_active = True
            existing.save(update_fields=["source_path", "is_active"])
        record_feedback(data["document"], target_field, source_path, True, request.user)
        self.message_user(request, f"Mapped {target_field} ← {source_path}.")

    def _reject(self, request: HttpRequest, data: dict, target_field: str) -> None:
        fields = [f.name for f in TARGETS[data["document"]]]
        source_path = request.POST.get(f"path_{target_field}", "").strip()
        if target_field not in fields or not source_path:
            return
        record_feedback(
            data["document"], target_field, source_path, False, request.user
        )
        self.message_user(
            request,
            f"Rejected {target_field} ← {source_path}; the row shows the next candidate.",
            messages.WARNING,
        )
