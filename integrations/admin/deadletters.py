"""The dead-letter queue: postings that gave up, and replaying them in order."""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from integrations import review
from integrations.deadletters import dead_letters, replay_fingerprint
from integrations.models import DeadLetter, Posting


class ReplaySinceForm(forms.Form):
    since = forms.DateTimeField(
        label="Everything whose last attempt was at or after",
        help_text="YYYY-MM-DD HH:MM, in UTC.",
        widget=forms.DateTimeInput(attrs={"placeholder": "2026-11-27 09:00"}),
    )


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = (
        "transaction_id",
        "payment_created",
        "amount",
        "attempts",
        "last_attempt",
        "last_error_code",
        "last_error",
    )
    list_select_related = ("transaction",)
    search_fields = ("transaction__transaction_id", "last_error")
    actions = ["replay_selected"]
    change_list_template = "admin/integrations/deadletter/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return dead_letters().select_related("transaction")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="Transaction", ordering="transaction__transaction_id")
    def transaction_id(self, obj: DeadLetter) -> str:
        return obj.transaction.transaction_id

    @admin.display(
        description="Payment created (UTC)", ordering="transaction__created_at"
    )
    def payment_created(self, obj: DeadLetter) -> str:
        when = obj.transaction.created_at
        return f"{when:%Y-%m-%d %H:%M}" if when else "-"

    @admin.display(description="Amount")
    def amount(self, obj: DeadLetter) -> str:
        return f"{obj.transaction.amount} {obj.transaction.currency}"

    @admin.display(description="Last attempt (UTC)", ordering="started_at")
    def last_attempt(self, obj: DeadLetter) -> str:
        return f"{obj.started_at:%Y-%m-%d %H:%M}" if obj.started_at else "-"

    @admin.action(
        description="Replay selected, oldest payment first…", permissions=["change"]
    )
    def replay_selected(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        """Show what the replay sends (receipt, customer, invoices, amount), then
        queue it once the reviewer confirmed exactly that list."""
        postings = list(
            dead_letters(ids=queryset.values_list("pk", flat=True)).select_related(
                "transaction"
            )
        )
        fingerprint = replay_fingerprint(postings)
        if request.POST.get("confirmed") != fingerprint:
            return self._confirm_page(
                request,
                postings,
                fingerprint,
                changed=bool(request.POST.get("confirmed")),
                selected=[p.pk for p in postings],
            )
        review.queue_replay(ids=[p.pk for p in postings], user_id=request.user.pk)
        self.message_user(
            request,
            f"Queued a replay of {len(postings)} dead letter(s), oldest payment first.",
        )
        return None

    def _confirm_page(
        self,
        request: HttpRequest,
        postings: list[Posting],
        fingerprint: str,
        *,
        changed: bool,
        selected: list[int] | None = None,
        since: str = "",
    ) -> TemplateResponse:
        currencies = {p.transaction.currency for p in postings}
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm: replay dead letters",
            "opts": self.model._meta,
            "rows": [(p, _receipt_summary(p)) for p in postings],
            "total": sum((p.transaction.amount for p in postings), Decimal("0.00")),
            "currency": currencies.pop() if len(currencies) == 1 else "",
            "fingerprint": fingerprint,
            "changed": changed,
            "selected": selected,
            "since": since,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/integrations/deadletter/replay_confirm.html", context
        )

    def get_urls(self) -> list:
        replay = path(
            "replay-since/",
            self.admin_site.admin_view(self.replay_since_view),
            name="integrations_deadletter_replay_since",
        )
        return [replay, *super().get_urls()]

    def replay_since_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            messages.error(request, "You may not replay dead letters.")
            return HttpResponseRedirect(
                reverse("admin:integrations_deadletter_changelist")
            )
        form = ReplaySinceForm(
            request.POST or None,
            initial={
                "since": timezone.now().replace(
                    hour=0, minute=0, second=0, microsecond=0
                )
            },
        )
        if request.method == "POST" and form.is_valid():
            since = form.cleaned_data["since"]
            postings = list(dead_letters(since=since).select_related("transaction"))
            fingerprint = replay_fingerprint(postings)
            if request.POST.get("confirmed") != fingerprint:
                return self._confirm_page(
                    request,
                    postings,
                    fingerprint,
                    changed=bool(request.POST.get("confirmed")),
                    since=request.POST.get("since", ""),
                )
            # Exactly the confirmed ones: a posting that died since waits for the next.
            review.queue_replay(ids=[p.pk for p in postings], user_id=request.user.pk)
            self.message_user(
                request,
                f"Queued a replay of {len(postings)} dead letter(s) since {since:%Y-%m-%d %H:%M} UTC, oldest payment first.",
            )
            return HttpResponseRedirect(
                reverse("admin:integrations_deadletter_changelist")
            )
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Replay dead letters since…",
            "opts": self.model._meta,
        }
        return TemplateResponse(
            request, "admin/integrations/deadletter/replay_since.html", context
        )


def _receipt_summary(posting: Posting) -> str:
    """What the replay sends for one posting: the receipt's customer and invoices."""
    payload = posting.payload or {}
    invoices = ", ".join(
        str(a.get("invno", "")).strip()
        for a in payload.get("applications") or []
        if isinstance(a, dict)
    )
    custno = str(payload.get("custno", "")).strip() or "?"
    return f"customer {custno}" + (
        f", invoice{'s' if ',' in invoices else ''} {invoices}"
        if invoices
        else ", unapplied cash"
    )
