"""Status maps, GL-account rules, matching rules and exchange rates: edited by
integration admins.

The GL rules' "Test rules" page runs the rules on a stored transaction or a pasted
PayTrace record and shows the reasoning, without writing anything.
"""

import json
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from integrations import documents, learning
from integrations.connectors.base import ConnectorError
from integrations.models import Connection, PaymentTransaction
from mappings import gl, matching
from mappings.models import CurrencyRate, GlRule, MatchingRule, StatusMap


@admin.register(StatusMap)
class StatusMapAdmin(admin.ModelAdmin):
    list_display = (
        "description",
        "connection",
        "priority",
        "event_type",
        "transaction_type",
        "status_code_pattern",
        "gateway_status",
        "payment_status",
        "action",
        "is_active",
    )
    # Shown only to users who may change status maps (Django drops them otherwise).
    list_editable = (
        "priority",
        "gateway_status",
        "payment_status",
        "action",
        "is_active",
    )
    list_filter = ("connection", "action", "payment_status", "is_active")
    list_select_related = ("connection",)
    ordering = ("connection", "priority", "id")
    search_fields = (
        "event_type",
        "transaction_type",
        "status_code_pattern",
        "status_message_pattern",
    )

    @admin.display(description="Rule")
    def description(self, obj: StatusMap) -> str:
        return obj.as_rule().describe()


def sage_connection_for(connection: Connection | None) -> Connection | None:
    """The Sage Pro connection whose chart a rule of `connection` books to."""
    if connection is None:
        return None
    if connection.kind == Connection.Kind.SAGEPRO:
        return connection
    return connection.sagepro


class GlRuleForm(forms.ModelForm):
    """Checks the account against Sage Pro's chart (exists, active) on save: the
    mirror's copy, and Sage Pro itself before an account is refused.

    When Sage Pro cannot be reached the rule is saved anyway and `chart_warning` says
    so; the pipeline checks the account again before every posting.
    """

    class Meta:
        model = GlRule
        fields = (
            "connection",
            "name",
            "priority",
            "is_active",
            "account",
            "transaction_types",
            "card_brands",
            "channels",
            "amount_min",
            "amount_max",
            "currency",
            "customer_pattern",
            "invoice_pattern",
            "product_category",
            "note",
        )

    chart_warning = ""

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        account = (data.get("account") or "").strip()
        sage_conn = sage_connection_for(data.get("connection"))
        if not account or sage_conn is None:
            return data
        reader = sage_conn.mirror()
        try:
            refusal = gl.account_problem(
                account, gl.chart_from(reader.list_gl_accounts())
            )
            if refusal and not reader.fresh:  # the mirror may be behind Sage Pro
                refusal = gl.account_problem(
                    account, gl.chart_from(reader.refresh_gl_accounts())
                )
        except ConnectorError as exc:
            self.chart_warning = (
                f"Sage Pro could not be asked whether {account} exists ({exc}); "
                "the rule was saved unchecked and is checked again before posting."
            )
            return data
        if refusal:
            self.add_error("account", f"{refusal[1]} ({refusal[0]}).")
        return data


