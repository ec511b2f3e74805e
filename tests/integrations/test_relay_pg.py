"""The relay's races on PostgreSQL, with real threads and real connections: a lease and
a cancel never both win, and a command written while the caller holds a transaction is
committed at once and answered by an agent polling on another connection."""

import threading
import time
from datetime import timedelta

import pytest
import requests
import responses
from django.db import connections, transaction
from django.utils import timezone

from integrations.connectors import relay as relay_transport
from integrations.models import Agent, Connection, RelayCommand
from integrations.relay import commands, enrolment
from sagepro_agent.relay.client import RelayClient
from sagepro_agent.relay.credentials import Credentials
from sagepro_agent.wire import Response
from tests import bridge
from tests.support.threads import POSTGRES_ONLY

pytestmark = POSTGRES_ONLY


@pytest.fixture
def agent_conn():
    agent = Agent.objects.create(name="Site server")
    return Connection.objects.create(
        kind=Connection.Kind.SAGEPRO,
        name="Sage Pro via agent",
        slug="sagepro-agent",
        base_url="https://agent.relay.invalid/api/v1",
        company_id="01",
        transport=Connection.Transport.AGENT,
        agent=agent,
    )


@pytest.fixture(autouse=True)
def _close_relay_connection():
    yield
    relay_transport.PUMP = None
    commands.close_relay_connection()


def _queue(connection_, count):
    now = timezone.now()
    return [
        RelayCommand.objects.create(
            connection=connection_,
            company="01",
            method="POST",
            path="/cash-receipts",
            lease_deadline=now + timedelta(seconds=30),
            expires_at=now + timedelta(seconds=60),
        ).pk
        for _ in range(count)
    ]


def _race(agent, ids):
    """Lease and cancel the same commands at once, from two threads; returns the ids
    each side won."""
    start = threading.Barrier(2)
    leased, cancelled = set(), set()

    def leaser():
        start.wait()
        try:
            for _ in range(40):
                leased.update(c.pk for c in commands.lease(agent, 3))
        finally:
            connections.close_all()

    def canceller():
        start.wait()
        try:
            for pk in reversed(ids):
                if commands.cancel_unleased(pk):
                    cancelled.add(pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=leaser), threading.Thread(target=canceller)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return leased, cancelled


def test_a_lease_and_a_cancel_never_both_win(agent_conn):
    for _ in range(5):
        ids = _queue(agent_conn, 40)
        leased, cancelled = _race(agent_conn.agent, ids)

        assert leased and cancelled  # both sides won some: it was a real race
        assert leased.isdisjoint(cancelled)
        assert leased | cancelled == set(ids)
        states = dict(
            RelayCommand.objects.filter(pk__in=ids).values_list("pk", "state")
        )
        assert {pk for pk, s in states.items() if s == "leased"} == leased
        assert {pk for pk, s in states.items() if s == "cancelled"} == cancelled
        RelayCommand.objects.all().delete()


def test_a_call_inside_a_transaction_is_committed_at_once_and_answered(
    agent_conn, tmp_path
):
    from django.test import Client

    client = Client()
    code = enrolment.create_code(agent_conn.agent)
    data = client.post(
        "/api/agent/enrol", {"code": code}, content_type="application/json"
    ).json()
    credentials = Credentials(
        "http://testserver", data["agent_id"], data["token"], data["signing_key"]
    )
    stop = threading.Event()
    handled = []

    def handler(request):
        handled.append(request.path)
        return Response(200, {"results": [{"account": "1000", "active": True}]})

    def agent_loop():
        agent = RelayClient(
            credentials.portal_url,
            credentials,
            handler,
            state_dir=tmp_path,
            session=requests.Session(),
        )
        try:
            while not stop.is_set():
                agent.run_once(wait=0)
                time.sleep(0.02)
        finally:
            connections.close_all()

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        bridge.register(mock)
        thread = threading.Thread(target=agent_loop)
        thread.start()
        try:
            with transaction.atomic():
                # The caller's own write stays uncommitted while it waits...
                Agent.objects.filter(pk=agent_conn.agent_id).update(version="held")
                accounts = agent_conn.sage().list_gl_accounts()
                # ...yet the command it relayed was visible to the agent's poll.
                assert RelayCommand.objects.using("relay").get().state == "answered"
        finally:
            stop.set()
            thread.join()

    assert accounts == [{"account": "1000", "active": True}]
    assert handled == ["/gl-accounts"]
    assert Agent.objects.get().version == "held"
