"""The agent's relay client against a fake portal: it runs only commands the portal
signed for it that have not expired and were never seen, reports the others as
refused without running them, retries a lost answer, and keeps its credentials
private."""

import base64
import datetime
import json
import os
import stat
from decimal import Decimal

import pytest
import requests
import responses

from integrations.relay import signing as portal_signing
from sagepro_agent.relay import client as relay_client
from sagepro_agent.relay import credentials as creds
from sagepro_agent.relay import signing
from sagepro_agent.wire import Response

PORTAL = "https://portal.example.test"
KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
AGENT_ID = 7


@pytest.fixture(autouse=True)
def _no_keyring(monkeypatch):
    monkeypatch.setenv("SAGEPRO_AGENT_NO_KEYRING", "1")


def command(command_id=1, *, expires_in=10.0, key=KEY, **fields):
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        seconds=expires_in
    )
    data = {
        "id": command_id,
        "agent": AGENT_ID,
        "company": "01",
        "method": "POST",
        "path": "/cash-receipts",
        "query": [["x", "1"]],
        "headers": {"Idempotency-Key": "k-1", "Sage-Company": "01"},
        "body": '{"amount":"10.00"}',
        "idempotency_key": "k-1",
        "expires_at": expires.isoformat(),
        **fields,
    }
    data["signature"] = portal_signing.sign(data, key)
    return data


class FakePortal:
    """The portal's agent API on `responses`: hands out queued commands, keeps the
    answers posted back."""

    def __init__(self, mock):
        self.queue = []
        self.results = {}
        self.heartbeats = []
        self.result_failures = 0
        mock.add_callback("POST", f"{PORTAL}/api/agent/poll", callback=self._poll)
        mock.add_callback(
            "POST", f"{PORTAL}/api/agent/heartbeat", callback=self._heartbeat
        )
        mock.add_callback(
            "POST",
            __import__("re").compile(
                __import__("re").escape(PORTAL) + r"/api/agent/commands/\d+/result"
            ),
            callback=self._result,
        )

    def _poll(self, request):
        assert request.headers["Authorization"] == "Bearer 7.secret"
        out, self.queue = self.queue, []
        return 200, {}, json.dumps({"commands": out})

    def _heartbeat(self, request):
        self.heartbeats.append(json.loads(request.body))
        return 200, {}, json.dumps({"ok": True})

    def _result(self, request):
        if self.result_failures:
            self.result_failures -= 1
            raise requests.ConnectionError("connection reset")
        command_id = int(request.url.rsplit("/", 2)[-2])
        self.results[command_id] = json.loads(request.body, parse_float=Decimal)
        return 200, {}, json.dumps({"id": command_id, "state": "answered"})


@pytest.fixture
def portal():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakePortal(mock)


@pytest.fixture
def ran():
    return []


@pytest.fixture
def agent(tmp_path, ran):
    def handler(request):
        ran.append(request)
        return Response(
            201, {"receipt_no": "R1", "amount": Decimal("10.00")}, {"X-Seen": "1"}
        )

    return relay_client.RelayClient(
        PORTAL,
        creds.Credentials(PORTAL, AGENT_ID, "7.secret", KEY),
        handler,
        lambda: {"version": "9.9", "journal_backlog": 3},
        state_dir=tmp_path,
        backoff_seconds=0,
    )


def test_a_signed_command_runs_and_its_answer_goes_back(portal, agent, ran):
    portal.queue.append(command(1, path="/customers/%20ACME"))

    result = agent.run_once()

    assert result.ran == [1]
    request = ran[0]
    assert request.method == "POST" and request.path == "/customers/ ACME"
    assert request.query == (("x", "1"),)
    assert request.header("idempotency-key") == "k-1"
    assert request.body == b'{"amount":"10.00"}'
    assert portal.results[1] == {
        "status": 201,
        "headers": {"X-Seen": "1"},
        "body": {"receipt_no": "R1", "amount": "10.00"},
    }


def test_a_base64_body_is_handed_over_as_the_bytes_sent(portal, agent, ran):
    raw = b"\xff\xfe{"
    portal.queue.append(
        command(11, body=base64.b64encode(raw).decode(), body_encoding="base64")
    )
    agent.run_once()
    assert ran[0].body == raw


@pytest.mark.parametrize(
    "tamper",
    [
        {"body": '{"amount":"1000.00"}'},
        {"path": "/cash-receipts/batch"},
        {"company": "02"},
        {"body_encoding": "base64"},
        {"expires_at": "2999-01-01T00:00:00+00:00"},
        {"signature": "0" * 64},
    ],
)
def test_a_tampered_command_is_refused_and_not_run(portal, agent, ran, tamper):
    portal.queue.append({**command(2), **tamper})

    result = agent.run_once()

    assert ran == []
    assert "bad signature" in result.refused[2]
    assert "bad signature" in portal.results[2]["refused"]


def test_a_command_signed_with_another_key_is_refused(portal, agent, ran):
    other = base64.urlsafe_b64encode(b"o" * 32).decode()
    portal.queue.append(command(3, key=other))
    assert "bad signature" in agent.run_once().refused[3]
    assert ran == []