@admin.register(GlRule)
class GlRuleAdmin(admin.ModelAdmin):
    form = GlRuleForm
    list_display = (
        "name",
        "connection",
        "priority",
        "account",
        "conditions",
        "is_active",
    )
    list_filter = ("connection", "is_active")
    list_select_related = ("connection",)
    ordering = ("connection", "priority", "id")
    search_fields = ("name", "account", "note")
    change_list_template = "admin/mappings/glrule/change_list.html"

    @admin.display(description="When")
    def conditions(self, obj: GlRule) -> str:
        parts = [
            ("type", obj.transaction_types),
            ("brand", obj.card_brands),
            ("channel", obj.channels),
            ("≥", obj.amount_min),
            ("≤", obj.amount_max),
            ("currency", obj.currency),
            ("customer", obj.customer_pattern),
            ("invoice", obj.invoice_pattern),
            ("category", obj.product_category),
        ]
        text = ", ".join(f"{k} {v}" for k, v in parts if v not in (None, ""))
        return text or "anything"

    def save_model(
        self, request: HttpRequest, obj: GlRule, form: GlRuleForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if form.chart_warning:
            self.message_user(request, form.chart_warning, messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.test_rules_view)
        return [
            path("test/", view, name="mappings_glrule_test"),
            *super().get_urls(),
        ]

    def test_rules_view(self, request: HttpRequest) -> HttpResponse:
        """Run the rules on a transaction or a pasted record; show the reasoning."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = GlRuleTestForm(request.POST or None)
        document = None
        if request.method == "POST" and form.is_valid():
            txn = form.cleaned_data["transaction"]
            invoice, note = documents.find_invoice(
                txn.connection.sagepro, documents.invoice_number_for(txn)
            )
            document = documents.build_cash_receipt(txn, invoice)
            if note:
                document.notes.insert(0, note)
        context = {
            **self.admin_site.each_context(request),
            "title": "Test GL-account rules",
            "opts": self.opts,
            "form": form,
            "document": document,
            "transaction": form.cleaned_data.get("transaction") if document else None,
            "media": self.media + form.media,
        }
        return TemplateResponse(
            request, "admin/mappings/glrule/test_rules.html", context
        )


class GlRuleTestForm(forms.Form):
    connection = forms.ModelChoiceField(
        queryset=Connection.objects.filter(kind=Connection.Kind.PAYTRACE),
        help_text="The PayTrace connection whose rules to run.",
    )
    transaction_id = forms.CharField(
        required=False,
        max_length=40,
        label="PayTrace transaction id",
        help_text="A transaction the portal has stored…",
    )
    record = forms.CharField(
        required=False,
        label="…or a PayTrace record (JSON)",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        help_text="An export record as PayTrace sends it; nothing is saved.",
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        connection = data.get("connection")
        transaction_id = (data.get("transaction_id") or "").strip()
        raw = (data.get("record") or "").strip()
        if connection is None:
            return data
        if bool(transaction_id) == bool(raw):
            raise forms.ValidationError(
                "Give a transaction id or paste a record (one of the two)."
            )
        if transaction_id:
            txn = PaymentTransaction.objects.filter(
                connection=connection, transaction_id=transaction_id
            ).first()
            if txn is None:
                self.add_error(
                    "transaction_id",
                    f"{connection.name} has no transaction {transaction_id}.",
                )
                return data
        else:
            try:
                record = json.loads(raw, parse_float=Decimal)
                if isinstance(record, dict) and isinstance(record.get("data"), dict):
                    record = record["data"]  # a whole event was pasted
                if not isinstance(record, dict):
                    raise ValueError("the record must be a JSON object")
                txn = documents.transaction_from_record(connection, record)
            except ValueError as exc:
                self.add_error("record", f"Not a PayTrace record: {exc}")
                return data
        data["transaction"] = txn
        return data


@admin.register(CurrencyRate)
class CurrencyRateAdmin(admin.ModelAdmin):
    list_display = ("currency", "base_currency", "rate", "valid_on", "source")
    list_filter = ("currency", "base_currency")
    date_hierarchy = "valid_on"
    ordering = ("currency", "base_currency", "-valid_on")
    search_fields = ("currency", "source")


@admin.register(MatchingRule)
class MatchingRuleAdmin(admin.ModelAdmin):
    """How payments meet open invoices; the first active rule that fits decides, and
    a connection without active rules uses the built-in standard rule (whose values a
    new rule starts from: they are the model's defaults)."""

    list_display = (
        "connection",
        "name",
        "priority",
        "reference_mode",
        "tolerance",
        "auto_apply",
        "allow_partial",
        "payments_decided",
        "changed_by_reviewer",
        "is_active",
    )
    # Shown only to users who may change matching rules (Django drops them otherwise).
    list_editable = ("priority", "is_active")
    list_display_links = ("name",)
    list_filter = ("connection", "reference_mode", "auto_apply", "is_active")
    list_select_related = ("connection",)
    ordering = ("connection", "priority", "id")
    search_fields = ("name", "customer_pattern", "channels")
    change_list_template = "admin/mappings/matchingrule/change_list.html"
    fieldsets = [
        (None, {"fields": ["connection", "name", "priority", "is_active"]}),
        (
            "Which payments",
            {
                "fields": [
                    "customer_pattern",
                    "channels",
                    ("amount_min", "amount_max"),
                ]
            },
        ),
        (
            "Matching",
            {
                "fields": [
                    "reference_mode",
                    "strip_prefixes",
                    ("tolerance_type", "tolerance_value"),
                    "require_same_customer",
                    "auto_apply",
                    "allow_partial",
                    "duplicate_window_days",
                ]
            },
        ),
        (
            "What a reference may name",
            {"fields": ["multiple_invoices", "order_numbers", "near_misses"]},
        ),
        (
            "Who paid, and payments without a usable reference",
            {"fields": ["identify_payer", "by_amount", "max_combination"]},
        ),
    ]

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        cl = super().get_changelist_instance(request)
        stats = learning.rule_stats()
        for rule in cl.result_list:
            rule.portal_stats = stats.get(rule.pk, (0, 0))
        cl.standard_stats = stats.get(None, (0, 0))  # type: ignore[attr-defined]
        return cl

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        without = Connection.objects.filter(kind=Connection.Kind.PAYTRACE).exclude(
            matching_rules__is_active=True
        )
        add_url = reverse("admin:mappings_matchingrule_add")
        context = {
            "standard_connections": [
                {"connection": c, "add_url": f"{add_url}?connection={c.pk}"}
                for c in without.order_by("name")
            ],
            "standard_values": describe_standard(),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    @admin.display(description="Tolerance", ordering="tolerance_type")
    def tolerance(self, obj: MatchingRule) -> str:
        if obj.tolerance_type == MatchingRule.Tolerance.PERCENT:
            return f"{obj.tolerance_value.normalize():f} %"
        if obj.tolerance_type == MatchingRule.Tolerance.FIXED:
            return f"{obj.tolerance_value.quantize(Decimal('0.01'))} fixed"
        return "exact amount"

    @admin.display(description="Payments decided")
    def payments_decided(self, obj: MatchingRule) -> int:
        return getattr(obj, "portal_stats", (0, 0))[0]

    @admin.display(description="Changed by a reviewer")
    def changed_by_reviewer(self, obj: MatchingRule) -> str:
        decided, changed = getattr(obj, "portal_stats", (0, 0))
        return f"{changed} ({changed * 100 // decided} %)" if decided else "0"


def describe_standard() -> list[str]:
    """The built-in standard rule in words, for the changelist."""
    values = matching.STANDARD
    tolerance = Decimal(str(values["tolerance_value"])).normalize()
    return [
        "references read after removing words like "
        + ", ".join(matching.DEFAULT_PREFIXES[:6])
        + ", punctuation and leading zeros",
        "several invoice numbers in one reference paid together",
        "Sage Pro order numbers and PO numbers as references",
        "a number one edit or transposition away only with the customer and the "
        "exact amount confirming it",
        "the customer identified from the payer (customer mappings, PayTrace "
        "customer id, e-mail, billing name)",
        f"amounts within {tolerance:f} % of the balance",
        "partial payments applied, the invoice left open",
        "with no usable reference, the known customer's one open invoice (or one "
        f"combination of up to {values['max_combination']}) of that amount",
    ]
