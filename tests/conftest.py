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


@pytest.fixture
def sagepro_conn(db):
    from django.conf import settings

    from integrations.models import Connection

    return Connection.objects.create(
        kind=Connection.Kind.SAGEPRO,
        name="Sage Pro sandbox",
        slug="sagepro-sandbox",
        base_url="http://testserver/sandbox/sagepro/api/v1",
        password=settings.SANDBOX_SAGEPRO_API_KEY,
        company_id="01",
    )


@pytest.fixture
def paytrace_conn(db, sagepro_conn):
    """The PayTrace connection, signed with the same secret the PayTrace sandbox uses."""
    from django.conf import settings

    from integrations.models import Connection

    connection = Connection.objects.create(
        kind=Connection.Kind.PAYTRACE,
        name="PayTrace sandbox",
        slug="paytrace-sandbox",
        base_url="http://testserver/sandbox/paytrace",
        username=settings.SANDBOX_PAYTRACE_USERNAME,
        password=settings.SANDBOX_PAYTRACE_PASSWORD,
        integrator_id="TEST0001",
        time_zone=settings.SANDBOX_PAYTRACE_TIME_ZONE,
        sagepro=sagepro_conn,
    )
    connection.webhook_secrets.create(
        label="current", secret=settings.DEMO_WEBHOOK_SECRET
    )
    return connection


@pytest.fixture
def sage(db):
    """The Sage Pro sandbox, seeded (customers, 50+ open invoices, periods, accounts)."""
    from integrations.sandbox.sagepro import seed

    seed.seed()
    return seed


@pytest.fixture
def secret(settings):
    return settings.DEMO_WEBHOOK_SECRET


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Mark `portal_db_free` the tests that never touch the portal's database: the
    agent's own tests (`tests/agent/`, no Django in the agent), the conformance
    suite's `agent` target (the agent over its direct HTTP binding), and every test
    that asks for no database at all (pure mappings, parsers, settings checks, the
    demo's own SQLite runs: pytest-django refuses them a query). CI's second run, on
    PostgreSQL, leaves them out: it would repeat the first run exactly."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        target = callspec.params.get("target") if callspec else None
        if (
            item.nodeid.startswith("tests/agent/")
            or (item.nodeid.startswith("tests/conformance/") and target == "agent")
            or not _uses_database(item)
        ):
            item.add_marker(pytest.mark.portal_db_free)
    # The long tests (real processes, kills and restarts, the browser's slowest) first:
    # under pytest-xdist they then run beside the short ones instead of after them,
    # on one worker, while the other waits. The order within each part is kept.
    items.sort(key=lambda item: 0 if _runs_long(item) else 1)


# The fixtures through which a test reaches the portal's database.
DATABASE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
        "admin_client",
        "admin_user",
    }
)


def _uses_database(item: pytest.Item) -> bool:
    return (
        item.get_closest_marker("django_db") is not None
        or item.get_closest_marker("postgres") is not None
        or not DATABASE_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
    )


def _runs_long(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None or item.nodeid.startswith(
        "tests/faults/"
    )
