"""The finance UI: connections, what came in, what went out, and the review queue.

Secrets are write-only everywhere: forms take a new value in an empty password input
and pages only ever say whether one is "set". Transactions, events and deliveries are
records of what happened and are read-only for everyone; reviewers act on postings and
review items through actions that call `integrations.processing`.
"""

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import OuterRef, QuerySet, Subquery
from django.forms.renderers import BaseRenderer
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from integrations import documents, processing
from integrations.connectors.base import ConnectorError
from integrations.models import (
    Connection,
    Event,
    InboundDelivery,
    PaymentTransaction,
    Posting,
    ReviewDecision,
    ReviewItem,
    TransactionHistory,
    WebhookSecret,
)
from mappings import fields as fm
from mappings import matching

admin.site.site_header = "Payments portal"
admin.site.site_title = "Payments portal"
admin.site.index_title = "PayTrace payments and Sage Pro receipts"
# The lists are wide (a transaction has ten columns); the breadcrumbs do the navigating.
admin.site.enable_nav_sidebar = False

KEEP_CURRENT_HELP = "Leave blank to keep the current value."


class PortalMedia:
    css = {"all": ["portal/admin.css"]}


def _pre(value: object) -> SafeString:
    text = (
        value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
    )
    return format_html('<pre class="portal-pre">{}</pre>', text)


def _short(text: str, length: int = 80) -> str:
    return Truncator(text).chars(length)


def _change_link(obj: object, label: object) -> SafeString:
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label)


def _short_time(value: datetime | None) -> str | None:
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M}" if value else None


def format_age(since: datetime, now: datetime | None = None) -> str:
    """Say how long ago `since` was, roughly: "12 min", "3 h", "4 d"."""
    seconds = max(0, int(((now or timezone.now()) - since).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record of something that happened: viewable with the view permission only."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# Connections ---------------------------------------------------------------------------


class SecretStatusWidget(forms.Widget):
    """Stands in for a stored secret: says "set" or "not set", never the value."""

    def __init__(self, is_set: bool) -> None:
        super().__init__()
        self.is_set = is_set

    def render(
        self,
        name: str,
        value: object,
        attrs: dict | None = None,
        renderer: BaseRenderer | None = None,
    ) -> SafeString:
        return format_html(
            '<span class="portal-secret-status">{}</span>',
            "set" if self.is_set else "not set",
        )


def _write_only_input() -> forms.PasswordInput:
    return forms.PasswordInput(
        render_value=False, attrs={"autocomplete": "new-password"}
    )


def _formfield(db_field: models.Field, **kwargs: object) -> forms.Field | None:
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ConnectionForm(forms.ModelForm):
    password = forms.CharField(
        label="Password / API key",
        required=False,
        strip=False,
        widget=_write_only_input(),
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
            "sagepro",
            "payment_method",
            "time_zone",
        ]
        formfield_callback = _formfield

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # The form never carries the stored value, so an untouched field is unchanged.
        self.initial["password"] = ""

    def clean_password(self) -> str:
        return self.cleaned_data["password"] or self.instance.password


class WebhookSecretForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=_write_only_input(),
        help_text="Entered once; never shown again.",
    )

    class Meta:
        model = WebhookSecret
        fields = ["label", "secret", "is_active", "expires_at"]

    def __init__(self, *args: object, **kwargs: object) -> None:
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
        # Imported here so this form's change stays within the class.
        from integrations.inbound import secret_problem

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

    def get_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        secret = (
            "secret" if self.has_change_permission(request, obj) else "secret_status"
        )
        return ["label", secret, "is_active", "expires_at", "created_at"]

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
        self, db_field: models.Field, request: HttpRequest, **kwargs: object
    ) -> forms.Field | None:
        if isinstance(db_field, models.URLField):
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="Password / API key stored")
    def password_status(self, obj: Connection) -> str:
        return "set" if obj.password else "not set"


# What came in ----------------------------------------------------------------------------


