import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from integrations import demo
from integrations.connectors.paytrace import PayTraceConnector
from integrations.connectors.sagepro import SageProConnector
from integrations.models import Connection, WebhookSecret
from integrations.roles import FINANCE_REVIEWER
from mappings.models import StatusMap

BASE_DIR = Path(settings.BASE_DIR)
CARD_NUMBERS = [*demo.APPROVED_CARDS, demo.DECLINED_CARD]


def seed_demo(port=8000):
    out = StringIO()
    call_command("seed_demo", port=port, stdout=out)
    return out.getvalue()


def row_counts():
    return {
        "connections": Connection.objects.count(),
        "secrets": WebhookSecret.objects.count(),
        "users": get_user_model().objects.count(),
        "status_maps": StatusMap.objects.count(),
    }


# seed_demo -----------------------------------------------------------------------


@override_settings(DEMO_MODE=True)
def test_seed_demo_creates_connections_secret_and_users(db):
    seed_demo(port=8123)

    sagepro = Connection.objects.get(slug="sagepro-sandbox")
    assert sagepro.kind == Connection.Kind.SAGEPRO
    assert sagepro.base_url == "http://127.0.0.1:8123/sandbox/sagepro/api/v1"
    assert sagepro.password == settings.SANDBOX_SAGEPRO_API_KEY
    assert sagepro.company_id == "01"
    paytrace = Connection.objects.get(slug="paytrace-sandbox")
    assert paytrace.kind == Connection.Kind.PAYTRACE
    assert paytrace.base_url == "http://127.0.0.1:8123/sandbox/paytrace"
    assert paytrace.username == settings.SANDBOX_PAYTRACE_USERNAME
    assert paytrace.password == settings.SANDBOX_PAYTRACE_PASSWORD
    assert paytrace.time_zone == settings.SANDBOX_PAYTRACE_TIME_ZONE
    assert paytrace.integrator_id
    assert paytrace.sagepro == sagepro
    assert StatusMap.objects.filter(connection=paytrace).exists()

    assert paytrace.active_webhook_secrets() == [settings.DEMO_WEBHOOK_SECRET]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret FROM integrations_webhooksecret WHERE connection_id = %s",
            [paytrace.pk],
        )
        [(stored,)] = cursor.fetchall()
    assert stored.startswith("fernet:")
    assert settings.DEMO_WEBHOOK_SECRET not in stored

    User = get_user_model()  # noqa: N806
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password("admin")
    reviewer = User.objects.get(username="reviewer")
    assert reviewer.is_staff and not reviewer.is_superuser
    assert reviewer.check_password("reviewer")
    assert list(reviewer.groups.values_list("name", flat=True)) == [FINANCE_REVIEWER]


@override_settings(DEMO_MODE=True)
def test_seed_demo_changes_nothing_the_second_time(db):
    seed_demo()
    before = row_counts()
    stamps = dict(Connection.objects.values_list("slug", "updated_at"))
    stored = dict(WebhookSecret.objects.values_list("pk", "secret"))

    out = seed_demo()

    assert row_counts() == before
    assert dict(Connection.objects.values_list("slug", "updated_at")) == stamps
    assert dict(WebhookSecret.objects.values_list("pk", "secret")) == stored
    assert "Connection paytrace-sandbox: unchanged" in out
    assert "User admin: unchanged" in out


@override_settings(DEMO_MODE=True)
def test_seed_demo_follows_a_changed_port_and_secret(db):
    seed_demo(port=8000)

    with override_settings(
        DEMO_WEBHOOK_SECRET="whsec_bmV3LWRlbW8tc2VjcmV0LXZhbHVlLTAwMDA="
    ):
        seed_demo(port=9000)

    paytrace = Connection.objects.get(slug="paytrace-sandbox")
    assert paytrace.base_url == "http://127.0.0.1:9000/sandbox/paytrace"
    assert paytrace.active_webhook_secrets() == [
        "whsec_bmV3LWRlbW8tc2VjcmV0LXZhbHVlLTAwMDA="
    ]
    assert WebhookSecret.objects.filter(connection=paytrace).count() == 1


