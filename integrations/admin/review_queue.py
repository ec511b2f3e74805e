"""The review queue: items the pipeline could not settle by itself, and the decisions
that resolve them.

An item's page shows the payment, the suggestion, candidate invoices and the decisions
so far, with one small form per decision; the changelist offers the same decisions as
bulk actions. Every decision is a call into `integrations.review`; only its
`ReviewError` is shown to the reviewer as a refusal.
"""

from collections.abc import Callable, Iterable
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

from integrations import learning, review
from integrations.admin.base import (
    PortalMedia,
    format_age,
    plural,
    staff_user,
)
from integrations.admin.review_forms import (
    ACTION_PAGES,
    CANDIDATE_PARTS,
    DECISION_FORMS,
    MONEY_KINDS,
    RETRY_KINDS,
    SUGGESTED_ACTIONS,
    ActionPage,
    ApplyToInvoiceForm,
    CorrectValuesForm,
    DismissForm,
    DuplicateForm,
    NoteForm,
    OnAccountForm,
    SplitForm,
    describe_decision,
    form_problem,
)
from integrations.admin.review_list import ReviewListMixin
from integrations.admin.transactions import explanation_panel
from integrations.connectors.base import ConnectorError
from integrations.models import Posting, ReviewItem
from mappings import matching, payers

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
            self.message_user(request, form_problem(form), messages.ERROR)
        else:
            try:
                done = self._carry_out(
                    decision, item, form.cleaned_data, staff_user(request)
                )
                self.message_user(request, done, messages.SUCCESS)
            except (review.ReviewError, ConnectorError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                if form.cleaned_data.get("remember"):
                    self._remember_payer(request, item)
        return HttpResponseRedirect(
            reverse("admin:integrations_reviewitem_change", args=[item.pk])
        )

    def _carry_out(
        self, decision: str, item: ReviewItem, data: dict, user: AbstractBaseUser
    ) -> str:
        """Call the decision in `integrations.review`; say what it did."""
        if decision == "note":
            review.annotate_review_item(item, data["note"], user)
            return "Note added."
        if decision == "apply":
            review.apply_review_item(item, data["invno"], user)
        elif decision == "split":
            review.apply_review_item_split(item, data["allocations"], user)
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
                candidates = review.invoice_candidates(txn)
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
            "explanation_panel": explanation_panel(txn.match_explanation)
            if txn is not None and (txn.match_explanation or item.kind in MONEY_KINDS)
            else "",
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
        form = ApplyToInvoiceForm(self._confirmed(request))
        if not form.is_valid():
            return self._action_page(request, queryset, form, ACTION_PAGES["apply"])
        invno = form.cleaned_data["invno"]
        applied = self._each(
            request,
            queryset,
            lambda item: review.apply_review_item(item, invno, staff_user(request)),
        )
        if applied:
            self.message_user(
                request, f"Applied {plural(applied, 'payment')} to invoice {invno}."
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
            request,
            named,
            lambda item: review.post_on_account(item, staff_user(request)),
        )
        if posted:
            self.message_user(
                request,
                f"Posted {plural(posted, 'payment')} on account as unapplied cash.",
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
        form = DuplicateForm(self._confirmed(request))
        if not form.is_valid():
            return self._action_page(request, queryset, form, ACTION_PAGES["duplicate"])
        note = form.cleaned_data["note"]
        marked = self._each(
            request,
            queryset,
            lambda item: review.mark_duplicate(item, staff_user(request), note),
        )
        if marked:
            self.message_user(
                request, f"Marked {plural(marked, 'payment')} as duplicate."
            )
        return None

    @admin.action(description="Correct values and retry…", permissions=["change"])
    def correct_and_retry(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        """Ask for corrected values, then store them and send the posting again.

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
        if form.is_valid():
            try:
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
        return self._action_page(request, queryset, form, ACTION_PAGES["correct"])

    @admin.action(description="Dismiss…", permissions=["change"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = DismissForm(self._confirmed(request))
        if not form.is_valid():
            return self._action_page(request, queryset, form, ACTION_PAGES["dismiss"])
        reason = form.cleaned_data["reason"]
        dismissed = self._each(
            request,
            queryset,
            lambda item: review.dismiss_review_item(item, reason, staff_user(request)),
        )
        if dismissed:
            self.message_user(request, f"Dismissed {plural(dismissed, 'review item')}.")
        return None

    @admin.action(
        description="Retry (re-send the posting or reprocess the event)",
        permissions=["change"],
    )
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        retried = self._each(
            request,
            queryset,
            lambda item: review.retry_review_item(item, staff_user(request)),
        )
        if retried:
            self.message_user(
                request, f"Queued {plural(retried, 'review item')} for retry."
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
    ) -> TemplateResponse:
        """Ask for the action's input, as Django's delete confirmation does."""
        context = {
            **self.admin_site.each_context(request),
            "title": page.title,
            "intro": page.intro,
            "submit_label": page.submit,
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
