"""The webhook endpoint: store, verify, queue, answer fast; refuse clearly."""

import json
import logging
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection as db_connection
from django.test import Client
from django_q.models import OrmQ

from integrations.models import Event, InboundDelivery, ReviewItem
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db
SLUG = "paytrace-sandbox"


def test_it_stores_and_queues_a_valid_event_without_calling_out(
    client, paytrace_conn, secret, http
):
    body = event_body("transaction.approved", paytrace_record(transaction_id=500000123))
    response = post_event(client, SLUG, body, sign(body, secret))

    assert response.status_code == 202
    event = Event.objects.get()
    assert response.json() == {"status": "queued", "event": event.pk}
    assert event.transaction_id == "500000123"
    assert event.type == "transaction.approved"
    assert event.state == Event.State.QUEUED
    delivery = InboundDelivery.objects.get()
    assert delivery.signature_result == "valid" and delivery.event == event
    assert OrmQ.objects.count() == 1
    assert (
        len(http.calls) == 0
    )  # neither PayTrace nor Sage Pro was called in the request


def test_a_repeated_webhook_id_is_a_duplicate_and_queues_nothing_more(
    client, paytrace_conn, secret
):
    body = event_body("transaction.approved", paytrace_record())
    headers = sign(body, secret)
    first = post_event(client, SLUG, body, headers)
    again = post_event(client, SLUG, body, headers)

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert Event.objects.count() == 1
    assert OrmQ.objects.count() == 1
    assert InboundDelivery.objects.count() == 2  # every attempt is on record


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("wrong_secret", "signature_mismatch"),
        ("stale", "timestamp_out_of_range"),
        ("future", "timestamp_out_of_range"),
        ("reserialised", "signature_mismatch"),
        ("no_headers", "missing_signature_headers"),
        ("garbled_signature", "malformed_signature_header"),
    ],
)
def test_it_refuses_bad_signatures_with_a_reason(
    client, paytrace_conn, secret, tamper, reason
):
    record = paytrace_record()
    body = event_body("transaction.approved", record)
    headers = sign(body, secret)
    if tamper == "wrong_secret":
        headers = sign(body, "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==")
    elif tamper == "stale":
        headers = sign(body, secret, timestamp=datetime.now(UTC) - timedelta(minutes=6))
    elif tamper == "future":
        headers = sign(body, secret, timestamp=datetime.now(UTC) + timedelta(minutes=6))
    elif tamper == "reserialised":
        body = json.dumps(json.loads(body), indent=2)  # same data, other bytes
    elif tamper == "no_headers":
        headers = {}
    elif tamper == "garbled_signature":
        headers["webhook-signature"] = "v1"

    response = post_event(client, SLUG, body, headers)

    assert response.status_code == 401
    assert response.json()["reason"] == reason
    delivery = InboundDelivery.objects.get()
    assert delivery.signature_result == "invalid"
    assert delivery.failure_reason == reason
    assert Event.objects.count() == 0
    assert OrmQ.objects.count() == 0


def test_it_accepts_any_active_secret_during_a_rotation(client, paytrace_conn, secret):
    new = "whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQ="
    paytrace_conn.webhook_secrets.create(label="next", secret=new)
    for key in (secret, new):
        body = event_body("transaction.approved", paytrace_record())
        assert post_event(client, SLUG, body, sign(body, key)).status_code == 202

    paytrace_conn.webhook_secrets.filter(label="current").update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    body = event_body("transaction.approved", paytrace_record())
    assert post_event(client, SLUG, body, sign(body, secret)).status_code == 401


def test_malformed_json_is_a_400(client, paytrace_conn, secret):
    body = '{"type": "transaction.approved", "data": '
    response = post_event(client, SLUG, body, sign(body, secret))
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_json"
    assert Event.objects.count() == 0


def test_a_wrong_shape_is_a_400_naming_the_fields(client, paytrace_conn, secret):
    record = paytrace_record()
    del record["transaction_id"]
    body = event_body("transaction.exploded", record)
    response = post_event(client, SLUG, body, sign(body, secret))

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "type" in errors
    assert "transaction_id" in errors["data"]
    assert InboundDelivery.objects.get().failure_reason == "invalid_shape"
    assert Event.objects.count() == 0


def test_a_naive_occurred_at_is_refused(client, paytrace_conn, secret):
    body = event_body("transaction.approved", paytrace_record()).replace('Z"', '"', 1)
    response = post_event(client, SLUG, body, sign(body, secret))
    assert response.status_code == 400
    assert "occurred_at" in response.json()["errors"]


