"""An integration admin checks the on-site agents and issues an enrolment code, in a
browser: online and offline agents at a glance, the code shown once, then traded."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from integrations.models import Agent, Connection
from tests.factories import make_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "admin-pass-2025"


@pytest.fixture
def agents():
    now = timezone.now()
    online = Agent.objects.create(
        name="Head office file server",
        enrolled_at=now - timedelta(days=3),
        last_heartbeat_at=now - timedelta(seconds=20),
        version="1.0.0",
        sage_reachable=True,
        journal_backlog=0,
        last_integrity={"ok": True, "at": now.isoformat(), "problems": {}},
    )
    offline = Agent.objects.create(
        name="Warehouse server",
        enrolled_at=now - timedelta(days=9),
        last_heartbeat_at=now - timedelta(minutes=42),
        version="0.9.2",
        sage_reachable=False,
        journal_backlog=2,
        needs_review_count=1,
        last_integrity={"ok": False, "summary": "01/ARCASH: index count differs"},
        last_error="\\\\FS01\\SAGE is not reachable",
    )
    new = Agent.objects.create(name="New branch server")
    for agent, slug, company in ((online, "sage-01", "01"), (offline, "sage-02", "02")):
        Connection.objects.create(
            kind=Connection.Kind.SAGEPRO,
            name=f"Sage Pro company {company}",
            slug=slug,
            base_url="https://agent.relay.invalid/api/v1",
            company_id=company,
            transport=Connection.Transport.AGENT,
            agent=agent,
        )
    return {"online": online, "offline": offline, "new": new}


def test_an_admin_sees_agents_and_issues_an_enrolment_code(
    live_server, browser_page, screenshot, agents
):
    make_user(username="ada", password=PASSWORD, is_staff=True, is_superuser=True)
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/integrations/agent/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    by_name = {
        row.locator("th, td.field-name").first.inner_text().strip(): row
        for row in rows.all()
    }
    offline = by_name["Warehouse server"]
    assert offline.locator(".agent-status").inner_text() == "offline"
    assert "FS01" in offline.inner_text() and "FAILED" in offline.inner_text()
    assert "sage-02" in offline.inner_text()
    online = by_name["Head office file server"]
    assert online.locator(".agent-status").inner_text() == "online"
    assert by_name["New branch server"].locator(".agent-status").inner_text() == (
        "not enrolled"
    )

    new = agents["new"]
    page.check(f"input[name=_selected_action][value='{new.pk}']")
    page.select_option("select[name=action]", "create_enrolment_code")
    page.click("button[name=index]")
    message = page.locator(".messagelist")
    message.wait_for()
    code = page.locator(".enrolment-code").inner_text().strip()
    assert len(code) >= 22
    assert "not shown again" in message.inner_text()
    screenshot("agents")

    # The code shown is the one that enrols the agent, once.
    portal = Client()
    first = portal.post(
        "/api/agent/enrol", {"code": code}, content_type="application/json"
    )
    again = portal.post(
        "/api/agent/enrol", {"code": code}, content_type="application/json"
    )
    assert first.status_code == 201 and again.status_code == 401
    page.reload()
    assert code not in page.content()
