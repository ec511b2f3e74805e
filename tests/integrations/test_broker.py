"""The task queue rides out a database restart: the pusher polls again a second later
instead of django-q2's ten-second pause (integrations/broker.py)."""

from unittest import mock

import pytest
from django.db import OperationalError
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM

from integrations.broker import RETRY_SECONDS, ResilientORM

pytestmark = pytest.mark.django_db


def test_the_portal_queues_through_the_resilient_broker():
    assert isinstance(get_broker(), ResilientORM)


def test_a_database_that_does_not_answer_is_nothing_yet_and_the_next_poll_works():
    broker = get_broker()
    broker.enqueue("a task")
    gone = OperationalError("server closed the connection unexpectedly")

    with (
        mock.patch.object(ORM, "dequeue", side_effect=gone),
        mock.patch("integrations.broker.connection") as connection,
        mock.patch("integrations.broker.time.sleep") as sleep,
    ):
        assert broker.dequeue() is None

    connection.close.assert_called_once()
    (waited,), _ = sleep.call_args
    assert RETRY_SECONDS <= waited < 10
    [(_, payload)] = broker.dequeue()
    assert payload == "a task"


def test_any_other_failure_still_reaches_django_q():
    broker = get_broker()

    with (
        mock.patch.object(ORM, "dequeue", side_effect=ValueError("a bug")),
        pytest.raises(ValueError, match="a bug"),
    ):
        broker.dequeue()
