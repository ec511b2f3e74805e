"""The sandboxes' helpers (`_faults`, `_settle`) need the sandbox's own credentials."""

import base64
import json

import pytest
from django.conf import settings

from integrations.sandbox.paytrace.models import AccessToken, Batch
from integrations.sandbox.sagepro.models import Fault

pytestmark = pytest.mark.django_db

FAULTS = "/sandbox/sagepro/api/v1/_faults"
SETTLE = "/sandbox/paytrace/_settle"
SAGE_KEY = {"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"}


def basic(username, password):
    pair = f"{username}:{password}".encode()
    return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}


PAYTRACE_USER = basic(
    settings.SANDBOX_PAYTRACE_USERNAME, settings.SANDBOX_PAYTRACE_PASSWORD
)


def set_fault(client, headers):
    return client.post(
        FAULTS,
        json.dumps({"mode": "unavailable", "seconds": 600}),
        content_type="application/json",
        headers=headers,
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, basic("demo-api-user", "nope")],
)
def test_anyone_without_the_sagepro_key_cannot_read_or_set_faults(client, headers):
    refused = set_fault(client, headers)

    assert refused.status_code == 401
    assert refused.json()["code"] == "UNAUTHORIZED"
    assert client.get(FAULTS, headers=headers).status_code == 401
    assert Fault.load().active_mode() == Fault.Mode.NONE


def test_the_sagepro_key_sets_a_fault(client):
    assert set_fault(client, SAGE_KEY).status_code == 200
    assert client.get(FAULTS, headers=SAGE_KEY).json()["mode"] == "unavailable"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"},
        basic(settings.SANDBOX_PAYTRACE_USERNAME, "wrong"),
        {"Authorization": "Basic %%%"},
    ],
)
def test_anyone_without_paytrace_credentials_cannot_settle(client, headers):
    response = client.post(SETTLE, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert not Batch.objects.exists()


def test_the_sandbox_user_settles_with_basic_credentials(client):
    response = client.post(SETTLE, headers=PAYTRACE_USER)

    assert response.status_code == 200
    assert response.json() == {"batch_number": None, "count": 0}


def test_a_paytrace_access_token_settles(client):
    token, _ = AccessToken.issue(settings.SANDBOX_PAYTRACE_USERNAME)

    response = client.post(SETTLE, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
