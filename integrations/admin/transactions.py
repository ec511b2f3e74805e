"""Transactions and what went out for them: postings to Sage Pro.

A transaction's page lists its history, postings and review items, and links to a
preview of the exact Sage Pro document it would produce. Both are records and
read-only; a reviewer re-sends postings with the "Retry now" action.
"""

import json
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.safestring import SafeString

from integrations import documents, refunds, review
from integrations.admin.base import (
    PortalMedia,
    ReadOnlyAdmin,
    ReadOnlyInline,
    can_view,
    plural,
    pre,
    short,
    staff_user,
)
from integrations.admin.finding import (
    PER_PAGE,
    SEARCH_HELP,
    DateRangeFilter,
    customer_expression,
    open_review_exists,
    payer_annotations,
    payer_html,
    search_payments,
    totals_context,
)
from integrations.connectors.base import ConnectorError
from integrations.models import (
    PaymentTransaction,
    Posting,
    ReviewItem,
    TransactionHistory,
)
from integrations.models.refunds import PendingReversal
from integrations.queries import WithCashReceipt, with_cash_receipt
from mappings import fields as fm
from mappings.formatting import format_money, format_when, money_html
from mappings.models import PayerLink

EXPLANATION_TEMPLATE = "admin/integrations/match_explanation.html"


def explanation_context(
    explanation: object,
    *,
    title: str = "Why this decision",
    link: PayerLink | None = None,
    note: str = "",
) -> dict[str, Any]:
    """The stored explanation of a matching decision (`mappings.matching.Decision.
    explanation`), checked piece by piece: a row written by an older version, or
    not at all, still renders."""
    data = explanation if isinstance(explanation, dict) else {}
    rule_id = data.get("rule_id")
    rule = str(data.get("rule") or "")
    return {
        "title": title,
        "present": bool(data),
        "note": note,
        "outcome": str(data.get("outcome") or ""),
        "reason": str(data.get("reason") or ""),
        "rule": rule
        if rule_id or not rule
        else f"{rule} (used when no matching rule of the connection fits)",
        "rule_url": reverse("admin:mappings_matchingrule_change", args=[rule_id])
        if isinstance(rule_id, int)
        else "",
        "method_label": str(data.get("method_label") or data.get("method") or ""),
        "customer": str(data.get("customer") or ""),
        "customer_from": str(data.get("customer_from") or ""),
        "steps": _pairs(data.get("steps"), "label", "text"),
        "rejected": _pairs(data.get("rejected"), "invno", "why"),
        "applications": [
            (str(row[0]), str(row[1]))
            for row in data.get("applications") or []
            if isinstance(row, list | tuple) and len(row) == 2
        ],
        "link_url": reverse("admin:mappings_payerlink_change", args=[link.pk])
        if link is not None
        else "",
        "link_label": str(link) if link is not None else "",
    }


def _pairs(rows: object, first: str, second: str) -> list[dict[str, str]]:
    if not isinstance(rows, list):
        return []
    return [
        {first: str(row.get(first, "")), second: str(row.get(second, ""))}
        for row in rows
        if isinstance(row, dict)
    ]


def explanation_panel(explanation: object, **kwargs: Any) -> SafeString:
    """The "Why this decision" panel (see `explanation_context`)."""
    return SafeString(
        render_to_string(
            EXPLANATION_TEMPLATE, {"why": explanation_context(explanation, **kwargs)}
        )
    )


def transaction_explanation(txn: PaymentTransaction) -> SafeString:
    """The panel for a transaction: its last decision, or its receipt's."""
    receipt = (
        txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT)
        .select_related("payer_link")
        .first()
    )
    explanation = txn.match_explanation or (receipt.decision if receipt else {})
    return explanation_panel(
        explanation, link=receipt.payer_link if receipt is not None else None
    )


REFUNDS_TEMPLATE = "admin/integrations/paymenttransaction/_refunds.html"


