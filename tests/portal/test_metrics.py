"""/metrics: who may read it, and what a scrape shows after payments went through."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django_q.tasks import async_task
from prometheus_client.parser import text_string_to_metric_families

from integrations.connectors.base import ConnectorError
from integrations.models import Agent, ReviewItem
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db
TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return {"Authorization": f"Bearer {TOKEN}"}


def scrape(client, headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def samples(text):
    """{sample name: [(labels, value), ...]} from an exposition."""
    found: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found, name, **labels):
    matches = [v for got, v in found.get(name, []) if labels.items() <= got.items()]
    assert matches, f"no {name} with {labels} in {found.get(name)}"
    return sum(matches)


def test_it_refuses_anonymous_callers(client, settings):
    settings.METRICS_TOKEN = TOKEN

    response = client.get("/metrics")

    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.content.decode()
    assert "portal_" not in response.content.decode()


def test_it_refuses_a_wrong_token(client, token):
    response = client.get("/metrics", headers={"Authorization": "Bearer guess"})

    assert response.status_code == 403


def test_it_refuses_the_token_without_bearer(client, token):
    response = client.get("/metrics", headers={"Authorization": TOKEN})

    assert response.status_code == 403


def test_it_refuses_any_token_when_none_is_set(client, settings):
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", headers={"Authorization": "Bearer "})

    assert response.status_code == 403


def test_it_admits_the_bearer_token(client, token):
    assert "portal_queue_depth" in scrape(client, token)


def test_it_admits_an_allowed_network_only(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "192.0.2.10"]

    inside = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    single = client.get("/metrics", REMOTE_ADDR="192.0.2.10")
    outside = client.get("/metrics", REMOTE_ADDR="203.0.113.5")

    assert inside.status_code == 200
    assert single.status_code == 200
    assert outside.status_code == 403


def test_it_admits_signed_in_staff(admin_client):
    assert admin_client.get("/metrics").status_code == 200


def test_a_scrape_after_payments_shows_every_metric(
    client, paytrace_conn, secret, http, run_tasks, sage, token
):
    now = timezone.now()
    records = []
    for amount in ("100.00", "25.50", "7.25"):
        invno = sage.seed_invoice("ACME", "400.00")
        record = paytrace_record(amount=Decimal(amount), invoice_id=invno)
        body = event_body("transaction.approved", record)
        assert (
            post_event(client, paytrace_conn.slug, body, sign(body, secret)).status_code
            == 202
        )
        records.append(record)
    run_tasks()
    # A task finished by a worker (django-q2's sync mode runs the worker and monitor).
    async_task("math.floor", 1.5, sync=True)
    # A gateway that cannot be reached.
    gateway = paytrace_conn.paytrace()
    gateway.label = paytrace_conn.slug
    gateway.base_url = "http://gateway.invalid"
    with pytest.raises(ConnectorError):
        gateway.request("GET", "/v1/ping")
    for age in (
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=3),
        timedelta(days=3),
        timedelta(days=9),
    ):
        ReviewItem.objects.create(
            kind=ReviewItem.Kind.UNMATCHED, reason="test", created_at=now - age
        )
    ReviewItem.objects.create(
        kind=ReviewItem.Kind.DEAD, reason="test", state=ReviewItem.State.RESOLVED
    )
    agent = Agent.objects.create(
        name="Spokane office",
        enrolled_at=now,
        last_heartbeat_at=now - timedelta(minutes=2),
    )

    text = scrape(client, token)
    found = samples(text)

    # Requests and tasks.
    assert value(found, "portal_http_requests_total", method="POST", status="202") >= 3
    assert "portal_http_request_duration_seconds_bucket" in found
    assert value(found, "portal_tasks_total", func="math.floor", outcome="success") >= 1
    # Queue depth: everything queued ran.
    assert value(found, "portal_queue_depth") == 0
    # Events and postings by state.
    assert (
        value(found, "portal_events", connection="paytrace-sandbox", state="processed")
        == 3
    )
    assert (
        value(
            found,
            "portal_postings",
            connection="sagepro-sandbox",
            kind="cash_receipt",
            state="posted",
        )
        == 3
    )
    # Received → posted: all three postings are in the window, each under an hour.
    assert value(found, "portal_received_to_posted_seconds_bucket", le="+Inf") == 3
    assert value(found, "portal_received_to_posted_seconds_bucket", le="3600.0") == 3
    assert value(found, "portal_received_to_posted_seconds_gcount") == 3
    # Gateway calls, per connection and kind, and their errors.
    assert (
        value(
            found,
            "portal_gateway_request_duration_seconds_count",
            kind="Sage Pro gateway",
        )
        >= 3
    )
    assert (
        value(
            found,
            "portal_gateway_errors_total",
            connection="paytrace-sandbox",
            kind="PayTrace",
            reason="unavailable",
        )
        >= 1
    )
    # Review items open, by kind and age.
    unmatched = {
        age: value(found, "portal_review_items_open", kind="unmatched", age=age)
        for age in ("lt_1h", "1h_24h", "1d_7d", "gt_7d")
    }
    assert unmatched == {"lt_1h": 1, "1h_24h": 2, "1d_7d": 1, "gt_7d": 1}
    assert "dead" not in {
        labels["kind"] for labels, _ in found["portal_review_items_open"]
    }
    # Agent heartbeats.
    age = value(found, "portal_agent_heartbeat_age_seconds", agent=str(agent.pk))
    assert 119 <= age < 600
    # Nothing about customers, amounts or cards in the labels (a sample's value may
    # hold any digits: 0.0111113 seconds).
    labels = " ".join(re.findall(r"\{[^}]*\}", text))
    assert "ACME" not in text
    assert "Spokane" not in text
    assert "1111" not in labels


def test_an_agent_never_heard_from_shows_infinite_age(client, token):
    agent = Agent.objects.create(name="New site", enrolled_at=timezone.now())

    found = samples(scrape(client, token))

    assert value(
        found, "portal_agent_heartbeat_age_seconds", agent=str(agent.pk)
    ) == float("inf")
