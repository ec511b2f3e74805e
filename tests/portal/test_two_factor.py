"""Two-factor sign-in (issue 16): who must use it, setting it up, signing in with a code
or a recovery code, what is refused, and what the access audit log keeps."""

import re
import subprocess
import sys
from base64 import b32decode
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from cryptography.fernet import Fernet
from django.db import connection
from django.test import Client, override_settings
from django_otp.oath import totp

from integrations import crypto, roles
from portal.models import (
    AccessAuditEntry,
    ApiToken,
    AuthenticatorDevice,
    RecoveryCode,
    recovery_code_digest,
)
from portal.two_factor import devices
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("two_factor_on")]

NOON = datetime(2026, 3, 2, 12, 0, 5, tzinfo=UTC)
SETUP = "/admin/two-factor/setup/"
VERIFY = "/admin/two-factor/verify/"
MANAGE = "/admin/two-factor/"
# A recovery code as the page shows it: sixteen base32 characters in groups of four.
CODE_RE = r"<li>([a-z2-7]{4}(?:-[a-z2-7]{4}){3})</li>"


@pytest.fixture
def two_factor_on():
    with override_settings(TWO_FACTOR_REQUIRED=True):
        yield


@pytest.fixture
def frozen():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


def code_for(device, at=None):
    if at is None:
        return f"{totp(device.bin_key):06d}"
    with time_machine.travel(at, tick=False):
        return f"{totp(device.bin_key):06d}"


def enrol(user):
    """A confirmed app and ten recovery codes, as the set-up page leaves them."""
    device = AuthenticatorDevice.objects.create(user=user, name="app", confirmed=True)
    return device, devices.make_recovery_codes(user)


def digests(codes):
    return {recovery_code_digest(code) for code in codes}


def stored_digests():
    return set(RecoveryCode.objects.values_list("digest", flat=True))


def signed_in(user):
    """A session past the password step, not yet past the second factor."""
    client = Client()
    client.force_login(user)
    return client


def kinds(username):
    return list(
        AccessAuditEntry.objects.filter(username=username)
        .order_by("pk")
        .values_list("kind", flat=True)
    )


# --- who must use it -------------------------------------------------------------------


def test_a_superuser_without_a_device_must_set_it_up_before_any_admin_page():
    client = signed_in(make_user(username="root", is_superuser=True))

    answer = client.get("/admin/integrations/reviewitem/")

    assert answer.status_code == 302
    assert answer["Location"] == f"{SETUP}?next=%2Fadmin%2Fintegrations%2Freviewitem%2F"


@pytest.mark.parametrize("role", [roles.INTEGRATION_ADMIN, roles.FINANCE_MANAGER])
def test_admins_and_managers_must_set_it_up(role):
    client = signed_in(make_user(group=role))

    assert client.get("/admin/")["Location"].startswith(SETUP)


@pytest.mark.parametrize(
    "role", [roles.FINANCE_REVIEWER, roles.AUDITOR, roles.OPERATOR]
)
def test_other_staff_may_go_without_it(role):
    client = signed_in(make_user(group=role))

    assert client.get("/admin/").status_code == 200


def test_the_required_roles_are_real_roles(settings):
    assert set(settings.TWO_FACTOR_REQUIRED_ROLES) <= set(roles.ROLES)


def test_a_reviewer_who_enrolled_must_enter_a_code():
    reviewer = make_user(group=roles.FINANCE_REVIEWER)
    enrol(reviewer)

    answer = signed_in(reviewer).get("/admin/")

    assert answer["Location"] == f"{VERIFY}?next=%2Fadmin%2F"


def test_nobody_is_asked_when_it_is_off_as_in_demo_mode():
    root = make_user(is_superuser=True)
    enrol(root)
    client = signed_in(root)

    with override_settings(TWO_FACTOR_REQUIRED=False):
        assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize(
    ("environment", "required"),
    [({"DEMO_MODE": "1"}, "False"), ({"DEBUG": "1"}, "False"), ({}, "True")],
)
def test_it_is_required_by_default_except_in_demo_mode_and_debug(environment, required):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='portal.settings'; "
        "django.setup(); from django.conf import settings; "
        "print(settings.TWO_FACTOR_REQUIRED)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "SECRET_KEY": "x" * 50,
        "FIELD_ENCRYPTION_KEYS": "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdDE=",
        "DEMO_MODE": "0",
        "DEBUG": "0",
        **environment,
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.stdout.strip() == required, done.stderr


