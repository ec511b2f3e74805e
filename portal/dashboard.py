"""The cash-position dashboard: money by day for the last 30 days, and pipeline health.

Days are business days (settings.BUSINESS_TIME_ZONE), today included. The four series:

- approved: sales (SALE/CAPTURE) PayTrace approved, by the day PayTrace created them
  (approved, pending settlement, settled, or refunded later);
- settled: sales that settled, by settlement day (refunds are their own series);
- refunded: refunds and refunded sales, by the day their status changed;
- pending in review: payments with an open review item, by the day PayTrace created them.

Every figure is aggregated in SQL: the page runs the same dozen queries however many
transactions there are. Figures link to the filtered list behind them when the viewer
may open it (`portal.home.list_url`), and the page warns when the money waiting in
review or in dead letters passes a share of the period's approved cash
(settings.DASHBOARD_REVIEW_SHARE_WARN, DASHBOARD_DEAD_SHARE_WARN).
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
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
from mappings.formatting import format_money
from portal.home import User, list_url

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
    totals = {s.key: sum((d[s.key] for d in days), ZERO) for s in SERIES}
    health = pipeline_health(user=request.user)
    start, end = day_bounds(days[0]["day"], today)
    context = {
        **admin.site.each_context(request),
        "title": "Cash position",
        "today": today,
        "series": SERIES,
        "days": days,
        "totals": totals,
        "total_links": series_links(request.user, start, end),
        "currency": settings.DASHBOARD_CURRENCY,
        "chart": bar_chart(days),
        "health": health,
        "warnings": share_warnings(
            totals["approved"], totals["in_review"], dead_amount(start, end), health
        ),
        "time_zone": business_zone().key,
    }
    return render(request, "portal/dashboard.html", context)


def series_links(user: User, start: datetime, end: datetime) -> dict[str, str | None]:
    """Each series' list for the period, when `user` may open it."""
    return {
        "approved": list_url(
            user,
            "integrations",
            "paymenttransaction",
            created_at__gte=start,
            created_at__lt=end,
            gateway_status__in=",".join(APPROVED_STATES),
        ),
        "settled": list_url(
            user,
            "integrations",
            "paymenttransaction",
            settled_at__gte=start,
            settled_at__lt=end,
        ),
        "refunded": list_url(
            user,
            "integrations",
            "paymenttransaction",
            gateway_status__exact=GatewayStatus.REFUNDED,
            status_changed_at__gte=start,
            status_changed_at__lt=end,
        ),
        "in_review": list_url(
            user, "integrations", "reviewitem", state=ReviewItem.State.OPEN
        ),
    }


def dead_amount(start: datetime, end: datetime) -> Decimal:
    """Money in dead letters: payments of the period whose posting gave up."""
    total = Posting.objects.filter(
        state=Posting.State.DEAD,
        transaction__created_at__gte=start,
        transaction__created_at__lt=end,
    ).aggregate(total=Sum("transaction__amount"))["total"]
    return (total or ZERO).quantize(CENT)


def share_warnings(
    cash: Decimal, in_review: Decimal, dead: Decimal, health: dict[str, Any]
) -> list[dict[str, Any]]:
    """A warning per kind of waiting money that passes its share of the period's cash."""
    if cash <= 0:
        return []
    currency = settings.DASHBOARD_CURRENCY
    warnings = []
    for label, amount, limit, url in (
        (
            "waiting in review",
            in_review,
            settings.DASHBOARD_REVIEW_SHARE_WARN,
            health["review_url"],
        ),
        (
            "in dead letters",
            dead,
            settings.DASHBOARD_DEAD_SHARE_WARN,
            health["dead_postings_url"],
        ),
    ):
        share = amount / cash
        if share > Decimal(str(limit)):
            warnings.append(
                {
                    "text": (
                        f"{share:.0%} of the period's approved cash "
                        f"({format_money(amount, currency)} of "
                        f"{format_money(cash, currency)}) is {label}; "
                        f"the limit is {Decimal(str(limit)):.0%}."
                    ),
                    "url": url,
                }
            )
    return warnings


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
                    "title": f"{day['day']:%b %-d}: {series.label} "
                    f"{format_money(amount, settings.DASHBOARD_CURRENCY)}",
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


def pipeline_health(
    now: datetime | None = None, *, user: User | None = None
) -> dict[str, Any]:
    """Events, dead letters, open review items, polls and the last reconciliation.

    Given the viewing `user`, each list link is None when that user cannot open it;
    without one (the home's own checks apply) every link is given."""
    now = now or timezone.now()

    def url(app: str, model: str, **params: object) -> str | None:
        if user is None:
            query = "&".join(f"{k}={v}" for k, v in params.items())
            base = reverse(f"admin:{app}_{model}_changelist")
            return f"{base}?{query}" if query else base
        return list_url(user, app, model, **params)

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
    return {
        "events": [
            (
                label,
                events.get(value, 0),
                url("integrations", "event", state__exact=value),
            )
            for value, label in Event.State.choices
        ],
        "events_total": sum(events.values()),
        "oldest_unprocessed_at": oldest,
        "oldest_unprocessed_age": _age(oldest, now),
        "dead_events": events.get(Event.State.DEAD, 0),
        "dead_postings": Posting.objects.filter(state=Posting.State.DEAD).count(),
        "dead_postings_url": url(
            "integrations", "posting", state__exact=Posting.State.DEAD
        ),
        "dead_events_url": url("integrations", "event", state__exact=Event.State.DEAD),
        "review": [
            (
                label,
                review[value],
                url(
                    "integrations",
                    "reviewitem",
                    state=ReviewItem.State.OPEN,
                    kind__exact=value,
                ),
            )
            for value, label in ReviewItem.Kind.choices
            if review.get(value)
        ],
        "review_total": sum(review.values()),
        "review_url": url("integrations", "reviewitem", state=ReviewItem.State.OPEN),
        "polls_url": url("integrations", "syncrun", kind__exact=SyncRun.Kind.POLL),
        "can_open_runs": user is None
        or user.has_perm("integrations.view_reconciliationrun"),
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
