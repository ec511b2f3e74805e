"""The agents admin: who is online, and the credential actions."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations.models import Agent, Connection, EnrolmentCode, RelayCommand

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:integrations_agent_changelist")


def act(admin_client, action, *agents):
    return admin_client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [a.pk for a in agents]},
        follow=True,
    )


def test_the_list_shows_each_agents_state_and_last_report(admin_client, settings):
    settings.AGENT_OFFLINE_MINUTES = 5
    now = timezone.now()
    Agent.objects.create(
        name="Online",
        enrolled_at=now,
        last_heartbeat_at=now,
        version="1.4.0",
        journal_backlog=3,
        needs_review_count=1,
        last_integrity={"ok": True, "at": now.isoformat(), "problems": {}},
    )
    Agent.objects.create(
        name="Quiet",
        enrolled_at=now,
        last_heartbeat_at=now - timedelta(minutes=20),
        last_error="SAGE share offline",
    )
    Agent.objects.create(name="New")

    page = admin_client.get(CHANGELIST).content.decode()

    rows = {
        name: page[page.index(f">{name}<") :][:2000]
        for name in ("Online", "Quiet", "New")
    }
    assert ">online<" in rows["Online"] and "1.4.0" in rows["Online"]
    assert ">offline<" in rows["Quiet"] and "SAGE share offline" in rows["Quiet"]
    assert ">not enrolled<" in rows["New"]


def test_an_enrolment_code_is_shown_once_and_works_once(admin_client, client):
    agent = Agent.objects.create(name="Site")

    page = act(admin_client, "create_enrolment_code", agent).content.decode()

    code = re.search(r"class='enrolment-code'>([\w-]+)<", page).group(1)
    assert EnrolmentCode.objects.get().code_hash != code
    assert code not in admin_client.get(CHANGELIST).content.decode()
    trade = client.post(
        "/api/agent/enrol", {"code": code}, content_type="application/json"
    )
    assert trade.status_code == 201
    again = client.post(
        "/api/agent/enrol", {"code": code}, content_type="application/json"
    )
    assert again.status_code == 401


def test_revoking_refuses_the_agent_and_cancels_its_queued_commands(admin_client):
    agent = Agent.objects.create(name="Site", enrolled_at=timezone.now())
    conn = Connection.objects.create(
        kind=Connection.Kind.SAGEPRO,
        name="Company 01",
        slug="c01",
        base_url="https://agent.relay.invalid/api/v1",
        transport=Connection.Transport.AGENT,
        agent=agent,
    )
    RelayCommand.objects.create(
        connection=conn,
        company="01",
        method="GET",
        path="/periods",
        lease_deadline=timezone.now() + timedelta(seconds=5),
        expires_at=timezone.now() + timedelta(seconds=10),
    )

    page = act(admin_client, "revoke", agent).content.decode()

    assert "Revoked 1 agent" in page and "1 queued command cancelled" in page
    agent.refresh_from_db()
    assert agent.is_revoked and agent.token_hash == ""
    assert RelayCommand.objects.get().state == RelayCommand.State.CANCELLED
    page = act(admin_client, "create_enrolment_code", agent).content.decode()
    assert "is revoked" in page and not EnrolmentCode.objects.exists()


def test_adding_an_agent_switches_the_connections_it_serves(admin_client):
    conn = Connection.objects.create(
        kind=Connection.Kind.SAGEPRO,
        name="Company 01",
        slug="c01",
        base_url="https://sage.example.com/api/v1",
    )
    response = admin_client.post(
        reverse("admin:integrations_agent_add"),
        {"name": "Site server", "serves": [conn.pk]},
    )
    assert response.status_code == 302
    conn.refresh_from_db()
    assert conn.transport == Connection.Transport.AGENT
    assert conn.agent.name == "Site server"
    assert type(conn.sage()).__name__ == "RelaySageProConnector"


def test_the_agent_page_never_shows_its_credentials(admin_client, client):
    from integrations.relay import enrolment

    agent = Agent.objects.create(name="Site")
    code = enrolment.create_code(agent)
    data = client.post(
        "/api/agent/enrol", {"code": code}, content_type="application/json"
    ).json()
    agent.refresh_from_db()

    page = admin_client.get(
        reverse("admin:integrations_agent_change", args=[agent.pk])
    ).content.decode()

    assert data["signing_key"] not in page
    assert data["token"].split(".", 1)[1] not in page and agent.token_hash not in page
