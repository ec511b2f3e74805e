"""The site-wide Content-Security-Policy (issue 16): every page the portal serves may run
scripts only from the portal itself, so markup smuggled into a payer's name, a memo or
an order line cannot run; the card pages keep their own, wider policy."""

import re

import pytest

from tests.factories import make_user

pytestmark = pytest.mark.django_db


def policy_of(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(
        (part.strip().split(" ", 1) + [""])[:2]
        for part in header.split(";")
        if part.strip()
    )


@pytest.mark.parametrize(
    "path", ["/admin/login/", "/healthz", "/api/schema/", "/api/docs/"]
)
def test_public_and_api_pages_allow_scripts_only_from_the_portal(client, path):
    response = client.get(path)

    policy = policy_of(response)
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'self'"
    assert policy["form-action"] == "'self'"
    assert "unsafe-eval" not in response["Content-Security-Policy"]


def test_a_signed_in_reviewers_pages_carry_it_too(client):
    client.force_login(make_user(is_superuser=True))

    for path in ("/admin/", "/admin/integrations/reviewitem/", "/dashboard/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert policy_of(response)["script-src"] == "'self'", path


def test_the_admin_pages_the_portal_adds_have_no_inline_scripts(client):
    """An inline script would be refused by the browser: the page would lose its
    behaviour. Scripts are files (static/portal/actions.js)."""
    client.force_login(make_user(is_superuser=True))

    page = client.get("/admin/integrations/connection/add/").content.decode()

    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert not re.search(r"\son[a-z]+=\"", page)
    assert 'data-portal-reload-param="kind"' in page
