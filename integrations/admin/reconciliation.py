"""Admin for reconciliation runs and what they read: settlement batches and sync runs.

Everything here is a record and read-only. Month-end: whoever may add a run (finance
reviewers, integration admins) starts one with "Start a month-end run" (a period
picker; `integrations.monthend` runs it in the background), and the run's page opens
with the headline (PayTrace total, Sage Pro total, difference and what explains it,
each a link to its lines) and refreshes itself while the run is running. Below: its
bucket totals, the batches that did or did not tie out, and its differences (every
line that is neither posted nor needs no receipt, first `DIFFERENCES_SHOWN` of them);
all its lines are on the line list, filtered by run, and in the CSV export.
"""

import csv
from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations import monthend
from integrations.admin.base import (
    PortalMedia,
    ReadOnlyAdmin,
    change_link,
    short,
    staff_user,
)
from integrations.models import (
    Connection,
    GatewayStatus,
    ReconciliationLine,
    ReconciliationRun,
    SettlementBatch,
    SyncRun,
)
from integrations.reconciliation import (
    BUCKET_LABELS,
    EXPLANATIONS,
    EXTRA_BUCKETS,
    REVERSE_DETAIL,
    SETTLED,
    TIMING_DETAIL,
    WRONG_AMOUNT_DETAIL,
    ReconciliationError,
    business_today,
    line_rows,
)
from mappings.formatting import format_money, money_html

