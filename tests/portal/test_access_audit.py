"""The access audit log and session expiry (issue 16): sign-ins, failed sign-ins and
sign-outs are recorded with the address (never the password); a change to a user's
roles, permissions or flags is recorded with who made it; nobody can edit the log;
sessions end when idle and when the browser closes."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from integrations import roles
from portal.models import AccessAuditEntry
from tests.factories import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "audit-log-2026"


def entries(kind):
    return list(AccessAuditEntry.objects.filter(kind=kind).order_by("at", "pk"))


def test_a_sign_in_a_failed_one_and_a_sign_out_are_recorded_without_the_password():
    make_user(username="alma", password=PASSWORD)
    client = Client(REMOTE_ADDR="203.0.113.7")

    client.post("/admin/login/", {"username": "alma", "password": "wrong-guess-123"})
    client.post("/admin/login/", {"username": "alma", "password": PASSWORD})
    client.post("/admin/logout/")

    (failed,) = entries("sign_in_failed")
    assert failed.username == "alma" and failed.ip_address == "203.0.113.7"
    (signed_in,) = entries("signed_in")
    assert signed_in.username == "alma" and signed_in.ip_address == "203.0.113.7"
    assert len(entries("signed_out")) == 1
    stored = " ".join(
        f"{e.username} {e.actor} {e.detail}" for e in AccessAuditEntry.objects.all()
    )
    assert "wrong-guess-123" not in stored and PASSWORD not in stored


def test_a_role_change_in_the_admin_is_recorded_with_who_made_it():
    admin_user = make_user(username="root", password=PASSWORD, is_superuser=True)
    member = make_user(username="bea")
    client = Client()
    client.force_login(admin_user)
    manager = Group.objects.get(name=roles.FINANCE_MANAGER)

    response = client.post(
        f"/admin/auth/user/{member.pk}/change/",
        {
            "username": "bea",
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "groups": [manager.pk],
            "last_login_0": "",
            "last_login_1": "",
            "date_joined_0": "2026-12-01",
            "date_joined_1": "09:00:00",
        },
    )

    assert response.status_code == 302, response.content[:500]
    (role_change,) = [e for e in entries("groups_changed") if e.username == "bea"]
    assert role_change.actor == "root"
    assert "Finance manager" in role_change.detail and "added" in role_change.detail
    (flags,) = [e for e in entries("flags_changed") if e.username == "bea" and e.actor]
    assert "is_superuser False → True" in flags.detail and flags.actor == "root"


def test_direct_permissions_and_a_roles_permissions_are_recorded():
    member = make_user(username="cy")
    permission = Permission.objects.get(codename="change_glrule")

    member.user_permissions.add(permission)

    (change,) = entries("permissions_changed")
    assert change.username == "cy" and "mappings.change_glrule" in change.detail
    assert change.actor == ""  # outside a request: the system


def test_nobody_edits_or_deletes_the_log():
    admin_user = make_user(username="root2", is_superuser=True)
    client = Client()
    client.force_login(admin_user)
    entry = AccessAuditEntry.objects.first() or AccessAuditEntry.objects.create(
        kind="signed_in", username="x"
    )

    assert client.get("/admin/portal/accessauditentry/").status_code == 200
    assert client.get("/admin/portal/accessauditentry/add/").status_code == 403
    delete = client.post(f"/admin/portal/accessauditentry/{entry.pk}/delete/")
    assert delete.status_code == 403
    assert AccessAuditEntry.objects.filter(pk=entry.pk).exists()


def test_an_auditor_reads_the_log_and_a_reviewer_does_not():
    auditor = make_user(group=roles.AUDITOR)
    reviewer = make_user(group=roles.FINANCE_REVIEWER)
    assert auditor.has_perm("portal.view_accessauditentry")
    assert not reviewer.has_perm("portal.view_accessauditentry")


def test_a_session_ends_when_idle_and_when_the_browser_closes(settings):
    make_user(username="dee", password=PASSWORD)
    client = Client()
    response = client.post("/admin/login/", {"username": "dee", "password": PASSWORD})
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert settings.SESSION_COOKIE_AGE == 60 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST  # idle time, renewed by each request
    # A browser-session cookie: no expiry date, gone when the browser closes.
    assert not cookie["expires"] and not cookie["max-age"]
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE
