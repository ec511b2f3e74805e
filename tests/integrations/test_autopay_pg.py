"""Autopay under real concurrency (issue 15, acceptance 3): two runs at once, on real
database connections, charge each due invoice once, with the lease and without it
(the idempotency key alone)."""

from decimal import Decimal

import pytest
import time_machine
from django.core import mail

from integrations import autopay
from integrations.models import Lease
from integrations.models.autopay import AutopayAttempt, AutopayRun, AutopaySettings
from integrations.models.charges import Charge
from tests.integrations.test_autopay import (
    CUSTNO,
    NOW,
    TODAY,
    invoice,
    sandbox_sales,
)
from tests.support.threads import POSTGRES_ONLY, run_at_once

pytestmark = POSTGRES_ONLY


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def due(clock, sage, sagepro_conn, paytrace_conn, http, client):
    from integrations import cards
    from integrations.models.cards import CardOnFile
    from tests.support.protect import hosted_fields_token

    sage.seed_customer(CUSTNO, "Autopay Co", pterms="Net 30")
    AutopaySettings.objects.create(
        sagepro=sagepro_conn, enabled=True, finance_emails="finance@example.com"
    )
    hpf_token, enc_key = hosted_fields_token(paytrace_conn, client)
    card = cards.enrol_card(
        paytrace=paytrace_conn,
        sagepro=sagepro_conn,
        custno=CUSTNO,
        hpf_token=hpf_token,
        enc_key=enc_key,
    )
    CardOnFile.objects.filter(pk=card.pk).update(autopay=True)
    return [invoice(sage, amount, 30) for amount in ("100.00", "200.00", "300.00")]


def test_two_runs_at_once_charge_each_invoice_once(due, sagepro_conn):
    runs = run_at_once(2, lambda i: autopay.run_autopay(sagepro_conn).pk)

    states = sorted(AutopayRun.objects.get(pk=pk).state for pk in runs)
    assert states == [AutopayRun.State.FINISHED, AutopayRun.State.SKIPPED]
    for invno in due:
        assert sandbox_sales(invno).count() == 1
    assert Charge.objects.filter(state=Charge.State.APPROVED).count() == 3
    finished = AutopayRun.objects.get(state=AutopayRun.State.FINISHED)
    assert finished.charged_amount == Decimal("600.00")
    assert len(mail.outbox) == 1


def test_without_the_lease_the_key_alone_charges_each_invoice_once(
    due, sagepro_conn, monkeypatch
):
    monkeypatch.setattr(Lease, "acquire", classmethod(lambda cls, *a, **k: True))

    run_at_once(3, lambda i: autopay.run_autopay(sagepro_conn).pk)

    for invno in due:
        assert sandbox_sales(invno).count() == 1
        assert Charge.objects.filter(invno=invno).count() == 1
        # Each invoice is reported charged by exactly one of the runs.
        charged = AutopayAttempt.objects.filter(
            invno=invno, outcome=AutopayAttempt.Outcome.CHARGED
        )
        assert charged.count() == 1
    assert sum(r.charged_amount for r in AutopayRun.objects.all()) == Decimal("600.00")
    assert AutopayRun.objects.filter(run_date=TODAY).count() == 3