Bucket = ReconciliationLine.Bucket
DIFFERENCES_SHOWN = 200
# Buckets that need nobody's attention; every other line is a difference.
SETTLED_BUCKETS = SETTLED
CSV_HEADER = [
    "run",
    "connection",
    "date_from",
    "date_to",
    "bucket",
    "transaction_id",
    "receipt_no",
    "amount",
    "currency",
    "detail",
]


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer."""

    def write(self, value: str) -> str:
        return value


def csv_rows(runs: QuerySet) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for run in runs.select_related("connection"):
        for line in line_rows([run]):
            yield writer.writerow(
                [
                    run.pk,
                    line["connection"],
                    run.date_from,
                    run.date_to,
                    line["bucket"],
                    line["transaction_id"],
                    line["receipt_no"],
                    line["amount"],
                    line["currency"],
                    line["detail"],
                ]
            )


def csv_response(runs: QuerySet, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_rows(runs), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], css: str = ""
) -> SafeString:
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),)
            for row in rows
        ),
    )
    return format_html(
        '<table class="portal-recon {}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        css,
        head,
        body,
    )


def _tie_label(value: bool | None) -> str:
    return {True: "Ties out", False: "Does NOT tie out", None: "No batch data"}[value]


ADD_RUN = "integrations.add_reconciliationrun"
MONTHS_OFFERED = 13


def _month_choices(today: date) -> list[tuple[str, str]]:
    """This month and the twelve before it, newest first, as ("2026-11", "November 2026")."""
    first = today.replace(day=1)
    choices = []
    for _ in range(MONTHS_OFFERED):
        choices.append((f"{first:%Y-%m}", f"{first:%B %Y}"))
        first = (first - date.resolution).replace(day=1)
    return choices


class StartRunForm(forms.Form):
    """The period picker: a month (last month by default), or a range of days."""

    connection = forms.ModelChoiceField(
        queryset=Connection.objects.filter(
            kind=Connection.Kind.PAYTRACE, is_active=True, sagepro__isnull=False
        ).order_by("name"),
        empty_label=None,
        label="PayTrace connection",
    )
    month = forms.ChoiceField(label="Month", required=False)
    date_from = forms.DateField(
        label="Or from",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="A range of days instead of the month (both days included).",
    )
    date_to = forms.DateField(
        label="to", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, today: date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        month_field = self.fields["month"]
        assert isinstance(month_field, forms.ChoiceField)
        month_field.choices = _month_choices(today)
        self.fields["month"].initial = f"{monthend.last_month(today)[0]:%Y-%m}"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        date_from, date_to = data.get("date_from"), data.get("date_to")
        if date_from or date_to:
            if not (date_from and date_to):
                raise forms.ValidationError(
                    "Give both days of the range (from and to), or leave both empty "
                    "to reconcile the month."
                )
            if date_to < date_from:
                raise forms.ValidationError(
                    f"The range ends ({date_to}) before it starts ({date_from}): "
                    "swap the days."
                )
            data["period"] = (date_from, date_to)
        elif data.get("month"):
            year, month = map(int, data["month"].split("-"))
            first = date(year, month, 1)
            next_first = (first + 31 * date.resolution).replace(day=1)
            data["period"] = (first, next_first - date.resolution)
        else:
            raise forms.ValidationError("Choose a month or give a range of days.")
        return data


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "__str__",
        "connection",
        "date_from",
        "date_to",
        "state",
        "tie_out",
        "posted",
        "differences",
        "difference_amount",
        "started_at",
    )
    list_filter = ("state", "ties_out", "connection")
    list_select_related = ("connection",)
    date_hierarchy = "date_from"
    actions = ["export_csv"]
    fields = (
        "connection",
        "date_from",
        "date_to",
        "state",
        "tie_out",
        "started_at",
        "finished_at",
        "started_by",
        "error",
        "bucket_table",
        "batch_table",
        "difference_table",
        "export_links",
    )
    readonly_fields = fields

    class Media:
        css = {
            "all": [
                "portal/admin.css",
                "portal/dashboard.css",
                "portal/workspace.css",
            ]
        }

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "start/",
                self.admin_site.admin_view(self.start_view),
                name="integrations_reconciliationrun_start",
            ),
            path(
                "<int:run_id>/csv/",
                self.admin_site.admin_view(self.csv_view),
                name="integrations_reconciliationrun_csv",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_start_run": request.user.has_perm(ADD_RUN),
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        if run is not None:
            extra_context = {
                **(extra_context or {}),
                "run": run,
                "headline": monthend.headline(run),
                "is_running": run.state == ReconciliationRun.State.RUNNING,
                "csv_url": reverse(
                    "admin:integrations_reconciliationrun_csv", args=[run.pk]
                ),
                "can_start_run": request.user.has_perm(ADD_RUN),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def start_view(self, request: HttpRequest) -> HttpResponseBase:
        """The period picker; a valid POST starts the run and opens its page."""
        if not request.user.has_perm(ADD_RUN):
            raise PermissionDenied(
                "Starting a month-end run needs the “Can add reconciliation run” "
                "permission (the Finance reviewer group has it)."
            )
        form = StartRunForm(request.POST or None, today=business_today())
        if request.method == "POST" and form.is_valid():
            date_from, date_to = form.cleaned_data["period"]
            try:
                run = monthend.start(
                    form.cleaned_data["connection"],
                    date_from,
                    date_to,
                    user=staff_user(request),
                )
            except ReconciliationError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    f"Month-end run for {date_from} … {date_to} started; this page "
                    "refreshes itself until it is done.",
                    messages.SUCCESS,
                )
                return redirect("admin:integrations_reconciliationrun_change", run.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a month-end run",
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
            "no_connection": not form.fields["connection"].queryset.exists(),  # type: ignore[attr-defined]
        }
        return TemplateResponse(
            request, "admin/integrations/reconciliationrun/start.html", context
        )

    def csv_view(self, request: HttpRequest, run_id: int) -> HttpResponseBase:
        run = get_object_or_404(ReconciliationRun, pk=run_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied(
                "Downloading a reconciliation needs the “Can view reconciliation "
                "run” permission."
            )
        return csv_response(
            ReconciliationRun.objects.filter(pk=run.pk),
            f"reconciliation-{run.pk}-{run.date_from}-{run.date_to}.csv",
        )

    @admin.action(description="Export lines as CSV", permissions=["view"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet
    ) -> StreamingHttpResponse:
        return csv_response(queryset.order_by("pk"), "reconciliation.csv")

    @admin.display(description="Batches", ordering="ties_out")
    def tie_out(self, obj: ReconciliationRun) -> str:
        return _tie_label(obj.ties_out)

    @admin.display(description="PayTrace − Sage Pro")
    def difference_amount(self, obj: ReconciliationRun) -> SafeString | str:
        difference = obj.headline.get("difference")
        if difference is None:
            return "—"
        return _money(difference, obj)

    @admin.display(description="Started by")
    def started_by(self, obj: ReconciliationRun) -> str:
        # A name, not a link: reviewers cannot open the user admin.
        user = obj.created_by
        if user is None:
            return "the nightly schedule"
        return user.get_full_name() or user.get_username()

    @admin.display(description="Posted")
    def posted(self, obj: ReconciliationRun) -> int:
        return obj.buckets.get(Bucket.POSTED, {}).get("count", 0)

    @admin.display(description="Differences")
    def differences(self, obj: ReconciliationRun) -> int:
        return sum(
            data["count"]
            for name, data in obj.buckets.items()
            if name not in SETTLED_BUCKETS
        )

    @admin.display(description="Buckets")
    def bucket_table(self, obj: ReconciliationRun) -> SafeString:
        lines_url = reverse("admin:integrations_reconciliationline_changelist")
        rows = []
        for value, label in BUCKET_LABELS.items():
            data = obj.buckets.get(value, {"count": 0, "amount": "0.00"})
            if value in EXTRA_BUCKETS and not data["count"]:
                continue  # issue 14's buckets only when they hold something
            link = format_html(
                '<a href="{}?run__id__exact={}&bucket__exact={}">{}</a>',
                lines_url,
                obj.pk,
                value,
                data["count"],
            )
            rows.append([label, link, _money(data["amount"], obj)])
        return _table(["Bucket", "Count", "Amount"], rows)

    @admin.display(description="Settlement batches")
    def batch_table(self, obj: ReconciliationRun) -> SafeString | str:
        if not obj.batch_totals:
            return "No settled transactions or batches in the range."
        rows = []
        for number, entry in obj.batch_totals.items():
            missing = list(entry.get("not_in_portal") or [])
            if entry.get("masked_ids"):
                missing.append(f"({entry['masked_ids']} ids masked, not compared)")
            rows.append(
                [
                    number,
                    entry["settled_on"] or "—",
                    _or_dash(entry["expected_count"]),
                    entry["actual_count"],
                    _or_dash(_money(entry["expected_amount"], obj)),
                    _money(entry["actual_amount"], obj),
                    _or_dash(_money(entry["difference"], obj)),
                    {True: "yes", False: "NO", None: "unknown"}[entry["ties_out"]],
                    ", ".join(missing) or "—",
                ]
            )
        return _table(
            [
                "Batch",
                "Settled on",
                "PayTrace count",
                "Portal count",
                "PayTrace net",
                "Portal net",
                "Difference",
                "Ties out",
                "In batch, not in portal",
            ],
            rows,
        )

    @admin.display(description="Differences")
    def difference_table(self, obj: ReconciliationRun) -> SafeString | str:
        lines = list(
            obj.lines.exclude(bucket__in=SETTLED_BUCKETS)
            .select_related("payment")
            .order_by("bucket", "transaction_id")[:DIFFERENCES_SHOWN]
        )
        if not lines:
            return "None: every transaction is posted or needs no receipt."
        rows = [
            [
                BUCKET_LABELS.get(line.bucket, line.bucket),
                change_link(line.payment, line.transaction_id)
                if line.payment
                else line.transaction_id,
                line.receipt_no or "—",
                money_html(line.amount, line.currency),
                short(line.detail, 140),
            ]
            for line in lines
        ]
        return _table(
            ["Bucket", "PayTrace transaction", "Sage Pro receipt", "Amount", "Detail"],
            rows,
            "portal-recon-differences",
        )

    @admin.display(description="All lines")
    def export_links(self, obj: ReconciliationRun) -> SafeString:
        return format_html(
            '<a href="{}?run__id__exact={}">View all {} lines</a> · '
            '<a class="portal-csv" href="{}">Download CSV</a>',
            reverse("admin:integrations_reconciliationline_changelist"),
            obj.pk,
            sum(data["count"] for data in obj.buckets.values()),
            reverse("admin:integrations_reconciliationrun_csv", args=[obj.pk]),
        )


def _or_dash(value: object) -> object:
    return "—" if value is None or value == "" else value


def _money(amount: object, run: ReconciliationRun) -> SafeString | str:
    """A stored amount ("1234.50") as money in the run's base currency."""
    if amount is None:
        return ""
    return money_html(amount, run.headline.get("currency") or "USD")