@override_settings(DEMO_MODE=False)
@pytest.mark.parametrize("command", ["seed_demo", "demo"])
def test_demo_commands_refuse_without_demo_mode(db, command):
    with pytest.raises(CommandError, match="DEMO_MODE=1"):
        call_command(command, stdout=StringIO())
    assert not Connection.objects.exists()


@override_settings(DEMO_MODE=True)
def test_demo_says_so_when_the_port_is_taken(db):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"Port {port} .* already in use"):
            call_command("demo", port=port, stream=False, stdout=StringIO())
    assert not Connection.objects.exists()  # nothing was started or seeded


# The payment stream -----------------------------------------------------------------


class FakeSage:
    def __init__(self, invoices):
        self.invoices = invoices

    def call(self, method, path, **kwargs):
        assert (method, path, kwargs["params"]) == (
            "GET",
            "/invoices",
            {"status": "open"},
        )
        return {"results": self.invoices}


def demo_invoice(invno, balance, custno="ACME"):
    return {
        "invno": invno,
        "custno": custno,
        "balance": balance,
        "ponum": f"{demo.DEMO_PONUM_PREFIX}T{invno}",
    }


def test_stream_mixes_full_partial_over_unmatched_duplicate_and_declined_payments():
    invoices = [
        demo_invoice("10001", "120.00"),
        demo_invoice("10002", "75.13"),
        demo_invoice("10003", "-20.00", custno="BOLT"),  # a credit memo
    ]
    stream = demo.PaymentStream(None, FakeSage(invoices), rng=random.Random(7), stock=2)
    stream.paid["10009"] = Decimal("40.00")  # paid earlier: a duplicate pays it again

    payments = [stream.choose() for _ in range(400)]

    kinds = {p.kind for p in payments}
    assert kinds == {"full", "partial", "over", "unmatched", "duplicate", "decline"}
    full = [p for p in payments if p.kind == "full"]
    # Mostly payments of an open invoice (a balance ending in .13 is paid in part).
    assert len(full) + sum(p.kind == "partial" for p in payments) > 0.75 * 400
    for p in payments:
        assert p.amount > 0 and p.amount.as_tuple().exponent == -2  # cents, always
        if p.kind == "decline":
            assert p.card_number.endswith("0002")
            continue
        assert not p.card_number.endswith("0002")
        assert p.amount % 1 != Decimal("0.13")  # the sandbox would decline it
        if p.kind == "unmatched":
            assert p.invoice.startswith("9")
        elif p.kind == "duplicate":
            assert (p.invoice, p.amount) == ("10009", Decimal("40.00"))
        else:
            assert p.invoice in {"10001", "10002"}
            assert p.custno == "ACME"  # the payer, for the review item
    assert {p.amount for p in full} == {Decimal("120.00")}  # 75.13 is paid in part
    balances = {"10001": Decimal("120.00"), "10002": Decimal("75.13")}
    overs = [p for p in payments if p.kind == "over"]
    assert overs and all(p.amount > balances[p.invoice] for p in overs)


def test_stream_does_not_pay_an_invoice_twice_unless_it_means_to():
    stream = demo.PaymentStream(
        None, FakeSage([]), rng=random.Random(1), make_invoice=None, stock=0
    )
    stream.paid["10001"] = Decimal("120.00")
    stream.sage.invoices = [demo_invoice("     10001", "120.00")]

    assert stream.open_invoices() == []
    assert stream.choose().kind == "unmatched"  # nothing of its own left to pay


