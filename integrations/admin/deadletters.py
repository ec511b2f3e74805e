"""The dead-letter queue: postings that gave up, and replaying them in order."""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from integrations import review
from integrations.deadletters import dead_letters
from integrations.models import DeadLetter


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
        description="Replay selected, oldest payment first", permissions=["change"]
    )
    def replay_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        review.queue_replay(ids=ids, user_id=request.user.pk)
        self.message_user(
            request,
            f"Queued a replay of {len(ids)} dead letter(s), oldest payment first.",
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
            count = dead_letters(since=since).count()
            review.queue_replay(since=since, user_id=request.user.pk)
            self.message_user(
                request,
                f"Queued a replay of {count} dead letter(s) since {since:%Y-%m-%d %H:%M} UTC, oldest payment first.",
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