class ExplainsFilter(admin.SimpleListFilter):
    """The lines behind one figure of a run's headline (`monthend.headline`)."""

    title = "explains"
    parameter_name = "explains"
    SETTLED_NOT_POSTED = "settled_not_posted"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [
            *EXPLANATIONS.items(),
            (self.SETTLED_NOT_POSTED, "Settled, not posted"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        special = Q(detail__contains=WRONG_AMOUNT_DETAIL) | Q(
            detail__contains=REVERSE_DETAIL
        )
        conditions = {
            "in_review": Q(bucket=Bucket.IN_REVIEW) & ~special,
            "pending": Q(bucket=Bucket.PENDING),
            "dead": Q(bucket=Bucket.DEAD),
            "missing": Q(bucket=Bucket.MISSING),
            "timing": Q(bucket=Bucket.POSTED, detail__contains=TIMING_DETAIL),
            "amount_differences": Q(
                bucket=Bucket.IN_REVIEW, detail__contains=WRONG_AMOUNT_DETAIL
            ),
            "reverse": Q(bucket=Bucket.IN_REVIEW, detail__contains=REVERSE_DETAIL),
            "orphans": Q(bucket=Bucket.ORPHAN),
            self.SETTLED_NOT_POSTED: Q(payment__gateway_status=GatewayStatus.SETTLED)
            & ~Q(bucket__in=[*SETTLED_BUCKETS, Bucket.ORPHAN]),
        }
        condition = conditions.get(value)
        return queryset if condition is None else queryset.filter(condition)


@admin.register(ReconciliationLine)
class ReconciliationLineAdmin(ReadOnlyAdmin):
    list_display = (
        "transaction_id",
        "bucket",
        "receipt_no",
        "amount_display",
        "detail",
        "run_link",
    )
    list_filter = ("bucket", ExplainsFilter)
    search_fields = ("transaction_id", "receipt_no")
    list_select_related = ("run",)
    fields = (
        "run",
        "bucket",
        "payment",
        "transaction_id",
        "receipt_no",
        "amount",
        "currency",
        "detail",
    )
    readonly_fields = fields
    Media = PortalMedia

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: ReconciliationLine) -> str:
        return format_money(obj.amount, obj.currency)

    @admin.display(description="Run", ordering="run")
    def run_link(self, obj: ReconciliationLine) -> SafeString:
        return change_link(
            obj.run, f"#{obj.run_id} {obj.run.date_from}…{obj.run.date_to}"
        )


@admin.register(SettlementBatch)
class SettlementBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "batch_number",
        "connection",
        "settled_at",
        "transaction_count",
        "net_display",
        "sales_count",
        "sales_amount",
        "refund_count",
        "refund_amount",
    )
    list_filter = ("connection",)
    search_fields = ("batch_number",)
    list_select_related = ("connection",)
    date_hierarchy = "settled_at"
    fields = (
        "connection",
        "batch_number",
        "settled_at",
        "transaction_count",
        "net_amount",
        "currency",
        "sales_count",
        "sales_amount",
        "refund_count",
        "refund_amount",
        "transaction_ids",
        "raw",
        "fetched_at",
    )
    readonly_fields = fields
    Media = PortalMedia

    @admin.display(description="Net", ordering="net_amount")
    def net_display(self, obj: SettlementBatch) -> str:
        return format_money(obj.net_amount or Decimal("0.00"), obj.currency)


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "connection",
        "kind",
        "state",
        "window_start",
        "window_end",
        "fetched",
        "new",
        "changed",
        "unchanged",
        "error_short",
    )
    list_filter = ("kind", "state", "connection")
    list_select_related = ("connection",)
    date_hierarchy = "started_at"
    fields = (
        "connection",
        "kind",
        "state",
        "window_start",
        "window_end",
        "started_at",
        "finished_at",
        "fetched",
        "new",
        "changed",
        "unchanged",
        "error",
    )
    readonly_fields = fields
    Media = PortalMedia

    @admin.display(description="Error", ordering="error")
    def error_short(self, obj: SyncRun) -> str:
        return short(obj.error)