# --- setting it up ---------------------------------------------------------------------


def test_set_up_shows_a_qr_code_and_the_secret_then_ten_recovery_codes_once(frozen):
    root = make_user(username="root", is_superuser=True)
    client = signed_in(root)

    page = client.get(f"{SETUP}?next=/admin/").content.decode()
    device = AuthenticatorDevice.objects.get(user=root, confirmed=False)
    assert "<svg" in page
    assert devices.secret_text(device) in page
    assert client.get(SETUP).content.decode().count(devices.secret_text(device)) == 1

    done = client.post(SETUP, {"code": code_for(device), "next": "/admin/"})

    body = done.content.decode()
    assert "Store these codes now" in body
    codes = re.findall(CODE_RE, body)
    assert len(codes) == 10
    assert digests(codes) == stored_digests()
    assert done["Cache-Control"].startswith("max-age=0")
    device.refresh_from_db()
    assert device.confirmed
    assert client.get("/admin/").status_code == 200
    assert kinds("root")[-2:] == ["recovery_codes_made", "two_factor_enrolled"]


def test_a_wrong_code_at_set_up_leaves_it_unconfirmed(frozen):
    root = make_user(is_superuser=True)
    client = signed_in(root)
    client.get(SETUP)

    answer = client.post(SETUP, {"code": "000000"})

    assert "That code is not right" in answer.content.decode()
    assert not AuthenticatorDevice.objects.filter(user=root, confirmed=True).exists()
    assert client.get("/admin/")["Location"].startswith(SETUP)


def test_a_session_that_has_not_passed_its_code_cannot_set_up_another_device():
    root = make_user(is_superuser=True)
    enrol(root)
    client = signed_in(root)

    assert client.get(SETUP)["Location"] == MANAGE
    assert client.get(MANAGE)["Location"].startswith(VERIFY)
    assert AuthenticatorDevice.objects.filter(user=root).count() == 1


# --- signing in with a code ------------------------------------------------------------


def test_the_right_code_opens_the_page_asked_for(frozen):
    root = make_user(is_superuser=True)
    device, _ = enrol(root)
    client = signed_in(root)

    answer = client.post(
        VERIFY, {"code": code_for(device), "next": "/admin/integrations/reviewitem/"}
    )

    assert answer["Location"] == "/admin/integrations/reviewitem/"
    assert client.get("/admin/integrations/reviewitem/").status_code == 200


def test_it_never_sends_anyone_off_site_after_the_code(frozen):
    root = make_user(is_superuser=True)
    device, _ = enrol(root)

    answer = signed_in(root).post(
        VERIFY, {"code": code_for(device), "next": "https://evil.example/"}
    )

    assert answer["Location"] == "/admin/"


def test_a_wrong_code_is_refused_and_recorded(frozen):
    root = make_user(username="root", is_superuser=True)
    enrol(root)
    client = signed_in(root)

    answer = client.post(VERIFY, {"code": "123456"})

    assert answer.status_code == 200
    assert "That code is not right" in answer.content.decode()
    assert client.get("/admin/")["Location"].startswith(VERIFY)
    assert AccessAuditEntry.objects.get(kind="two_factor_failed").username == "root"


def test_an_expired_code_is_refused(frozen):
    root = make_user(is_superuser=True)
    device, _ = enrol(root)

    stale = code_for(device, at=NOON - timedelta(minutes=2))
    answer = signed_in(root).post(VERIFY, {"code": stale})

    assert "That code is not right" in answer.content.decode()


def test_the_code_from_the_last_30_seconds_is_taken_for_a_phone_a_little_behind(
    frozen,
):
    root = make_user(is_superuser=True)
    device, _ = enrol(root)

    behind = code_for(device, at=NOON - timedelta(seconds=30))
    answer = signed_in(root).post(VERIFY, {"code": behind})

    assert answer.status_code == 302


