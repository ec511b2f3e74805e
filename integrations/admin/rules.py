"""Status maps, GL-account rules, matching rules and exchange rates: edited by
integration admins.

The GL rules' "Test rules" page runs the rules on a stored transaction or a pasted
PayTrace record and shows the reasoning, without writing anything.
"""

import dataclasses
import json
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from integrations import config_impact, documents, learning
from integrations.admin.base import PortalMedia
from integrations.connectors.base import ConnectorError
from integrations.inbound import EVENT_TYPES
from integrations.models import Connection, PaymentTransaction
from mappings import gl, matching
from mappings.formatting import format_money
from mappings.models import CurrencyRate, GlRule, MatchingRule, StatusMap

# PayTrace's transaction types (JSON API v1 export records).
TRANSACTION_TYPES = (
    "SALE",
    "AUTHORIZATION",
    "CAPTURE",
    "REFUND",
    "VOID",
    "FORCE",
    "STR/FWD",
)


class ImpactPreviewMixin:
    """Saving a row first shows what it would do to recent payments.

    A valid POST without `_impact_confirmed` computes `impact_of(row)`; when some of
    the connection's recent payments would be affected, the admin sees the preview
    (counts, examples) and a "Save"/"Save anyway" button that posts the same values
    again, confirmed. With no effect the row saves at once and the message says so.
    """

    impact_template = "admin/mappings/impact_preview.html"

    def impact_of(self, row: Any) -> config_impact.Impact | None:
        raise NotImplementedError

    def impact_of_rows(self, rows: list[Any]) -> config_impact.Impact | None:
        """Several rows edited at once in the list (one at a time by default)."""
        impacts = [self.impact_of(row) for row in rows]
        found = [i for i in impacts if i is not None]
        if not found:
            return None
        return config_impact.Impact(
            checked=max(i.checked for i in found),
            groups=[g for i in found for g in i.groups],
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        """List edits (`list_editable`) are previewed like the change form's."""
        admin_self: Any = self
        if (
            request.method == "POST"
            and "_save" in request.POST
            and "_impact_confirmed" not in request.POST
            and admin_self.list_editable
            and admin_self.has_change_permission(request)
        ):
            formset_class = admin_self.get_changelist_formset(request)
            modified = admin_self._get_list_editable_queryset(
                request, formset_class.get_default_prefix()
            )
            formset = formset_class(request.POST, request.FILES, queryset=modified)
            if formset.is_valid():
                rows = [form.instance for form in formset.forms if form.has_changed()]
                impact = self.impact_of_rows(rows) if rows else None
                if impact is not None and impact.has_changes:
                    label = (
                        str(rows[0])
                        if len(rows) == 1
                        else f"{len(rows)} {admin_self.opts.verbose_name_plural}"
                    )
                    return self._impact_response(request, label, impact)
        return super().changelist_view(request, extra_context)  # type: ignore[misc]

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        admin_self: Any = self
        if request.method == "POST" and "_impact_confirmed" not in request.POST:
            obj = (
                admin_self.get_object(request, unquote(object_id))
                if object_id
                else None
            )
            allowed = (
                admin_self.has_change_permission(request, obj)
                if obj is not None
                else admin_self.has_add_permission(request)
            )
            if allowed and (obj is not None or object_id is None):
                form_class = admin_self.get_form(request, obj, change=obj is not None)
                form = form_class(request.POST, request.FILES, instance=obj)
                if form.is_valid():
                    impact = self.impact_of(form.instance)
                    if impact is not None and impact.has_changes:
                        return self._impact_response(request, form.instance, impact)
                    if impact is not None:
                        request._impact_note = impact  # type: ignore[attr-defined]
        return super().changeform_view(  # type: ignore[misc]
            request, object_id, form_url, extra_context
        )

    def _impact_response(
        self,
        request: HttpRequest,
        row: models.Model | str,
        impact: config_impact.Impact,
    ) -> TemplateResponse:
        admin_self: Any = self
        posted = [
            (key, value)
            for key, values in request.POST.lists()
            if key != "csrfmiddlewaretoken"
            for value in values
        ]
        context = {
            **admin_self.admin_site.each_context(request),
            "title": f"Before saving {row}",
            "opts": admin_self.opts,
            "row": row,
            "impact": impact,
            "posted": posted,
            "action_url": request.get_full_path(),
        }
        return TemplateResponse(request, self.impact_template, context)

    def save_model(
        self, request: HttpRequest, obj: Any, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        impact = getattr(request, "_impact_note", None)
        if impact is not None:
            admin_self: Any = self
            admin_self.message_user(
                request,
                f"Checked against the last {impact.checked} payments of the "
                "connection: none would be affected."
                if impact.checked
                else "The connection has no stored payments yet to check the change "
                "against.",
            )


# A new row gets the next id, so among rows of one priority it is tried last.
NEW_ROW_ID = 2**62


def as_saved(rule: Any) -> Any:
    """A rule of a row not saved yet, with the id it sorts by once saved."""
    return rule if rule.id is not None else dataclasses.replace(rule, id=NEW_ROW_ID)


def connection_url(connection: Connection | None, field: str = "") -> str:
    if connection is None or connection.pk is None:
        return ""
    url = reverse("admin:integrations_connection_change", args=[connection.pk])
    return f"{url}#id_{field}" if field else url


class StatusMapForm(forms.ModelForm):
    """Refuses conditions no PayTrace record can meet, naming the field."""

    class Meta:
        model = StatusMap
        fields = (
            "connection",
            "priority",
            "event_type",
            "transaction_type",
            "status_code_pattern",
            "status_message_pattern",
            "response_code",
            "gateway_status",
            "payment_status",
            "action",
            "is_active",
        )

    def clean_event_type(self) -> str:
        value = self.cleaned_data["event_type"].strip()
        if value and value not in EVENT_TYPES:
            raise forms.ValidationError(
                f"{value} is not an event PayTrace sends. Use one of "
                f"{', '.join(EVENT_TYPES)}, or leave it blank for any."
            )
        return value

    def clean_transaction_type(self) -> str:
        value = self.cleaned_data["transaction_type"].strip().upper()
        if value and value not in TRANSACTION_TYPES:
            raise forms.ValidationError(
                f"{value} is not a PayTrace transaction type. Use one of "
                f"{', '.join(TRANSACTION_TYPES)}, or leave it blank for any."
            )
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        connection = data.get("connection")
        if connection is not None and connection.kind == Connection.Kind.SAGEPRO:
            self.add_error(
                "connection",
                "Status maps belong to the connection payments come from (PayTrace), "
                "not to Sage Pro.",
            )
        if data.get("action") == StatusMap.Action.POST_RECEIPT and data.get(
            "payment_status"
        ) not in (None, "Paid"):
            self.add_error(
                "payment_status",
                f"A {data.get('payment_status')} payment cannot post a cash receipt; "
                "use Paid, or another action.",
            )
        return data


@admin.register(StatusMap)
class StatusMapAdmin(ImpactPreviewMixin, admin.ModelAdmin):
    form = StatusMapForm
    # The conditions and the outcome are in "Rule" (one wrapped column), so the list
    # fits the page with its editable columns in view.
    list_display = (
        "description",
        "connection",
        "priority",
        "action",
        "is_active",
    )
    # Shown only to users who may change status maps (Django drops them otherwise).
    list_editable = ("priority", "action", "is_active")
    list_filter = ("connection", "action", "payment_status", "is_active")
    list_select_related = ("connection",)
    ordering = ("connection", "priority", "id")
    search_fields = (
        "event_type",
        "transaction_type",
        "status_code_pattern",
        "status_message_pattern",
    )

    change_list_template = "admin/mappings/statusmap/change_list.html"
    Media = PortalMedia

    @admin.display(description="Rule")
    def description(self, obj: StatusMap) -> str:
        return obj.as_rule().describe()

    def impact_of(self, row: StatusMap) -> config_impact.Impact:
        return self.impact_of_rows([row])

    def impact_of_rows(self, rows: list[StatusMap]) -> config_impact.Impact:
        """The rows as they would be saved, together, against the map as stored."""
        impact = config_impact.Impact(checked=0)
        for connection in {row.connection for row in rows}:
            edited = [row for row in rows if row.connection == connection]
            before = StatusMap.rules_for(connection)
            kept = [r for r in before if r.id not in {row.pk for row in edited}]
            after = kept + [as_saved(row.as_rule()) for row in edited if row.is_active]
            samples = config_impact.recent_samples(connection)
            found = config_impact.status_impact(samples, before, after)
            impact.checked = max(impact.checked, found.checked)
            impact.groups += found.groups
        return impact


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
            "purpose",
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A form (or a script) that does not say which document the rule is for means
        # receipts, as every rule did before rules had a purpose.
        self.fields["purpose"].required = False

    def clean_purpose(self) -> str:
        return self.cleaned_data.get("purpose") or gl.Purpose.RECEIPT

    def clean_card_brands(self) -> str:
        value = self.cleaned_data["card_brands"]
        known = set(gl.BRAND_ALIASES.values())
        unknown = [
            b.strip()
            for b in value.split(",")
            if b.strip() and gl.normalize_card_brand(b) not in known
        ]
        if unknown:
            raise forms.ValidationError(
                f"{', '.join(unknown)}: not a card brand the rules know. Use "
                f"{', '.join(sorted(known))}."
            )
        return value

    def clean_transaction_types(self) -> str:
        value = self.cleaned_data["transaction_types"]
        unknown = [
            t.strip()
            for t in value.split(",")
            if t.strip() and t.strip().upper() not in TRANSACTION_TYPES
        ]
        if unknown:
            raise forms.ValidationError(
                f"{', '.join(unknown)}: not a PayTrace transaction type. Use "
                f"{', '.join(TRANSACTION_TYPES)}."
            )
        return value

    def clean_currency(self) -> str:
        value = self.cleaned_data["currency"].strip().upper()
        if value and not (len(value) == 3 and value.isalpha()):
            raise forms.ValidationError(
                f"{value} is not a currency code: three letters, e.g. USD."
            )
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        low, high = data.get("amount_min"), data.get("amount_max")
        if low is not None and high is not None and low > high:
            self.add_error(
                "amount_max",
                f"The largest amount ({high}) is below the smallest ({low}): no "
                "payment would match.",
            )
        account = (data.get("account") or "").strip()
        if account and (problem := gl.account_format_problem(account)):
            self.add_error("account", f"{problem}.")
            return data
        problem, self.chart_warning = chart_check(
            account, sage_connection_for(data.get("connection")), "the rule"
        )
        if problem:
            self.add_error("account", problem)
        return data


def chart_check(
    account: str, sage_conn: Connection | None, what: str
) -> tuple[str, str]:
    """Ask Sage Pro's chart (the mirror, then Sage Pro itself before refusing) about
    `account`: (refusal, warning); both "" when it is fine or cannot be checked."""
    if not account or sage_conn is None:
        return "", ""
    reader = sage_conn.mirror()
    try:
        refusal = gl.account_problem(account, gl.chart_from(reader.list_gl_accounts()))
        if refusal and not reader.fresh:  # the mirror may be behind Sage Pro
            refusal = gl.account_problem(
                account, gl.chart_from(reader.refresh_gl_accounts())
            )
    except ConnectorError as exc:
        return "", (
            f"Sage Pro could not be asked whether {account} exists ({exc}); "
            f"{what} was saved unchecked and is checked again before posting."
        )
    return (f"{refusal[1]} ({refusal[0]})." if refusal else ""), ""


@admin.register(GlRule)
class GlRuleAdmin(ImpactPreviewMixin, admin.ModelAdmin):
    form = GlRuleForm
    list_display = (
        "name",
        "connection",
        "priority",
        "purpose",
        "account",
        "conditions",
        "is_active",
    )
    list_filter = ("connection", "purpose", "is_active")
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
            ("≥", _money(obj.amount_min, obj.currency)),
            ("≤", _money(obj.amount_max, obj.currency)),
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

    def impact_of(self, row: GlRule) -> config_impact.Impact:
        """The rule as it would be saved against the connection's rules as stored."""
        connection = row.connection
        before = GlRule.rules_for(connection)
        others = [r for r in before if r.id != row.pk]
        # Only receipt rules change what the last payments' receipts are booked to.
        counts = row.is_active and row.purpose == gl.Purpose.RECEIPT
        after = [*others, as_saved(row.as_rule())] if counts else others
        sage_conn = sage_connection_for(connection)
        suspense = connection.suspense_account or (
            sage_conn.suspense_account if sage_conn else ""
        )
        samples = config_impact.recent_samples(connection)
        return config_impact.gl_impact(
            samples,
            gl.sort_rules(before),
            gl.sort_rules(after),
            suspense,
            connection_url(connection, "suspense_account"),
        )

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


def _money(amount: Decimal | None, currency: str) -> str | None:
    return None if amount is None else format_money(amount, currency or "USD")


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
