"""The five roles (issue 16): each member holds exactly its matrix's permissions, every
permission the matrix names exists, docs/roles.md is the matrix, and every admin page a
role may see opens for it."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from integrations import roles
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def matrix_entries() -> list[tuple[str, str]]:
    entries = set()
    for role, apps in roles.GROUP_PERMISSIONS.items():
        for app, models in apps.items():
            for model, actions in models.items():
                for action in actions:
                    entries.add((role, f"{app}.{action}_{model}"))
    return sorted(entries)


ENTRIES = matrix_entries()


def expected_permissions(role: str) -> set[str]:
    if role == roles.AUDITOR:
        return {
            f"{p.content_type.app_label}.{p.codename}"
            for p in roles.auditor_permissions()
        }
    wanted = {perm for r, perm in ENTRIES if r == role}
    if role in roles.OPERATOR_GROUPS:
        wanted.add(roles.OPERATE_SYSTEM)
    return wanted


def test_the_migration_creates_the_five_roles():
    assert set(Group.objects.values_list("name", flat=True)) >= set(roles.ROLES)


@pytest.mark.parametrize(
    ("role", "perm"), ENTRIES, ids=[f"{role}:{perm}" for role, perm in ENTRIES]
)
def test_a_member_of_each_role_holds_each_permission_of_its_matrix(role, perm):
    app, codename = perm.split(".")
    assert Permission.objects.filter(
        content_type__app_label=app, codename=codename
    ).exists(), f"the matrix names {perm}, which is no permission (a typo?)"
    assert make_user(group=role).has_perm(perm)


@pytest.mark.parametrize("role", roles.ROLES)
def test_a_member_holds_nothing_beyond_the_matrix(role):
    held = make_user(group=role).get_all_permissions()
    assert held == expected_permissions(role)


def test_an_auditor_reads_every_model_and_changes_nothing():
    auditor = make_user(group=roles.AUDITOR)
    held = auditor.get_all_permissions()
    assert held and all(perm.split(".")[1].startswith("view_") for perm in held)
    for model in admin.site._registry:
        if model._meta.app_label in roles.AUDITED_APPS:
            assert auditor.has_perm(
                f"{model._meta.app_label}.view_{model._meta.model_name}"
            ), model


@pytest.mark.parametrize(
    ("role", "perm", "allowed"),
    [
        (roles.FINANCE_REVIEWER, "integrations.change_connection", False),
        (roles.FINANCE_REVIEWER, "mappings.change_glrule", False),
        (roles.FINANCE_REVIEWER, "integrations.change_autopaysettings", False),
        (roles.FINANCE_REVIEWER, roles.OPERATE_SYSTEM, False),
        (roles.FINANCE_MANAGER, "integrations.change_autopaysettings", True),
        (roles.FINANCE_MANAGER, "integrations.change_connection", False),
        (roles.FINANCE_MANAGER, "mappings.change_glrule", False),
        (roles.OPERATOR, "integrations.change_deadletter", True),
        (roles.OPERATOR, "integrations.add_charge", False),
        (roles.OPERATOR, "integrations.add_chargeback", False),
        (roles.OPERATOR, "mappings.change_glrule", False),
        (roles.INTEGRATION_ADMIN, "mappings.change_glrule", True),
        (roles.AUDITOR, "integrations.change_reviewitem", False),
        (roles.AUDITOR, roles.OPERATE_SYSTEM, False),
        # API tokens: people make their own; integration admins manage everyone's.
        (roles.FINANCE_REVIEWER, "portal.add_apitoken", True),
        (roles.FINANCE_REVIEWER, "portal.manage_all_apitoken", False),
        (roles.INTEGRATION_ADMIN, "portal.manage_all_apitoken", True),
        (roles.AUDITOR, "portal.add_apitoken", False),
        (roles.OPERATOR, "portal.add_apitoken", False),
        # The second signature on an override is a finance manager's.
        (roles.FINANCE_MANAGER, "integrations.sign_overriderequest", True),
        (roles.FINANCE_REVIEWER, "integrations.sign_overriderequest", False),
        (roles.INTEGRATION_ADMIN, "integrations.sign_overriderequest", False),
    ],
)
def test_the_lines_between_roles(role, perm, allowed):
    assert make_user(group=role).has_perm(perm) is allowed


def test_docs_roles_md_is_the_matrix():
    doc = (Path(settings.BASE_DIR) / "docs" / "roles.md").read_text()
    shown = re.search(r"<!-- matrix:start -->\n(.*)<!-- matrix:end -->", doc, re.S)
    assert shown, "docs/roles.md lost its matrix markers"
    assert shown.group(1) == roles.matrix_markdown(), (
        "docs/roles.md differs from integrations.roles: paste "
        "integrations.roles.matrix_markdown() between its markers"
    )


@pytest.mark.parametrize("role", roles.ROLES)
def test_every_admin_page_a_role_may_see_opens(role):
    member = make_user(group=role, username="member", password="roles-2026")
    client = Client()
    assert client.login(username="member", password="roles-2026")
    assert client.get("/admin/").status_code == 200
    failures = []
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        if not model_admin.has_view_permission(_request_for(member)):
            continue
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        status = client.get(url).status_code
        if status != 200:
            failures.append(f"{url}: {status}")
    assert not failures, failures


def _request_for(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    return request
