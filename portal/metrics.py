"""Prometheus metrics at /metrics.

Two kinds of numbers:

- **State, read from the database at scrape time** (`PipelineCollector`): events and
  postings by state, queue depth, open review items by kind and age, agent heartbeat
  ages, the received→posted latency of recent postings. Every web and worker process
  shares the database, so any process answers for all of them.
- **Counters kept by the processes that see the thing happen**: HTTP requests (web),
  tasks run (the qcluster monitor), gateway calls (whichever process calls). With
  several processes, set PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess
  mode) to a directory every process on the host shares; /metrics then sums them.

Labels carry connection slugs, kinds, states and view names only: never customer
names, amounts, card data or raw paths.
"""

import hmac
import ipaddress
import os
from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_q.signals import post_execute
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from integrations.connectors import base as connectors

# Seconds buckets for gateway calls and for received→posted.
CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
# Postings read per scrape for the received→posted histogram.
LATENCY_SAMPLE = 5000
# Age buckets of open review items: (label, upper bound).
REVIEW_AGES = (
    ("lt_1h", timedelta(hours=1)),
    ("1h_24h", timedelta(hours=24)),
    ("1d_7d", timedelta(days=7)),
    ("gt_7d", None),
)

REQUESTS = Counter(
    "portal_http_requests",
    "HTTP requests answered, by method, view name and status code.",
    ["method", "view", "status"],
)
REQUEST_SECONDS = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and view name.",
    ["method", "view"],
)
TASKS = Counter(
    "portal_tasks",
    "django-q2 tasks finished, by function and outcome (success or failure).",
    ["func", "outcome"],
)
GATEWAY_SECONDS = Histogram(
    "portal_gateway_request_duration_seconds",
    "Time of each call to PayTrace or Sage Pro, by connection and kind.",
    ["connection", "kind"],
    buckets=CALL_BUCKETS,
)
GATEWAY_ERRORS = Counter(
    "portal_gateway_errors",
    "Failed calls to PayTrace or Sage Pro (no answer, or an HTTP error status), by "
    "connection, kind and reason.",
    ["connection", "kind", "reason"],
)


def record_request(
    request: HttpRequest, response: HttpResponse, seconds: float
) -> None:
    """Count one answered request under its view's name (never its raw path)."""
    match = getattr(request, "resolver_match", None)
    view = (match.view_name if match else "") or "unmatched"
    REQUESTS.labels(request.method or "", view, str(response.status_code)).inc()
    REQUEST_SECONDS.labels(request.method or "", view).observe(seconds)


def record_gateway_call(
    connector: connectors.HttpConnector,
    method: str,
    seconds: float,
    status: int | None,
    code: str,
) -> None:
    connection = connector.label or "unlabelled"
    kind = connector.system
    GATEWAY_SECONDS.labels(connection, kind).observe(seconds)
    if status is None:
        GATEWAY_ERRORS.labels(connection, kind, code.lower() or "no_answer").inc()
    elif status >= 400:
        GATEWAY_ERRORS.labels(connection, kind, f"http_{status // 100}xx").inc()


def record_task(sender: object, task: dict, **kwargs: object) -> None:
    func = task.get("func")
    name = func if isinstance(func, str) else getattr(func, "__qualname__", "other")
    outcome = "success" if task.get("success") else "failure"
    TASKS.labels(str(name), outcome).inc()


if record_gateway_call not in connectors.CALL_OBSERVERS:
    connectors.CALL_OBSERVERS.append(record_gateway_call)
post_execute.connect(record_task, dispatch_uid="portal.metrics.record_task")


# --- state from the database -------------------------------------------------------------


def queue_depth() -> int:
    """Tasks waiting in the broker: the ORM table's due rows, or Redis's list."""
    from django_q.brokers import get_broker
    from django_q.models import OrmQ

    if "redis" in settings.Q_CLUSTER:
        return int(get_broker().queue_size() or 0)
    return OrmQ.objects.filter(lock__lte=timezone.now()).count()


def _count_by(queryset: Iterable[dict], *keys: str) -> Iterator[tuple[list[str], int]]:
    for row in queryset:
        yield [str(row[key]) for key in keys], int(row["n"])


