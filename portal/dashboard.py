"""The cash-position dashboard: money by day for the last 30 days, and pipeline health.

Days are business days (settings.BUSINESS_TIME_ZONE), today included. The four series:

- approved: sales (SALE/CAPTURE) PayTrace approved, by the day PayTrace created them
  (approved, pending settlement, settled, or refunded later);
- settled: sales that settled, by settlement day (refunds are their own series);
- refunded: refunds and refunded sales, by the day their status changed;
- pending in review: payments with an open review item, by the day PayTrace created them.

Every figure is aggregated in SQL: the page runs the same dozen queries however many
transactions there are.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import (
    Count,
    Exists,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Coalesce, TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from integrations.models import (
    Connection,
    Event,
    GatewayStatus,
    PaymentTransaction,
    Posting,
    ReconciliationRun,
    ReviewItem,
    SyncRun,
)
from integrations.reconciliation import business_today, business_zone, day_bounds

DAYS = 30
ZERO = Decimal("0.00")
CENT = Decimal("0.01")
SALE_TYPES = ["SALE", "CAPTURE", ""]
APPROVED_STATES = [
    GatewayStatus.APPROVED,
    GatewayStatus.PENDING_SETTLEMENT,
    GatewayStatus.SETTLED,
    GatewayStatus.REFUNDED,
]
WAITING_STATES = [Event.State.QUEUED, Event.State.PROCESSING, Event.State.FAILED]


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    color: str


SERIES = (
    Series("approved", "Approved", "#417690"),
    Series("settled", "Settled", "#2e7d32"),
    Series("refunded", "Refunded", "#c62828"),
    Series("in_review", "Pending in review", "#ef8f00"),
)


@staff_member_required
def cash_position(request: HttpRequest) -> HttpResponse:
    today = business_today()
    days = cash_by_day(today)
    context = {
        **admin.site.each_context(request),
        "title": "Cash position",
        "today": today,
        "series": SERIES,
        "days": days,
        "totals": {s.key: sum((d[s.key] for d in days), ZERO) for s in SERIES},
        "chart": bar_chart(days),
        "health": pipeline_health(),
        "time_zone": business_zone().key,
    }
    return render(request, "portal/dashboard.html", context)


# --- money by day ------------------------------------------------------------------------


def cash_by_day(today: date, days: int = DAYS) -> list[dict[str, Any]]:
    """One row per day, oldest first: the day and each series' amount."""
    first = today - timedelta(days=days - 1)
    start, end = day_bounds(first, today)
    txns = PaymentTransaction.objects.all()
    open_review = ReviewItem.objects.filter(
        transaction=OuterRef("pk"), state=ReviewItem.State.OPEN
    )
    figures = {
        "approved": _sum_by_day(
            txns.filter(
                transaction_type__in=SALE_TYPES, gateway_status__in=APPROVED_STATES
            ),
            "created_at",
            start,
            end,
        ),
        "settled": _sum_by_day(
            txns.filter(transaction_type__in=SALE_TYPES), "settled_at", start, end
        ),
        "refunded": _sum_by_day(
            txns.filter(gateway_status=GatewayStatus.REFUNDED).annotate(
                refunded_at=Coalesce("status_changed_at", "created_at")
            ),
            "refunded_at",
            start,
            end,
        ),
        "in_review": _sum_by_day(
            txns.filter(Exists(open_review)), "created_at", start, end
        ),
    }
    return [
        {
            "day": day,
            **{key: per_day.get(day, ZERO) for key, per_day in figures.items()},
        }
        for day in (first + timedelta(days=n) for n in range(days))
    ]


def _sum_by_day(
    queryset: QuerySet, field: str, start: datetime, end: datetime
) -> dict[date, Decimal]:
    rows = (
        queryset.filter(**{f"{field}__gte": start, f"{field}__lt": end})
        .annotate(day=TruncDate(field, tzinfo=business_zone()))
        .order_by()
        .values("day")
        .annotate(total=Sum("amount"))
        .values_list("day", "total")
    )
    # SQLite sums decimals as floats; one rounding to cents puts them back.
    return {day: (total or ZERO).quantize(CENT) for day, total in rows}


# --- the chart ---------------------------------------------------------------------------

