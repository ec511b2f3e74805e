"""API tokens: stored hashed (the key is shown once), scoped (a token does only what
its scopes and its owner's permissions allow), expiring, revocable and rotated with an
overlap; the admin lets people manage their own tokens (or everyone's, with
`portal.manage_all_apitoken`) and records each change in the access audit log."""

import hashlib
import importlib
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.apps import apps as django_apps
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.roles import FINANCE_REVIEWER
from portal.models import AccessAuditEntry, ApiToken
from portal.tokens import Scope, TokenError
from tests.factories import make_transaction, make_user

pytestmark = pytest.mark.django_db

TRANSACTIONS = "/api/transactions/"
LIST = "/admin/portal/apitoken/"
ADD = f"{LIST}add/"


def api_as(key):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def shown_key(response):
    """The key on the page shown after a token is made or rotated."""
    assert response.status_code == 200, response.content.decode()[:2000]
    found = re.search(
        r'id="api-token-key" value="([0-9a-f]{40})"', response.content.decode()
    )
    assert found, "no key on the page"
    return found.group(1)


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
        ADD,
        {
            "user": owner.pk,
            "name": "Reporting",
            "scopes": ["payments:read"],
            "lifetime_days": "30",
        },
    )

    token = ApiToken.objects.get()
    key = shown_key(created)
    assert key.startswith(token.prefix) and len(key) == 40
    assert "no-store" in created.headers["Cache-Control"]
    assert token.scopes == ["payments:read"]
    assert token.user == owner
    assert api_as(key).get(TRANSACTIONS).status_code == 200
    listing = admin_client.get(LIST).content.decode()
    change = admin_client.get(f"{LIST}{token.pk}/change/")
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


def test_create_api_token_takes_scopes_and_a_lifetime_and_refuses_what_cannot_work(
    capsys,
):
    make_user(group=FINANCE_REVIEWER, username="reporting")

    call_command(
        "create_api_token", "reporting", "--scope", "payments:read", "--days", "30"
    )

    key = capsys.readouterr().out.strip()
    token = ApiToken.objects.get()
    assert token.scopes == ["payments:read"]
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(TRANSACTIONS).status_code == 200
    with pytest.raises(CommandError, match="1 to 365 days"):
        call_command("create_api_token", "reporting", "--days", "900")
    with pytest.raises(CommandError, match="mappings:suggest nothing to do"):
        call_command("create_api_token", "reporting", "--scope", "mappings:suggest")
    assert ApiToken.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_keys_from_drfs_plain_text_table_keep_working_and_the_table_goes():
    migration = importlib.import_module("portal.migrations.0002_hash_drf_tokens")
    scoping = importlib.import_module("portal.migrations.0005_api_token_scopes")
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
    # An upgrade from then runs 0005 too, which gives the moved keys their scopes.
    scoping.give_existing_tokens_scopes_and_expiry(django_apps, None)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert not any(key in value for value in every_stored_value())
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(TRANSACTIONS).status_code == 200
    assert ApiToken.objects.get().created_at == datetime(2025, 3, 4, tzinfo=UTC)


# Scopes ------------------------------------------------------------------------------

# Every API that takes a token, with a request its scope allows (what it answers then
# does not matter here, only that it is not refused as 401 or 403).
SCOPED_CALLS = [
    ("get", TRANSACTIONS, "payments:read"),
    ("get", "/api/review-items/", "payments:read"),
    ("get", "/api/payments/charges/nope", "payments:read"),
    ("get", "/api/payments/charges/nope", "charges:create"),
    ("post", "/api/payments/charge", "charges:create"),
    ("post", "/api/mappings/suggest", "mappings:suggest"),
    ("post", "/api/mappings/feedback", "mappings:suggest"),
]


def call(api, method, path):
    if method == "get":
        return api.get(path)
    return api.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")