class PipelineCollector(Collector):
    """Read the pipeline's state from the database at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        from integrations.models import Agent, Event, Posting, ReviewItem

        now = timezone.now()
        events = GaugeMetricFamily(
            "portal_events",
            "Inbound events by connection and state.",
            labels=["connection", "state"],
        )
        rows = Event.objects.values("connection__slug", "state").annotate(n=Count("pk"))
        for labels, n in _count_by(rows.order_by(), "connection__slug", "state"):
            events.add_metric(labels, n)
        yield events

        postings = GaugeMetricFamily(
            "portal_postings",
            "Documents for Sage Pro by connection, kind and state.",
            labels=["connection", "kind", "state"],
        )
        by_kind = Posting.objects.values("sagepro__slug", "kind", "state").annotate(
            n=Count("pk")
        )
        keys = ("sagepro__slug", "kind", "state")
        for labels, n in _count_by(by_kind.order_by(), *keys):
            postings.add_metric(labels, n)
        yield postings

        yield GaugeMetricFamily(
            "portal_queue_depth",
            "Tasks waiting in the django-q2 broker for a worker.",
            value=queue_depth(),
        )

        review = GaugeMetricFamily(
            "portal_review_items_open",
            "Open review items by kind and age (lt_1h, 1h_24h, 1d_7d, gt_7d).",
            labels=["kind", "age"],
        )
        opened = ReviewItem.objects.filter(state=ReviewItem.State.OPEN)
        by_age: dict[str, Count] = {}
        newer_than: Q | None = None
        for label, upper in REVIEW_AGES:
            # Items younger than `upper` and not younger than the bucket before.
            in_bucket = Q(created_at__gt=now - upper) if upper else Q()
            if newer_than is not None:
                in_bucket &= ~newer_than
            by_age[label] = Count("pk", filter=in_bucket)
            newer_than = Q(created_at__gt=now - upper) if upper else None
        for row in opened.values("kind").annotate(**by_age).order_by("kind"):
            for label, _upper in REVIEW_AGES:
                if row[label]:
                    review.add_metric([row["kind"], label], row[label])
        yield review

        agents = GaugeMetricFamily(
            "portal_agent_heartbeat_age_seconds",
            "Seconds since each enrolled agent's last heartbeat, by agent id (+Inf: "
            "never heard from).",
            labels=["agent"],
        )
        enrolled = Agent.objects.filter(revoked_at=None, enrolled_at__isnull=False)
        for pk, last in enrolled.values_list("pk", "last_heartbeat_at").order_by("pk"):
            silent = (now - last).total_seconds() if last else float("inf")
            agents.add_metric([str(pk)], silent)
        yield agents

        yield self.latency()

    def latency(self) -> GaugeHistogramMetricFamily:
        """Received→posted for the latest postings of the window.

        A gauge histogram: it describes the recent window, so it can go down. Received
        is when the portal stored the payment's first event (or, with none, first saw
        the payment). At most LATENCY_SAMPLE postings are read, the latest first, so a
        scrape costs the same however busy the hour was.
        """
        from integrations.models import Event, Posting

        minutes = settings.METRICS_LATENCY_WINDOW_MINUTES
        first_event = (
            Event.objects.filter(
                connection=OuterRef("transaction__connection"),
                transaction_id=OuterRef("transaction__transaction_id"),
            )
            .order_by("received_at")
            .values("received_at")[:1]
        )
        recent = (
            Posting.objects.filter(
                state=Posting.State.POSTED,
                posted_at__gte=timezone.now() - timedelta(minutes=minutes),
            )
            .annotate(
                received=Coalesce(
                    Subquery(first_event), F("transaction__first_seen_at")
                )
            )
            .order_by("-posted_at")
            .values_list("posted_at", "received")[:LATENCY_SAMPLE]
        )
        seconds = [
            max((posted - received).total_seconds(), 0.0)
            for posted, received in recent
            if posted and received
        ]
        buckets = [
            (str(float(bound)), sum(1 for s in seconds if s <= bound))
            for bound in LATENCY_BUCKETS
        ]
        buckets.append(("+Inf", len(seconds)))
        return GaugeHistogramMetricFamily(
            "portal_received_to_posted_seconds",
            f"Seconds from receiving a payment to posting its document, for the latest "
            f"(at most {LATENCY_SAMPLE}) postings of the last {minutes} minutes.",
            buckets=buckets,
            gsum_value=sum(seconds),
        )


def build_registry() -> CollectorRegistry:
    """The registry /metrics serves: the counters (summed across processes when
    PROMETHEUS_MULTIPROC_DIR is set) and the database collector."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        for metric in (
            REQUESTS,
            REQUEST_SECONDS,
            TASKS,
            GATEWAY_SECONDS,
            GATEWAY_ERRORS,
        ):
            registry.register(metric)
    registry.register(PipelineCollector())
    return registry


# --- access ----------------------------------------------------------------------------


def is_allowed(request: HttpRequest) -> bool:
    """Staff, a caller with the METRICS_TOKEN bearer token, or an allowed network."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    given = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
    if token and hmac.compare_digest(given.encode(), token.encode()):
        return True
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(n) for n in networks)
    return False
