"""The review queue: items the pipeline could not settle by itself, and the decisions
that resolve them.

An item's page shows the payment and its payer, the suggestion, candidate invoices,
an invoice search, the earlier payment a suspected duplicate repeats and the decisions
so far, with one small form per decision; the changelist offers the same decisions as
bulk actions. Every decision is a call into `integrations.review`; only its
`ReviewError` is shown to the reviewer as a refusal (on the item's page, with what was
typed kept). A decision that posts or closes money first shows its outcome
(`review.preview_*`) and happens only when that outcome is confirmed unchanged.
"""

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from integrations import learning, refunds, review
from integrations.admin.base import (
    PortalMedia,
    format_age,
    plural,
    staff_user,
)
from integrations.admin.review_forms import (
    ACTION_PAGES,
    CANDIDATE_PARTS,
    CONFIRMED_DECISIONS,
    DECISION_FORMS,
    MONEY_KINDS,
    REFUND_DECISIONS,
    RETRY_KINDS,
    SIGNATURE_DECISIONS,
    SUGGESTED_ACTIONS,
    UNAPPLIED_DECISIONS,
    ActionPage,
    ApplyToInvoiceForm,
    CorrectValuesForm,
    DismissForm,
    DuplicateForm,
    ItemApplyForm,
    LeaveOnAccountForm,
    LinkSaleForm,
    NoteForm,
    OnAccountForm,
    RefundUnappliedForm,
    RefuseOverrideForm,
    ReopenForm,
    SignOverrideForm,
    SplitForm,
    UnappliedApplyForm,
    describe_decision,
    form_problem,
)
from integrations.admin.review_list import ReviewListMixin
from integrations.admin.review_signatures import OverrideRequestAdmin  # noqa: F401
from integrations.admin.transactions import explanation_panel
from integrations.connectors.base import ConnectorError
from integrations.models import Posting, ReviewItem
from integrations.models.review import OverrideRequest
from mappings import matching, payers

# The ids of each small form's fields on the item's page (several have a "note").
AUTO_IDS = {
    "apply": "id_apply_%s",
    "split": "id_split_%s",
    "duplicate": "id_duplicate_%s",
    "dismiss": "id_dismiss_%s",
    "note": "id_add_%s",
    "apply_unapplied": "id_unapplied_%s",
    "refund_unapplied": "id_refund_%s",
    "leave_on_account": "id_leave_%s",
    "link_sale": "id_link_%s",
    "sign_override": "id_sign_%s",
    "refuse_override": "id_refuse_override_%s",
}
CONFIRM_LABELS = {
    "apply": "Confirm and post the receipt",
    "split": "Confirm and post the receipt",
    "on_account": "Confirm and post on account",
    "duplicate": "Confirm: mark as duplicate",
    "dismiss": "Confirm: dismiss",
    "retry": "Confirm: retry",
    "apply_unapplied": "Confirm and apply the unapplied cash",
    "refund_unapplied": "Confirm and refund through PayTrace",
    "leave_on_account": "Confirm: leave on account",
    "link_sale": "Confirm: link to the sale and decide",
    "decide_refund": "Confirm: decide again",
}
# The item as the pipeline opened and resolved it: shown, never edited.
RECORD_FIELDS = (
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
)


