"""Fixtures of the fault tests: a live portal (`live_server`, committed data), a relay
proxy in front of it, and an enrolled agent site over a fixture FoxPro company.

The portal side is this pytest process; the agent is always a real
`python -m sagepro_agent relay run` process (see `support.py`)."""

import pytest

from tests.faults.support import RelayProxy, Site


@pytest.fixture
def proxy(live_server):
    relay = RelayProxy(live_server.url)
    yield relay
    relay.close()


@pytest.fixture
def site(proxy, sagepro_conn, tmp_path):
    """An enrolled, not yet started agent site; the tests' Sage Pro connection
    (`sagepro_conn`, also the PayTrace connection's) is switched to it."""
    from integrations.models import Agent, Connection
    from sagepro_agent.store.fixture.seed import create_company
    from tests.agent.conftest import business_today

    create_company(tmp_path / "sage", "01", today=business_today())
    agent = Agent.objects.create(name="Fault-test site")
    sagepro_conn.transport = Connection.Transport.AGENT
    sagepro_conn.agent = agent
    sagepro_conn.save()
    here = Site(tmp_path, proxy.url, agent, sagepro_conn)
    here.write_config()
    here.enrol()
    yield here
    here.stop()