def test_an_expired_command_is_refused(portal, agent, ran):
    portal.queue.append(command(4, expires_in=-120))
    result = agent.run_once()
    assert ran == [] and result.refused[4].startswith("expired")


def test_a_replayed_command_is_refused_even_after_a_restart(
    portal, agent, ran, tmp_path
):
    first = command(5)
    portal.queue.append(first)
    agent.run_once()
    portal.queue.append(first)
    assert "replayed" in agent.run_once().refused[5]

    restarted = relay_client.RelayClient(
        PORTAL,
        agent.credentials,
        agent.handler,
        state_dir=tmp_path,
        backoff_seconds=0,
    )
    portal.queue.append(first)
    assert "replayed" in restarted.run_once().refused[5]
    assert len(ran) == 1


def test_a_command_for_another_agent_is_refused(portal, agent, ran):
    portal.queue.append(command(6, agent=AGENT_ID + 1))
    assert "another agent" in agent.run_once().refused[6]
    assert ran == []


def test_a_lost_answer_is_retried(portal, agent):
    portal.result_failures = 2
    portal.queue.append(command(8))
    result = agent.run_once()
    assert result.unposted == [] and portal.results[8]["status"] == 201


def test_an_answer_that_cannot_be_delivered_is_given_up_not_rerun(portal, agent, ran):
    portal.result_failures = 99
    portal.queue.append(command(9))
    result = agent.run_once()
    assert result.ran == [9] and result.unposted == [9] and len(ran) == 1


def test_the_heartbeat_carries_the_agents_health(portal, agent):
    agent.heartbeat()
    assert portal.heartbeats == [{"version": "9.9", "journal_backlog": 3}]


def test_a_command_with_text_outside_ascii_verifies_and_a_changed_byte_does_not():
    data = command(10, body='{"note":"café ✓"}', query=[["a", "ü"]])
    assert signing.verify(data, KEY)
    assert not signing.verify({**data, "body": '{"note":"cafe ✓"}'}, KEY)


def test_enrolment_keeps_the_secrets_in_a_private_file(tmp_path):
    state = tmp_path / "state"
    with responses.RequestsMock() as mock:
        mock.post(
            f"{PORTAL}/api/agent/enrol",
            json={"agent_id": 7, "token": "7.secret", "signing_key": KEY},
            status=201,
        )
        code = relay_client.main(
            ["enrol", "--portal", PORTAL, "--code", "c" * 22, "--state", str(state)]
        )
        sent = json.loads(mock.calls[0].request.body)
    assert code == 0
    assert sent["code"] == "c" * 22 and sent["version"]
    secret_file = state / creds.SECRET_FILE
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    public = (state / creds.PUBLIC_FILE).read_text()
    assert "7.secret" not in public and KEY not in public
    assert creds.load(state) == creds.Credentials(PORTAL, 7, "7.secret", KEY)


def test_a_refused_enrolment_says_why(tmp_path, capsys):
    with responses.RequestsMock() as mock:
        mock.post(
            f"{PORTAL}/api/agent/enrol",
            json={"code": "INVALID_CODE", "detail": "This enrolment code is not valid"},
            status=401,
        )
        code = relay_client.main(
            ["enrol", "--portal", PORTAL, "--code", "c" * 22, "--state", str(tmp_path)]
        )
    assert code == 2
    assert "not valid" in capsys.readouterr().err
    with pytest.raises(creds.CredentialsError):
        creds.load(tmp_path)


def test_plain_http_is_refused_except_insecure_local_on_127_0_0_1(tmp_path):
    with pytest.raises(relay_client.RelayError, match="not https"):
        relay_client.enrol("http://portal.example.test", "c" * 22, tmp_path)
    with pytest.raises(relay_client.RelayError, match="127.0.0.1 only"):
        relay_client.enrol(
            "http://portal.example.test", "c" * 22, tmp_path, insecure_local=True
        )
    with responses.RequestsMock() as mock:
        mock.post(
            "http://127.0.0.1:8000/api/agent/enrol",
            json={"agent_id": 7, "token": "7.secret", "signing_key": KEY},
            status=201,
        )
        relay_client.enrol(
            "http://127.0.0.1:8000", "c" * 22, tmp_path, insecure_local=True
        )


def test_relay_run_starts_the_agent_and_stops_when_the_portal_refuses_it(tmp_path):
    import textwrap

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
    creds.save(creds.Credentials(PORTAL, AGENT_ID, "7.secret", KEY), tmp_path / "agent")
    beats = []

    def refuse(request):
        beats.append(json.loads(request.body))
        return 401, {}, json.dumps({"code": "UNAUTHORIZED", "detail": "revoked"})

    with responses.RequestsMock() as mock:
        mock.add_callback("POST", f"{PORTAL}/api/agent/heartbeat", callback=refuse)
        code = relay_client.main(["run", "--config", str(config)])

    assert code == 3
    assert beats[0]["sage_reachable"] is True
    assert beats[0]["journal_backlog"] == 0 and "version" in beats[0]