@pytest.mark.parametrize(("method", "path", "scope"), SCOPED_CALLS)
def test_a_token_with_the_scope_gets_through_and_without_it_gets_403_naming_it(
    method, path, scope
):
    owner = make_user(is_superuser=True)  # every permission: only the scope decides
    _, with_scope = ApiToken.objects.create_token(owner, scopes=[scope])
    others = [s for s in Scope.values if s != scope]
    _, without = ApiToken.objects.create_token(owner, scopes=others)

    allowed = call(api_as(with_scope), method, path)
    refused = call(api_as(without), method, path)

    assert allowed.status_code not in (401, 403), allowed.content
    needed = {s for m, p, s in SCOPED_CALLS if (m, p) == (method, path)}
    if len(needed) == 1:  # a path two scopes open is refused only without both
        assert refused.status_code == 403
        assert f"lacks the scope {scope}" in refused.json()["detail"]


def test_a_charge_lookup_names_both_scopes_that_open_it():
    _, key = ApiToken.objects.create_token(
        make_user(is_superuser=True), scopes=["mappings:suggest"]
    )

    refused = api_as(key).get("/api/payments/charges/nope")

    assert refused.status_code == 403
    assert "payments:read, charges:create" in refused.json()["detail"]


def test_a_scope_gives_nothing_the_owners_permissions_do_not():
    nobody = make_user()  # staff, no role
    _, key = ApiToken.objects.create_token(nobody, scopes=Scope.values)

    assert api_as(key).get(TRANSACTIONS).status_code == 403
    charge = api_as(key).post(
        "/api/payments/charge", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert charge.status_code == 403


def test_a_session_caller_needs_no_scope():
    api = APIClient()
    api.force_login(make_user(group=FINANCE_REVIEWER))

    assert api.get(TRANSACTIONS).status_code == 200


def test_a_token_made_without_scopes_gets_those_its_owners_role_can_use():
    token, _ = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))

    # A finance reviewer reads payments and charges cards; mappings are not theirs.
    assert token.scopes == ["payments:read", "charges:create"]


def every_token_view():
    """(route, view class) of every DRF view that reads the Token header."""
    from django.urls import URLPattern, URLResolver, get_resolver
    from rest_framework.views import APIView

    from portal.auth import HashedTokenAuthentication

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "cls", None)
                if view is None or not issubclass(view, APIView):
                    continue
                if HashedTokenAuthentication in view.authentication_classes:
                    yield prefix + str(pattern.pattern), view

    return list(walk(get_resolver().url_patterns))


def test_every_api_that_takes_a_token_names_the_scope_it_needs():
    from rest_framework.routers import APIRootView

    from portal.auth import HasScope

    views = every_token_view()
    assert len(views) >= 6  # the walk found the APIs above
    for route, view in views:
        if view.__module__.startswith("drf_spectacular") or issubclass(
            view, APIRootView
        ):
            continue  # the API's description and its list of links: no data
        assert view.permission_classes[0] is HasScope, route
        assert set(view.required_scopes) <= set(Scope.values), route
        assert view.required_scopes, route


# Expiry, revocation, rotation ----------------------------------------------------------


def test_a_new_token_lives_the_default_lifetime_and_no_longer_than_the_maximum():
    owner = make_user(group=FINANCE_REVIEWER)
    before = timezone.now()

    token, _ = ApiToken.objects.create_token(owner)

    assert before + timedelta(days=90) <= token.expires_at
    assert token.expires_at <= timezone.now() + timedelta(days=90)
    with pytest.raises(TokenError, match="1 to 365 days"):
        ApiToken.objects.create_token(owner, lifetime=timedelta(days=366))


@override_settings(API_TOKEN_LIFETIME_DAYS=7)
def test_the_default_lifetime_comes_from_the_setting():
    token, _ = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))

    assert token.expires_at - timezone.now() <= timedelta(days=7)
    assert token.expires_at - timezone.now() > timedelta(days=6)


def test_an_expired_token_gets_401_saying_when_it_expired():
    token, key = ApiToken.objects.create_token(
        make_user(group=FINANCE_REVIEWER), lifetime=timedelta(days=30)
    )
    make_transaction()

    with time_machine.travel(token.expires_at + timedelta(seconds=1)):
        response = api_as(key).get(TRANSACTIONS)

    assert response.status_code == 401
    when = token.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    assert f"expired on {when} UTC" in response.json()["detail"]
    assert "results" not in response.json()
    token.refresh_from_db()
    assert token.state(token.expires_at) == ApiToken.State.EXPIRED


