"""The relay: enrolment, commands leased and answered by an agent, cancelled when no
agent takes them, outcome unknown when an agent takes one and goes quiet, heartbeats
and the offline alert; the agent is the real `RelayClient` talking to the in-process
portal through tests/bridge.py."""

import json
from datetime import timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest
import requests
import time_machine
from django.conf import settings as django_settings
from django.utils import timezone

from integrations import alerts
from integrations.connectors import relay as relay_transport
from integrations.connectors.base import ConnectorError
from integrations.connectors.sagepro import Application, CashReceipt
from integrations.models import (
    Agent,
    AgentReviewEntry,
    Alert,
    Connection,
    EnrolmentCode,
    RelayCommand,
    ReviewItem,
)
from integrations.relay import enrolment
from integrations.sandbox.sagepro.models import ArMast
from integrations.sandbox.sagepro.models import CashReceipt as SageReceipt
from sagepro_agent.relay.client import RelayClient
from sagepro_agent.relay.credentials import Credentials
from sagepro_agent.wire import Request, Response

pytestmark = pytest.mark.django_db
PORTAL = "http://testserver"
SANDBOX = "http://testserver/sandbox/sagepro/api/v1"


def enrol(client, code, version="1.0.0"):
    return client.post(
        "/api/agent/enrol",
        {"code": code, "name": "site", "version": version},
        content_type="application/json",
        REMOTE_ADDR="10.0.0.9",
    )


def sandbox_handler(request: Request) -> Response:
    """Forward a contract request to the sandbox emulator, as an agent's core would
    answer it."""
    headers = dict(request.headers)
    headers["Authorization"] = f"Bearer {django_settings.SANDBOX_SAGEPRO_API_KEY}"
    reply = requests.request(
        request.method,
        SANDBOX + quote(request.path),
        params=list(request.query),
        headers=headers,
        data=request.body or None,
    )
    body = json.loads(reply.content, parse_float=Decimal) if reply.content else None
    kept = {k: v for k, v in reply.headers.items() if k in ("Retry-After",)}
    return Response(reply.status_code, body, kept)


@pytest.fixture(autouse=True)
def _fresh_throttle():
    from django.core.cache import cache

    cache.clear()  # the enrolment throttle counts failures per address
    yield
    relay_transport.PUMP = None


@pytest.fixture
def agent_conn(db, sagepro_conn):
    """The sandbox's Sage Pro connection, switched to an enrolled agent."""
    agent = Agent.objects.create(name="Site server")
    sagepro_conn.transport = Connection.Transport.AGENT
    sagepro_conn.agent = agent
    sagepro_conn.save()
    return sagepro_conn


@pytest.fixture
def credentials(agent_conn, client):
    code = enrolment.create_code(agent_conn.agent)
    data = enrol(client, code).json()
    return Credentials(PORTAL, data["agent_id"], data["token"], data["signing_key"])


@pytest.fixture
def agent_client(credentials, tmp_path, http):
    """A `RelayClient` whose handler forwards to the sandbox; `.handler` can be
    replaced. Its cycles run inside the portal's wait through the PUMP hook."""
    calls = []

    def handler(request):
        calls.append(request)
        return agent.forward(request)

    agent = RelayClient(
        PORTAL,
        credentials,
        handler,
        lambda: {"version": "1.0.0", "sage_reachable": True, "journal_backlog": 0},
        state_dir=tmp_path / "state",
        session=requests.Session(),
        backoff_seconds=0,
    )
    agent.forward = sandbox_handler
    agent.calls = calls
    relay_transport.PUMP = agent.run_once
    yield agent
    relay_transport.PUMP = None


# --- enrolment -----------------------------------------------------------------------


def test_an_enrolment_code_trades_once_for_credentials_kept_only_hashed(client):
    agent = Agent.objects.create(name="Site")
    code = enrolment.create_code(agent)
    assert len(code) >= 22  # 128 bits, URL-safe base64

    first = enrol(client, code)
    second = enrol(client, code)

    assert first.status_code == 201
    data = first.json()
    assert data["agent_id"] == agent.pk
    assert second.status_code == 401
    assert second.json()["code"] == "INVALID_CODE"
    agent.refresh_from_db()
    stored = EnrolmentCode.objects.get()
    assert code not in stored.code_hash and stored.used_at is not None
    secret = data["token"].split(".", 1)[1]
    assert secret not in agent.token_hash and len(agent.token_hash) == 64
    assert agent.signing_key == data["signing_key"]
    raw = Agent.objects.filter(pk=agent.pk).values_list("signing_key", flat=True)
    # The key is stored encrypted: read straight from the column it is ciphertext.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT signing_key FROM integrations_agent WHERE id = %s", [agent.pk]
        )
        assert cursor.fetchone()[0].startswith("fernet:")
    assert list(raw) == [data["signing_key"]]