@admin.register(InboundDelivery)
class InboundDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "connection_slug",
        "kind",
        "signature_result",
        "failure_reason",
        "response_status",
        "contains_card_data",
        "event_link",
    )
    list_filter = ("signature_result", "failure_reason", "kind", "contains_card_data")
    search_fields = ("webhook_id", "connection_slug")
    list_select_related = ("event",)
    fields = (
        "received_at",
        "connection",
        "connection_slug",
        "kind",
        "webhook_id",
        "remote_addr",
        "signature_result",
        "failure_reason",
        "failure_detail",
        "response_status",
        "contains_card_data",
        "event",
        "body_size",
        "headers_pretty",
        "body_pretty",
    )
    readonly_fields = fields
    Media = PortalMedia

    @admin.display(description="Event")
    def event_link(self, obj: InboundDelivery) -> SafeString | None:
        return _change_link(obj.event, obj.event) if obj.event else None

    @admin.display(description="Headers (redacted)")
    def headers_pretty(self, obj: InboundDelivery) -> SafeString:
        return _pre(obj.headers)

    @admin.display(description="Body (card data masked)")
    def body_pretty(self, obj: InboundDelivery) -> SafeString:
        return _pre(obj.body)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "type",
        "event_id",
        "transaction_id",
        "state",
        "attempts",
        "received_at",
        "last_error_short",
    )
    list_filter = ("state", "type", "source")
    search_fields = ("event_id", "transaction_id")
    fields = (
        "connection",
        "event_id",
        "source",
        "type",
        "occurred_at",
        "transaction_id",
        "state",
        "attempts",
        "received_at",
        "started_at",
        "processed_at",
        "outcome",
        "contains_card_data",
        "last_error",
        "traceback_pretty",
        "payload_pretty",
    )
    readonly_fields = fields
    Media = PortalMedia

    @admin.display(description="Last error", ordering="last_error")
    def last_error_short(self, obj: Event) -> str:
        return _short(obj.last_error)

    @admin.display(description="Traceback")
    def traceback_pretty(self, obj: Event) -> SafeString | None:
        return _pre(obj.last_traceback) if obj.last_traceback else None

    @admin.display(description="Payload (card data masked)")
    def payload_pretty(self, obj: Event) -> SafeString:
        return _pre(obj.payload)


# Transactions and what went out ------------------------------------------------------------