def test_an_oversized_body_is_a_413(client, paytrace_conn, secret):
    body = event_body(
        "transaction.approved", paytrace_record(description="x" * (260 * 1024))
    )
    response = post_event(client, SLUG, body, sign(body, secret))
    assert response.status_code == 413
    assert InboundDelivery.objects.get().failure_reason == "body_too_large"
    assert Event.objects.count() == 0


def test_unknown_and_inactive_connections_are_404(client, paytrace_conn, secret):
    body = event_body("transaction.approved", paytrace_record())
    assert (
        post_event(client, "no-such-connection", body, sign(body, secret)).status_code
        == 404
    )
    paytrace_conn.is_active = False
    paytrace_conn.save()
    assert post_event(client, SLUG, body, sign(body, secret)).status_code == 404
    assert Event.objects.count() == 0


PAN = "4111 1111 1111 1111"
PAN_DIGITS = "4111111111111111"


def _all_text_in_database() -> str:
    """Every value of every column of every table, as text (django-q2's included)."""
    chunks = []
    with db_connection.cursor() as cursor:
        for table in db_connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from introspection
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("latin-1")
                    chunks.append(str(value))
    return "\n".join(chunks)


def test_card_numbers_never_reach_the_database_or_the_logs(
    client, paytrace_conn, secret, sage, http, run_tasks, caplog
):
    record = paytrace_record(
        description=f"card {PAN} exp 09/28",
        credit_card={
            "number": PAN_DIGITS,
            "masked_number": "************1111",
            "expiration_month": 9,
            "expiration_year": 28,
        },
        csc="987",
        billing_address={
            "name": "Ada",
            "street_address": f"{PAN_DIGITS[:8]}-{PAN_DIGITS[8:]}",
        },
    )
    body = event_body("transaction.approved", record)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("integrations").warning("sender sent %s", PAN_DIGITS)
        response = post_event(client, SLUG, body, sign(body, secret))
        run_tasks()

    assert response.status_code == 202
    text = _all_text_in_database()
    for needle in (
        PAN,
        PAN_DIGITS,
        "4111-1111-1111-1111",
        '"987"',
        "41111111-11111111",
    ):
        assert needle not in text
    assert "************1111" in text  # the last four survive for the reviewer
    assert PAN_DIGITS not in caplog.text and PAN not in caplog.text
    event = Event.objects.get()
    assert event.contains_card_data
    assert InboundDelivery.objects.get().contains_card_data
    assert ReviewItem.objects.filter(
        kind=ReviewItem.Kind.CARD_DATA, event=event
    ).exists()


def test_an_event_and_its_task_commit_or_roll_back_together(paytrace_conn, secret):
    from django_q import tasks as q_tasks

    client = Client(raise_request_exception=False)
    real = q_tasks.async_task

    def enqueue_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        assert (
            OrmQ.objects.count() == 1
        )  # the task row is written inside the transaction...
        raise RuntimeError("crash after enqueue")

    body = event_body("transaction.approved", paytrace_record())
    with mock.patch("integrations.queueing.async_task", side_effect=enqueue_then_fail):
        response = post_event(client, SLUG, body, sign(body, secret))
    assert response.status_code == 500
    assert Event.objects.count() == 0  # ...and rolls back with the event
    assert OrmQ.objects.count() == 0

    with mock.patch(
        "integrations.queueing.async_task", side_effect=RuntimeError("broker down")
    ):
        response = post_event(client, SLUG, body, sign(body, secret))
    assert response.status_code == 500
    assert Event.objects.count() == 0

    response = post_event(client, SLUG, body, sign(body, secret))  # the sender's retry
    assert response.status_code == 202
    assert Event.objects.count() == 1 and OrmQ.objects.count() == 1


def test_the_connection_and_secrets_are_cached_briefly(
    client, paytrace_conn, secret, settings, django_assert_max_num_queries
):
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    from integrations import api

    settings.WEBHOOK_CACHE_SECONDS = 30
    api._webhook_cache.clear()

    def deliver():
        body = event_body("transaction.approved", paytrace_record())
        with CaptureQueriesContext(db) as queries:
            assert post_event(client, SLUG, body, sign(body, secret)).status_code == 202
        return len(queries)

    first, second = deliver(), deliver()
    assert second <= first - 2  # no connection or secret lookup the second time

    newer = "whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQ="
    paytrace_conn.webhook_secrets.create(label="next", secret=newer)
    # Until the cache expires the new secret is unknown; once it has, it works.
    body = event_body("transaction.approved", paytrace_record())
    assert post_event(client, SLUG, body, sign(body, newer)).status_code == 401
    api._webhook_cache.update(
        {k: (v[0] - 31, v[1], v[2]) for k, v in api._webhook_cache.items()}
    )
    body = event_body("transaction.approved", paytrace_record())
    assert post_event(client, SLUG, body, sign(body, newer)).status_code == 202