def test_an_expired_or_unknown_code_is_refused_without_saying_which(client):
    agent = Agent.objects.create(name="Site")
    code = enrolment.create_code(agent, minutes=15)
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        expired = enrol(client, code)
    unknown = enrol(client, "x" * 22)
    assert expired.status_code == unknown.status_code == 401
    assert expired.json() == unknown.json()
    assert Agent.objects.get().token_hash == ""


def test_guessing_codes_is_throttled(client):
    for _ in range(10):
        assert enrol(client, "guess-guess-guess").status_code == 401
    agent = Agent.objects.create(name="Site")
    assert enrol(client, enrolment.create_code(agent)).status_code == 429


def test_bad_enrolment_bodies_answer_400(client):
    for body in (b"not json", b"[]", b'{"code": 5}', b'{"code": "short"}'):
        response = client.post(
            "/api/agent/enrol", body, content_type="application/json"
        )
        assert response.status_code == 400, body


def test_a_revoked_agent_gets_401_everywhere_and_its_queued_commands_are_cancelled(
    client, credentials, agent_conn
):
    auth = {"Authorization": f"Bearer {credentials.token}"}
    assert (
        client.post(
            "/api/agent/heartbeat", {}, content_type="application/json", headers=auth
        ).status_code
        == 200
    )
    command = RelayCommand.objects.create(
        connection=agent_conn,
        company="01",
        method="GET",
        path="/periods",
        lease_deadline=timezone.now() + timedelta(seconds=5),
        expires_at=timezone.now() + timedelta(seconds=10),
    )

    Agent.objects.get().revoke()

    for path in ("/api/agent/poll", "/api/agent/heartbeat"):
        response = client.post(path, {}, content_type="application/json", headers=auth)
        assert response.status_code == 401
        assert "WWW-Authenticate" in response
    command.refresh_from_db()
    assert command.state == RelayCommand.State.CANCELLED


def test_rotating_keeps_the_old_token_until_the_new_code_is_used(client, credentials):
    agent = Agent.objects.get()
    old = {"Authorization": f"Bearer {credentials.token}"}
    code = enrolment.create_code(agent)
    poll = {"wait": 0}
    assert (
        client.post(
            "/api/agent/poll", poll, content_type="application/json", headers=old
        ).status_code
        == 200
    )
    new = enrol(client, code).json()
    assert (
        client.post(
            "/api/agent/poll", poll, content_type="application/json", headers=old
        ).status_code
        == 401
    )
    assert (
        client.post(
            "/api/agent/poll",
            poll,
            content_type="application/json",
            headers={"Authorization": f"Bearer {new['token']}"},
        ).status_code
        == 200
    )
    assert new["signing_key"] != credentials.signing_key


# --- commands ------------------------------------------------------------------------


def test_a_connector_call_travels_through_the_relay_to_the_agent_and_back(
    agent_conn, agent_client, sage
):
    invno = sage.seed_invoice("ACME", "120.00")
    gateway = agent_conn.sage()

    invoice = gateway.get_invoice(invno)

    assert type(gateway).__name__ == "RelaySageProConnector"
    assert invoice["balance"] == Decimal("120.00")
    assert agent_client.calls[0].path == f"/invoices/{invno}"
    assert agent_client.calls[0].header("Sage-Company") == "01"
    assert agent_client.calls[0].header("Authorization") is None
    command = RelayCommand.objects.get()
    assert command.state == RelayCommand.State.ANSWERED and command.status == 200