class TransactionHistoryInline(ReadOnlyInline):
    model = TransactionHistory
    fields = ("at", "action", "detail", "changes", "event", "user")
    readonly_fields = fields
    ordering = ("at", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("event", "user")


class PostingInline(ReadOnlyInline):
    model = Posting
    fields = (
        "kind",
        "state",
        "attempts",
        "next_attempt_at",
        "document_number",
        "posted_at",
        "last_error",
    )
    readonly_fields = fields
    show_change_link = True


class ReviewItemInline(ReadOnlyInline):
    model = ReviewItem
    fields = ("kind", "state", "reason", "created_at", "assigned_to", "resolved_at")
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("assigned_to")


def _cash_receipt(field: str) -> Subquery:
    postings = Posting.objects.filter(
        transaction=OuterRef("pk"), kind=Posting.Kind.CASH_RECEIPT
    ).values(field)
    return Subquery(postings[:1])


@admin.register(PaymentTransaction)
class PaymentTransactionAdmin(ReadOnlyAdmin):
    list_display = (
        "transaction_id",
        "amount_display",
        "invoice",
        "gateway",
        "mapped_status",
        "posting_state",
        "document_number",
        "card",
        "created",
        "settled",
    )
    list_filter = ("mapped_status", "gateway_status")
    search_fields = ("transaction_id", "invoice_reference", "customer_reference")
    fieldsets = [
        (
            "Payment",
            {
                "fields": [
                    "transaction_id",
                    "connection",
                    "transaction_type",
                    "amount_display",
                    "tax_amount",
                    "invoice_reference",
                    "customer_reference",
                    "customer_po",
                    "card",
                    "card_brand",
                    "approval_code",
                    "channel",
                    "batch_number",
                ]
            },
        ),
        (
            "Status",
            {
                "fields": [
                    "gateway_status",
                    "status_code",
                    "status_message",
                    "mapped_status",
                    "created_at",
                    "settled_at",
                    "status_changed_at",
                    "first_seen_at",
                    "updated_at",
                ]
            },
        ),
        (
            "PayTrace record",
            {"classes": ["collapse"], "fields": ["source_record_pretty"]},
        ),
    ]
    readonly_fields = [f for _, options in fieldsets for f in options["fields"]]
    inlines = [TransactionHistoryInline, PostingInline, ReviewItemInline]
    Media = PortalMedia

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                receipt_state=_cash_receipt("state"),
                receipt_number=_cash_receipt("document_number"),
            )
        )

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: PaymentTransaction) -> str:
        return f"{obj.amount} {obj.currency}"

    @admin.display(description="Invoice", ordering="invoice_reference")
    def invoice(self, obj: PaymentTransaction) -> str:
        return obj.invoice_reference

    @admin.display(description="Gateway", ordering="gateway_status")
    def gateway(self, obj: PaymentTransaction) -> str:
        return obj.get_gateway_status_display()

    @admin.display(description="Created (UTC)", ordering="created_at")
    def created(self, obj: PaymentTransaction) -> str | None:
        return _short_time(obj.created_at)

    @admin.display(description="Settled (UTC)", ordering="settled_at")
    def settled(self, obj: PaymentTransaction) -> str | None:
        return _short_time(obj.settled_at)

    @admin.display(description="Card")
    def card(self, obj: PaymentTransaction) -> str:
        return f"•••• {obj.card_last4}" if obj.card_last4 else ""

    @admin.display(description="Posting", ordering="receipt_state")
    def posting_state(self, obj: PaymentTransaction) -> str | None:
        if not obj.receipt_state:
            return None
        return Posting.State(obj.receipt_state).label

    @admin.display(description="Sage Pro document", ordering="receipt_number")
    def document_number(self, obj: PaymentTransaction) -> str | None:
        return obj.receipt_number or None

    @admin.display(description="PayTrace record (card data masked)")
    def source_record_pretty(self, obj: PaymentTransaction) -> SafeString:
        return _pre(obj.source_record)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.preview_view)
        return [
            path(
                "<path:object_id>/preview/",
                view,
                name="integrations_paymenttransaction_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The exact Sage Pro document the transaction would produce; sends nothing."""
        txn = self.get_object(request, object_id)
        if txn is None or not self.has_view_permission(request, txn):
            raise Http404(f"No transaction {object_id}")
        posting = txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first()
        overrides = posting.overrides if posting else None
        try:
            document = documents.preview_cash_receipt(txn, overrides)
            checked = True
        except ConnectorError as exc:
            document = documents.build_cash_receipt(
                txn, None, overrides=overrides, explain=True
            )
            document.notes.insert(0, f"Sage Pro did not answer: {exc}")
            checked = False
        origins = {use.target: use.describe() for use in document.mappings}
        origins["gl_account"] = (
            f"GL rule #{document.gl_rule_id}"
            if document.gl_rule_id
            else "suspense account / no GL rules (see below)"
        )
        for name in overrides or {}:
            origins[name] = f"corrected by a reviewer ({origins.get(name, '')})"
        context = {
            **self.admin_site.each_context(request),
            "title": "Preview the Sage Pro document",
            "opts": self.opts,
            "original": txn,
            "posting": posting,
            "document": document,
            "checked": checked,
            "payload_json": json.dumps(document.payload, indent=2),
            "mapping_rows": [
                {
                    "target": name,
                    "value": fm.display_value(document.values.get(name)),
                    "origin": origins.get(name, ""),
                }
                for name in documents.TARGET_FIELDS
            ],
        }
        return TemplateResponse(
            request, "admin/integrations/paymenttransaction/preview.html", context
        )


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = (
        "transaction_id",
        "kind",
        "state",
        "attempts",
        "next_attempt_at",
        "document_number",
        "last_error_short",
    )
    list_filter = ("state", "kind")
    search_fields = ("transaction__transaction_id", "document_number")
    list_select_related = ("transaction",)
    actions = ["retry_now"]
    fields = (
        "transaction",
        "sagepro",
        "kind",
        "state",
        "attempts",
        "next_attempt_at",
        "started_at",
        "posted_at",
        "document_number",
        "unapplied_amount",
        "idempotency_key",
        "last_error_code",
        "last_error",
        "payload_pretty",
        "response_pretty",
    )
    readonly_fields = fields
    Media = PortalMedia

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.change_posting")

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        postings = list(queryset)
        queued = sum(1 for p in postings if processing.retry_posting(p, request.user))
        skipped = len(postings) - queued
        self.message_user(
            request,
            f"Queued {_plural(queued, 'posting')} to be sent again; skipped {skipped} "
            "already posted or in progress.",
            messages.SUCCESS if queued else messages.WARNING,
        )

    @admin.display(description="Transaction", ordering="transaction__transaction_id")
    def transaction_id(self, obj: Posting) -> str:
        return obj.transaction.transaction_id

    @admin.display(description="Last error", ordering="last_error")
    def last_error_short(self, obj: Posting) -> str:
        return _short(obj.last_error)

    @admin.display(description="Document as sent")
    def payload_pretty(self, obj: Posting) -> SafeString:
        return _pre(obj.payload)

    @admin.display(description="Sage Pro's reply")
    def response_pretty(self, obj: Posting) -> SafeString:
        return _pre(obj.response)


# The review queue ------------------------------------------------------------------------


class ReviewStateFilter(admin.SimpleListFilter):
    """Filter by state, showing open items unless asked otherwise."""

    title = "state"
    parameter_name = "state"
    default = ReviewItem.State.OPEN
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [*ReviewItem.State.choices, (self.ALL, "All")]

    def choices(self, changelist: ChangeList) -> Iterator[dict]:
        current = self.value() or self.default
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: value}
                ),
                "display": label,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value() or self.default
        return queryset if value == self.ALL else queryset.filter(state=value)


