"""What the portal learned from reviewers: customer mappings and learned proposals.

Customer mappings (`PayerLink`) say "this payer is this Sage Pro customer"; reviewers
add them from a review item ("Remember"), accepted proposals add them, and integration
admins add and edit them here. Each shows how many payments it placed without review
and how many of those a reviewer later changed.

Learned proposals (`MatchingProposal`) are counted from reviewers' decisions by
`integrations.learning`; an admin accepts or rejects the open ones, from the list
(actions) or from a proposal's page (buttons). Nobody adds or edits them by hand.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations import learning
from integrations.admin.base import PortalMedia, plural, staff_user
from integrations.models import Connection
from mappings import payers
from mappings.models import (
    MatchingProposal,
    MatchingRule,
    PayerLink,
    normalise_payer_key,
)


def _with_stats(cl: ChangeList, stats: dict[Any, tuple[int, int]]) -> ChangeList:
    """Give each row of the page its (decided, changed) counts, for the columns."""
    for row in cl.result_list:
        row.portal_stats = stats.get(row.pk, (0, 0))
    return cl


def decided_column(obj: object) -> int:
    return getattr(obj, "portal_stats", (0, 0))[0]


def changed_column(obj: object) -> str:
    decided, changed = getattr(obj, "portal_stats", (0, 0))
    if not decided:
        return "0"
    return f"{changed} ({changed * 100 // decided} %)"


# --- customer mappings ------------------------------------------------------------------------


class PayerLinkForm(forms.ModelForm):
    """A mapping entered by hand: the key is normalised as matching reads it, so the
    uniqueness check and the lookups see the same key."""

    class Meta:
        model = PayerLink
        fields = ("connection", "kind", "key", "custno", "is_active", "evidence")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        kind, key = data.get("kind"), (data.get("key") or "").strip()
        if not kind or not key:
            return data
        if kind == PayerLink.Kind.EMAIL and not payers.email_key(key):
            self.add_error("key", f"{key!r} is not an e-mail address.")
            return data
        normalised = normalise_payer_key(kind, key)
        if not normalised:
            self.add_error(
                "key",
                f"{key!r} leaves nothing to compare once normalised (only words like "
                "Inc or LLC, or punctuation): enter the distinctive part of it.",
            )
            return data
        data["key"] = normalised
        data["custno"] = (data.get("custno") or "").strip().upper()
        return data


@admin.register(PayerLink)
class PayerLinkAdmin(admin.ModelAdmin):
    form = PayerLinkForm
    list_display = (
        "key",
        "kind",
        "custno",
        "connection",
        "is_active",
        "source",
        "payments_decided",
        "changed_by_reviewer",
    )
    list_filter = (
        ("connection", admin.RelatedOnlyFieldListFilter),
        "kind",
        "source",
        "is_active",
    )
    list_select_related = ("connection", "created_by")
    search_fields = ("key", "custno")
    ordering = ("connection", "kind", "key")
    readonly_fields = ("source", "created_by", "created_at")
    Media = PortalMedia

    def get_fields(self, request: HttpRequest, obj: PayerLink | None = None) -> list:
        fields = ["connection", "kind", "key", "custno", "is_active", "evidence"]
        return fields if obj is None else [*fields, *self.readonly_fields]

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelChoiceField | None:
        if db_field.name == "connection":
            kwargs["queryset"] = Connection.objects.filter(
                kind=Connection.Kind.PAYTRACE
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: PayerLink, form: forms.Form, change: bool
    ) -> None:
        if not change:
            obj.source = PayerLink.Source.ADMIN
            obj.created_by = staff_user(request)  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        return _with_stats(
            super().get_changelist_instance(request), learning.link_stats()
        )

    @admin.display(description="Payments decided")
    def payments_decided(self, obj: PayerLink) -> int:
        return decided_column(obj)

    @admin.display(description="Changed by a reviewer")
    def changed_by_reviewer(self, obj: PayerLink) -> str:
        return changed_column(obj)


# --- learned proposals ------------------------------------------------------------------------


class ProposalStateFilter(admin.SimpleListFilter):
    """Filter by state, showing the proposals waiting for an admin unless asked."""

    title = "state"
    parameter_name = "state"
    default = MatchingProposal.State.OPEN
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [*MatchingProposal.State.choices, (self.ALL, "All")]

    def choices(self, changelist: ChangeList) -> Any:
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


def what_accepting_does(proposal: MatchingProposal) -> str:
    if proposal.kind == MatchingProposal.Kind.PAYER_LINK:
        label = payers.KIND_LABELS.get(proposal.subject, proposal.subject)
        return (
            f"Payments whose {label} is {proposal.key} are identified as customer "
            f"{proposal.value} (a customer mapping)."
        )
    rule = (
        f"matching rule “{proposal.rule.name}”"
        if proposal.rule
        else f"the standard rule (created as “{learning.STANDARD_RULE_NAME}”)"
    )
    return (
        f"{proposal.value!r} is removed before invoice numbers by {rule}: "
        f"“{proposal.value}10045” reads as invoice 10045."
    )


@admin.register(MatchingProposal)
class MatchingProposalAdmin(admin.ModelAdmin):
    list_display = (
        "proposal",
        "kind",
        "state",
        "agreeing",
        "disagreeing",
        "connection",
        "rule",
        "updated_at",
        "decided_by",
    )
    list_filter = (
        ProposalStateFilter,
        "kind",
        ("connection", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("connection", "rule", "decided_by")
    search_fields = ("key", "value")
    actions = ["accept_selected", "reject_selected"]
    fields = (
        "proposal",
        "accepting",
        "kind",
        "state",
        "agreeing",
        "disagreeing",
        "connection",
        "rule",
        "evidence_table",
        "created_at",
        "updated_at",
        "decided_by",
        "decided_at",
    )
    readonly_fields = fields
    change_form_template = "admin/mappings/matchingproposal/change_form.html"
    Media = PortalMedia

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # learned from reviewers' decisions only

    def get_fields(
        self, request: HttpRequest, obj: MatchingProposal | None = None
    ) -> tuple:
        if obj is not None and obj.kind == MatchingProposal.Kind.PAYER_LINK:
            return tuple(f for f in self.fields if f != "rule")
        return self.fields

    # A proposal's page: the buttons ---------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        decide = path(
            "<path:object_id>/decide/<slug:verdict>/",
            self.admin_site.admin_view(self.decide_view),
            name="mappings_matchingproposal_decide",
        )
        return [decide, *super().get_urls()]

    def decide_view(
        self, request: HttpRequest, object_id: str, verdict: str
    ) -> HttpResponse:
        if verdict not in ("accept", "reject"):
            raise Http404
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        proposal = self.get_object(request, unquote(object_id))
        if proposal is None:
            raise Http404
        if not self.has_change_permission(request, proposal):
            raise PermissionDenied
        try:
            self.message_user(request, self._decide(proposal, verdict, request))
        except learning.LearningError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(
            reverse("admin:mappings_matchingproposal_change", args=[proposal.pk])
        )

    @staticmethod
    def _decide(proposal: MatchingProposal, verdict: str, request: HttpRequest) -> str:
        user = staff_user(request)
        if verdict == "reject":
            learning.reject(proposal, user)
            return f"Rejected: {proposal}."
        result = learning.accept(proposal, user)
        if isinstance(result, MatchingRule):
            return (
                f"Accepted: {proposal}. Matching rule “{result.name}” now removes "
                f"{proposal.value!r} before invoice numbers."
            )
        return f"Accepted: {result} is a customer mapping from now on."

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: MatchingProposal | None = None,
    ) -> HttpResponse:
        if obj is not None:
            can_decide = self.has_change_permission(request, obj)
            context.update(
                {
                    "can_accept": can_decide
                    and obj.state == MatchingProposal.State.OPEN,
                    "can_reject": can_decide
                    and obj.state
                    in (MatchingProposal.State.OPEN, MatchingProposal.State.LEARNING),
                    "accept_url": reverse(
                        "admin:mappings_matchingproposal_decide",
                        args=[obj.pk, "accept"],
                    ),
                    "reject_url": reverse(
                        "admin:mappings_matchingproposal_decide",
                        args=[obj.pk, "reject"],
                    ),
                    "title": "Learned proposal",
                    "show_save": False,
                    "show_save_and_continue": False,
                    "show_save_and_add_another": False,
                    "show_delete": False,
                }
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # Bulk actions ---------------------------------------------------------------------

    @admin.action(description="Accept selected proposals", permissions=["change"])
    def accept_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, "accept")

    @admin.action(description="Reject selected proposals", permissions=["change"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, "reject")

    def _each(self, request: HttpRequest, queryset: QuerySet, verdict: str) -> None:
        done = 0
        for proposal in queryset:
            try:
                self._decide(proposal, verdict, request)
                done += 1
            except learning.LearningError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if done:
            verb = "Accepted" if verdict == "accept" else "Rejected"
            self.message_user(request, f"{verb} {plural(done, 'proposal')}.")

    # Columns and fields ---------------------------------------------------------------

    @admin.display(description="Proposal")
    def proposal(self, obj: MatchingProposal) -> str:
        return str(obj)

    @admin.display(description="Accepting it means")
    def accepting(self, obj: MatchingProposal) -> str:
        return what_accepting_does(obj)

    @admin.display(description="Learned from")
    def evidence_table(self, obj: MatchingProposal) -> SafeString:
        entries = [e for e in obj.evidence or [] if isinstance(e, dict)]
        if not entries:
            return format_html("<p>{}</p>", "No decisions recorded.")
        rows = format_html_join(
            "",
            "<tr><td class='portal-nowrap'>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    str(e.get("at", ""))[:16].replace("T", " "),
                    e.get("user", ""),
                    e.get("transaction", ""),
                    _item_link(e.get("item")),
                    _placed(e),
                    "agrees" if e.get("agrees", True) else "disagrees",
                )
                for e in reversed(entries)
            ),
        )
        return format_html(
            "<table class='portal-evidence'><thead><tr><th>When</th><th>Reviewer</th>"
            "<th>Transaction</th><th>Review item</th><th>Placed at</th><th></th>"
            "</tr></thead><tbody>{}</tbody></table><p class='help'>{}</p>",
            rows,
            f"The latest {len(entries)} decisions, newest first "
            f"({obj.agreeing} agreeing and {obj.disagreeing} disagreeing in all).",
        )


def _item_link(pk: object) -> SafeString | str:
    if not isinstance(pk, int):
        return ""
    url = reverse("admin:integrations_reviewitem_change", args=[pk])
    return format_html('<a href="{}">#{}</a>', url, pk)


def _placed(entry: dict) -> str:
    invoices = ", ".join(str(i) for i in entry.get("invoices") or [])
    custno = entry.get("custno") or "?"
    if invoices:
        return f"customer {custno}, invoice {invoices}"
    return f"customer {custno}, on account"