def test_a_receipt_posted_through_the_relay_lands_once_and_replays(
    agent_conn, agent_client, sage
):
    invno = sage.seed_invoice("ACME", "80.00")
    receipt = CashReceipt(
        "ACME",
        timezone.localdate(),
        Decimal("30.00"),
        "CARD",
        "T-1",
        (Application(invno, Decimal("30.00")),),
    )
    gateway = agent_conn.sage()

    first = gateway.post_cash_receipt("key-1", receipt)
    again = gateway.post_cash_receipt("key-1", receipt)

    assert first["replayed"] is False and again["replayed"] is True
    assert first["receipt_no"] == again["receipt_no"]
    assert SageReceipt.objects.filter(reference="T-1").count() == 1
    assert ArMast.objects.get(invno=invno.rjust(10)).balance == Decimal("50.00")
    assert agent_client.calls[0].header("Idempotency-Key") == "key-1"
    assert RelayCommand.objects.first().idempotency_key == "key-1"


def test_a_body_that_is_not_text_reaches_the_agent_byte_for_byte(
    agent_conn, agent_client, sage
):
    for raw in (b"\xff\xfe{", b'{"a": "\x00"}'):
        response = agent_conn.sage().request(
            "POST", "/cash-receipts", data=raw, headers={"Idempotency-Key": "k-raw"}
        )
        assert agent_client.calls[-1].body == raw
        assert response.status_code == 400
    assert RelayCommand.objects.first().body_encoding == "base64"


def test_gateway_errors_come_back_as_the_direct_transport_raises_them(
    agent_conn, agent_client, sage
):
    with pytest.raises(ConnectorError) as error:
        agent_conn.sage().get_customer("NOBODY")
    assert error.value.status == 404
    assert error.value.code == "CUSTOMER_NOT_FOUND"


def test_a_command_no_agent_leases_is_cancelled_and_reported_unavailable(agent_conn):
    gateway = relay_transport.RelaySageProConnector(
        agent_conn, timeout=0.4, lease_seconds=0.2
    )
    receipt = CashReceipt("ACME", timezone.localdate(), Decimal("1.00"), "CARD", "T-2")

    with pytest.raises(ConnectorError) as error:
        gateway.post_cash_receipt("key-2", receipt)

    assert error.value.code == "UNAVAILABLE"
    assert error.value.transient and not error.value.outcome_unknown
    command = RelayCommand.objects.get()
    assert command.state == RelayCommand.State.CANCELLED
    # The agent polling afterwards gets nothing: it never runs.
    agent = Agent.objects.get()
    from integrations.relay import commands

    assert commands.lease(agent, 10) == []


def test_a_leased_command_left_unanswered_is_outcome_unknown_and_a_late_answer_changes_nothing(
    agent_conn, agent_client, sage
):
    received = []

    def leases_but_never_answers():
        received.extend(agent_client.poll(0))

    relay_transport.PUMP = leases_but_never_answers
    gateway = relay_transport.RelaySageProConnector(agent_conn, timeout=0.5)
    receipt = CashReceipt("ACME", timezone.localdate(), Decimal("1.00"), "CARD", "T-3")

    with pytest.raises(ConnectorError) as error:
        gateway.post_cash_receipt("key-3", receipt)

    assert error.value.code == "TIMEOUT"
    assert error.value.transient and error.value.outcome_unknown
    command = RelayCommand.objects.get()
    assert command.state == RelayCommand.State.ABANDONED
    assert len(received) == 1

    # The agent answers at last: kept for the record, the command stays abandoned.
    late = agent_client._post_raw(
        command.pk, b'{"status":201,"headers":{},"body":{"rcptno":"LATE"}}'
    )
    assert late is True
    command.refresh_from_db()
    assert command.state == RelayCommand.State.ABANDONED
    assert command.status == 201 and "LATE" in command.response_body


def test_a_connection_without_a_live_agent_is_unavailable_at_once(agent_conn):
    agent_conn.agent.revoke()
    with pytest.raises(ConnectorError) as error:
        agent_conn.sage().list_periods()
    assert error.value.code == "UNAVAILABLE" and not error.value.outcome_unknown
    assert "Agents page" in str(error.value)
    assert not RelayCommand.objects.exists()


