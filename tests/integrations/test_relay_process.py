"""A real agent process behind the relay: `python -m sagepro_agent relay enrol`, then
`relay run` long-polling a live portal over a socket, and a receipt posted from the
portal landing in the agent's fixture FoxPro tables."""

import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from integrations.connectors.relay import RelaySageProConnector
from integrations.connectors.sagepro import Application, CashReceipt
from integrations.models import Agent, Connection, RelayCommand
from integrations.relay import enrolment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def agent_command(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAGEPRO_AGENT_NO_KEYRING": "1"}
    return [sys.executable, "-m", "sagepro_agent", "relay", *args], env


def test_a_receipt_reaches_a_real_agent_process_through_the_relay(
    live_server, tmp_path
):
    from sagepro_agent.store.fixture.seed import create_company
    from tests.agent.conftest import business_today

    create_company(tmp_path / "sage", "01", today=business_today())
    config = tmp_path / "site.toml"
    config.write_text(
        textwrap.dedent(
            """
            [sage]
            store = "fixture"
            data = "sage"
            companies = ["01"]
            [agent]
            user = "AGNT"
            journal = "agent/journal.sqlite3"
            time_zone = "America/Los_Angeles"
            """
        )
    )
    agent = Agent.objects.create(name="Test site")
    conn = Connection.objects.create(
        kind=Connection.Kind.SAGEPRO,
        name="Company 01 via agent",
        slug="sage-agent-01",
        base_url="https://agent.relay.invalid/api/v1",
        company_id="01",
        transport=Connection.Transport.AGENT,
        agent=agent,
    )
    state = tmp_path / "agent"
    argv, env = agent_command(
        "enrol",
        "--portal",
        live_server.url,
        "--code",
        enrolment.create_code(agent),
        "--state",
        str(state),
        "--insecure-local",
    )
    enrolled = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert enrolled.returncode == 0, enrolled.stderr
    argv, env = agent_command(
        "run", "--config", str(config), "--insecure-local", "--heartbeat", "1"
    )
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        gateway = RelaySageProConnector(conn, timeout=20)
        invoice = next(
            i
            for customer in ("ACME", "BLUEOX", "IRONWD")
            for i in gateway.list_open_invoices(customer)
            if i["balance"] > Decimal("10.00")
        )
        receipt = CashReceipt(
            invoice["custno"],
            business_today(),
            Decimal("10.00"),
            "CARD",
            "PROC-1",
            (Application(invoice["invno"], Decimal("10.00")),),
        )
        posted = gateway.post_cash_receipt("proc-key-1", receipt)
        after = gateway.get_invoice(invoice["invno"])
        agent.refresh_from_db()
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]

    assert posted["replayed"] is False, output
    assert after["balance"] == invoice["balance"] - Decimal("10.00")
    assert after["invamt"] - after["paidamt"] == after["balance"]
    assert agent.last_heartbeat_at is not None and agent.sage_reachable is True
    assert set(RelayCommand.objects.values_list("state", flat=True)) == {"answered"}
