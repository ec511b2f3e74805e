import datetime
from unittest import mock

import pytest
import time_machine
from django.db import OperationalError, connection
from django_q.tasks import async_task

from integrations.models import Connection, Event

NOW = datetime.datetime(2025, 3, 4, 22, 0, tzinfo=datetime.UTC)


@pytest.fixture
def paytrace(db):
    return Connection.objects.create(
        kind=Connection.Kind.PAYTRACE,
        name="PayTrace",
        slug="paytrace",
        base_url="https://api.paytrace.com",
    )


def make_event(source, event_id, state, received_at):
    return Event.objects.create(
        connection=source,
        event_id=event_id,
        type="transaction.approved",
        occurred_at=received_at,
        payload={},
        state=state,
        received_at=received_at,
    )


def test_anonymous_callers_see_the_status_only(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_staff_see_the_queue_details(admin_client, db):
    response = admin_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "queue_depth": 0,
        "oldest_unprocessed_event_age_seconds": None,
        "events_waiting": 0,
    }


def test_it_reports_the_oldest_waiting_event(admin_client, paytrace):
    make_event(paytrace, "e1", Event.State.QUEUED, NOW - datetime.timedelta(seconds=90))
    make_event(paytrace, "e2", Event.State.FAILED, NOW - datetime.timedelta(seconds=30))
    make_event(
        paytrace, "e3", Event.State.PROCESSING, NOW - datetime.timedelta(seconds=5)
    )
    # Finished events do not count, however old.
    make_event(paytrace, "e4", Event.State.PROCESSED, NOW - datetime.timedelta(hours=2))
    make_event(paytrace, "e5", Event.State.DEAD, NOW - datetime.timedelta(hours=3))

    with time_machine.travel(NOW, tick=False):
        body = admin_client.get("/healthz").json()

    assert body["events_waiting"] == 3
    assert body["oldest_unprocessed_event_age_seconds"] == 90.0


def test_it_counts_queued_tasks(admin_client, db):
    async_task("math.floor", 1)
    async_task("math.floor", 2)

    body = admin_client.get("/healthz").json()

    assert body["queue_depth"] == 2


def test_it_answers_503_when_the_database_is_unreachable(client, db):
    with mock.patch.object(
        connection,
        "cursor",
        side_effect=OperationalError("unable to open database file"),
    ):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "unavailable",
        "reason": "the database cannot be reached (OperationalError)",
    }