def test_finished_commands_are_pruned_after_a_week(agent_conn):
    from integrations.relay import commands

    now = timezone.now()
    for state, age in (
        ("answered", 8),
        ("cancelled", 8),
        ("answered", 1),
        ("leased", 8),
    ):
        RelayCommand.objects.create(
            connection=agent_conn,
            company="01",
            method="GET",
            path="/periods",
            state=state,
            created_at=now - timedelta(days=age),
            lease_deadline=now,
            expires_at=now,
        )
    assert commands.prune(days=7) == 2
    assert sorted(RelayCommand.objects.values_list("state", flat=True)) == [
        "answered",
        "leased",
    ]


def test_a_get_left_unanswered_is_a_timeout_whose_outcome_is_known(
    agent_conn, agent_client
):
    relay_transport.PUMP = lambda: agent_client.poll(0)
    gateway = relay_transport.RelaySageProConnector(agent_conn, timeout=0.3)
    with pytest.raises(ConnectorError) as error:
        gateway.list_periods()
    assert error.value.code == "TIMEOUT" and not error.value.outcome_unknown


def test_a_result_for_another_agents_command_is_404_and_a_repeat_changes_nothing(
    client, agent_conn, credentials
):
    other = Agent.objects.create(name="Other")
    other_code = enrolment.create_code(other)
    other_token = enrol(client, other_code).json()["token"]
    command = RelayCommand.objects.create(
        connection=agent_conn,
        company="01",
        method="GET",
        path="/periods",
        lease_deadline=timezone.now() + timedelta(seconds=5),
        expires_at=timezone.now() + timedelta(seconds=10),
    )
    mine = {"Authorization": f"Bearer {credentials.token}"}
    leased = client.post(
        "/api/agent/poll", {"wait": 0}, content_type="application/json", headers=mine
    ).json()["commands"]
    assert [c["id"] for c in leased] == [command.pk]
    url = f"/api/agent/commands/{command.pk}/result"
    answer = b'{"status": 200, "headers": {}, "body": {"n": 1.50}}'

    stolen = client.post(
        url,
        answer,
        content_type="application/json",
        headers={"Authorization": f"Bearer {other_token}"},
    )
    first = client.post(url, answer, content_type="application/json", headers=mine)
    again = client.post(
        url,
        answer.replace(b"200", b"500"),
        content_type="application/json",
        headers=mine,
    )

    assert stolen.status_code == 404
    assert first.status_code == again.status_code == 200
    command.refresh_from_db()
    assert command.status == 200
    assert command.response_body == '{"n":1.50}'  # numbers kept exactly


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b"[]",
        b'{"status": "200"}',
        b'{"status": 99}',
        b'{"status": true}',
        b'{"status": 200, "headers": []}',
        b'{"refused": 5}',
        b"[" * 5000,
        b'{"status": 200, "body": ' + b"[" * 990 + b"]" * 990 + b"}",
    ],
)
def test_bad_results_answer_400_never_500(client, agent_conn, credentials, body):
    command = RelayCommand.objects.create(
        connection=agent_conn,
        company="01",
        method="GET",
        path="/periods",
        state=RelayCommand.State.LEASED,
        agent=Agent.objects.get(),
        lease_deadline=timezone.now(),
        expires_at=timezone.now() + timedelta(seconds=10),
    )
    response = client.post(
        f"/api/agent/commands/{command.pk}/result",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {credentials.token}"},
    )
    assert response.status_code == 400


def test_a_poll_with_bad_parameters_answers_400(client, credentials):
    auth = {"Authorization": f"Bearer {credentials.token}"}
    for body in ({"wait": "x"}, {"max": None}, [1]):
        response = client.post(
            "/api/agent/poll", body, content_type="application/json", headers=auth
        )
        assert response.status_code == 400


def test_the_transport_refuses_to_relay_inside_a_transaction_on_sqlite(agent_conn):
    from django.db import connection, transaction

    from integrations.relay.commands import RelayInTransactionError

    if connection.vendor != "sqlite":
        pytest.skip("on PostgreSQL the command commits on its own connection")
    with transaction.atomic(), pytest.raises(RelayInTransactionError):
        agent_conn.sage().list_periods()


# --- the pipeline through the relay ---------------------------------------------------