WIDTH, HEIGHT = 1100, 320
LEFT, RIGHT, TOP, BOTTOM = 80, 10, 16, 40


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above `value` (the chart's top)."""
    if value <= 0:
        return Decimal(100)
    magnitude = Decimal(10) ** (len(str(int(value))) - 1)
    for step in (1, 2, Decimal("2.5"), 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def bar_chart(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometry of a grouped bar chart (one group per day, one bar per series)."""
    top = nice_ceiling(max((d[s.key] for d in days for s in SERIES), default=ZERO))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar_w = slot * 0.8 / len(SERIES)
    bars, labels = [], []
    for i, day in enumerate(days):
        x0 = LEFT + i * slot + slot * 0.1
        for j, series in enumerate(SERIES):
            amount = day[series.key]
            h = float(amount / top) * plot_h if amount > 0 else 0.0
            bars.append(
                {
                    "x": round(x0 + j * bar_w, 1),
                    "y": round(TOP + plot_h - h, 1),
                    "w": round(bar_w - 0.5, 1),
                    "h": round(h, 1),
                    "color": series.color,
                    "title": f"{day['day']:%b %-d}: {series.label} {amount:,.2f}",
                }
            )
        if i % 5 == 0 or i == len(days) - 1:
            labels.append(
                {"x": round(LEFT + (i + 0.5) * slot, 1), "text": f"{day['day']:%b %-d}"}
            )
    ticks = [
        {"y": round(TOP + plot_h - plot_h * n / 4, 1), "text": f"{top * n / 4:,.0f}"}
        for n in range(5)
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "baseline": TOP + plot_h,
        "label_y": HEIGHT - BOTTOM + 18,
        "bars": bars,
        "labels": labels,
        "ticks": ticks,
    }


# --- pipeline health -----------------------------------------------------------------------


def pipeline_health(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    events = dict(
        Event.objects.order_by()
        .values("state")
        .annotate(n=Count("pk"))
        .values_list("state", "n")
    )
    oldest = Event.objects.filter(state__in=WAITING_STATES).aggregate(
        oldest=Min("received_at")
    )["oldest"]
    review = dict(
        ReviewItem.objects.filter(state=ReviewItem.State.OPEN)
        .order_by()
        .values("kind")
        .annotate(n=Count("pk"))
        .values_list("kind", "n")
    )
    polls = (
        Connection.objects.filter(kind=Connection.Kind.PAYTRACE, is_active=True)
        .annotate(
            last_poll=Max(
                "sync_runs__finished_at",
                filter=Q(
                    sync_runs__kind=SyncRun.Kind.POLL,
                    sync_runs__state=SyncRun.State.SUCCEEDED,
                ),
            )
        )
        .order_by("name")
    )
    last_poll = SyncRun.objects.filter(
        kind=SyncRun.Kind.POLL, state=SyncRun.State.SUCCEEDED
    ).aggregate(at=Max("finished_at"))["at"]
    posting_admin = reverse("admin:integrations_posting_changelist")
    return {
        "events": [
            (label, events.get(value, 0)) for value, label in Event.State.choices
        ],
        "events_total": sum(events.values()),
        "oldest_unprocessed_at": oldest,
        "oldest_unprocessed_age": _age(oldest, now),
        "dead_events": events.get(Event.State.DEAD, 0),
        "dead_postings": Posting.objects.filter(state=Posting.State.DEAD).count(),
        "dead_postings_url": f"{posting_admin}?state__exact={Posting.State.DEAD}",
        "review": [
            (label, review[value])
            for value, label in ReviewItem.Kind.choices
            if review.get(value)
        ],
        "review_total": sum(review.values()),
        "review_url": reverse("admin:integrations_reviewitem_changelist"),
        "last_poll": last_poll,
        "last_poll_age": _age(last_poll, now) if last_poll else "never",
        "polls": [
            (c.name, c.last_poll, _age(c.last_poll, now) if c.last_poll else "never")
            for c in polls
        ],
        "last_reconciliation": ReconciliationRun.objects.select_related(
            "connection"
        ).first(),
    }


def _age(since: datetime | None, now: datetime) -> str:
    """How long ago, roughly: "45 s", "12 min", "3 h", "4 d" ("" for nothing)."""
    if since is None:
        return ""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