def _memo_row(posting: Posting | None, currency: str) -> dict[str, Any] | None:
    """A credit memo posting as the page shows it: number, amount, accounts, state."""
    if posting is None:
        return None
    payload = posting.payload if isinstance(posting.payload, dict) else {}
    fee = payload.get("fee_amount")
    return {
        "posting": posting,
        "number": posting.document_number or "-",
        "amount": format_money(payload.get("amount"), currency) or "-",
        "refund_account": str(payload.get("refund_account") or "-"),
        "cash_account": str(payload.get("cash_account") or "")
        or "the receipt's (Sage Pro's default)",
        "fee": f"{format_money(fee, currency)} to {payload.get('fee_account')}"
        if fee
        else "",
        "receipt_no": str(payload.get("receipt_no") or "-"),
        "state": posting.get_state_display(),
    }


def refund_context(txn: PaymentTransaction) -> dict[str, Any] | None:
    """What the page shows of a refund (its sale, its credit memo, what remains of
    the sale) or of a sale (its refunds, its receipt's reversal); None for neither."""
    currency = txn.currency
    pending = PendingReversal.objects.filter(transaction=txn).first()
    waiting = (
        pending.reason
        if pending is not None and pending.state != PendingReversal.State.DONE
        else ""
    )
    is_refund = (txn.transaction_type or "").upper() == refunds.REFUND_TYPE
    sale = txn.original if is_refund else txn
    context: dict[str, Any] = {"is_refund": is_refund, "waiting": waiting}
    if is_refund:
        memo = txn.postings.filter(kind=Posting.Kind.CREDIT_MEMO).first()
        context["memo"] = _memo_row(memo, currency)
        context["sale"] = sale
        context["amount"] = format_money(refunds.refund_amount(txn), currency)
    if sale is not None:
        rows = []
        for refund in sale.refunds.order_by("first_seen_at", "pk"):
            posting = refund.postings.filter(kind=Posting.Kind.CREDIT_MEMO).first()
            rows.append(
                {
                    "refund": refund,
                    "amount": format_money(refunds.refund_amount(refund), currency),
                    "memo": _memo_row(posting, currency),
                    "this": refund.pk == txn.pk,
                }
            )
        refunded = refunds.refunded_total(sale)
        context.update(
            sale_amount=format_money(sale.amount, currency),
            refunded=format_money(refunded, currency),
            remains=format_money(max(sale.amount - refunded, Decimal("0")), currency),
            refunds=rows,
            reversal=sale.postings.filter(kind=Posting.Kind.RECEIPT_REVERSAL).first(),
        )
        if not is_refund and not rows and context["reversal"] is None and not waiting:
            return None
    return context


def refund_panel(txn: PaymentTransaction) -> SafeString:
    context = refund_context(txn)
    if context is None:
        return SafeString("")
    return SafeString(render_to_string(REFUNDS_TEMPLATE, {"r": context}))