def test_the_pipeline_posts_a_payment_through_the_relay(
    client, paytrace_conn, agent_conn, agent_client, sage, secret, run_tasks
):
    from tests.webhooks import event_body, paytrace_record, post_event, sign

    invno = sage.seed_invoice("ACME", "400.00")
    record = paytrace_record(amount=Decimal("150.25"), invoice_id=invno)
    body = event_body("transaction.approved", record)

    response = post_event(client, "paytrace-sandbox", body, sign(body, secret))
    run_tasks()

    assert response.status_code == 202
    receipts = SageReceipt.objects.filter(reference=str(record["transaction_id"]))
    assert receipts.count() == 1
    assert ArMast.objects.get(invno=invno.rjust(10)).balance == Decimal("249.75")
    posting = paytrace_conn.transactions.get().postings.get()
    assert posting.state == "posted"
    posted = [c for c in agent_client.calls if c.method == "POST"]
    assert len(posted) == 1 and posting.idempotency_key.encode() in posted[0].body
    assert RelayCommand.objects.filter(state="answered").count() == len(
        agent_client.calls
    )


# --- heartbeats and the offline alert ----------------------------------------------------


def test_a_heartbeat_is_kept_and_opens_one_review_item_per_entry_once(
    client, credentials
):
    auth = {"Authorization": f"Bearer {credentials.token}"}
    beat = {
        "version": "1.2.3",
        "sage_reachable": True,
        "journal_backlog": 2,
        # As the agent's health() reports them: a count, and the entries.
        "needs_review": 1,
        "needs_review_entries": [
            {
                "company": "01",
                "idempotency_key": "pt2-17",
                "reference": "600000017",
                "receipt_no": "R0017",
                "detail": "invoice 10001 changed",
                "since": "2026-12-06T10:00:00+00:00",
            }
        ],
        "last_integrity": {"ok": True, "summary": "5 tables"},
        "last_error": "",
    }

    for _ in range(3):
        response = client.post(
            "/api/agent/heartbeat", beat, content_type="application/json", headers=auth
        )
        assert response.status_code == 200

    agent = Agent.objects.get()
    assert agent.version == "1.2.3" and agent.journal_backlog == 2
    assert agent.sage_reachable is True and agent.needs_review_count == 1
    assert agent.last_integrity == {"ok": True, "summary": "5 tables"}
    assert agent.is_online()
    item = ReviewItem.objects.get()
    assert item.kind == ReviewItem.Kind.AGENT_JOURNAL
    assert "01:pt2-17" in item.reason and "invoice 10001 changed" in item.reason
    assert "600000017" in item.reason
    assert AgentReviewEntry.objects.get().review_item == item


def test_hostile_heartbeats_are_stored_safely(client, credentials):
    auth = {"Authorization": f"Bearer {credentials.token}"}
    beat = {
        "version": ["x"],
        "journal_backlog": "many",
        "needs_review": "all",
        "last_integrity": {"detail": "nul\u0000 \ud800"},
        "last_error": "card 4111 1111 1111 1111 \u0000",
    }
    response = client.post(
        "/api/agent/heartbeat",
        json.dumps(beat),
        content_type="application/json",
        headers=auth,
    )
    assert response.status_code == 200
    agent = Agent.objects.get()
    assert agent.journal_backlog is None
    assert "4111 1111 1111 1111" not in agent.last_error
    bad = client.post(
        "/api/agent/heartbeat", "[]", content_type="application/json", headers=auth
    )
    assert bad.status_code == 400


def test_an_agent_silent_past_the_threshold_raises_the_offline_alert(
    settings, client, credentials, mailoutbox
):
    settings.AGENT_OFFLINE_MINUTES = 5
    settings.ALERT_EMAILS = ["ops@example.com"]
    agent = Agent.objects.get()
    agent.last_heartbeat_at = timezone.now()
    agent.save()

    alerts.check_alerts(timezone.now() + timedelta(minutes=4))
    assert not Alert.objects.filter(key__startswith="agent_offline").exists()

    alerts.check_alerts(timezone.now() + timedelta(minutes=6))
    alert = Alert.objects.get(key=f"agent_offline:{agent.pk}")
    assert "Site server" in alert.message and alert.resolved_at is None
    assert any("agent_offline" in m.subject for m in mailoutbox)

    agent.last_heartbeat_at = timezone.now() + timedelta(minutes=6)
    agent.save()
    alerts.check_alerts(timezone.now() + timedelta(minutes=7))
    alert.refresh_from_db()
    assert alert.resolved_at is not None


# --- the real agent behind the relay ---------------------------------------------------


