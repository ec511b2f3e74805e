"""A database that cannot be reached for a moment (a restart, a failover) answers 503
with Retry-After, not 500: a relay, a poller or a browser tries again, and the retried
webhook is stored once (the load test saw 500s during its PostgreSQL restart)."""

from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client

from integrations.models import Event
from tests.factories import make_user
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db

GONE = OperationalError("server closed the connection unexpectedly")


@pytest.fixture
def caller():
    return Client(raise_request_exception=False)


def test_a_webhook_while_the_database_is_down_is_503_and_its_retry_is_stored_once(
    caller, paytrace_conn, secret
):
    body = event_body("transaction.approved", paytrace_record())
    headers = sign(body, secret)

    with mock.patch("integrations.api._webhook_connection", side_effect=GONE):
        down = post_event(caller, "paytrace-sandbox", body, headers)

    assert down.status_code == 503
    assert down["Retry-After"] == "5"
    assert "try again" in down.json()["detail"]
    assert not Event.objects.exists()
    again = post_event(caller, "paytrace-sandbox", body, headers)
    assert again.status_code == 202
    assert Event.objects.count() == 1


def test_a_page_while_the_database_is_down_says_so_in_plain_words(caller):
    caller.force_login(make_user(is_superuser=True))

    with mock.patch("portal.home.needs_attention", side_effect=GONE):
        page = caller.get("/admin/")

    assert page.status_code == 503
    assert page["Retry-After"] == "5"
    assert "database is unavailable" in page.content.decode()


def test_any_other_failure_is_still_a_500(caller):
    caller.force_login(make_user(is_superuser=True))

    with mock.patch("portal.home.needs_attention", side_effect=ValueError("a bug")):
        page = caller.get("/admin/")

    assert page.status_code == 500
    assert "Retry-After" not in page