def test_a_code_cannot_be_used_twice(frozen):
    root = make_user(is_superuser=True)
    device, _ = enrol(root)
    code = code_for(device)
    assert signed_in(root).post(VERIFY, {"code": code}).status_code == 302

    frozen.shift(3)  # past the throttle, still inside the code's 30 seconds
    again = signed_in(root).post(VERIFY, {"code": code})

    assert again.status_code == 200
    assert "That code is not right" in again.content.decode()


def test_a_recovery_code_works_once(frozen):
    root = make_user(username="root", is_superuser=True)
    _, codes = enrol(root)

    first = signed_in(root).post(VERIFY, {"code": codes[0].upper()})
    frozen.shift(3)
    second = signed_in(root).post(VERIFY, {"code": codes[0]})

    assert first.status_code == 302
    assert second.status_code == 200
    used = AccessAuditEntry.objects.get(kind="recovery_code_used")
    assert used.detail == "9 recovery codes left"


def test_wrong_codes_in_a_row_make_the_next_try_wait(frozen):
    root = make_user(is_superuser=True)
    device, _ = enrol(root)
    client = signed_in(root)
    for _ in range(3):
        client.post(VERIFY, {"code": "000000"})
        frozen.shift(timedelta(seconds=0.2))

    refused = client.post(VERIFY, {"code": code_for(device)})

    assert "Too many wrong codes: wait" in refused.content.decode()
    frozen.shift(5)
    assert client.post(VERIFY, {"code": code_for(device)}).status_code == 302


# --- managing it -----------------------------------------------------------------------


def verified(user, device):
    client = signed_in(user)
    assert client.post(VERIFY, {"code": code_for(device)}).status_code == 302
    return client


def test_new_recovery_codes_replace_the_old_ones(frozen):
    reviewer = make_user(username="rita", group=roles.FINANCE_REVIEWER)
    device, old = enrol(reviewer)
    client = verified(reviewer, device)

    page = client.post("/admin/two-factor/recovery-codes/").content.decode()

    new = re.findall(CODE_RE, page)
    assert len(new) == 10
    assert not set(new) & set(old)
    frozen.shift(60)
    assert signed_in(reviewer).post(VERIFY, {"code": old[1]}).status_code == 200
    frozen.shift(3)
    assert signed_in(reviewer).post(VERIFY, {"code": new[1]}).status_code == 302


def test_removing_ones_own_device_asks_a_current_code(frozen):
    manager = make_user(username="meg", group=roles.FINANCE_MANAGER)
    device, _ = enrol(manager)
    client = verified(manager, device)
    frozen.shift(3)

    refused = client.post("/admin/two-factor/remove/", {"code": "000000"})
    assert refused["Location"] == MANAGE
    assert devices.has_device(manager)

    frozen.shift(30)
    done = client.post("/admin/two-factor/remove/", {"code": code_for(device)})

    assert done["Location"] == SETUP
    assert not devices.has_device(manager)
    assert not devices.recovery_codes_left(manager)
    assert client.get("/admin/")["Location"].startswith(SETUP)
    removed = AccessAuditEntry.objects.get(kind="two_factor_removed")
    assert (removed.username, removed.detail) == ("meg", "removed by the user")


def test_a_superuser_resets_someone_elses_device_and_the_log_says_who(frozen):
    root = make_user(username="root", is_superuser=True)
    root_device, _ = enrol(root)
    meg = make_user(username="meg", group=roles.FINANCE_MANAGER)
    enrol(meg)
    client = verified(root, root_device)

    answer = client.post("/admin/two-factor/reset/", {"username": "meg"})

    assert answer["Location"] == "/admin/two-factor/reset/"
    assert not devices.has_device(meg)
    entry = AccessAuditEntry.objects.get(kind="two_factor_removed")
    assert (entry.username, entry.actor, entry.detail) == (
        "meg",
        "root",
        "reset by root",
    )
    assert signed_in(meg).get("/admin/")["Location"].startswith(SETUP)


