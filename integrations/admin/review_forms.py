"""The review queue's parts: its state filter, what each kind asks of a reviewer, the
small forms of an item's page and bulk actions, and decisions in words."""

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest

from integrations import documents
from integrations.models import ReviewDecision, ReviewItem
from mappings import fields as fm

if TYPE_CHECKING:
    from django.contrib.admin.filters import _ListFilterChoices


class ReviewStateFilter(admin.SimpleListFilter):
    """Filter by state, showing open items unless asked otherwise."""

    title = "state"
    parameter_name = "state"
    default: str = ReviewItem.State.OPEN
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [*ReviewItem.State.choices, (self.ALL, "All")]

    def choices(self, changelist: ChangeList) -> Iterator["_ListFilterChoices"]:
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
SUGGESTED_ACTIONS: dict[str, str] = {
    ReviewItem.Kind.UNMATCHED: (
        "Apply to the best candidate invoice, split across invoices, "
        "post on account, or dismiss"
    ),
    ReviewItem.Kind.OVERPAYMENT: (
        "Apply the unapplied cash to another open invoice of the customer, refund it "
        "through PayTrace, or leave it on account with a reason"
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
    ReviewItem.Kind.REFUND: (
        "Link the refund to its sale, or decide it again once the cause is fixed; "
        "dismiss once it is posted in Sage Pro by hand"
    ),
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


class OtherCustomerForm(forms.Form):
    """The tick and note that let a reviewer apply to another customer's invoice."""

    other_customer = forms.BooleanField(
        label="Apply to another customer's invoice",
        required=False,
        help_text="Only when the invoice's customer is not the payer's, on purpose.",
    )
    other_note = forms.CharField(
        label="Why (required with the tick)",
        required=False,
        max_length=1000,
        widget=forms.TextInput(attrs={"size": 50}),
    )

    def clean(self) -> dict:
        data = super().clean() or {}
        if data.get("other_customer") and not (data.get("other_note") or "").strip():
            self.add_error(
                "other_note",
                "Write why the payment goes to another customer's invoice.",
            )
        return data

    def other_customer_args(self) -> dict[str, Any]:
        return {
            "other_customer": bool(self.cleaned_data.get("other_customer")),
            "note": (self.cleaned_data.get("other_note") or "").strip(),
        }


class ApplyToInvoiceForm(OtherCustomerForm):
    invno = forms.CharField(
        label="Sage Pro invoice number",
        max_length=20,
        help_text="The open invoice this payment pays.",
    )
    field_order = ["invno", "other_customer", "other_note"]


class ItemApplyForm(ApplyToInvoiceForm):
    """Apply from an item's page, optionally remembering who the payer is."""

    remember = forms.BooleanField(
        label="Remember: this payer is this customer",
        required=False,
        help_text="After applying, the payer's PayTrace customer id, e-mail and "
        "billing name map to the invoice's customer (a customer mapping).",
    )


def reason_field(help_text: str, *, rows: int = 3) -> forms.CharField:
    """The required reason a decision keeps with the item's decisions."""
    return forms.CharField(
        label="Reason",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": rows, "cols": 60}),
        help_text=help_text,
    )


class DismissForm(forms.Form):
    reason = reason_field(
        "Why nothing needs to be posted; kept with the item's decisions."
    )


class DuplicateForm(forms.Form):
    note = reason_field(
        "Required: which payment it duplicates, what happens to the money.", rows=2
    )


class ReopenForm(forms.Form):
    reason = reason_field("Why the decision is undone; kept with the item's decisions.")


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


class AllocationRows(forms.Form):
    """Rows of invoice number and amount; a blank amount takes what is left."""

    ROWS = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
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
        super().clean()
        data = self.cleaned_data
        if self.errors:
            return data
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


class SplitForm(OtherCustomerForm, AllocationRows):
    """Split a payment across invoices (one customer's, or another's with a note)."""


class UnappliedApplyForm(AllocationRows):
    """Apply a receipt's waiting cash to open invoices of its customer."""


class RefundUnappliedForm(forms.Form):
    amount = forms.DecimalField(
        label="Amount to refund",
        required=False,
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0.01"),
        help_text="Blank: all the cash that waits. Never more than waits.",
    )


class LeaveOnAccountForm(forms.Form):
    reason = reason_field(
        "Required: why the cash stays on the customer's account.", rows=2
    )


class SignOverrideForm(forms.Form):
    """Sign the item's waiting override (the request's number, carried hidden)."""

    request = forms.IntegerField(widget=forms.HiddenInput, min_value=1)


class RefuseOverrideForm(SignOverrideForm):
    reason = reason_field(
        "Required: why the correction is refused; the requester reads it.", rows=2
    )


class LinkSaleForm(forms.Form):
    sale = forms.CharField(
        label="Sale (PayTrace transaction id)",
        max_length=40,
        help_text="A sale of the refund's own PayTrace account. You see what it posts "
        "first.",
    )


# The buttons and small forms on an item's page; each posts to its own URL.
DECISION_FORMS: dict[str, type[forms.Form]] = {
    "apply": ItemApplyForm,
    "split": SplitForm,
    "on_account": OnAccountForm,
    "duplicate": DuplicateForm,
    "note": NoteForm,
    "dismiss": DismissForm,
    "retry": forms.Form,
    "reopen": ReopenForm,
    "apply_unapplied": UnappliedApplyForm,
    "refund_unapplied": RefundUnappliedForm,
    "leave_on_account": LeaveOnAccountForm,
    "link_sale": LinkSaleForm,
    "decide_refund": forms.Form,
    "sign_override": SignOverrideForm,
    "refuse_override": RefuseOverrideForm,
}
# A finance manager's second signature on a reviewer's override (review.sign_override).
SIGNATURE_DECISIONS = {"sign_override", "refuse_override"}
# The decisions about a posted receipt's waiting cash (integrations.unapplied).
UNAPPLIED_DECISIONS = {"apply_unapplied", "refund_unapplied", "leave_on_account"}
# A refund item's decisions (integrations.review.link_refund_to_sale and
# decide_refund_again).
REFUND_DECISIONS = {"link_sale", "decide_refund"}
# Decisions that show their outcome and wait for a confirmation before they happen.
CONFIRMED_DECISIONS = {
    "apply",
    "split",
    "on_account",
    "duplicate",
    "dismiss",
    "retry",
    *UNAPPLIED_DECISIONS,
    *REFUND_DECISIONS,
}


class CorrectValuesForm(forms.Form):
    """The fields of the cash receipt, filled with the current values.

    Only `documents.CORRECTABLE_FIELDS` can be edited. The amount, customer, invoice
    and reference are shown read-only, never taken from the request, and a request
    that carries one anyway is refused with the field named.
    """

    def __init__(self, *args: Any, values: dict, **kwargs: Any) -> None:
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
        super().clean()
        data = self.cleaned_data
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


def form_problem(form: forms.Form) -> str:
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
        text = f"Applied to {applied}"
        if detail.get("unapplied"):
            text += f"; {detail['unapplied']} kept as unapplied cash"
        if detail.get("other_customer"):
            text += f" (another customer's invoice: {detail.get('note', '')})"
        return text
    if decision.action == "reopen":
        return (
            f"Reopened: {detail.get('reason', '')} (was: {detail.get('previous', '')})"
        )
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
    if decision.action == "apply_unapplied":
        applied = ", ".join(
            f"{inv} ({amount})" for inv, amount in detail.get("allocations") or []
        )
        return (
            f"Unapplied cash of receipt {detail.get('receipt', '?')} applied to "
            f"{applied}; {detail.get('waiting', '0.00')} still waits"
        )
    if decision.action == "refund_unapplied":
        return (
            f"Refunded {detail.get('amount', '?')} of the unapplied cash through "
            f"PayTrace (refund {detail.get('refund_transaction_id') or '?'})"
        )
    if decision.action in ("link_sale", "decide_refund"):
        return str(detail.get("outcome", "")) or decision.action
    if decision.action == "leave_on_account":
        return (
            f"Left {detail.get('waiting', '?')} on account: {detail.get('reason', '')}"
        )
    if decision.action == "unapplied_applied":
        return f"Unapplied cash applied in Sage Pro (posting {detail.get('posting')})"
    if decision.action == "correct":
        fields = ", ".join(detail.get("overrides") or {}) or "nothing"
        signed = (
            f" (requested by {detail.get('requested_by') or '?'}, signed by "
            f"{detail['signed_by']})"
            if detail.get("signed_by")
            else ""
        )
        return f"Corrected {fields} and retried{signed}"
    if decision.action.startswith("override_"):
        return _describe_override(decision.action, detail)
    return json.dumps(detail, sort_keys=True, default=str)


OVERRIDE_STEPS = {
    "override_requested": "Correction requested, awaiting a finance manager's "
    "second signature",
    "override_signed": "Correction signed",
    "override_refused": "Correction refused",
    "override_outdated": "Correction not signed: the receipt changed",
}


def _describe_override(action: str, detail: dict[str, Any]) -> str:
    """A step of an override's second signature, in words."""
    changes = "; ".join(
        f"{name} → {value or '(blank)'}"
        for name, value in (detail.get("changes") or {}).items()
    )
    text = f"{OVERRIDE_STEPS.get(action, action)}: {changes or 'nothing'}"
    if action != "override_requested" and detail.get("requested_by"):
        text += f" (requested by {detail['requested_by']})"
    if detail.get("reason"):
        text += f". {detail['reason']}"
    return text


class ActionPage(NamedTuple):
    """The page a bulk action shows to ask for its input."""

    action: str
    title: str
    submit: str
    intro: str


ACTION_PAGES = {
    "apply": ActionPage(
        action="apply_to_invoice",
        title="Apply to an invoice",
        submit="Apply",
        intro="Apply these payments in Sage Pro to the invoice number below.",
    ),
    "duplicate": ActionPage(
        action="mark_duplicate",
        title="Mark as duplicate",
        submit="Mark as duplicate",
        intro=(
            "Record that these payments duplicate others. Nothing more is "
            "posted for them; unapplied cash already booked stays for the "
            "refund."
        ),
    ),
    "correct": ActionPage(
        action="correct_and_retry",
        title="Correct values and retry",
        submit="Save and retry",
        intro=(
            "Correct the fields Sage Pro would refuse. The corrected values "
            "are checked again before the receipt is sent. The amount, "
            "customer, invoice and reference are the payment's and cannot "
            "be corrected here."
        ),
    ),
    "correct_signed": ActionPage(
        action="correct_and_retry",
        title="Correct values: request a second signature",
        submit="Request the correction",
        intro=(
            "Correct the fields Sage Pro would refuse. A finance manager other than "
            "you signs the correction before anything is sent to Sage Pro; until then "
            "the receipt stays as it is. The amount, customer, invoice and reference "
            "are the payment's and cannot be corrected here."
        ),
    ),
    "on_account": ActionPage(
        action="post_on_account",
        title="Post on account",
        submit="Post on account",
        intro="Post each payment on its customer's account as unapplied cash.",
    ),
    "retry": ActionPage(
        action="retry",
        title="Retry",
        submit="Retry",
        intro="Send each item's receipt to Sage Pro again, or run its payment "
        "through the pipeline again.",
    ),
    "dismiss": ActionPage(
        action="dismiss",
        title="Dismiss review items",
        submit="Dismiss",
        intro="Close these items without posting anything.",
    ),
}
