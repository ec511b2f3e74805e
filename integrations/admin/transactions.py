"""Transactions and what went out for them: postings to Sage Pro.

A transaction's page lists its history, postings and review items, and links to a
preview of the exact Sage Pro document it would produce. Both are records and
read-only; a reviewer re-sends postings with the "Retry now" action.
"""

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.safestring import SafeString

from integrations import documents, review
from integrations.admin.base import (
    PortalMedia,
    ReadOnlyAdmin,
    ReadOnlyInline,
    plural,
    pre,
    short,
    short_time,
    staff_user,
)
from integrations.connectors.base import ConnectorError
from integrations.models import (
    PaymentTransaction,
    Posting,
    ReviewItem,
    TransactionHistory,
)
from integrations.queries import WithCashReceipt, with_cash_receipt
from mappings import fields as fm
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
    readonly_fields = flatten_fieldsets(fieldsets)
    inlines = [TransactionHistoryInline, PostingInline, ReviewItemInline]
    Media = PortalMedia

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_cash_receipt(super().get_queryset(request))

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
        return super().render_change_form(request, context, add, change, form_url, obj)

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
        return short_time(obj.created_at)

    @admin.display(description="Settled (UTC)", ordering="settled_at")
    def settled(self, obj: PaymentTransaction) -> str | None:
        return short_time(obj.settled_at)

    @admin.display(description="Card")
    def card(self, obj: PaymentTransaction) -> str:
        return f"•••• {obj.card_last4}" if obj.card_last4 else ""

    @admin.display(description="Posting", ordering="receipt_state")
    def posting_state(self, obj: WithCashReceipt) -> str | None:
        if not obj.receipt_state:
            return None
        return Posting.State(obj.receipt_state).label

    @admin.display(description="Sage Pro document", ordering="receipt_number")
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

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        postings = list(queryset)
        queued = sum(
            1 for p in postings if review.retry_posting(p, staff_user(request))
        )
        skipped = len(postings) - queued
        self.message_user(
            request,
            f"Queued {plural(queued, 'posting')} to be sent again; skipped {skipped} "
            "already posted or in progress.",
            messages.SUCCESS if queued else messages.WARNING,
        )

    @admin.display(description="Transaction", ordering="transaction__transaction_id")
    def transaction_id(self, obj: Posting) -> str:
        return obj.transaction.transaction_id

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
