"""/healthz (liveness, nothing sensitive to anonymous callers) and /readyz (readiness)."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from portal import views

pytestmark = pytest.mark.django_db


@pytest.fixture
def workers_running(settings):
    """A qcluster's scheduler has just moved the one-minute sweep on."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    Schedule.objects.filter(func=views.SWEEP_TASK).update(
        next_run=timezone.now() + timedelta(seconds=30)
    )


def test_healthz_tells_anonymous_callers_the_status_only(client):
    async_task("math.floor", 1)

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_shows_staff_the_queue(admin_client):
    async_task("math.floor", 1)

    body = admin_client.get("/healthz").json()

    assert body["status"] == "ok"
    assert body["queue_depth"] == 1
    assert body["events_waiting"] == 0


def test_healthz_shows_a_metrics_scraper_the_queue(client, settings):
    settings.METRICS_TOKEN = "scrape-token-0123456789abcdef"

    body = client.get(
        "/healthz", headers={"Authorization": "Bearer scrape-token-0123456789abcdef"}
    ).json()

    assert body["queue_depth"] == 0


def test_readyz_is_ready_when_database_broker_and_workers_answer(
    client, workers_running
):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "workers": "ok"},
    }


def test_readyz_names_workers_that_stopped(client, workers_running, settings):
    settings.READINESS_WORKER_MAX_SECONDS = 180
    Schedule.objects.filter(func=views.SWEEP_TASK).update(
        next_run=timezone.now() - timedelta(minutes=10)
    )

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["failed"] == ["workers"]
    assert "qcluster" in body["checks"]["workers"]
    assert body["checks"]["database"] == "ok"


def test_readyz_names_a_missing_sweep_schedule(client, workers_running):
    Schedule.objects.filter(func=views.SWEEP_TASK).delete()

    body = client.get("/readyz").json()

    assert body["failed"] == ["workers"]
    assert "migrate" in body["checks"]["workers"]


def test_readyz_needs_no_workers_in_sync_mode(client, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    Schedule.objects.filter(func=views.SWEEP_TASK).delete()

    assert client.get("/readyz").status_code == 200


def test_readyz_names_an_unreachable_database_without_its_error_text(
    client, workers_running
):
    with mock.patch.object(
        connection,
        "cursor",
        side_effect=OperationalError('could not connect to host "db.internal"'),
    ):
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert "database" in body["failed"]
    assert body["checks"]["database"] == "database check failed (OperationalError)"
    assert "db.internal" not in response.content.decode()


def test_readyz_names_a_broker_that_does_not_answer(client, workers_running, settings):
    settings.Q_CLUSTER = {
        key: value for key, value in settings.Q_CLUSTER.items() if key != "orm"
    } | {"redis": "redis://127.0.0.1:1/0"}
    broker = mock.Mock()
    broker.ping.side_effect = ConnectionError("Error 111 connecting to 127.0.0.1:1")
    with mock.patch("django_q.brokers.get_broker", return_value=broker):
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"] == "broker check failed (ConnectionError)"
