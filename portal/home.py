"""The reviewer's home (the admin index): what needs attention, every figure a link.

- open review items by kind, oldest first, counted by age (under a day, 1–3 days,
  older) with their amount;
- SLA breaches: open items older than their kind's SLA (settings.REVIEW_SLA_HOURS,
  per kind in REVIEW_SLA_HOURS_BY_KIND);
- dead letters: postings that gave up;
- today's totals (business day): payments received, receipts posted, items opened;
- for whoever may see the pipeline's records (sync runs): its health — open alerts,
  agents, the last polls and events waiting.

Each figure links to the filtered list behind it, and only when the viewer may open
that list (`can_open`); a figure without a link is still shown.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Min, Q, Sum
from django.urls import reverse
from django.utils import timezone

from integrations.models import (
    Agent,
    Alert,
    PaymentTransaction,
    Posting,
    ReviewItem,
)
from integrations.reconciliation import business_today, day_bounds

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
DAY = timedelta(days=1)
AGE_COLUMNS = (("under_1d", "Under a day"), ("d1_3", "1–3 days"), ("over_3d", "Older"))
# What `request.user` is; has_perm and is_superuser come from PermissionsMixin.
User = Any


def can_open(user: User, app_label: str, model_name: str) -> bool:
    """Whether `user` may open the model's list (view or change permission)."""
    return any(
        user.has_perm(f"{app_label}.{action}_{model_name}")
        for action in ("view", "change")
    )


def list_url(
    user: User, app_label: str, model_name: str, **params: object
) -> str | None:
    """The model's list filtered by `params`, or None when `user` cannot open it."""
    if not can_open(user, app_label, model_name):
        return None
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    query = urlencode({k: _param(v) for k, v in params.items()})
    return f"{url}?{query}" if query else url