# What a reviewer is asked to do, per kind: a column in the queue, a line on the page.
SUGGESTED_ACTIONS = {
    ReviewItem.Kind.UNMATCHED: (
        "Apply to the best candidate invoice, split across invoices, "
        "post on account, or dismiss"
    ),
    ReviewItem.Kind.OVERPAYMENT: (
        "Nothing to post: confirm the unapplied cash (dismiss with a note), "
        "or apply the rest to another invoice in Sage Pro"
    ),
    ReviewItem.Kind.UNDERPAYMENT: (
        "Apply anyway (the invoice stays open for the rest), or dismiss"
    ),
    ReviewItem.Kind.POSSIBLE_DUPLICATE: (
        "Mark as duplicate (refund at the gateway), or dismiss as genuine"
    ),
    ReviewItem.Kind.VALIDATION: "Correct the values and retry",
    ReviewItem.Kind.DEAD: "Retry once Sage Pro is reachable",
    ReviewItem.Kind.UNMAPPED_STATUS: "Add the status to the status map, then retry",
    ReviewItem.Kind.CARD_DATA: "Tell the sender to stop sending card data; dismiss",
    ReviewItem.Kind.REVERSAL: "Reverse the receipt in Sage Pro; dismiss",
}
# Kinds about where the money goes: their page lists candidate invoices.
MONEY_KINDS = {
    ReviewItem.Kind.UNMATCHED,
    ReviewItem.Kind.UNDERPAYMENT,
    ReviewItem.Kind.OVERPAYMENT,
    ReviewItem.Kind.POSSIBLE_DUPLICATE,
}
RETRY_KINDS = {
    ReviewItem.Kind.VALIDATION,
    ReviewItem.Kind.DEAD,
    ReviewItem.Kind.UNMAPPED_STATUS,
}
CANDIDATE_PARTS = [
    ("reference", "Reference"),
    ("amount", "Amount"),
    ("customer", "Customer"),
    ("date", "Date"),
    ("history", "History"),
]


class ApplyToInvoiceForm(forms.Form):
    invno = forms.CharField(
        label="Sage Pro invoice number",
        max_length=20,
        help_text="The open invoice this payment pays.",
    )


class DismissForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why nothing needs to be posted; kept with the item's decisions.",
    )


class DuplicateForm(forms.Form):
    note = forms.CharField(
        label="Note",
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Optional: which payment it duplicates, what happens to the money.",
    )


class NoteForm(forms.Form):
    note = forms.CharField(
        label="Note", max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )


class OnAccountForm(forms.Form):
    custno = forms.CharField(
        label="Sage Pro customer",
        required=False,
        max_length=20,
        help_text="Blank: the customer the payment names.",
    )


