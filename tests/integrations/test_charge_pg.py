"""Charging under real concurrency and a real crash (issue 15, acceptance 1), on
PostgreSQL: two requests with one key at once make one sale; a process killed right
after PayTrace approved (before the portal recorded the answer) is settled by finding
the sale by its reference, never by charging again."""

import subprocess
import sys
import textwrap
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from integrations import charging
from integrations.models.charges import Charge
from integrations.sandbox.sagepro.models import CashReceipt
from tests.integrations.test_charging import balance, make_card, sales
from tests.support.cluster import cluster_env
from tests.support.threads import POSTGRES_ONLY, run_at_once

pytestmark = POSTGRES_ONLY
ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    s = connection.settings_dict
    return (
        f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:"
        f"{s['PORT'] or 5432}/{s['NAME']}"
    )


def ask(card, invno, key="same-key"):
    return charging.request_charge(
        card=card,
        invno=invno,
        amount=Decimal("30.00"),
        idempotency_key=key,
        key_scope="user:0",
        source=Charge.Source.API,
        requested_by=None,
        requested_by_name="erp",
    )


def test_two_requests_with_one_key_at_once_make_one_sale(
    paytrace_conn, sage, http, run_tasks
):
    card = make_card(paytrace_conn)
    invno = sage.seed_invoice("ACME", "100.00")

    outcomes = run_at_once(4, lambda i: ask(card, invno))
    run_tasks()

    assert len({o.charge.pk for o in outcomes}) == 1
    assert sorted(o.replayed for o in outcomes) == [False, True, True, True]
    assert Charge.objects.count() == 1
    assert sales().count() == 1
    assert balance(invno) == Decimal("70.00")


# The charging process: charges, and dies (os._exit: no cleanup, no commit) the moment
# PayTrace's approval is in its hands, before the portal records it.
CRASHING_CHARGE = textwrap.dedent(
    """
    import os, sys
    from decimal import Decimal
    import django
    django.setup()
    from integrations import charging
    from integrations.models.cards import CardOnFile

    def die(charge, reply):
        assert reply.get("success") is True, reply
        os._exit(3)

    charging._record_reply = die
    charging.request_charge(
        card=CardOnFile.objects.get(pk=int(sys.argv[1])),
        invno=sys.argv[2],
        amount=Decimal("30.00"),
        idempotency_key="same-key",
        key_scope="user:0",
        source="api",
        requested_by=None,
        requested_by_name="erp",
    )
    os._exit(0)
    """
)


@pytest.fixture
def live(paytrace_conn, sage, live_server):
    """Both connections pointed at the live server, so another process reaches the
    sandboxes."""
    paytrace_conn.base_url = f"{live_server.url}/sandbox/paytrace"
    paytrace_conn.save()
    sage_conn = paytrace_conn.sagepro
    sage_conn.base_url = f"{live_server.url}/sandbox/sagepro/api/v1"
    sage_conn.save()
    return paytrace_conn


def test_a_process_killed_after_paytrace_approved_is_settled_by_reference(
    live, sage, run_tasks
):
    card = make_card(live)
    invno = sage.seed_invoice("ACME", "100.00")

    process = subprocess.run(
        [sys.executable, "-c", CRASHING_CHARGE, str(card.pk), invno],
        cwd=ROOT,
        env=cluster_env(database_url()),
        capture_output=True,
        timeout=120,
    )
    assert process.returncode == 3, process.stderr.decode()[-2000:]
    crashed = Charge.objects.get()
    assert crashed.state == Charge.State.SENDING  # the answer was never recorded
    assert sales().count() == 1  # but PayTrace made the sale

    later = timezone.now() + timedelta(minutes=2)
    with time_machine.travel(later, tick=True):
        replay = ask(card, invno)
        swept = charging.sweep_unknown()
    run_tasks()
    charging.sweep_unknown()

    assert replay.replayed is True
    assert replay.charge.pk == crashed.pk
    assert replay.charge.state == Charge.State.APPROVED
    assert replay.charge.attempts == 1
    assert replay.charge.transaction_id == str(sales().get().transaction_id)
    assert swept["looked_up"] == 0  # the replay settled it already
    assert sales().count() == 1
    assert balance(invno) == Decimal("70.00")
    assert CashReceipt.objects.filter(deleted=False).count() == 1
    crashed.refresh_from_db()
    assert crashed.payment is not None


def test_the_sweep_alone_settles_a_crashed_charge(live, sage, run_tasks):
    card = make_card(live)
    invno = sage.seed_invoice("ACME", "100.00")
    process = subprocess.run(
        [sys.executable, "-c", CRASHING_CHARGE, str(card.pk), invno],
        cwd=ROOT,
        env=cluster_env(database_url()),
        capture_output=True,
        timeout=120,
    )
    assert process.returncode == 3, process.stderr.decode()[-2000:]

    with time_machine.travel(timezone.now() + timedelta(minutes=2), tick=True):
        swept = charging.sweep_unknown()
    run_tasks()

    assert swept["settled"] == 1
    assert Charge.objects.get().state == Charge.State.APPROVED
    assert sales().count() == 1
    assert balance(invno) == Decimal("70.00")
