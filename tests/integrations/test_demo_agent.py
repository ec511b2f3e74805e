"""The demo with DEMO_SAGEPRO=agent: an on-site agent over FoxPro fixture files plays
Sage Pro, through the relay. The fixture files are read back with `dbfread`, a reader
independent of the agent's own DBF code."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from io import StringIO
from pathlib import Path

import dbfread
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from integrations import demo
from integrations.models import Agent, Connection
from integrations.sandbox.sagepro.models import ArMast
from sagepro_agent import config as site_config
from sagepro_agent.relay import credentials as creds
from tests.integrations.test_demo import free_port, group_members

BASE_DIR = Path(settings.BASE_DIR)
CENT = Decimal("0.01")


def read_dbf(path):
    return [dict(row) for row in dbfread.DBF(str(path), char_decode_errors="strict")]


def seed_demo(port=8000):
    out = StringIO()
    call_command("seed_demo", port=port, stdout=out)
    return out.getvalue()


@pytest.fixture
def agent_mode(monkeypatch, tmp_path):
    folder = tmp_path / "demo-sagepro"
    monkeypatch.setenv("DEMO_SAGEPRO", "agent")
    monkeypatch.setenv("DEMO_SAGEPRO_DIR", str(folder))
    monkeypatch.setenv("SAGEPRO_AGENT_NO_KEYRING", "1")
    return folder


# seed_demo ---------------------------------------------------------------------------


@override_settings(DEMO_MODE=True)
def test_seed_demo_in_agent_mode_writes_the_company_site_and_enrols(db, agent_mode):
    out = seed_demo(port=8123)

    data = agent_mode / "data"
    assert (data / "FIXTURE-NOT-LIVE-DATA.txt").exists()
    assert read_dbf(data / "ARCASH01.DBF") == []
    # The same open invoices as the sandbox the emulator serves.
    invoices = {
        row["INVNO"].strip(): Decimal(str(row["BALANCE"])).quantize(CENT)
        for row in read_dbf(data / "ARMAST01.DBF")
    }
    sandbox = {
        row.invno.strip(): row.balance
        for row in ArMast.objects.filter(company="01", deleted=False)
    }
    assert sandbox and {k: invoices[k] for k in sandbox} == sandbox

    site = site_config.load(agent_mode / "site.toml")
    assert site.store_kind == "fixture"
    assert Path(site.data_path) == data
    assert Path(site.journal_path) == agent_mode / "journal.sqlite3"
    assert site.time_zone.key == settings.BUSINESS_TIME_ZONE

    sagepro = Connection.objects.get(slug=demo.SAGEPRO_SLUG)
    assert sagepro.transport == Connection.Transport.AGENT
    assert sagepro.agent is not None and sagepro.agent.enrolled_at is not None
    assert type(sagepro.sage()).__name__ == "RelaySageProConnector"
    stored = creds.load(agent_mode)
    assert stored.portal_url == "http://127.0.0.1:8123"
    assert stored.agent_id == sagepro.agent.pk
    assert sagepro.agent.token_matches(stored.token.partition(".")[2])
    assert stored.signing_key == sagepro.agent.signing_key
    assert (agent_mode / creds.SECRET_FILE).stat().st_mode & 0o777 == 0o600
    assert f"enrolled as agent {sagepro.agent.pk}" in out


@override_settings(DEMO_MODE=True)
def test_seed_demo_in_agent_mode_reuses_everything_and_follows_the_port(db, agent_mode):
    seed_demo(port=8000)
    before = creds.load(agent_mode)
    cash = agent_mode / "data" / "ARCASH01.DBF"
    cash_mtime = cash.stat().st_mtime_ns

    out = seed_demo(port=8000)
    assert "FoxPro files: already in" in out
    assert "site mapping" in out and ": unchanged" in out
    assert "Agent credentials in" in out and "unchanged" in out
    assert "Connection sagepro-sandbox: unchanged" in out

    out = seed_demo(port=9000)
    after = creds.load(agent_mode)
    assert after.portal_url == "http://127.0.0.1:9000"
    assert (after.agent_id, after.token) == (before.agent_id, before.token)
    assert "portal URL updated to http://127.0.0.1:9000" in out
    assert cash.stat().st_mtime_ns == cash_mtime  # the company is not rewritten
    assert Agent.objects.count() == 1


@override_settings(DEMO_MODE=True)
def test_seed_demo_enrols_again_when_the_stored_credentials_no_longer_work(
    db, agent_mode
):
    seed_demo()
    first = creds.load(agent_mode)
    Agent.objects.get(pk=first.agent_id).revoke()

    out = seed_demo()

    second = creds.load(agent_mode)
    agent = Connection.objects.get(slug=demo.SAGEPRO_SLUG).agent
    assert agent.pk == second.agent_id != first.agent_id
    assert not agent.is_revoked
    assert agent.token_matches(second.token.partition(".")[2])
    assert "enrolled as agent" in out


@override_settings(DEMO_MODE=True)
def test_seed_demo_without_demo_sagepro_switches_back_to_the_sandbox(
    db, agent_mode, monkeypatch
):
    seed_demo()
    monkeypatch.delenv("DEMO_SAGEPRO")

    seed_demo()

    sagepro = Connection.objects.get(slug=demo.SAGEPRO_SLUG)
    assert sagepro.transport == Connection.Transport.DIRECT
    assert sagepro.agent is None
    assert type(sagepro.sage()).__name__ == "SageProConnector"


@override_settings(DEMO_MODE=True)
@pytest.mark.parametrize("command", ["seed_demo", "demo"])
def test_a_bad_demo_sagepro_names_the_allowed_values(db, monkeypatch, command):
    monkeypatch.setenv("DEMO_SAGEPRO", "emulator")

    with pytest.raises(CommandError) as caught:
        call_command(command, stdout=StringIO())

    message = str(caught.value)
    assert "DEMO_SAGEPRO='emulator'" in message
    assert "DEMO_SAGEPRO=sandbox" in message and "DEMO_SAGEPRO=agent" in message
    assert not Connection.objects.exists()


# The demo as a real process ----------------------------------------------------------


class AgentDemoProcess:
    """`manage.py demo` with DEMO_SAGEPRO=agent and a fast payment stream."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.log = tmp_path / "demo.log"
        self.database = tmp_path / "demo.sqlite3"
        self.folder = tmp_path / "demo-sagepro"
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in {
                "SECRET_KEY",
                "FIELD_ENCRYPTION_KEYS",
                "SANDBOX_PAYTRACE_WEBHOOK_URL",
            }
        }
        env.update(
            DJANGO_SETTINGS_MODULE="portal.settings",
            DATABASE_URL=f"sqlite:///{self.database}",
            DEMO_MODE="1",
            SANDBOX_ENABLED="1",
            DEMO_SAGEPRO="agent",
            DEMO_SAGEPRO_DIR=str(self.folder),
            SAGEPRO_AGENT_NO_KEYRING="1",
            PYTHONUNBUFFERED="1",
        )
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "demo",
                    "--port",
                    str(self.port),
                    "--interval",
                    "0.5",
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self):
        return self.log.read_text()

    def child_pids(self):
        return {
            name: int(pid)
            for name, pid in re.findall(
                r"Started (gunicorn|qcluster|agent) \(pid (\d+)\)", self.output()
            )
        }

    def posted(self):
        """The receipt numbers of every posting the portal marked posted."""
        try:
            with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as db:
                db.execute("PRAGMA busy_timeout = 5000")
                return db.execute(
                    "SELECT document_number FROM integrations_posting "
                    "WHERE state = 'posted'"
                ).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.child_pids().values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def agent_demo(tmp_path):
    process = AgentDemoProcess(tmp_path)
    yield process
    process.stop()


