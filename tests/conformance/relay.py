"""The `relay` target: the agent reached the way the portal reaches it.

A Sage Pro connection in agent mode, an agent enrolled with a one-time code, and the
agent's `RelayClient` (talking to the in-process portal through tests/bridge.py) pumped
inside the connector's wait (`integrations.connectors.relay.PUMP`). Every call goes
through `RelaySageProConnector.request`, so status, headers and body are what the
portal's connector sees. Needs the test database and the bridge.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import requests

from integrations.connectors import relay as relay_transport
from integrations.connectors.relay import RelaySageProConnector
from sagepro_agent.relay.client import RelayClient
from sagepro_agent.relay.credentials import Credentials
from tests.conformance.targets import COMPANY, AgentTarget, Answer, decode

PORTAL = "http://testserver"
# Long enough for a 100-item batch on the fixture store: the agent answers inside the
# wait (PUMP), so this never makes a passing test slower.
TIMEOUT = 120.0


class RelayTarget(AgentTarget):
    name = "relay"
    bearer_auth = False  # the portal signs each command; no bearer key travels
    raw_bodies = True  # a command carries its body byte for byte (base64 if not UTF-8)

    def __init__(self, template: Path, workdir: Path, today: datetime.date) -> None:
        super().__init__(template, workdir, today)
        from integrations.models import Agent, Connection
        from integrations.relay import enrolment

        row = Agent.objects.create(name="Conformance agent")
        self.connection = Connection.objects.create(
            kind=Connection.Kind.SAGEPRO,
            name="Sage Pro agent (conformance)",
            slug="sagepro-agent-conformance",
            company_id=COMPANY,
            transport=Connection.Transport.AGENT,
            agent=row,
        )
        code = enrolment.create_code(row)
        reply = requests.post(
            f"{PORTAL}/api/agent/enrol",
            json={"code": code, "name": "conformance", "version": "test"},
            timeout=30,
        )
        assert reply.status_code == 201, reply.text
        data = reply.json()
        credentials = Credentials(
            PORTAL, data["agent_id"], data["token"], data["signing_key"]
        )
        self.client = RelayClient(
            PORTAL,
            credentials,
            self.agent.gateway.handle,
            self.agent.health,
            state_dir=workdir / "relay-state",
            session=requests.Session(),
            backoff_seconds=0,
        )
        relay_transport.PUMP = self.client.run_once
        self.connector = RelaySageProConnector(self.connection, timeout=TIMEOUT)

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        params: Any,
    ) -> Answer:
        # The relay authenticates the command itself: no bearer key goes with it.
        sent = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        response = self.connector.request(
            method, path, headers=sent, data=body, params=params
        )
        return Answer(response.status_code, response.headers, decode(response.content))

    def close(self) -> None:
        relay_transport.PUMP = None
        super().close()