@pytest.mark.django_db(transaction=True)
def test_stream_pays_through_the_sandboxes(http):
    from integrations.sandbox.sagepro.seed import seed

    seed(company="01")
    paytrace = PayTraceConnector(
        "http://testserver/sandbox/paytrace",
        settings.SANDBOX_PAYTRACE_USERNAME,
        settings.SANDBOX_PAYTRACE_PASSWORD,
        "DEMO0001",
        settings.SANDBOX_PAYTRACE_TIME_ZONE,
    )
    sage = SageProConnector(
        "http://testserver/sandbox/sagepro/api/v1",
        settings.SANDBOX_SAGEPRO_API_KEY,
        "01",
    )
    stream = demo.PaymentStream(paytrace, sage, rng=random.Random(3), settle_every=10)
    stream.MIX = {**stream.MIX, "decline": 40}  # some declines in ten payments

    lines = [line for _ in range(10) for line in stream.step()]

    # It billed its own invoices in Sage Pro, and paid only those.
    reply = sage.call("GET", "/invoices", params={"status": "all"})
    own = {row["invno"] for row in reply["results"] if demo.is_demo_invoice(row)}
    assert own and stream.made == len(own)
    paid = set(stream.paid)
    assert paid and paid <= own
    assert len(lines) == 11
    assert lines[-1].startswith("Settled ")
    assert any(" approved " in line for line in lines)
    assert any(" declined " in line for line in lines)
    for line in lines:
        assert not any(number in line for number in CARD_NUMBERS)
        assert not re.search(r"\d{12,}", line)


# The launcher, as a real process ----------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_members(pgid):
    """Live (non-zombie) processes in a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) in parentheses.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


class DemoProcess:
    def __init__(self, tmp_path):
        self.port = free_port()
        self.log = tmp_path / "demo.log"
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
            DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
            DEMO_MODE="1",
            SANDBOX_ENABLED="1",
            PYTHONUNBUFFERED="1",
        )
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "demo",
                    "--no-stream",
                    "--no-history",  # test_demo_stream.py seeds the past
                    "--port",
                    str(self.port),
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self):
        return self.log.read_text()

    def wait_until_ready(self, timeout=60):
        """Wait for /healthz to answer 200 and the demo to print its banner."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                response = requests.get(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=2
                )
                if response.status_code == 200 and "Ctrl-C" in self.output():
                    return response.json()
            except requests.RequestException:  # not listening yet, or still booting
                pass
            time.sleep(0.3)
        raise AssertionError(f"the demo never got ready:\n{self.output()}")

    def child_pids(self):
        return {
            name: int(pid)
            for name, pid in re.findall(
                r"Started (gunicorn|qcluster) \(pid (\d+)\)", self.output()
            )
        }

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
def demo_process(tmp_path):
    process = DemoProcess(tmp_path)
    yield process
    process.stop()


@pytest.mark.slow  # a real `manage.py demo` process tree
def test_demo_starts_the_product_and_stops_it_on_ctrl_c(demo_process):
    health = demo_process.wait_until_ready()
    assert health["status"] == "ok"
    pids = demo_process.child_pids()
    assert set(pids) == {"gunicorn", "qcluster"}
    assert all(group_members(pid) for pid in pids.values())
    output = demo_process.output()
    assert (
        f"http://127.0.0.1:{demo_process.port}/admin/integrations/reviewitem/" in output
    )
    assert "admin / admin" in output and "reviewer / reviewer" in output

    demo_process.process.send_signal(signal.SIGINT)

    assert demo_process.process.wait(timeout=30) == 0, demo_process.output()
    for name, pid in pids.items():
        assert group_members(pid) == [], f"{name} (pid {pid}) is still running"
    assert "Traceback" not in demo_process.output()


@pytest.mark.slow  # a real `manage.py demo` process tree
def test_demo_stops_everything_when_a_child_dies(demo_process):
    demo_process.wait_until_ready()
    pids = demo_process.child_pids()

    os.kill(pids["gunicorn"], signal.SIGKILL)

    assert demo_process.process.wait(timeout=30) != 0
    assert (
        f"gunicorn (pid {pids['gunicorn']}) was killed by SIGKILL"
        in demo_process.output()
    )
    assert group_members(pids["qcluster"]) == []
    assert group_members(pids["gunicorn"]) == []  # its workers too


# .env.example ------------------------------------------------------------------------


def test_env_example_lists_every_variable_the_settings_read():
    source = (BASE_DIR / "portal" / "settings.py").read_text()
    read = set(re.findall(r"env(?:\.\w+)?\(\s*\"([A-Z_][A-Z0-9_]*)\"", source))
    documented = set(
        re.findall(
            r"^#?([A-Z_][A-Z0-9_]*)=", (BASE_DIR / ".env.example").read_text(), re.M
        )
    )
    assert "DATABASE_URL" in read and "SECRET_KEY" in read
    assert read - documented == set()
