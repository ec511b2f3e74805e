"""The direct HTTP binding: a real 127.0.0.1 server over the agent (memory store)."""

import threading

import pytest
import requests

from sagepro_agent.http.wsgi import make_app, make_server_for
from tests.agent.test_core_support import (
    menv_fixture,  # noqa: F401
    receipt,
)

KEY = "test-key-123"


@pytest.fixture
def server(menv):
    app = make_app(menv.agent, KEY, max_body=4096)
    httpd = make_server_for(menv.agent, "127.0.0.1", 0, app)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/api/v1", menv
    httpd.shutdown()
    httpd.server_close()


def auth(**extra):
    return {"Authorization": f"Bearer {KEY}", **extra}


def test_a_call_goes_through_to_the_core(server):
    base, _ = server
    response = requests.get(f"{base}/customers/test", headers=auth(), timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["custno"] == "TEST"
    company = requests.get(
        f"{base}/periods", headers=auth(**{"Sage-Company": "02"}), timeout=5
    )
    assert company.status_code == 404


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", "Basic " + KEY, KEY, "Bearer"]
)
def test_a_missing_or_wrong_key_is_401(server, header):
    base, _ = server
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{base}/customers/test", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json() == {
        "code": "UNAUTHORIZED",
        "detail": "missing or wrong API key",
    }
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_post_with_key_replay_and_query_parameters(server):
    base, env = server
    url = f"{base}/cash-receipts"
    first = requests.post(
        url, json=receipt(), headers=auth(**{"Idempotency-Key": "k1"}), timeout=5
    )
    assert first.status_code == 201
    again = requests.post(
        url, json=receipt(), headers=auth(**{"Idempotency-Key": "k1"}), timeout=5
    )
    assert again.status_code == 200 and again.json() == first.json()
    found = requests.get(
        url, params={"idempotency_key": "k1"}, headers=auth(), timeout=5
    )
    assert [r["receipt_no"] for r in found.json()["results"]] == ["000001"]
    keyed = requests.get(f"{base}/invoices/a/b", headers=auth(), timeout=5)
    assert keyed.status_code == 404 and keyed.json()["code"] == "INVOICE_NOT_FOUND"


def test_405_malformed_json_and_body_limit(server):
    base, env = server
    wrong = requests.put(f"{base}/periods", headers=auth(), timeout=5)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET"
    bad = requests.post(
        f"{base}/cash-receipts",
        data=b"{not json",
        headers=auth(**{"Idempotency-Key": "k"}),
        timeout=5,
    )
    assert bad.status_code == 400 and bad.json()["errors"] == {
        "body": ["is not valid JSON"]
    }
    big = requests.post(
        f"{base}/cash-receipts",
        data=b"x" * 5000,
        headers=auth(**{"Idempotency-Key": "k"}),
        timeout=5,
    )
    assert big.status_code == 400 and big.json()["errors"] == {
        "body": ["must be at most 4096 bytes"]
    }
    outside = requests.get(base.replace("/api/v1", "/other"), headers=auth(), timeout=5)
    assert outside.status_code == 404


def test_failures_are_503_never_another_5xx(server, monkeypatch):
    base, env = server

    def boom(request):
        raise RuntimeError("bug in the core")

    env.store.offline = True
    offline = requests.get(f"{base}/customers/test", headers=auth(), timeout=5)
    assert offline.status_code == 503 and offline.headers["Retry-After"]
    env.store.offline = False
    monkeypatch.setattr(env.agent.gateway, "_dispatch", boom)
    broken = requests.get(f"{base}/customers/test", headers=auth(), timeout=5)
    assert broken.status_code == 503 and broken.json()["code"] == "UNAVAILABLE"
