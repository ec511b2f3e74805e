"""Commands the agent must refuse without running them: one altered on its way from
the portal (signature), one past its expiry (written so in the portal's command
table), and one served a second time (replay of a command it already ran). Nothing is
written to Sage Pro, the agent reports each refusal to the portal, and the portal
records it (the connector raises `UNAVAILABLE`, safe to retry: it never ran).
"""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.connectors.base import ConnectorError
from integrations.models import RelayCommand
from integrations.relay import commands
from tests.faults.books import check_invariants, pick_invoices, read_books
from tests.faults.support import receipt_for, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_command_altered_in_transit_is_refused_and_not_run(site, proxy):
    custno, invnos = pick_invoices(site.folder)
    receipt = receipt_for(custno, "TAMPER-1", {invnos[0]: Decimal("10.00")})
    before = read_books(site.folder)

    def raise_the_amount(batch):
        for command in batch:
            if command["method"] == "POST":
                body = json.loads(command["body"])
                body["amount"] = "9999.00"
                body["applications"][0]["amount"] = "9999.00"
                command["body"] = json.dumps(body)
        return batch

    proxy.on_poll = raise_the_amount
    site.start()
    with pytest.raises(ConnectorError) as refused:
        site.sage(timeout=10).post_cash_receipt("tamper-1", receipt)
    error = refused.value
    assert error.code == "UNAVAILABLE" and not error.outcome_unknown, repr(error)
    assert "signature" in str(error), f"the refusal gives no reason: {error}"

    command = RelayCommand.objects.get(method="POST")
    assert command.state == "refused" and "signature" in command.refusal, (
        "the portal did not record the agent's refusal of the altered command"
    )
    after = check_invariants(site.folder)
    assert after.receipts_for("TAMPER-1") == [], "the altered command was run"
    assert after.invoices[invnos[0]]["PAIDAMT"] == before.invoices[invnos[0]]["PAIDAMT"]


def test_an_expired_command_is_refused_and_not_run(site):
    custno, invnos = pick_invoices(site.folder)
    body = receipt_for(custno, "EXPIRED-1", {invnos[0]: Decimal("10.00")}).body()
    site.start()
    # Written straight into the portal's command table: still leasable, but its
    # expiry (what the signature covers) passed ten minutes ago.
    command = commands.enqueue(
        site.connection,
        method="POST",
        path="/cash-receipts",
        query=[],
        headers={
            "Idempotency-Key": "expired-1",
            "Content-Type": "application/json",
            "Sage-Company": "01",
        },
        body=json.dumps(body, default=str).encode(),
        timeout=30,
    )
    RelayCommand.objects.filter(pk=command.pk).update(
        expires_at=timezone.now() - timedelta(minutes=10)
    )

    def finished():
        command.refresh_from_db()
        return command.state not in ("queued", "leased")

    wait_for(finished, "the agent to answer the expired command")
    assert command.state == "refused" and command.refusal.startswith("expired"), (
        f"an expired command was {command.state}: {command.refusal}"
    )
    assert command.status is None and command.response_body == ""
    assert check_invariants(site.folder).receipts_for("EXPIRED-1") == [], (
        "the expired command was run"
    )


def test_a_command_served_again_is_refused_as_a_replay(site, proxy):
    custno, invnos = pick_invoices(site.folder)
    applications = {invnos[0]: Decimal("10.00")}
    site.start()
    posted = site.sage(timeout=10).post_cash_receipt(
        "replay-1", receipt_for(custno, "REPLAY-1", applications)
    )
    original = next(c for c in proxy.commands if c["method"] == "POST")
    served = []

    def serve_it_again(batch):
        if not served:
            served.append(original["id"])
            return [*batch, original]
        return batch

    proxy.on_poll = serve_it_again
    answers = wait_for(
        lambda: (
            len(proxy.results_for(original["id"])) >= 2
            and proxy.results_for(original["id"])
        ),
        "the agent to answer the replayed command",
    )
    first, second = answers[:2]
    assert first["status"] == 201
    assert "status" not in second and second["refused"].startswith("replayed"), (
        f"the agent ran a command it had already run: {second}"
    )
    row = RelayCommand.objects.get(pk=original["id"])
    assert (row.state, row.status) == ("answered", 201), (
        "the replay's refusal changed the portal's record of the original answer"
    )
    books = check_invariants(site.folder)
    assert len(books.receipts_for("REPLAY-1")) == 1
    assert posted["receipt_no"]