class SplitForm(forms.Form):
    """Rows of invoice number and amount; a blank amount takes what is left."""

    ROWS = 4

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        for n in range(1, self.ROWS + 1):
            self.fields[f"invno_{n}"] = forms.CharField(
                label=f"Invoice {n}", required=False, max_length=20
            )
            self.fields[f"amount_{n}"] = forms.DecimalField(
                label=f"Amount {n}",
                required=False,
                max_digits=14,
                decimal_places=2,
                min_value=Decimal("0.01"),
            )

    def rows(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        return [
            (self[f"invno_{n}"], self[f"amount_{n}"]) for n in range(1, self.ROWS + 1)
        ]

    def clean(self) -> dict:
        data = super().clean()
        allocations = []
        for n in range(1, self.ROWS + 1):
            invno = (data.get(f"invno_{n}") or "").strip()
            amount = data.get(f"amount_{n}")
            if amount is not None and not invno:
                raise forms.ValidationError(f"Row {n} has an amount but no invoice.")
            if invno:
                allocations.append((invno, amount))
        if not allocations:
            raise forms.ValidationError("Name at least one invoice.")
        data["allocations"] = allocations
        return data


# The buttons and small forms on an item's page; each posts to its own URL.
DECISION_FORMS: dict[str, type[forms.Form]] = {
    "apply": ApplyToInvoiceForm,
    "split": SplitForm,
    "on_account": OnAccountForm,
    "duplicate": DuplicateForm,
    "note": NoteForm,
    "dismiss": DismissForm,
    "retry": forms.Form,
}


class CorrectValuesForm(forms.Form):
    """The fields of the cash receipt, filled with the current values.

    Only `documents.CORRECTABLE_FIELDS` can be edited. The amount, customer, invoice
    and reference are shown read-only, never taken from the request, and a request
    that carries one anyway is refused with the field named.
    """

    def __init__(self, *args: object, values: dict, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        for spec in fm.CASH_RECEIPT_SPECS:
            reason = documents.PROTECTED_FIELDS.get(spec.name)
            self.fields[spec.name] = forms.CharField(
                label=spec.name,
                required=False,
                initial=fm.display_value(values.get(spec.name)),
                max_length=100,
                disabled=spec.name not in documents.CORRECTABLE_FIELDS,
                help_text=f"Not correctable: {reason}." if reason else spec.describe(),
            )

    def clean(self) -> dict:
        data = super().clean()
        for name in self.fields:
            if name not in documents.CORRECTABLE_FIELDS and name in self.data:
                reason = documents.PROTECTED_FIELDS.get(name, "it is not correctable")
                self.add_error(name, f"cannot be corrected here: {reason}.")
        return data

    def corrections(self) -> dict[str, str]:
        """The correctable fields the reviewer changed, as text (one left out of the
        request is unchanged, not blanked)."""
        return {
            name: self.cleaned_data[name].strip()
            for name in documents.CORRECTABLE_FIELDS
            if name in self.data
            and self.cleaned_data[name].strip() != self[name].initial.strip()
        }


def _form_problem(form: forms.Form) -> str:
    problems = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        problems += [f"{label}: {e}" if label else str(e) for e in errors]
    return " ".join(problems)


def describe_decision(decision: ReviewDecision) -> str:
    """A decision's detail in words, for the item's page."""
    detail = decision.detail or {}
    if decision.action == "apply" and detail.get("allocations"):
        applied = ", ".join(
            f"{inv} ({amount})" for inv, amount in detail["allocations"]
        )
        return f"Applied to {applied}"
    if decision.action == "on_account":
        return f"Posted on account of customer {detail.get('custno', '?')}"
    if decision.action == "mark_duplicate":
        return "Marked as a duplicate" + (
            f": {detail['note']}" if detail.get("note") else ""
        )
    if decision.action == "note":
        return detail.get("note", "")
    if decision.action == "dismiss":
        return f"Dismissed: {detail.get('reason', '')}"
    if decision.action == "retry":
        what = detail.get("what") or f"posting {detail.get('posting', '?')}"
        return f"Retried {what}"
    if decision.action == "correct":
        fields = ", ".join(detail.get("overrides") or {}) or "nothing"
        return f"Corrected {fields} and retried"
    return json.dumps(detail, sort_keys=True, default=str)


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = (
        "kind",
        "transaction_link",
        "amount",
        "invoice_reference",
        "reason_short",
        "age",
        "state",
        "assigned_to",
        "suggested_action",
    )
    list_filter = (ReviewStateFilter, "kind")
    search_fields = (
        "transaction__transaction_id",
        "transaction__invoice_reference",
        "reason",
    )
    list_select_related = ("transaction", "assigned_to")
    actions = [
        "apply_to_invoice",
        "post_on_account",
        "mark_duplicate",
        "correct_and_retry",
        "retry",
        "dismiss",
        "assign_to_me",
    ]
    fieldsets = [
        ("Assignment", {"fields": ["assigned_to"]}),
        (
            "Record",
            {
                "classes": ["collapse"],
                "fields": [
                    "kind",
                    "state",
                    "reason",
                    "error_code",
                    "posting",
                    "event",
                    "created_at",
                    "resolved_at",
                    "resolved_by",
                    "resolution",
                ],
            },
        ),
    ]
    readonly_fields = tuple(fieldsets[1][1]["fields"])
    change_form_template = "admin/integrations/reviewitem/change_form.html"
    Media = PortalMedia

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # The pipeline opens items.

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # Dismiss instead, so the decision is recorded.

    def formfield_for_dbfield(
        self, db_field: models.Field, request: HttpRequest, **kwargs: object
    ) -> forms.Field | None:
        if db_field.name != "assigned_to":
            return super().formfield_for_dbfield(db_field, request, **kwargs)
        # A plain choice of colleagues, without the add/change/delete-user buttons.
        staff = db_field.related_model.objects.filter(is_staff=True, is_active=True)
        return db_field.formfield(queryset=staff, **kwargs)

    # The item's page ----------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        decide = path(
            "<path:object_id>/decide/<slug:decision>/",
            self.admin_site.admin_view(self.decide_view),
            name="integrations_reviewitem_decide",
        )
        return [decide, *super().get_urls()]

    def decide_view(
        self, request: HttpRequest, object_id: str, decision: str
    ) -> HttpResponse:
        """Carry out one button or small form of the item's page, then go back to it."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        item = self.get_object(request, unquote(object_id))
        if item is None or decision not in DECISION_FORMS:
            raise Http404
        if not self.has_change_permission(request, item):
            raise PermissionDenied
        form = DECISION_FORMS[decision](request.POST)
        if not form.is_valid():
            self.message_user(request, _form_problem(form), messages.ERROR)
        else:
            try:
                done = self._carry_out(decision, item, form.cleaned_data, request.user)
                self.message_user(request, done, messages.SUCCESS)
            except (ValueError, ConnectorError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(
            reverse("admin:integrations_reviewitem_change", args=[item.pk])
        )

    def _carry_out(
        self, decision: str, item: ReviewItem, data: dict, user: object
    ) -> str:
        """Call the processing function behind a decision; say what it did."""
        if decision == "note":
            processing.annotate_review_item(item, data["note"], user)
            return "Note added."
        if decision == "apply":
            processing.apply_review_item(item, data["invno"], user)
        elif decision == "split":
            processing.apply_review_item_split(item, data["allocations"], user)
        elif decision == "on_account":
            processing.post_on_account(item, user, data["custno"])
        elif decision == "duplicate":
            processing.mark_duplicate(item, user, data["note"])
        elif decision == "dismiss":
            processing.dismiss_review_item(item, data["reason"], user)
        elif decision == "retry":
            processing.retry_review_item(item, user)
        item.refresh_from_db()
        done = f"{self._label(item)}: {item.resolution}."
        if decision in ("apply", "split", "on_account"):
            done += " The receipt is queued for Sage Pro."
        return done

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ReviewItem | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(self._review_context(request, obj))
            # The page is for deciding; the form below only (re)assigns the item.
            context["title"] = "Review item"
            context["show_save_and_continue"] = False
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _review_context(self, request: HttpRequest, item: ReviewItem) -> dict:
        """The panels above the form: payment, suggestion, candidates, decisions."""
        txn = item.transaction
        is_open = item.state == ReviewItem.State.OPEN
        receipt = (
            txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first() if txn else None
        )
        candidates, unavailable = [], ""
        if txn is not None and is_open and item.kind in MONEY_KINDS:
            try:
                candidates = processing.invoice_candidates(txn)
            except ConnectorError as exc:
                unavailable = str(exc)
        decide_url = reverse(
            "admin:integrations_reviewitem_decide", args=[item.pk, "DECISION"]
        )
        return {
            "item": item,
            "txn": txn,
            "age": format_age(item.created_at),
            "suggestion": SUGGESTED_ACTIONS.get(item.kind, ""),
            "receipt": receipt,
            "show_candidates": txn is not None and is_open and item.kind in MONEY_KINDS,
            "candidates": [self._candidate_row(c) for c in candidates],
            "candidates_unavailable": unavailable,
            # Money is placed once: after a receipt is posted, only Sage Pro can move it.
            "can_place": txn is not None
            and (receipt is None or receipt.state != Posting.State.POSTED),
            "can_act": is_open and self.has_change_permission(request, item),
            "can_note": self.has_change_permission(request, item),
            "can_retry": item.kind in RETRY_KINDS,
            "can_correct": item.kind == ReviewItem.Kind.VALIDATION
            and item.posting_id is not None,
            "is_money_kind": item.kind in MONEY_KINDS,
            "decisions": [
                (d, describe_decision(d)) for d in item.decisions.select_related("user")
            ],
            "split_form": SplitForm(auto_id="id_split_%s"),
            "on_account_form": OnAccountForm(
                initial={"custno": txn.customer_reference if txn else ""}
            ),
            "duplicate_form": DuplicateForm(auto_id="id_duplicate_%s"),
            "dismiss_form": DismissForm(auto_id="id_dismiss_%s"),
            "note_form": NoteForm(auto_id="id_add_%s"),
            "decide_urls": {
                name: decide_url.replace("DECISION", name) for name in DECISION_FORMS
            },
            "changelist_url": reverse("admin:integrations_reviewitem_changelist"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }

    @staticmethod
    def _candidate_row(candidate: matching.Candidate) -> dict:
        parts = [
            {
                "name": name,
                "label": label,
                "value": f"{candidate.parts.get(name, 0):.2f}",
                "percent": round(candidate.parts.get(name, 0) * 100),
            }
            for name, label in CANDIDATE_PARTS
        ]
        return {
            "invoice": candidate.invoice,
            "score": f"{candidate.score:.2f}",
            "percent": round(candidate.score * 100),
            "parts": parts,
            "reference_match": candidate.reference_match,
            "amount_match": candidate.amount_match,
            "reasons": candidate.reasons,
        }

    # Bulk actions --------------------------------------------------------------------

    @admin.action(description="Apply to an invoice…", permissions=["change"])
    def apply_to_invoice(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        form = ApplyToInvoiceForm(request.POST if "confirm" in request.POST else None)
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                form,
                action="apply_to_invoice",
                title="Apply to an invoice",
                submit="Apply",
                intro="Apply these payments in Sage Pro to the invoice number below.",
            )
        invno = form.cleaned_data["invno"]
        applied = self._each(
            request,
            queryset,
            lambda item: processing.apply_review_item(item, invno, request.user),
        )
        if applied:
            self.message_user(
                request, f"Applied {_plural(applied, 'payment')} to invoice {invno}."
            )
        return None

    @admin.action(
        description="Post on account (each to its payment's customer)",
        permissions=["change"],
    )
    def post_on_account(self, request: HttpRequest, queryset: QuerySet) -> None:
        items = list(queryset.select_related("transaction"))
        named = [
            i
            for i in items
            if i.transaction is not None and i.transaction.customer_reference
        ]
        nameless = [self._label(i) for i in items if i not in named]
        posted = self._each(
            request, named, lambda item: processing.post_on_account(item, request.user)
        )
        if posted:
            self.message_user(
                request,
                f"Posted {_plural(posted, 'payment')} on account as unapplied cash.",
            )
        if nameless:
            self.message_user(
                request,
                f"Not posted, the payment names no customer: {', '.join(nameless)}. "
                "Post these from the item's page with a customer number.",
                messages.WARNING,
            )

    @admin.action(description="Mark as duplicate…", permissions=["change"])
    def mark_duplicate(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        form = DuplicateForm(request.POST if "confirm" in request.POST else None)
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                form,
                action="mark_duplicate",
                title="Mark as duplicate",
                submit="Mark as duplicate",
                intro=(
                    "Record that these payments duplicate others. Nothing more is "
                    "posted for them; unapplied cash already booked stays for the "
                    "refund."
                ),
            )
        note = form.cleaned_data["note"]
        marked = self._each(
            request,
            queryset,
            lambda item: processing.mark_duplicate(item, request.user, note),
        )
        if marked:
            self.message_user(
                request, f"Marked {_plural(marked, 'payment')} as duplicate."
            )
        return None

    @admin.action(description="Correct values and retry…", permissions=["change"])
    def correct_and_retry(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        """Store a reviewer's corrections as the posting's overrides and send again.

        Only the date, method and GL account can be corrected (see CorrectValuesForm);
        overrides are applied last and validated again before anything is sent.
        """
        items = list(queryset.select_related("posting", "transaction")[:2])
        if len(items) != 1 or items[0].posting is None:
            self.message_user(
                request,
                "Choose one review item that has a posting to correct.",
                messages.ERROR,
            )
            return None
        item = items[0]
        posting = item.posting
        current = documents.values_from_payload(posting.payload)
        # Stored overrides of fields no longer correctable are dropped, not kept.
        kept = {
            name: value
            for name, value in (posting.overrides or {}).items()
            if name in documents.CORRECTABLE_FIELDS
        }
        current.update(kept)
        form = CorrectValuesForm(
            request.POST if "confirm" in request.POST else None, values=current
        )
        overrides = kept
        if form.is_valid():
            overrides = kept | form.corrections()
            try:
                documents.check_overrides(overrides, posting.transaction)
            except documents.OverrideError as exc:
                form.add_error(None, f"Nothing was saved or sent: {exc}")
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                form,
                action="correct_and_retry",
                title="Correct values and retry",
                submit="Save and retry",
                intro=(
                    "Correct the fields Sage Pro would refuse. The corrected values "
                    "are checked again before the receipt is sent. The amount, "
                    "customer, invoice and reference are the payment's and cannot "
                    "be corrected here."
                ),
            )
        Posting.objects.filter(pk=posting.pk).update(overrides=overrides)
        posting.overrides = overrides
        ReviewDecision.objects.create(
            item=item,
            user=request.user,
            action="correct",
            detail={"overrides": overrides, "posting": posting.pk},
        )
        if processing.retry_posting(posting, request.user):
            self.message_user(
                request,
                f"{self._label(item)}: corrected {', '.join(overrides) or 'nothing'}; "
                "queued to send again.",
            )
        else:
            self.message_user(
                request,
                f"{self._label(item)}: the posting is already posted or being sent.",
                messages.ERROR,
            )
        return None

    @admin.action(description="Dismiss…", permissions=["change"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = DismissForm(request.POST if "confirm" in request.POST else None)
        if not form.is_valid():
            return self._action_page(
                request,
                queryset,
                form,
                action="dismiss",
                title="Dismiss review items",
                submit="Dismiss",
                intro="Close these items without posting anything.",
            )
        reason = form.cleaned_data["reason"]
        dismissed = self._each(
            request,
            queryset,
            lambda item: processing.dismiss_review_item(item, reason, request.user),
        )
        if dismissed:
            self.message_user(
                request, f"Dismissed {_plural(dismissed, 'review item')}."
            )
        return None

    @admin.action(
        description="Retry (re-send the posting or reprocess the event)",
        permissions=["change"],
    )
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        retried = self._each(
            request,
            queryset,
            lambda item: processing.retry_review_item(item, request.user),
        )
        if retried:
            self.message_user(
                request, f"Queued {_plural(retried, 'review item')} for retry."
            )

    def _each(
        self,
        request: HttpRequest,
        items: Iterable[ReviewItem],
        act: Callable[[ReviewItem], object],
    ) -> int:
        """Run one decision per item; report each refusal by item; count the rest."""
        done = 0
        for item in items:
            try:
                act(item)
                done += 1
            except ValueError as exc:
                self.message_user(
                    request, f"{self._label(item)}: {exc}", messages.ERROR
                )
        return done

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.update(assigned_to=request.user)
        self.message_user(request, f"Assigned {_plural(count, 'review item')} to you.")

    def _action_page(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        form: forms.Form,
        *,
        action: str,
        title: str,
        submit: str,
        intro: str,
    ) -> TemplateResponse:
        """Ask for the action's input, as Django's delete confirmation does."""
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "submit_label": submit,
            "opts": self.opts,
            "items": queryset,
            "form": form,
            "action_name": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        return TemplateResponse(
            request, "admin/integrations/reviewitem/action_form.html", context
        )

    @staticmethod
    def _label(item: ReviewItem) -> str:
        return (
            f"Transaction {item.transaction.transaction_id}"
            if item.transaction
            else str(item)
        )

    @admin.display(description="Transaction", ordering="transaction__transaction_id")
    def transaction_link(self, obj: ReviewItem) -> SafeString | None:
        if obj.transaction is None:
            return None
        return _change_link(obj.transaction, obj.transaction.transaction_id)

    @admin.display(description="Amount", ordering="transaction__amount")
    def amount(self, obj: ReviewItem) -> str | None:
        if obj.transaction is None:
            return None
        return f"{obj.transaction.amount} {obj.transaction.currency}"

    @admin.display(
        description="Invoice reference", ordering="transaction__invoice_reference"
    )
    def invoice_reference(self, obj: ReviewItem) -> str | None:
        return obj.transaction.invoice_reference if obj.transaction else None

    @admin.display(description="Reason")
    def reason_short(self, obj: ReviewItem) -> str:
        return _short(obj.reason, 140)

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj: ReviewItem) -> str:
        return format_age(obj.created_at)

    @admin.display(description="Suggested action")
    def suggested_action(self, obj: ReviewItem) -> str:
        return SUGGESTED_ACTIONS.get(obj.kind, "")


from integrations import deadletter_admin, reconciliation_admin  # noqa: E402,F401