@admin.register(ReviewItem)
class ReviewItemAdmin(ReviewListMixin, admin.ModelAdmin):
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
            {"classes": ["collapse"], "fields": list(RECORD_FIELDS)},
        ),
    ]
    readonly_fields = RECORD_FIELDS
    change_form_template = "admin/integrations/reviewitem/change_form.html"
    Media = PortalMedia

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # The pipeline opens items.

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # Dismiss instead, so the decision is recorded.

    def formfield_for_dbfield(
        self, db_field: models.Field, request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if db_field.name != "assigned_to":
            return super().formfield_for_dbfield(db_field, request, **kwargs)
        # A plain choice of colleagues, without the add/change/delete-user buttons.
        staff = get_user_model().objects.filter(is_staff=True, is_active=True)
        return db_field.formfield(queryset=staff, **kwargs)

    # The item's page ----------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        decide = path(
            "<path:object_id>/decide/<slug:decision>/",
            self.admin_site.admin_view(self.decide_view),
            name="integrations_reviewitem_decide",
        )
        reopen = path(
            "<path:object_id>/reopen/",
            self.admin_site.admin_view(self.reopen_view),
            name="integrations_reviewitem_reopen",
        )
        return [decide, reopen, *super().get_urls()]

    def decide_view(
        self, request: HttpRequest, object_id: str, decision: str
    ) -> HttpResponse:
        """Carry out one button or small form of the item's page, then go back to it.

        A decision that posts or closes money first shows its outcome; only the
        confirmation (carrying the outcome's fingerprint) carries it out, and one
        whose outcome changed since (an invoice's balance) is shown the new outcome.
        Refused input is shown on the item's page with what was typed kept.
        """
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        item = self.get_object(request, unquote(object_id))
        if item is None or decision not in DECISION_FORMS or decision == "reopen":
            raise Http404
        if not self.has_change_permission(request, item):
            raise PermissionDenied
        form = DECISION_FORMS[decision](
            request.POST, auto_id=AUTO_IDS.get(decision, "id_%s")
        )
        if not form.is_valid():
            self.message_user(request, form_problem(form), messages.ERROR)
            return self._item_page(request, item, decision, form)
        confirmed = request.POST.get("confirm", "")
        try:
            # Waiting cash is the receipt's: decided on a resolved item too.
            if decision in CONFIRMED_DECISIONS and (
                item.state == ReviewItem.State.OPEN or decision in UNAPPLIED_DECISIONS
            ):
                outcome = self._preview(decision, item, form.cleaned_data)
                if confirmed != outcome.fingerprint:
                    return self._confirm_page(
                        request, item, decision, outcome, changed=bool(confirmed)
                    )
            done = self._carry_out(
                decision,
                item,
                {**form.cleaned_data, "confirmed": confirmed},
                staff_user(request),
            )
        except (review.ReviewError, ConnectorError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            form.add_error(None, str(exc))  # shown by the form too, with its input
            return self._item_page(request, item, decision, form)
        self.message_user(request, done, messages.SUCCESS)
        if form.cleaned_data.get("remember"):
            self._remember_payer(request, item)
        return HttpResponseRedirect(
            reverse("admin:integrations_reviewitem_change", args=[item.pk])
        )

    def _item_page(
        self, request: HttpRequest, item: ReviewItem, decision: str, form: forms.Form
    ) -> HttpResponse:
        """The item's page again, its form bound to what the reviewer typed."""
        request.method = "GET"  # show the page; the POST was a decision, not a save
        return self.change_view(
            request, str(item.pk), extra_context={"bound_forms": {decision: form}}
        )

    @staticmethod
    def _preview(decision: str, item: ReviewItem, data: dict) -> review.Outcome:
        """What the decision will do, without doing it (refusals raise ReviewError)."""
        other: dict[str, Any] = {
            "other_customer": bool(data.get("other_customer")),
            "note": (data.get("other_note") or "").strip(),
        }
        if decision == "apply":
            return review.preview_apply(item, [(data["invno"], None)], **other)
        if decision == "split":
            return review.preview_apply(item, data["allocations"], **other)
        if decision == "on_account":
            return review.preview_on_account(item, data["custno"])
        if decision == "duplicate":
            return review.preview_closing(item, "duplicate", data["note"])
        if decision == "retry":
            return review.preview_retry(item)
        if decision == "apply_unapplied":
            return review.preview_apply_unapplied(item, data["allocations"])
        if decision == "refund_unapplied":
            return review.preview_refund_unapplied(item, data.get("amount"))
        if decision == "leave_on_account":
            return review.preview_leave_on_account(item, data["reason"])
        if decision == "link_sale":
            return review.preview_link_sale(item, data["sale"])
        if decision == "decide_refund":
            return review.preview_decide_refund(item)
        return review.preview_closing(item, "dismiss", data["reason"])

    def _confirm_page(
        self,
        request: HttpRequest,
        item: ReviewItem,
        decision: str,
        outcome: review.Outcome,
        *,
        changed: bool,
    ) -> TemplateResponse:
        """The outcome of a decision, with the button that carries it out."""
        carried = [
            (name, value)
            for name in request.POST
            if name not in ("csrfmiddlewaretoken", "confirm")
            for value in request.POST.getlist(name)
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm: " + outcome.summary,
            "opts": self.opts,
            "item": item,
            "outcome": outcome,
            "decision": decision,
            "changed": changed,
            "carried": carried,
            "action_url": reverse(
                "admin:integrations_reviewitem_decide", args=[item.pk, decision]
            ),
            "item_url": reverse("admin:integrations_reviewitem_change", args=[item.pk]),
            "submit_label": CONFIRM_LABELS.get(decision, "Confirm"),
        }
        return TemplateResponse(
            request, "admin/integrations/reviewitem/confirm.html", context
        )

    def reopen_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Reopen a resolved item with a reason, or explain the reversal it needs."""
        item = self.get_object(request, unquote(object_id))
        if item is None:
            raise Http404
        if not self.has_change_permission(request, item):
            raise PermissionDenied
        item_url = reverse("admin:integrations_reviewitem_change", args=[item.pk])
        form = ReopenForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                review.reopen_review_item(
                    item, form.cleaned_data["reason"], staff_user(request)
                )
            except review.ReviewError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request, f"{self._label(item)}: reopened.", messages.SUCCESS
                )
                return HttpResponseRedirect(item_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reopen review item {item.pk}",
            "opts": self.opts,
            "item": item,
            "txn": item.transaction,
            "form": form,
            "refusal": review.reopen_refusal(item),
            "item_url": item_url,
        }
        return TemplateResponse(
            request, "admin/integrations/reviewitem/reopen.html", context
        )

    def _carry_out(
        self, decision: str, item: ReviewItem, data: dict, user: AbstractBaseUser
    ) -> str:
        """Call the decision in `integrations.review`; say what it did."""
        if decision == "note":
            review.annotate_review_item(item, data["note"], user)
            return "Note added."
        if decision in UNAPPLIED_DECISIONS:
            return self._carry_out_unapplied(decision, item, data, user)
        if decision in SIGNATURE_DECISIONS:
            return self._carry_out_signature(decision, item, data, user)
        if decision in REFUND_DECISIONS:
            expected = data.get("confirmed", "")
            if decision == "link_sale":
                done = review.link_refund_to_sale(
                    item, data["sale"], user, expected=expected
                )
            else:
                done = review.decide_refund_again(item, user, expected=expected)
            return f"{self._label(item)}: {done}."
        other: dict[str, Any] = {
            "other_customer": bool(data.get("other_customer")),
            "note": (data.get("other_note") or "").strip(),
        }
        if decision == "apply":
            review.apply_review_item(item, data["invno"], user, **other)
        elif decision == "split":
            review.apply_review_item_split(item, data["allocations"], user, **other)
        elif decision == "on_account":
            review.post_on_account(item, user, data["custno"])
        elif decision == "duplicate":
            review.mark_duplicate(item, user, data["note"])
        elif decision == "dismiss":
            review.dismiss_review_item(item, data["reason"], user)
        elif decision == "retry":
            review.retry_review_item(item, user)
        item.refresh_from_db()
        done = f"{self._label(item)}: {item.resolution}."
        if decision in ("apply", "split", "on_account"):
            done += " The receipt is queued for Sage Pro."
        return done

    def _carry_out_unapplied(
        self, decision: str, item: ReviewItem, data: dict, user: AbstractBaseUser
    ) -> str:
        """Apply, refund or leave a posted receipt's waiting cash; say what was done."""
        expected = data.get("confirmed", "")
        label = self._label(item)
        if decision == "apply_unapplied":
            posting = review.apply_unapplied(
                item, data["allocations"], user, expected=expected
            )
            return (
                f"{label}: the application of the unapplied cash is queued for Sage "
                f"Pro (posting {posting.pk})."
            )
        if decision == "refund_unapplied":
            refund = review.refund_unapplied(
                item, data.get("amount"), user, expected=expected
            )
            return (
                f"{label}: PayTrace refunded {refund.amount} "
                f"(refund {refund.refund_transaction_id}); it is booked in Sage Pro "
                "when PayTrace reports it."
            )
        review.leave_on_account(item, data["reason"], user)
        item.refresh_from_db()
        return f"{label}: {item.resolution}."

    def _carry_out_signature(
        self, decision: str, item: ReviewItem, data: dict, user: AbstractBaseUser
    ) -> str:
        """Sign or refuse the item's waiting override; say what was done."""
        override = OverrideRequest.objects.filter(pk=data["request"], item=item).first()
        if override is None:
            raise review.ReviewError(
                f"Review item {item.pk} has no correction {data['request']} to sign: "
                "open the item's page again."
            )
        if decision == "sign_override":
            done = review.sign_override(override, user)
        else:
            done = review.refuse_override(override, user, data["reason"])
        return f"{self._label(item)}: {done}"

    def _signature_context(
        self, request: HttpRequest, item: ReviewItem, bound: dict[str, forms.Form]
    ) -> dict:
        """The item's correction awaiting a second signature, with its stored preview,
        whether this user may sign it and the Sign and Refuse forms."""
        waiting = review.waiting_override(item)
        if waiting is None:
            return {"override": None}
        return {
            "override": waiting,
            "override_outcome": review.outcome_from_record(waiting.preview),
            "override_refusal": review.signing_refusal(
                waiting,
                request.user,  # type: ignore[arg-type]
            ),
            "sign_form": SignOverrideForm(
                initial={"request": waiting.pk}, auto_id=AUTO_IDS["sign_override"]
            ),
            "refuse_form": bound.get("refuse_override")
            or RefuseOverrideForm(
                initial={"request": waiting.pk},
                auto_id=AUTO_IDS["refuse_override"],
            ),
        }

    def _remember_payer(self, request: HttpRequest, item: ReviewItem) -> None:
        """After an apply: map the payer to the customer the receipt went to."""
        txn = item.transaction
        receipt = (
            txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first() if txn else None
        )
        custno = str((receipt.payload or {}).get("custno") or "") if receipt else ""
        if txn is None or not custno.strip():
            self.message_user(
                request,
                f"{self._label(item)}: the payer was not remembered, the receipt "
                "names no customer; an integration admin can add the mapping under "
                "Customer mappings.",
                messages.WARNING,
            )
            return
        try:
            links = learning.remember_payer(txn, custno, staff_user(request))
        except learning.LearningError as exc:
            self.message_user(request, f"{self._label(item)}: {exc}", messages.WARNING)
            return
        keys = "; ".join(
            f"{payers.KIND_LABELS.get(link.kind, link.kind)} {link.key}"
            for link in links
        )
        self.message_user(
            request,
            f"Remembered: this payer ({keys}) is customer {custno.strip().upper()} "
            "from now on (Customer mappings).",
            messages.SUCCESS,
        )

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
            bound = context.get("bound_forms") or {}
            context.update(self._review_context(request, obj, bound))
            context.update(self._signature_context(request, obj, bound))
            # The page is for deciding; the form below only (re)assigns the item.
            context["title"] = "Review item"
            context["show_save_and_continue"] = False
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _review_context(
        self, request: HttpRequest, item: ReviewItem, bound: dict[str, forms.Form]
    ) -> dict:
        """The panels above the form: payment, payer, suggestion, candidates, invoice
        search, earlier payments, decisions. `bound` holds a refused decision's form
        as the reviewer filled it."""
        txn = item.transaction
        is_open = item.state == ReviewItem.State.OPEN
        receipt = (
            txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT).first() if txn else None
        )
        sage_conn = txn.connection.sagepro if txn is not None else None
        candidates, unavailable = [], ""
        if txn is not None and is_open and item.kind in MONEY_KINDS:
            try:
                candidates = review.invoice_candidates(txn)
            except ConnectorError as exc:
                unavailable = str(exc)
        identity, search, found, search_error = None, "", [], ""
        if txn is not None and sage_conn is not None:
            try:
                identity = review.payer_identity(txn, sage_conn)
            except ConnectorError as exc:
                unavailable = unavailable or str(exc)
            search = request.GET.get("invoice_q", "").strip()[:60]
            if search and is_open and item.kind in MONEY_KINDS:
                try:
                    found = review.search_invoices(sage_conn, search)
                except ConnectorError as exc:
                    search_error = str(exc)
        decide_url = reverse(
            "admin:integrations_reviewitem_decide", args=[item.pk, "DECISION"]
        )
        waiting = review.unapplied_cash_of(item)
        cash_invoices, cash_error = [], ""
        if waiting is not None and sage_conn is not None:
            try:
                cash_invoices = sage_conn.mirror().list_open_invoices(waiting.custno)
            except ConnectorError as exc:
                cash_error = str(exc)
        if waiting is not None and search and not found and not search_error:
            try:
                found = review.search_invoices(sage_conn, search)  # type: ignore[arg-type]
            except ConnectorError as exc:
                search_error = str(exc)
        refund_sales, is_refund_item = [], False
        if txn is not None and is_open and item.kind == ReviewItem.Kind.REFUND:
            is_refund_item = refunds.is_refund(txn)
            if is_refund_item and txn.original_id is None:
                refund_sales = refunds.sales_to_link(txn)
        return {
            "is_refund_item": is_refund_item,
            "refund_sales": refund_sales,
            "link_sale_form": bound.get("link_sale")
            or LinkSaleForm(auto_id=AUTO_IDS["link_sale"]),
            "unapplied": waiting,
            "can_act_cash": waiting is not None
            and self.has_change_permission(request, item),
            "unapplied_age": format_age(waiting.posted_at) if waiting else "",
            "unapplied_invoices": cash_invoices,
            "unapplied_invoices_error": cash_error,
            "unapplied_form": bound.get("apply_unapplied")
            or UnappliedApplyForm(auto_id=AUTO_IDS["apply_unapplied"]),
            "refund_form": bound.get("refund_unapplied")
            or RefundUnappliedForm(auto_id=AUTO_IDS["refund_unapplied"]),
            "leave_form": bound.get("leave_on_account")
            or LeaveOnAccountForm(auto_id=AUTO_IDS["leave_on_account"]),
            "item": item,
            "txn": txn,
            "age": format_age(item.created_at),
            "suggestion": SUGGESTED_ACTIONS.get(item.kind, ""),
            "receipt": receipt,
            "show_candidates": txn is not None and is_open and item.kind in MONEY_KINDS,
            "candidates": [
                self._candidate_row(
                    c, identity.custno if identity and not identity.conflict else ""
                )
                for c in candidates
            ],
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
            "explanation_panel": explanation_panel(txn.match_explanation)
            if txn is not None and (txn.match_explanation or item.kind in MONEY_KINDS)
            else "",
            "decisions": [
                (d, describe_decision(d)) for d in item.decisions.select_related("user")
            ],
            "payer": review.payer_facts(txn) if txn is not None else {},
            "identity": identity,
            "invoice_search": search,
            "invoice_results": found,
            "invoice_search_error": search_error,
            "show_search": txn is not None
            and ((is_open and item.kind in MONEY_KINDS) or waiting is not None),
            "earlier_payments": review.earlier_payments(txn)
            if txn is not None and item.kind == ReviewItem.Kind.POSSIBLE_DUPLICATE
            else [],
            "history_url": reverse(
                "admin:integrations_paymenttransaction_change", args=[txn.pk]
            )
            + "#history-group"
            if txn is not None
            else "",
            "can_reopen": not is_open and self.has_change_permission(request, item),
            "reopen_url": reverse(
                "admin:integrations_reviewitem_reopen", args=[item.pk]
            ),
            "apply_form": bound.get("apply")
            or ItemApplyForm(auto_id=AUTO_IDS["apply"]),
            "split_form": bound.get("split") or SplitForm(auto_id=AUTO_IDS["split"]),
            "on_account_form": bound.get("on_account")
            or OnAccountForm(initial={"custno": txn.customer_reference if txn else ""}),
            "duplicate_form": bound.get("duplicate")
            or DuplicateForm(auto_id="id_duplicate_%s"),
            "dismiss_form": bound.get("dismiss")
            or DismissForm(auto_id="id_dismiss_%s"),
            "note_form": bound.get("note") or NoteForm(auto_id="id_add_%s"),
            "decide_urls": {
                name: decide_url.replace("DECISION", name) for name in DECISION_FORMS
            },
            "changelist_url": reverse("admin:integrations_reviewitem_changelist"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }

    @staticmethod
    def _candidate_row(candidate: matching.Candidate, payer_custno: str) -> dict:
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
            "other_customer": bool(payer_custno)
            and candidate.invoice.custno.strip().upper() != payer_custno.upper(),
        }

    # Bulk actions --------------------------------------------------------------------

    @admin.action(description="Apply to an invoice…", permissions=["change"])
    def apply_to_invoice(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        form = ApplyToInvoiceForm(self._confirmed(request))
        page = ACTION_PAGES["apply"]
        if not form.is_valid():
            return self._action_page(request, queryset, form, page)
        invno = form.cleaned_data["invno"]
        other = form.other_customer_args()
        spent: dict[str, Decimal] = {}  # each payment takes what the ones before left
        shares: dict[int, Decimal] = {}  # what each takes of an invoice others share

        def preview(item: ReviewItem) -> review.Outcome:
            shared = bool(spent)
            outcome = review.preview_apply(item, [(invno, None)], spent=spent, **other)
            if shared:
                shares[item.pk] = outcome.lines[0].applied
            return outcome

        def apply(item: ReviewItem) -> object:
            # What the confirmation showed is what is applied: a payment after the
            # first takes only what the ones before it left of the balance.
            if item.pk in shares:
                return review.apply_review_item_split(
                    item, [(invno, shares[item.pk])], staff_user(request), **other
                )
            return review.apply_review_item(item, invno, staff_user(request), **other)

        return self._after_confirmation(
            request,
            queryset,
            form,
            page,
            preview,
            apply,
            lambda n: f"Applied {plural(n, 'payment')} to invoice {invno}.",
        )

    @admin.action(
        description="Post on account (each to its payment's customer)…",
        permissions=["change"],
    )
    def post_on_account(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        items = list(queryset.select_related("transaction"))
        named = [
            i
            for i in items
            if i.transaction is not None and i.transaction.customer_reference
        ]
        nameless = [self._label(i) for i in items if i not in named]
        if nameless:
            self.message_user(
                request,
                f"Not posted, the payment names no customer: {', '.join(nameless)}. "
                "Post these from the item's page with a customer number.",
                messages.WARNING,
            )
        if not named:
            return None
        return self._after_confirmation(
            request,
            queryset.filter(pk__in=[i.pk for i in named]),
            forms.Form(request.POST),
            ACTION_PAGES["on_account"],
            review.preview_on_account,
            lambda item: review.post_on_account(item, staff_user(request)),
            lambda n: f"Posted {plural(n, 'payment')} on account as unapplied cash.",
        )

    @admin.action(description="Mark as duplicate…", permissions=["change"])
    def mark_duplicate(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        form = DuplicateForm(self._confirmed(request))
        page = ACTION_PAGES["duplicate"]
        if not form.is_valid():
            return self._action_page(request, queryset, form, page)
        note = form.cleaned_data["note"]
        return self._after_confirmation(
            request,
            queryset,
            form,
            page,
            lambda item: review.preview_closing(item, "duplicate", note),
            lambda item: review.mark_duplicate(item, staff_user(request), note),
            lambda n: f"Marked {plural(n, 'payment')} as duplicate.",
        )

    @admin.action(description="Correct values and retry…", permissions=["change"])
    def correct_and_retry(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        """Ask for corrected values, show the receipt they give, then store them and
        send the posting again.

        Only the date, method and GL account can be corrected (see CorrectValuesForm);
        `review.correct_and_retry` checks them again before anything is saved or sent.
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
        form = CorrectValuesForm(
            self._confirmed(request), values=review.correction_values(item)
        )
        page = ACTION_PAGES[
            "correct_signed" if review.needs_second_signature() else "correct"
        ]
        if form.is_valid():
            try:
                outcome = review.preview_correction(item, form.corrections())
                fingerprint = review.outcomes_fingerprint([outcome])
                confirmed = request.POST.get("confirmed", "")
                if confirmed != fingerprint:
                    return self._action_page(
                        request,
                        queryset,
                        form,
                        page,
                        rows=[(item, outcome, "")],
                        fingerprint=fingerprint,
                        changed=bool(confirmed),
                    )
                done = review.correct_and_retry(
                    item, staff_user(request), form.corrections()
                )
            except review.CorrectionRefused as exc:
                form.add_error(None, str(exc))
            except review.ReviewError as exc:
                self.message_user(
                    request, f"{self._label(item)}: {exc}", messages.ERROR
                )
                return None
            else:
                self.message_user(request, f"{self._label(item)}: {done}")
                return None
        return self._action_page(request, queryset, form, page)

    @admin.action(description="Dismiss…", permissions=["change"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = DismissForm(self._confirmed(request))
        page = ACTION_PAGES["dismiss"]
        if not form.is_valid():
            return self._action_page(request, queryset, form, page)
        reason = form.cleaned_data["reason"]
        return self._after_confirmation(
            request,
            queryset,
            form,
            page,
            lambda item: review.preview_closing(item, "dismiss", reason),
            lambda item: review.dismiss_review_item(item, reason, staff_user(request)),
            lambda n: f"Dismissed {plural(n, 'review item')}.",
        )

    def _after_confirmation(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        form: forms.Form,
        page: ActionPage,
        preview: Callable[[ReviewItem], review.Outcome],
        act: Callable[[ReviewItem], object],
        done: Callable[[int], str],
    ) -> HttpResponse | None:
        """Show each item's outcome; carry the action out only once the reviewer
        confirmed exactly these outcomes (else show them, changed, again)."""
        rows: list[tuple[ReviewItem, review.Outcome | None, str]] = []
        for item in queryset.select_related("transaction"):
            try:
                rows.append((item, preview(item), ""))
            except (review.ReviewError, ConnectorError) as exc:
                rows.append((item, None, str(exc)))
        postable = [o for _, o, _ in rows if o is not None]
        fingerprint = review.outcomes_fingerprint(postable)
        confirmed = request.POST.get("confirmed", "")
        if confirmed != fingerprint or not postable:
            return self._action_page(
                request,
                queryset,
                form,
                page,
                rows=rows,
                fingerprint=fingerprint,
                changed=bool(confirmed) and confirmed != fingerprint,
            )
        for item, _, refusal in rows:
            if refusal:
                self.message_user(
                    request, f"{self._label(item)}: {refusal}", messages.ERROR
                )
        count = self._each(request, [i for i, o, _ in rows if o is not None], act)
        if count:
            self.message_user(request, done(count))
        return None

    @admin.action(
        description="Retry (re-send the posting or reprocess the event)…",
        permissions=["change"],
    )
    def retry(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._after_confirmation(
            request,
            queryset,
            forms.Form(request.POST),
            ACTION_PAGES["retry"],
            review.preview_retry,
            lambda item: review.retry_review_item(item, staff_user(request)),
            lambda n: f"Queued {plural(n, 'review item')} for retry.",
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
            except review.ReviewError as exc:
                self.message_user(
                    request, f"{self._label(item)}: {exc}", messages.ERROR
                )
        return done

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.update(assigned_to=request.user)
        self.message_user(request, f"Assigned {plural(count, 'review item')} to you.")

    @staticmethod
    def _confirmed(request: HttpRequest) -> QueryDict | None:
        """The action page's answer, or None while the page has not been shown."""
        return request.POST if "confirm" in request.POST else None

    def _action_page(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        form: forms.Form,
        page: ActionPage,
        *,
        rows: list[tuple[ReviewItem, review.Outcome | None, str]] | None = None,
        fingerprint: str = "",
        changed: bool = False,
    ) -> TemplateResponse:
        """Ask for the action's input, as Django's delete confirmation does; with
        `rows`, show each item's outcome and ask to confirm them, carrying the input
        (never an amount: no action takes one) in hidden fields."""
        carried = (
            [
                (name, form[name].value())
                for name in form.fields
                if not form.fields[name].disabled and name in form.data
            ]
            if rows is not None
            else []
        )
        postable = [o for _, o, _ in rows or [] if o is not None]
        context = {
            "rows": rows,
            "fingerprint": fingerprint,
            "changed": changed,
            "carried": carried,
            "can_confirm": bool(postable),
            "total": sum((o.amount for o in postable), review.ZERO),
            "total_unapplied": sum((o.unapplied for o in postable), review.ZERO),
            "currency": postable[0].currency if postable else "USD",
            **self.admin_site.each_context(request),
            "title": page.title,
            "intro": page.intro,
            "submit_label": f"Confirm: {page.submit.lower()}"
            if rows is not None
            else page.submit,
            "opts": self.opts,
            "items": queryset,
            "form": form,
            "action_name": page.action,
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
