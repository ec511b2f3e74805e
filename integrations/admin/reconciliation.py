"""Admin for reconciliation runs and what they read: settlement batches and sync runs.

Everything here is a record and read-only. A run's page shows its bucket totals, the
batches that did or did not tie out, and its differences (every line that is neither
posted nor needs no receipt, first `DIFFERENCES_SHOWN` of them); all its lines are on
the line list, filtered by run, and in the CSV export.
"""

import csv
from collections.abc import Iterator, Sequence
from decimal import Decimal

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations.admin.base import PortalMedia, ReadOnlyAdmin, change_link, short
from integrations.models import (
    ReconciliationLine,
    ReconciliationRun,
    SettlementBatch,
    SyncRun,
)
from integrations.reconciliation import line_rows

Bucket = ReconciliationLine.Bucket
DIFFERENCES_SHOWN = 200
# Buckets that need nobody's attention; every other line is a difference.
SETTLED_BUCKETS = (Bucket.POSTED, Bucket.NOT_NEEDED)
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
        "created_by",
        "error",
        "bucket_table",
        "batch_table",
        "difference_table",
        "export_links",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ["portal/admin.css", "portal/dashboard.css"]}

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:run_id>/csv/",
                self.admin_site.admin_view(self.csv_view),
                name="integrations_reconciliationrun_csv",
            ),
            *super().get_urls(),
        ]

    def csv_view(self, request: HttpRequest, run_id: int) -> HttpResponseBase:
        run = get_object_or_404(ReconciliationRun, pk=run_id)
        if not self.has_view_permission(request, run):
            return HttpResponse(status=403)
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
        for value, label in Bucket.choices:
            data = obj.buckets.get(value, {"count": 0, "amount": "0.00"})
            link = format_html(
                '<a href="{}?run__id__exact={}&bucket__exact={}">{}</a>',
                lines_url,
                obj.pk,
                value,
                data["count"],
            )
            rows.append([label, link, data["amount"]])
        return _table(["Bucket", "Count", "Amount"], rows)

    @admin.display(description="Settlement batches")
    def batch_table(self, obj: ReconciliationRun) -> SafeString | str:
        if not obj.batch_totals:
            return "No settled transactions or batches in the range."
        rows = []
        for number, entry in obj.batch_totals.items():
            missing = entry.get("not_in_portal") or []
            rows.append(
                [
                    number,
                    entry["settled_on"] or "—",
                    _or_dash(entry["expected_count"]),
                    entry["actual_count"],
                    _or_dash(entry["expected_amount"]),
                    entry["actual_amount"],
                    _or_dash(entry["difference"]),
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
                line.get_bucket_display(),
                change_link(line.payment, line.transaction_id)
                if line.payment
                else line.transaction_id,
                line.receipt_no or "—",
                f"{line.amount} {line.currency}",
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
    return "—" if value is None else value


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
    list_filter = ("bucket",)
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
        return f"{obj.amount} {obj.currency}"

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
        return f"{obj.net_amount or Decimal('0.00')} {obj.currency}"


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