@pytest.mark.slow  # a real `manage.py demo` process tree with an agent process
def test_the_agent_demo_posts_receipts_into_foxpro_and_stops_on_ctrl_c(agent_demo):
    deadline = time.monotonic() + 150
    posted = []
    while time.monotonic() < deadline and not posted:
        assert agent_demo.process.poll() is None, agent_demo.output()
        posted = [n for (n,) in agent_demo.posted() if n.strip()]
        time.sleep(1)
    assert posted, f"no payment was posted:\n{agent_demo.output()}"
    output = agent_demo.output()
    pids = agent_demo.child_pids()
    assert set(pids) == {"gunicorn", "qcluster", "agent"}
    data = agent_demo.folder / "data"
    assert f"FoxPro files:  {data}/" in output
    assert f"sagepro_agent schema {data}" in output
    assert "Waiting for the agent's first heartbeat… received" in output

    agent_demo.process.send_signal(signal.SIGINT)

    assert agent_demo.process.wait(timeout=60) == 0, agent_demo.output()
    for name, pid in pids.items():
        assert group_members(pid) == [], f"{name} (pid {pid}) is still running"
    output = agent_demo.output()
    assert "Traceback" not in output
    # Every receipt the portal calls posted is a row of ARCASH01.DBF, read by dbfread.
    receipts = {row["RCPTNO"].strip(): row for row in read_dbf(data / "ARCASH01.DBF")}
    posted = {n.strip() for (n,) in agent_demo.posted() if n.strip()}
    assert posted and posted <= set(receipts), (posted, sorted(receipts))
    lines = read_dbf(data / "ARCAPP01.DBF")
    for number in posted:
        applied = sum(
            Decimal(str(line["PAIDAMT"]))
            for line in lines
            if line["RCPTNO"].strip() == number
        )
        assert applied == Decimal(str(receipts[number]["APPLIED"]))
    for invoice in read_dbf(data / "ARMAST01.DBF"):
        assert (
            Decimal(str(invoice["INVAMT"])) - Decimal(str(invoice["PAIDAMT"]))
        ).quantize(CENT) == Decimal(str(invoice["BALANCE"])).quantize(CENT), invoice
    assert any(Decimal(str(i["PAIDAMT"])) > 0 for i in read_dbf(data / "ARMAST01.DBF"))