def test_a_revoked_token_gets_401_saying_it_was_revoked_and_is_recorded():
    token, key = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))

    token.revoke()

    response = api_as(key).get(TRANSACTIONS)
    assert response.status_code == 401
    assert "revoked on" in response.json()["detail"]
    entry = AccessAuditEntry.objects.get(kind="token_revoked")
    assert entry.username == token.user.username and token.prefix in entry.detail
    with pytest.raises(TokenError, match="revoked already"):
        token.revoke()


def test_rotating_gives_a_new_key_and_the_old_one_works_only_for_the_overlap():
    token, old_key = ApiToken.objects.create_token(
        make_user(group=FINANCE_REVIEWER), name="BI", scopes=["payments:read"]
    )

    new, new_key = ApiToken.objects.rotate(token.pk)

    assert new_key != old_key
    assert (new.user, new.name, new.scopes) == (token.user, "BI", ["payments:read"])
    assert new.rotated_from == token
    token.refresh_from_db()
    assert token.expires_at <= timezone.now() + timedelta(hours=24)
    assert api_as(old_key).get(TRANSACTIONS).status_code == 200
    assert api_as(new_key).get(TRANSACTIONS).status_code == 200
    with time_machine.travel(token.expires_at + timedelta(seconds=1)):
        old = api_as(old_key).get(TRANSACTIONS)
        assert api_as(new_key).get(TRANSACTIONS).status_code == 200
    assert old.status_code == 401
    assert (
        "rotated" in old.json()["detail"] and "Use the new key" in old.json()["detail"]
    )
    assert new_key[:8] not in old.json()["detail"]  # nothing about the new key
    assert AccessAuditEntry.objects.filter(kind="token_rotated").count() == 1


@override_settings(API_TOKEN_ROTATION_OVERLAP_HOURS=0)
def test_with_no_overlap_the_old_key_stops_at_once():
    token, old_key = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))

    ApiToken.objects.rotate(token.pk)

    assert api_as(old_key).get(TRANSACTIONS).status_code == 401


def test_a_token_is_rotated_once_then_its_successor_is():
    token, _ = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))
    new, _ = ApiToken.objects.rotate(token.pk)

    with pytest.raises(TokenError, match="rotated already"):
        ApiToken.objects.rotate(token.pk)
    newer, _ = ApiToken.objects.rotate(new.pk)

    assert newer.rotated_from == new
    assert ApiToken.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_rotations_at_once_leave_exactly_one_new_key(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: run with DATABASE_URL=postgres://…")
    token, _ = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))
    replace_key = ApiToken.replace_key

    def slow_replace_key(self, lifetime=None):
        # Hold the row a moment, so the other rotation arrives while this one runs.
        time.sleep(0.3)
        return replace_key(self, lifetime)

    monkeypatch.setattr(ApiToken, "replace_key", slow_replace_key)
    start = threading.Barrier(2)
    outcomes = []

    def rotate():
        start.wait()
        try:
            outcomes.append(ApiToken.objects.rotate(token.pk)[1])
        except TokenError as refusal:
            outcomes.append(refusal)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    keys = [o for o in outcomes if isinstance(o, str)]
    assert len(keys) == 1 and len(outcomes) == 2
    assert ApiToken.objects.filter(rotated_from=token).count() == 1
    assert api_as(keys[0]).get(TRANSACTIONS).status_code == 200


def test_tokens_from_before_scopes_keep_working_with_every_scope_and_an_expiry():
    migration = importlib.import_module("portal.migrations.0005_api_token_scopes")
    owner = make_user(is_superuser=True)
    token, key = ApiToken.objects.create_token(owner, scopes=[])
    ApiToken.objects.filter(pk=token.pk).update(
        created_at=datetime(2024, 1, 1, tzinfo=UTC)
    )

    migration.give_existing_tokens_scopes_and_expiry(django_apps, None)

    token.refresh_from_db()
    assert token.scopes == Scope.values
    assert token.expires_at > timezone.now() + timedelta(days=89)
    assert api_as(key).get(TRANSACTIONS).status_code == 200
    suggest = api_as(key).post("/api/mappings/suggest", {}, format="json")
    assert suggest.status_code == 400  # through to the body's check


# The admin ---------------------------------------------------------------------------