class TransactionHistoryInline(ReadOnlyInline):
    model = TransactionHistory
    fields = ("when", "action", "detail", "changes", "event", "user")
    readonly_fields = fields
    ordering = ("at", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("event", "user")

    @admin.display(description="At")
    def when(self, obj: TransactionHistory) -> str:
        return format_when(obj.at)


class PostingInline(ReadOnlyInline):
    model = Posting
    fields = (
        "kind",
        "state",
        "attempts",
        "next_attempt",
        "document_number",
        "posted",
        "last_error",
    )
    readonly_fields = fields
    show_change_link = True

    @admin.display(description="Next attempt")
    def next_attempt(self, obj: Posting) -> str:
        return format_when(obj.next_attempt_at) or "-"

    @admin.display(description="Posted")
    def posted(self, obj: Posting) -> str:
        return format_when(obj.posted_at) or "-"


class ReviewItemInline(ReadOnlyInline):
    model = ReviewItem
    fields = ("kind", "state", "reason_plain", "opened", "assigned_to", "resolved")
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("assigned_to")

    @admin.display(description="Reason")
    def reason_plain(self, obj: ReviewItem) -> SafeString:
        return SafeString(
            render_to_string(
                "admin/integrations/reviewitem/_reason.html", {"item": obj}
            )
        )

    @admin.display(description="Opened")
    def opened(self, obj: ReviewItem) -> str:
        return format_when(obj.created_at)

    @admin.display(description="Resolved")
    def resolved(self, obj: ReviewItem) -> str:
        return format_when(obj.resolved_at) or "-"


# The status a person reads: where the payment is now, not only what PayTrace said.
RECEIPT_STATUS = {
    Posting.State.POSTED: "Posted",
    Posting.State.PENDING: "Queued",
    Posting.State.IN_PROGRESS: "Queued",
    Posting.State.FAILED: "Failed (will retry)",
    Posting.State.DEAD: "Failed",
    Posting.State.NEEDS_REVIEW: "In review",
}
IN_REVIEW = "In review"


class PaymentDateFilter(DateRangeFilter):
    title = "payment date"
    field_path = "created_at"


class WhereFilter(admin.SimpleListFilter):
    """Where the payment is: in review, or its receipt's posting state."""

    title = "status"
    parameter_name = "where"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [
            ("review", IN_REVIEW),
            ("posted", "Posted"),
            ("queued", "Queued"),
            ("failed", "Failed"),
            ("none", "No receipt"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        states = {
            "posted": [Posting.State.POSTED],
            "queued": [Posting.State.PENDING, Posting.State.IN_PROGRESS],
            "failed": [Posting.State.FAILED, Posting.State.DEAD],
        }
        value = self.value()
        if value == "review":
            return queryset.filter(in_review=True)
        if value in states:
            return queryset.filter(receipt_state__in=states[value], in_review=False)
        if value == "none":
            return queryset.filter(receipt_state__isnull=True, in_review=False)
        return queryset


def payment_status(obj: Any) -> str:
    """The status a person reads: "In review" while an open item holds the payment,
    else its receipt's state, else the status map's status ("Paid", "Failed"…)."""
    if getattr(obj, "in_review", False):
        return IN_REVIEW
    state = getattr(obj, "receipt_state", None)
    if state in RECEIPT_STATUS:
        return RECEIPT_STATUS[state]
    return obj.get_mapped_status_display() or "-"


@admin.register(PaymentTransaction)
class PaymentTransactionAdmin(ReadOnlyAdmin):
    list_display = (
        "transaction_id",
        "amount_display",
        "customer",
        "payer",
        "invoice",
        "status",
        "document_number",
        "card",
        "created",
        "settled",
    )
    list_filter = (WhereFilter, "mapped_status", "gateway_status", PaymentDateFilter)
    # Read by the admin to show the search box; `get_search_results` does the work.
    search_fields = ("transaction_id",)
    search_help_text = SEARCH_HELP
    list_per_page = PER_PAGE
    list_max_show_all = PER_PAGE
    fieldsets = [
        (
            "Payment",
            {
                "fields": [
                    "transaction_id",
                    "connection",
                    "transaction_type",
                    "amount_display",
                    "tax_display",
                    "status",
                    "invoice_reference",
                    "customer_reference",
                    "customer",
                    "payer",
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
                    "created",
                    "settled",
                    "status_changed",
                    "first_seen",
                    "updated",
                ]
            },
        ),
        (
            "PayTrace record",
            {"classes": ["collapse"], "fields": ["source_record_pretty"]},
        ),
    ]
    readonly_fields = [*flatten_fieldsets(fieldsets), "connection_name"]
    inlines = [TransactionHistoryInline, PostingInline, ReviewItemInline]
    Media = PortalMedia

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_cash_receipt(super().get_queryset(request)).annotate(
            in_review=open_review_exists(),
            customer_number=customer_expression(),
            **payer_annotations(),
        )

    def get_fieldsets(
        self, request: HttpRequest, obj: PaymentTransaction | None = None
    ) -> list:
        """The connection as a link only for someone who may open connections."""
        if obj is None or can_view(request.user, obj.connection):
            return self.fieldsets
        return [
            (
                name,
                {
                    **options,
                    "fields": [
                        "connection_name" if field == "connection" else field
                        for field in options["fields"]
                    ],
                },
            )
            for name, options in self.fieldsets
        ]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        return search_payments(queryset, search_term), False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            context["totals"] = {
                **totals_context(context["cl"]),
                "noun": "payment",
                "nouns": "payments",
            }
        return response

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: PaymentTransaction | None = None,
    ) -> HttpResponse:
        if obj is not None:
            # Shown after the payment's facts (the change form template places it).
            context["explanation_panel"] = transaction_explanation(obj)
            context["refund_panel"] = refund_panel(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: PaymentTransaction) -> SafeString:
        return money_html(obj.amount, obj.currency)

    @admin.display(description="Tax")
    def tax_display(self, obj: PaymentTransaction) -> str:
        return format_money(obj.tax_amount, obj.currency) or "-"

    @admin.display(description="Status")
    def status(self, obj: PaymentTransaction) -> str:
        return payment_status(obj)

    @admin.display(description="Customer", ordering="customer_number")
    def customer(self, obj: Any) -> str:
        return getattr(obj, "customer_number", None) or "-"

    @admin.display(description="Payer", ordering="payer_name")
    def payer(self, obj: Any) -> SafeString | str:
        return payer_html(obj) or "-"

    @admin.display(description="Connection")
    def connection_name(self, obj: PaymentTransaction) -> str:
        return str(obj.connection)

    @admin.display(description="Invoice", ordering="invoice_reference")
    def invoice(self, obj: PaymentTransaction) -> str:
        return obj.invoice_reference

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: PaymentTransaction) -> str:
        return format_when(obj.created_at) or "-"

    @admin.display(description="Settled", ordering="settled_at")
    def settled(self, obj: PaymentTransaction) -> str:
        return format_when(obj.settled_at) or "-"

    @admin.display(description="Status changed")
    def status_changed(self, obj: PaymentTransaction) -> str:
        return format_when(obj.status_changed_at) or "-"

    @admin.display(description="First seen")
    def first_seen(self, obj: PaymentTransaction) -> str:
        return format_when(obj.first_seen_at) or "-"

    @admin.display(description="Updated")
    def updated(self, obj: PaymentTransaction) -> str:
        return format_when(obj.updated_at) or "-"

    @admin.display(description="Card")
    def card(self, obj: PaymentTransaction) -> str:
        return f"•••• {obj.card_last4}" if obj.card_last4 else ""

    @admin.display(description="Sage Pro receipt", ordering="receipt_number")
    def document_number(self, obj: WithCashReceipt) -> str | None:
        return obj.receipt_number or None

    @admin.display(description="PayTrace record (card data masked)")
    def source_record_pretty(self, obj: PaymentTransaction) -> SafeString:
        return pre(obj.source_record)

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
        booked_in = document.base_currency or txn.currency
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
            "application_problems": application_problems(document, booked_in),
            "unapplied_note": unapplied_note(document, booked_in),
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


def application_problems(
    document: documents.ReceiptDocument, currency: str
) -> list[str]:
    """What is wrong with where the receipt puts the money, in words: an application
    of nothing (the invoice has no balance left) is not a valid document even when
    every field passes its spec."""
    problems = []
    receipt = document.receipt
    for application in receipt.applications:
        if application.amount <= 0:
            problems.append(
                f"It applies {format_money(application.amount, currency)} to invoice "
                f"{application.invno}: the invoice has no balance left to pay, so "
                "Sage Pro would refuse it (INVOICE_NOT_OPEN). Decide in the review "
                "queue where the payment goes (another invoice, split, or on account)."
            )
        elif (
            document.missing_invoice
            and application.invno.strip() == document.missing_invoice
        ):
            problems.append(
                f"It applies {format_money(application.amount, currency)} to invoice "
                f"{application.invno}, which Sage Pro does not have, so Sage Pro "
                "would refuse it (INVOICE_NOT_FOUND). Decide in the review queue "
                "where the payment goes (another invoice, split, or on account)."
            )
    return problems


def unapplied_note(document: documents.ReceiptDocument, currency: str) -> str:
    """What stays on the receipt as unapplied cash, in words ("" when nothing)."""
    receipt = document.receipt
    if receipt.amount is None or not receipt.applications:
        return ""
    applied = sum((a.amount for a in receipt.applications), Decimal("0"))
    rest = receipt.amount - applied
    if rest <= 0:
        return ""
    return (
        f"{format_money(applied, currency)} is applied to invoices; "
        f"{format_money(rest, currency)} stays on the receipt as unapplied cash."
    )


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = (
        "transaction_id",
        "kind",
        "state",
        "attempts",
        "next_attempt",
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
        "next_attempt",
        "started",
        "posted",
        "document_number",
        "unapplied",
        "idempotency_key",
        "last_error_code",
        "last_error",
        "decided_automatically",
        "match_rule",
        "match_method",
        "payer_link",
        "decision_panel",
        "payload_pretty",
        "response_pretty",
    )
    readonly_fields = fields
    Media = PortalMedia

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.change_posting")

    @admin.action(description="Retry now…", permissions=["retry"])
    def retry_now(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        """Show what would be sent again; only the confirm button sends it."""
        postings = list(queryset.select_related("transaction").order_by("pk"))
        retryable = [p for p in postings if p.state in review.RETRYABLE_POSTING_STATES]
        skipped = len(postings) - len(retryable)
        if "confirm" not in request.POST:
            total = sum((p.transaction.amount for p in retryable), Decimal("0"))
            currencies = {p.transaction.currency for p in retryable}
            context = {
                **self.admin_site.each_context(request),
                "title": "Send these receipts to Sage Pro again?",
                "opts": self.opts,
                "rows": [(p, _posting_summary(p)) for p in retryable],
                "skipped": [p for p in postings if p not in retryable],
                "total": total,
                "currency": next(iter(currencies)) if len(currencies) == 1 else "",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/integrations/posting/retry_confirm.html", context
            )
        queued = sum(
            1 for p in retryable if review.retry_posting(p, staff_user(request))
        )
        skipped += len(retryable) - queued
        self.message_user(
            request,
            f"Queued {plural(queued, 'posting')} to be sent again; skipped {skipped} "
            "already posted or in progress.",
            messages.SUCCESS if queued else messages.WARNING,
        )
        return None

    @admin.display(description="Transaction", ordering="transaction__transaction_id")
    def transaction_id(self, obj: Posting) -> str:
        return obj.transaction.transaction_id

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj: Posting) -> str:
        return format_when(obj.next_attempt_at) or "-"

    @admin.display(description="Started")
    def started(self, obj: Posting) -> str:
        return format_when(obj.started_at) or "-"

    @admin.display(description="Posted", ordering="posted_at")
    def posted(self, obj: Posting) -> str:
        return format_when(obj.posted_at) or "-"

    @admin.display(description="Unapplied amount")
    def unapplied(self, obj: Posting) -> str:
        if obj.unapplied_amount is None:
            return "-"
        return format_money(obj.unapplied_amount, obj.transaction.currency)

    @admin.display(description="Last error", ordering="last_error")
    def last_error_short(self, obj: Posting) -> str:
        return short(obj.last_error)

    @admin.display(description="Why this decision")
    def decision_panel(self, obj: Posting) -> SafeString:
        return explanation_panel(
            obj.decision,
            title="The automatic decision that made this posting",
            link=obj.payer_link,
            note="" if obj.decided_automatically else "placed by a reviewer",
        )

    @admin.display(description="Document as sent")
    def payload_pretty(self, obj: Posting) -> SafeString:
        return pre(obj.payload)

    @admin.display(description="Sage Pro's reply")
    def response_pretty(self, obj: Posting) -> SafeString:
        return pre(obj.response)


def _posting_summary(posting: Posting) -> str:
    """The receipt as it would be sent: customer and the invoices it pays."""
    payload = posting.payload or {}
    custno = str(payload.get("custno") or "").strip() or "no customer"
    invoices = [
        f"{str(line.get('invno', '')).strip()} ({format_money(line.get('amount'), posting.transaction.currency)})"
        for line in payload.get("applications") or []
        if isinstance(line, dict)
    ]
    return f"Customer {custno}: " + (
        ", ".join(invoices) if invoices else "unapplied cash, no invoice"
    )
