"""The local mirrors of Sage Pro: how old each is, where its feeds stand, and what
went wrong last; "Sync now" and "Resync now (full)" queue a sync for a worker."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django_q.tasks import async_task

from integrations.admin.base import ReadOnlyAdmin, format_age, short, short_time
from integrations.models import (
    Connection,
    MirroredCustomer,
    MirroredGlAccount,
    MirroredInvoice,
    MirroredPeriod,
    MirrorState,
)


def queue_sync(state: MirrorState, *, full: bool) -> None:
    """Queue one sync of the mirror for a worker (`integrations.mirror.sync_connection`)."""
    async_task(
        "integrations.mirror.sync_connection",
        state.connection_id,
        full,
        task_name=f"mirror-{'full' if full else 'sync'}-{state.connection_id}",
    )


@admin.register(MirrorState)
class MirrorStateAdmin(ReadOnlyAdmin):
    list_display = (
        "connection",
        "age",
        "last_sync",
        "last_full_sync",
        "cursors",
        "rows",
        "error",
    )
    list_select_related = ("connection",)
    actions = ["sync_now", "resync_full"]
    fields = (
        "connection",
        "age",
        "synced_at",
        "full_synced_at",
        "full_started_at",
        "invoice_cursor",
        "customer_cursor",
        "gl_accounts_fetched_at",
        "periods_fetched_at",
        "rows",
        "last_error",
        "last_error_at",
    )
    readonly_fields = fields

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Every Sage Pro connection has a row here, synced or not.
        MirrorState.objects.bulk_create(
            [
                MirrorState(connection=c)
                for c in Connection.objects.filter(
                    kind=Connection.Kind.SAGEPRO, mirror_state__isnull=True
                )
            ],
            ignore_conflicts=True,
        )
        return super().changelist_view(request, extra_context)

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.change_mirrorstate")

    @admin.display(description="Age")
    def age(self, obj: MirrorState) -> SafeString | str:
        if obj.synced_at is None:
            return "never synced"
        text = format_age(obj.synced_at)
        limit = settings.MIRROR_MAX_AGE_MINUTES
        if timezone.now() - obj.synced_at > timedelta(minutes=limit):
            return format_html(
                '<strong title="older than {} minutes">{} (stale)</strong>', limit, text
            )
        return text

    @admin.display(description="Last sync", ordering="synced_at")
    def last_sync(self, obj: MirrorState) -> str:
        return short_time(obj.synced_at) or "-"

    @admin.display(description="Last full sync", ordering="full_synced_at")
    def last_full_sync(self, obj: MirrorState) -> str:
        when = short_time(obj.full_synced_at) or "-"
        return f"{when} (resync under way)" if obj.full_started_at else when

    @admin.display(description="Cursors (invoices / customers)")
    def cursors(self, obj: MirrorState) -> str:
        return f"{obj.invoice_cursor or '-'} / {obj.customer_cursor or '-'}"

    @admin.display(description="Rows mirrored")
    def rows(self, obj: MirrorState) -> str:
        scope = {"connection_id": obj.connection_id}
        invoices = MirroredInvoice.objects.filter(**scope, deleted=False).count()
        customers = MirroredCustomer.objects.filter(**scope, deleted=False).count()
        accounts = MirroredGlAccount.objects.filter(**scope).count()
        periods = MirroredPeriod.objects.filter(**scope).count()
        return (
            f"{invoices} invoices, {customers} customers, "
            f"{accounts} GL accounts, {periods} periods"
        )

    @admin.display(description="Last error")
    def error(self, obj: MirrorState) -> str:
        if not obj.last_error:
            return "-"
        return f"{short_time(obj.last_error_at)}: {short(obj.last_error)}"

    @admin.action(description="Sync now", permissions=["sync"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._queue(request, queryset, full=False)

    @admin.action(description="Resync now (full)", permissions=["sync"])
    def resync_full(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._queue(request, queryset, full=True)

    def _queue(self, request: HttpRequest, queryset: QuerySet, *, full: bool) -> None:
        states = list(queryset.select_related("connection"))
        for state in states:
            queue_sync(state, full=full)
        what = "full resync" if full else "sync"
        names = ", ".join(s.connection.slug for s in states)
        self.message_user(
            request,
            f"Queued a {what} of {names}; a worker runs it shortly. Reload this page "
            "to see the age and any error.",
            messages.SUCCESS,
        )