def token_keeper(username, manage_all=False):
    """A finance reviewer who may make, see and change API tokens (their own, or with
    `manage_all` everyone's)."""
    user = make_user(group=FINANCE_REVIEWER, username=username)
    codenames = ["add_apitoken", "change_apitoken", "view_apitoken"]
    if manage_all:
        codenames.append("manage_all_apitoken")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_making_a_token_is_recorded_with_who_made_it(admin_client):
    owner = make_user(group=FINANCE_REVIEWER, username="reporting")

    admin_client.post(
        ADD,
        {"user": owner.pk, "scopes": ["payments:read"], "lifetime_days": "90"},
    )

    entry = AccessAuditEntry.objects.get(kind="token_created")
    assert entry.username == "reporting" and entry.actor == "admin"
    assert "payments:read" in entry.detail


def test_a_scope_the_owner_cannot_use_is_refused_naming_the_permission(admin_client):
    owner = make_user(group=FINANCE_REVIEWER, username="reporting")

    page = admin_client.post(
        ADD,
        {"user": owner.pk, "scopes": ["mappings:suggest"], "lifetime_days": "90"},
    )

    assert page.status_code == 200
    text = page.content.decode()
    assert "mappings:suggest" in text and "mappings.change_fieldmapping" in text
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("0", "greater than or equal to 1"),
        ("366", "less than or equal to 365"),
        ("soon", "whole number"),
    ],
)
def test_a_lifetime_out_of_range_is_refused(admin_client, days, message):
    owner = make_user(group=FINANCE_REVIEWER)

    page = admin_client.post(
        ADD, {"user": owner.pk, "scopes": ["payments:read"], "lifetime_days": days}
    )

    assert page.status_code == 200 and message in page.content.decode()
    assert not ApiToken.objects.exists()


def test_without_manage_all_a_user_makes_sees_and_changes_only_their_own_tokens():
    ana = token_keeper("ana")
    bob = token_keeper("bob")
    bobs, bobs_key = ApiToken.objects.create_token(bob, name="bob's export")
    client = signed_in(ana)

    form = client.get(ADD).content.decode()
    made = client.post(
        ADD, {"user": bob.pk, "scopes": ["payments:read"], "lifetime_days": "30"}
    )

    assert 'name="user"' not in form
    anas = ApiToken.objects.get(user=ana)  # the posted owner was ignored
    assert shown_key(made).startswith(anas.prefix)
    listing = client.get(LIST).content.decode()
    assert (
        anas.prefix in listing and bobs.prefix not in listing and "bob" not in listing
    )
    assert client.get(f"{LIST}{bobs.pk}/change/").status_code == 302  # "not found"
    assert (
        client.post(f"{LIST}{bobs.pk}/revoke/", {"confirm": bobs.pk}).status_code == 404
    )
    assert (
        client.post(f"{LIST}{bobs.pk}/rotate/", {"lifetime_days": "30"}).status_code
        == 404
    )
    assert api_as(bobs_key).get(TRANSACTIONS).status_code == 200


def test_with_manage_all_a_user_sees_and_revokes_everyones_tokens():
    boss = token_keeper("boss", manage_all=True)
    bobs, bobs_key = ApiToken.objects.create_token(token_keeper("bob"))
    client = signed_in(boss)

    assert bobs.prefix in client.get(LIST).content.decode()
    client.post(f"{LIST}{bobs.pk}/revoke/", {"confirm": bobs.pk})

    assert api_as(bobs_key).get(TRANSACTIONS).status_code == 401
    assert AccessAuditEntry.objects.get(kind="token_revoked").actor == "boss"


def test_rotating_in_the_admin_shows_the_new_key_once_and_when_the_old_one_stops():
    ana = token_keeper("ana")
    token, old_key = ApiToken.objects.create_token(ana, scopes=["payments:read"])
    client = signed_in(ana)

    confirm = client.get(f"{LIST}{token.pk}/rotate/").content.decode()
    page = client.post(f"{LIST}{token.pk}/rotate/", {"lifetime_days": "60"})

    assert "24 hours" in confirm
    new_key = shown_key(page)
    new = ApiToken.objects.get(rotated_from=token)
    assert new_key.startswith(new.prefix)
    assert new.expires_at - timezone.now() > timedelta(days=59)
    assert f"The old key ({token.prefix}…) keeps working until" in page.content.decode()
    assert api_as(new_key).get(TRANSACTIONS).status_code == 200
    again = client.post(
        f"{LIST}{token.pk}/rotate/", {"lifetime_days": "60"}, follow=True
    )
    assert "rotated already" in again.content.decode()
    assert new_key not in client.get(LIST).content.decode()
    assert new_key not in client.get(f"{LIST}{new.pk}/change/").content.decode()