def test_a_receipt_through_the_relay_lands_in_the_agents_foxpro_tables(
    agent_conn, agent_client, tmp_path
):
    """The portal's connector -> the relay -> the agent's gateway core -> fixture
    FoxPro files: the receipt is in ARCASH and its index, the balance is reduced."""
    from sagepro_agent.agent import build
    from sagepro_agent.config import SiteMapping
    from sagepro_agent.store.fixture.seed import create_company
    from tests.agent.cdxcheck import cdx_keys
    from tests.agent.conftest import business_today

    create_company(tmp_path / "sage", "01", today=business_today())
    agent = build(
        SiteMapping(
            store_kind="fixture",
            data_path=str(tmp_path / "sage"),
            journal_path=str(tmp_path / "agent" / "journal.sqlite3"),
            marker_path=str(tmp_path / "config" / "journal-install-id"),
            agent_user="AGNT",
        )
    )
    agent.start()
    agent_client.forward = agent.gateway.handle
    try:
        gateway = agent_conn.sage()
        invoice = next(
            i
            for customer in ("ACME", "BLUEOX", "IRONWD")
            for i in gateway.list_open_invoices(customer)
            if i["balance"] > Decimal("25.00")
        )
        receipt = CashReceipt(
            invoice["custno"],
            business_today(),
            Decimal("25.00"),
            "CARD",
            "RELAY-1",
            (Application(invoice["invno"], Decimal("25.00")),),
        )

        posted = gateway.post_cash_receipt("relay-key-1", receipt)
        again = gateway.post_cash_receipt("relay-key-1", receipt)
        after = gateway.get_invoice(invoice["invno"])
    finally:
        agent.close()

    assert posted["replayed"] is False and again["replayed"] is True
    assert after["balance"] == invoice["balance"] - Decimal("25.00")
    assert after["invamt"] - after["paidamt"] == after["balance"]
    indexed = cdx_keys(str(tmp_path / "sage" / "ARCASH01.DBF"), "RCPTNO")
    keys = [key.strip() for key, _ in indexed]
    assert keys.count(posted["receipt_no"].encode()) == 1


def test_an_answer_lost_on_its_way_back_is_found_by_key_not_posted_twice(
    client, settings, paytrace_conn, agent_conn, agent_client, sage, secret, run_tasks
):
    """The agent writes the receipt but its answer never reaches the portal: the
    portal times out (outcome unknown), and its next attempt asks Sage Pro by key and
    finds the receipt instead of posting a second one."""
    from integrations import posting as posting_module
    from tests.webhooks import event_body, paytrace_record, post_event, sign

    # Long enough for the agent's first cycle (heartbeat, then poll) on a loaded
    # machine to lease the command before its lease deadline (half of this).
    settings.OUTBOUND_TIMEOUT_SECONDS = 2.0
    delivered = agent_client._post_raw
    lost = []

    def lose_the_first_receipt_answer(command_id, body):
        command = RelayCommand.objects.get(pk=command_id)
        if command.method == "POST" and not lost:
            lost.append(command_id)
            return False  # every retry failed: the answer is gone
        return delivered(command_id, body)

    agent_client._post_raw = lose_the_first_receipt_answer
    invno = sage.seed_invoice("ACME", "300.00")
    record = paytrace_record(amount=Decimal("100.00"), invoice_id=invno)
    body = event_body("transaction.approved", record)

    post_event(client, "paytrace-sandbox", body, sign(body, secret))
    run_tasks()

    posting = paytrace_conn.transactions.get().postings.get()
    assert lost and posting.state == "failed"
    assert RelayCommand.objects.get(pk=lost[0]).state == "abandoned"
    receipts = SageReceipt.objects.filter(reference=str(record["transaction_id"]))
    assert receipts.count() == 1  # the agent did write it

    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        outcome = posting_module.send_posting(posting.pk)

    assert outcome == "posted (found by idempotency key)"
    posting.refresh_from_db()
    assert posting.state == "posted"
    assert receipts.count() == 1
    assert ArMast.objects.get(invno=invno.rjust(10)).balance == Decimal("200.00")
    looked_up = [c for c in agent_client.calls if c.method == "GET"]
    assert any(
        ("idempotency_key", posting.idempotency_key) in c.query for c in looked_up
    )
