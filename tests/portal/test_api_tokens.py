"""API tokens are stored hashed: the key is shown once, and `Token <key>` still works."""

import hashlib
import importlib
from datetime import UTC, datetime

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from integrations.roles import FINANCE_REVIEWER
from portal.models import ApiToken
from tests.factories import make_transaction, make_user

pytestmark = pytest.mark.django_db

TRANSACTIONS = "/api/transactions/"


def every_stored_value():
    """Every value of every column of the token table, as text."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        return [str(value) for row in cursor.fetchall() for value in row]


def test_the_key_works_and_only_its_digest_is_stored():
    token, key = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))
    make_transaction()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    response = api.get(TRANSACTIONS)

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
    assert not any(key in value for value in every_stored_value())
    token.refresh_from_db()
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:8]
    assert token.last_used_at is not None


@pytest.mark.parametrize(
    "header",
    [
        "Token wrong",
        "Token " + "0" * 40,
        "Token " + "\x00" * 40,
        "Token é" + "a" * 39,
        "Token",
    ],
)
def test_a_wrong_key_is_refused_with_401(header):
    ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=header)

    response = api.get(TRANSACTIONS)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"


def test_a_key_that_shares_a_prefix_is_still_refused():
    token, key = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key[:8]}{'0' * 32}")

    assert api.get(TRANSACTIONS).status_code == 401


def test_an_inactive_users_token_is_refused():
    user = make_user(group=FINANCE_REVIEWER)
    _, key = ApiToken.objects.create_token(user)
    user.is_active = False
    user.save()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert api.get(TRANSACTIONS).status_code == 401


def test_the_admin_shows_the_key_once_then_only_its_prefix(admin_client):
    owner = make_user(group=FINANCE_REVIEWER, username="reporting")

    created = admin_client.post(
        "/admin/portal/apitoken/add/",
        {"user": owner.pk, "name": "Reporting"},
        follow=True,
    )

    token = ApiToken.objects.get()
    shown = [str(m) for m in created.context["messages"]]
    key = next(m.split()[4] for m in shown if "The token's key is" in m)
    assert key.startswith(token.prefix) and len(key) == 40
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(TRANSACTIONS).status_code == 200
    listing = admin_client.get("/admin/portal/apitoken/").content.decode()
    change = admin_client.get(f"/admin/portal/apitoken/{token.pk}/change/")
    assert token.prefix in listing
    assert key not in listing
    assert key not in change.content.decode()
    assert token.digest not in change.content.decode()


def test_create_api_token_prints_the_key_once(capsys):
    make_user(group=FINANCE_REVIEWER, username="reporting")

    call_command("create_api_token", "reporting", "--name", "BI export")

    key = capsys.readouterr().out.strip()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(TRANSACTIONS).status_code == 200
    assert ApiToken.objects.get().name == "BI export"


@pytest.mark.django_db(transaction=True)
def test_keys_from_drfs_plain_text_table_keep_working_and_the_table_goes():
    migration = importlib.import_module("portal.migrations.0002_hash_drf_tokens")
    user = make_user(group=FINANCE_REVIEWER)
    key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [key, datetime(2025, 3, 4, tzinfo=UTC), user.pk],
        )

    with connection.schema_editor() as editor:
        migration.hash_old_tokens(django_apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert not any(key in value for value in every_stored_value())
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(TRANSACTIONS).status_code == 200
    assert ApiToken.objects.get().created_at == datetime(2025, 3, 4, tzinfo=UTC)