def test_the_list_marks_each_tokens_state_and_filters_by_it(admin_client):
    owner = make_user(group=FINANCE_REVIEWER)
    make = ApiToken.objects.create_token
    active, _ = make(owner, name="fresh")
    soon, _ = make(owner, name="nearly", lifetime=timedelta(days=3))
    expired, _ = make(owner, name="old", lifetime=timedelta(days=1))
    ApiToken.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(days=1)
    )
    revoked, _ = make(owner, name="gone")
    revoked.revoke()
    rotated, _ = make(owner, name="rolled")
    ApiToken.objects.rotate(rotated.pk)

    listing = admin_client.get(LIST).content.decode()
    only_expired = admin_client.get(LIST, {"state": "expired"}).content.decode()

    for state in (
        "token-active",
        "token-expiring_soon",
        "token-expired",
        "token-revoked",
        "token-rotating",
    ):
        assert state in listing
    assert "old" in only_expired and "fresh" not in only_expired
    assert expired.prefix in only_expired and active.prefix not in only_expired
    assert ApiToken.objects.filter(ApiToken.in_state("expiring_soon")).get() == soon


def test_tokens_are_never_deleted_from_the_admin(admin_client):
    token, _ = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))

    response = admin_client.post(f"{LIST}{token.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_revoking_from_the_list_needs_the_change_permission():
    reader = make_user(username="reader")  # may only look at their own tokens
    reader.user_permissions.add(Permission.objects.get(codename="view_apitoken"))
    token, key = ApiToken.objects.create_token(reader, scopes=[])
    keeper = token_keeper("keeper")
    kept, kept_key = ApiToken.objects.create_token(keeper)
    revoke = {"action": "revoke_selected", "_selected_action": [token.pk]}

    signed_in(reader).post(LIST, revoke)
    refused = signed_in(reader).get(f"{LIST}{token.pk}/rotate/")
    signed_in(keeper).post(LIST, {**revoke, "_selected_action": [kept.pk]})

    assert refused.status_code == 403
    token.refresh_from_db()
    kept.refresh_from_db()
    assert token.revoked_at is None
    assert kept.revoked_at is not None
    assert api_as(kept_key).get(TRANSACTIONS).status_code == 401


@override_settings(DEMO_MODE=True, DEMO_API_TOKEN="0123456789abcdef" * 2 + "01234567")
def test_the_demo_token_charges_and_a_new_seed_renews_it_when_expired(
    tmp_path, monkeypatch
):
    from integrations import demo

    monkeypatch.setattr(demo, "API_TOKEN_FILE", tmp_path / "demo-api-token")
    key = "0123456789abcdef" * 2 + "01234567"
    call_command("seed_demo", port=8000, stdout=StringIO())
    token = ApiToken.objects.get()
    assert token.scopes == Scope.values
    ApiToken.objects.filter(pk=token.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert api_as(key).get(TRANSACTIONS).status_code == 401

    out = StringIO()
    call_command("seed_demo", port=8000, stdout=out)

    assert "API token for admin: renewed" in out.getvalue()
    assert api_as(key).get(TRANSACTIONS).status_code == 200


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_TOKEN_LIFETIME_DAYS", "400"),
        ("API_TOKEN_LIFETIME_DAYS", "0"),
        ("API_TOKEN_ROTATION_OVERLAP_HOURS", "200"),
    ],
)
def test_a_nonsense_lifetime_setting_stops_startup_naming_it(
    monkeypatch, variable, value
):
    module = importlib.import_module("portal.settings_tokens")
    monkeypatch.setenv(variable, value)

    with pytest.raises(ImproperlyConfigured, match=variable):
        importlib.reload(module)

    monkeypatch.delenv(variable)
    importlib.reload(module)  # back to the defaults for the tests after this one
