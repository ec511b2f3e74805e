"""Login throttling and lockout (issue 16, django-axes): five wrong passwords for one
name from one address lock that pair for 15 minutes with a 429 page that never says
whether the name exists; the lock lifts after the cool-off or when an administrator
lifts it, and the access audit log keeps both."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client, override_settings

from portal.models import AccessAuditEntry
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("axes_on")]

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "lockout-test-2026"
HOME = "203.0.113.7"
ELSEWHERE = "198.51.100.20"
NINE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def axes_on():
    with override_settings(AXES_ENABLED=True):
        yield


@pytest.fixture
def frozen():
    with time_machine.travel(NINE, tick=False) as traveller:
        yield traveller


@pytest.fixture
def ada():
    return make_user(username="ada", password=PASSWORD)


def sign_in(username, password, address=HOME, **headers):
    client = Client(REMOTE_ADDR=address)
    return client.post(LOGIN, {"username": username, "password": password}, **headers)


def fail(times, username="ada", address=HOME, **headers):
    return [
        sign_in(username, "wrong", address, **headers).status_code for _ in range(times)
    ]


def test_the_fifth_wrong_password_locks_with_a_429_page(ada, frozen):
    assert fail(4) == [200, 200, 200, 200]

    locked = sign_in("ada", "wrong")

    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Sign-in locked" in page
    assert "Try again in <strong>15 minutes</strong>" in page
    assert "Ask your portal administrator" in page


def test_the_right_password_is_refused_while_locked(ada, frozen):
    fail(5)
    frozen.shift(timedelta(minutes=14))

    assert sign_in("ada", PASSWORD).status_code == 429


def test_the_lockout_page_is_the_same_whether_or_not_the_name_exists(ada, frozen):
    fail(4, "ada")
    fail(4, "nobody-by-this-name")

    real = sign_in("ada", "wrong").content.decode()
    made_up = sign_in("nobody-by-this-name", "wrong").content.decode()

    assert real.replace("ada", "X") == made_up.replace("nobody-by-this-name", "X")
    assert "ada" not in real.split('id="content-main"')[1]


def test_it_lifts_after_the_cool_off_and_the_log_keeps_both(ada, frozen):
    fail(5)

    frozen.shift(timedelta(minutes=15, seconds=1))
    answer = sign_in("ada", PASSWORD)

    assert answer.status_code == 302
    assert answer["Location"] == "/admin/"
    locked = AccessAuditEntry.objects.get(kind="locked_out")
    assert (locked.username, locked.ip_address) == ("ada", HOME)
    assert locked.detail == (
        "5 wrong passwords from this address: sign-in locked for 15 minutes"
    )
    assert AccessAuditEntry.objects.get(kind="unlocked").detail == "cool-off ended"


def test_more_tries_while_locked_neither_extend_it_nor_fill_the_log(ada, frozen):
    fail(5)
    frozen.shift(timedelta(minutes=10))
    assert fail(3) == [429, 429, 429]

    frozen.shift(timedelta(minutes=5, seconds=1))

    assert sign_in("ada", PASSWORD).status_code == 302
    assert AccessAuditEntry.objects.filter(kind="locked_out").count() == 1


def test_the_same_name_from_another_address_can_still_sign_in(ada, frozen):
    fail(5)

    assert sign_in("ada", PASSWORD, address=ELSEWHERE).status_code == 302


def test_a_right_password_forgets_the_earlier_wrong_ones(ada, frozen):
    fail(4)
    assert sign_in("ada", PASSWORD).status_code == 302

    assert fail(4) == [200, 200, 200, 200]


def test_an_administrator_lifts_it_with_axes_reset_username(ada, frozen):
    fail(5)

    call_command("axes_reset_username", "ada")

    assert sign_in("ada", PASSWORD).status_code == 302
    lifted = AccessAuditEntry.objects.get(kind="unlocked")
    assert (lifted.username, lifted.detail) == (
        "ada",
        "lifted before the cool-off ended",
    )


def test_an_administrator_lifts_it_in_the_admin_and_the_log_names_them(ada, frozen):
    fail(5)
    from axes.models import AccessAttempt

    root = make_user(username="root", is_superuser=True)
    admin_client = Client()
    admin_client.force_login(root)
    attempt = AccessAttempt.objects.get(username="ada")

    admin_client.post(
        f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"}
    )

    assert sign_in("ada", PASSWORD).status_code == 302
    lifted = AccessAuditEntry.objects.get(kind="unlocked")
    assert lifted.actor == "root"


@override_settings(CLIENT_IP_PROXY_COUNT=1)
def test_behind_a_proxy_it_locks_the_address_the_proxy_saw(ada, frozen):
    proxy = "10.0.0.2"
    # The client may put anything in front; the proxy appends what it saw.
    fail(5, address=proxy, HTTP_X_FORWARDED_FOR=f"192.0.2.99, {HOME}")

    other_client = sign_in(
        "ada", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE
    )
    same_client = sign_in("ada", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR=HOME)

    assert other_client.status_code == 302
    assert same_client.status_code == 429
    assert AccessAuditEntry.objects.get(kind="locked_out").ip_address == HOME