def _param(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def sla_hours(kind: str) -> int:
    by_kind: dict[str, int] = getattr(settings, "REVIEW_SLA_HOURS_BY_KIND", {})
    return int(by_kind.get(kind, getattr(settings, "REVIEW_SLA_HOURS", 24)))


def currency() -> str:
    return getattr(settings, "DASHBOARD_CURRENCY", "USD")


@dataclass(frozen=True)
class Figure:
    label: str
    count: int
    amount: Decimal | None
    url: str | None


def open_items_by_kind(user: User, now: datetime) -> list[dict[str, Any]]:
    """One row per kind with open items, the kind with the oldest item first."""
    day_ago, three_days_ago = now - DAY, now - 3 * DAY
    rows = (
        ReviewItem.objects.filter(state=ReviewItem.State.OPEN)
        .order_by()
        .values("kind")
        .annotate(
            count=Count("pk"),
            oldest=Min("created_at"),
            amount=Sum("transaction__amount"),
            under_1d=Count("pk", filter=Q(created_at__gte=day_ago)),
            d1_3=Count(
                "pk", filter=Q(created_at__lt=day_ago, created_at__gte=three_days_ago)
            ),
            over_3d=Count("pk", filter=Q(created_at__lt=three_days_ago)),
        )
    )
    labels = dict(ReviewItem.Kind.choices)
    out = []
    for row in sorted(rows, key=lambda r: r["oldest"]):
        kind = row["kind"]
        base = {"state": ReviewItem.State.OPEN, "kind__exact": kind}
        ages = {
            "under_1d": {"created_at__gte": day_ago},
            "d1_3": {"created_at__lt": day_ago, "created_at__gte": three_days_ago},
            "over_3d": {"created_at__lt": three_days_ago},
        }
        out.append(
            {
                "kind": kind,
                "label": labels.get(kind, kind),
                "count": row["count"],
                "amount": (row["amount"] or ZERO).quantize(CENT),
                "oldest": row["oldest"],
                "url": list_url(user, "integrations", "reviewitem", **base),
                "ages": [
                    {
                        "key": key,
                        "count": row[key],
                        "url": list_url(
                            user, "integrations", "reviewitem", **base, **ages[key]
                        )
                        if row[key]
                        else None,
                    }
                    for key, _ in AGE_COLUMNS
                ],
            }
        )
    return out


def sla_breaches(user: User, now: datetime) -> list[Figure]:
    """Per kind, the open items older than the kind's SLA."""
    figures = []
    for value, label in ReviewItem.Kind.choices:
        hours = sla_hours(value)
        before = now - timedelta(hours=hours)
        count = ReviewItem.objects.filter(
            state=ReviewItem.State.OPEN, kind=value, created_at__lt=before
        ).count()
        if count:
            figures.append(
                Figure(
                    f"{label} (SLA {hours} h)",
                    count,
                    None,
                    list_url(
                        user,
                        "integrations",
                        "reviewitem",
                        state=ReviewItem.State.OPEN,
                        kind__exact=value,
                        created_at__lt=before,
                    ),
                )
            )
    return figures


def dead_letters(user: User) -> Figure:
    dead = Posting.objects.filter(state=Posting.State.DEAD).aggregate(
        n=Count("pk"), amount=Sum("transaction__amount")
    )
    return Figure(
        "Dead letters",
        dead["n"],
        (dead["amount"] or ZERO).quantize(CENT),
        list_url(user, "integrations", "deadletter"),
    )


def awaiting_signature(user: User) -> Figure | None:
    """For whoever may sign overrides: the corrections others asked for that wait for a
    second signature (one's own cannot be signed, so they are not counted)."""
    from integrations.models import OverrideRequest

    if not user.has_perm("integrations.sign_overriderequest"):
        return None
    waiting = OverrideRequest.objects.filter(
        state=OverrideRequest.State.WAITING
    ).exclude(requested_by=user)
    return Figure(
        "Corrections awaiting your signature",
        waiting.count(),
        None,
        list_url(user, "integrations", "overriderequest"),
    )


def todays_totals(user: User) -> list[Figure]:
    """Received, posted and opened for review today (business day)."""
    start, _ = day_bounds(business_today(), business_today())
    received = PaymentTransaction.objects.filter(first_seen_at__gte=start).aggregate(
        n=Count("pk"), amount=Sum("amount")
    )
    posted = Posting.objects.filter(
        state=Posting.State.POSTED, posted_at__gte=start
    ).aggregate(n=Count("pk"), amount=Sum("transaction__amount"))
    opened = ReviewItem.objects.filter(created_at__gte=start).aggregate(
        n=Count("pk"), amount=Sum("transaction__amount")
    )
    return [
        Figure(
            "Received",
            received["n"],
            (received["amount"] or ZERO).quantize(CENT),
            list_url(
                user, "integrations", "paymenttransaction", first_seen_at__gte=start
            ),
        ),
        Figure(
            "Posted to Sage Pro",
            posted["n"],
            (posted["amount"] or ZERO).quantize(CENT),
            list_url(
                user,
                "integrations",
                "posting",
                state__exact=Posting.State.POSTED,
                posted_at__gte=start,
            ),
        ),
        Figure(
            "Sent to review",
            opened["n"],
            (opened["amount"] or ZERO).quantize(CENT),
            list_url(
                user,
                "integrations",
                "reviewitem",
                state="all",
                created_at__gte=start,
            ),
        ),
    ]


def pipeline(user: User, now: datetime) -> dict[str, Any] | None:
    """The pipeline's health, for whoever may see its records (None for others)."""
    if not (user.is_superuser or can_open(user, "integrations", "syncrun")):
        return None
    from portal.dashboard import pipeline_health

    agents = [
        {
            "name": agent.name,
            "online": agent.is_online(now),
            "last_heartbeat_at": agent.last_heartbeat_at,
            "backlog": agent.journal_backlog,
        }
        for agent in Agent.objects.filter(revoked_at__isnull=True).order_by("name")
    ]
    return {
        "alerts": list(
            Alert.objects.filter(resolved_at__isnull=True).order_by("opened_at")[:20]
        ),
        "agents": agents,
        "agents_url": list_url(user, "integrations", "agent"),
        "sync_runs_url": list_url(user, "integrations", "syncrun"),
        "health": pipeline_health(now, user=user),
    }


def needs_attention(user: User, now: datetime | None = None) -> dict[str, Any]:
    """Everything the home shows, for `user`."""
    # Whole seconds: the links' bounds are then exactly the bounds counted.
    now = (now or timezone.now()).replace(microsecond=0)
    sees_review = can_open(user, "integrations", "reviewitem")
    return {
        "sees_review": sees_review,
        "currency": currency(),
        "by_kind": open_items_by_kind(user, now) if sees_review else [],
        "age_columns": AGE_COLUMNS,
        "sla": sla_breaches(user, now) if sees_review else [],
        "dead": dead_letters(user) if sees_review else None,
        "signatures": awaiting_signature(user),
        "today": todays_totals(user) if sees_review else [],
        "pipeline": pipeline(user, now),
        "review_url": list_url(
            user, "integrations", "reviewitem", state=ReviewItem.State.OPEN
        ),
    }
