import pytest
import responses

from tests import bridge


@pytest.fixture
def http():
    """Outbound HTTP: `http://testserver/...` reaches the in-process views; any other
    URL raises ConnectionError (no network in tests)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        bridge.register(mock)
        yield mock


@pytest.fixture
def run_tasks():
    """Drain the django-q2 ORM queue in-process (a worker's job, minus the process)."""
    from tests.queue import run_queued_tasks

    return run_queued_tasks