def test_resetting_a_name_that_does_not_exist_says_so(frozen):
    root = make_user(is_superuser=True)
    device, _ = enrol(root)

    answer = verified(root, device).post(
        "/admin/two-factor/reset/", {"username": "nobody"}
    )

    assert "No user is named “nobody”" in answer.content.decode()


def test_only_a_superuser_may_reset_someone_elses_device():
    reviewer = make_user(group=roles.FINANCE_REVIEWER)

    answer = signed_in(reviewer).post("/admin/two-factor/reset/", {"username": "x"})

    assert answer.status_code == 403


# --- the API ---------------------------------------------------------------------------


def test_an_unverified_session_gets_a_json_403_naming_the_fix_from_the_api():
    root = make_user(is_superuser=True)
    enrol(root)

    answer = signed_in(root).get("/api/transactions/")

    assert answer.status_code == 403
    assert (
        "enter your authentication code at /admin/two-factor/verify/"
        in (answer.json()["detail"])
    )


def test_token_calls_are_not_asked_for_a_second_factor():
    root = make_user(is_superuser=True)
    _, key = ApiToken.objects.create_token(root)

    answer = Client().get("/api/transactions/", HTTP_AUTHORIZATION=f"Token {key}")

    assert answer.status_code == 200


def test_a_bad_token_does_not_fall_back_on_an_unverified_session():
    root = make_user(is_superuser=True)
    enrol(root)

    answer = signed_in(root).get(
        "/api/transactions/", HTTP_AUTHORIZATION="Token not-a-key"
    )

    assert answer.status_code == 401


def test_a_session_that_has_not_passed_its_code_cannot_make_new_recovery_codes():
    root = make_user(is_superuser=True)
    _, codes = enrol(root)

    answer = signed_in(root).post("/admin/two-factor/recovery-codes/")

    assert answer["Location"] == MANAGE
    assert digests(codes) == stored_digests()


# --- secrets at rest -------------------------------------------------------------------


def raw_column(table, column, pk):
    """What the database itself holds, past the model's decryption."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def raw_seed(device):
    return raw_column("portal_authenticatordevice", "key", device.pk)


@contextmanager
def encryption_keys(*keys):
    """FIELD_ENCRYPTION_KEYS set to `keys`, past the cached Fernet."""
    try:
        with override_settings(FIELD_ENCRYPTION_KEYS=list(keys)):
            crypto.get_fernet.cache_clear()
            yield
    finally:
        crypto.get_fernet.cache_clear()


def test_the_apps_secret_is_stored_encrypted(frozen):
    root = make_user(is_superuser=True)
    client = signed_in(root)
    page = client.get(SETUP).content.decode()
    shown = re.search(r'id="setup-secret"[^>]*>([^<]+)<', page)[1].replace(" ", "")
    seed = b32decode(shown + "=" * (-len(shown) % 8)).hex()
    device = AuthenticatorDevice.objects.get(user=root)
    assert device.key == seed

    client.post(SETUP, {"code": code_for(device)})

    stored = raw_seed(device)
    assert stored.startswith("fernet:")
    assert seed not in stored.lower()
    assert shown.lower() not in stored.lower()
    assert crypto.decrypt(stored) == seed


def test_recovery_codes_are_not_stored_in_clear():
    root = make_user(is_superuser=True)
    _, codes = enrol(root)

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM portal_recoverycode")
        rows = " ".join(str(value) for row in cursor.fetchall() for value in row)
    for code in codes:
        assert code.replace("-", "") not in rows
        assert code not in rows
    assert len(stored_digests()) == 10


def test_a_key_rotation_keeps_enrolled_apps_working(frozen, settings):
    old = settings.FIELD_ENCRYPTION_KEYS[0]
    new = Fernet.generate_key().decode()
    root = make_user(is_superuser=True)
    device, _ = enrol(root)

    with encryption_keys(new, old):
        answer = signed_in(root).post(VERIFY, {"code": code_for(device)})

    assert answer.status_code == 302
    # Signing in saved the seed again, under the new key: the old one may now go.
    with encryption_keys(new):
        assert crypto.decrypt(raw_seed(device)) == device.key
        frozen.shift(30)
        again = signed_in(root).post(VERIFY, {"code": code_for(device)})
        assert again.status_code == 302
