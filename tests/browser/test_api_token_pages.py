"""API tokens in a real browser (issue 16): make a token with a scope, see its key once
(and copy it with the page's own script, which the strict CSP allows), rotate it, and
read every token's state in the list."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from integrations import roles
from portal.models import ApiToken
from tests.factories import make_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "api-token-pages-2026"
KEY = re.compile(r"[0-9a-f]{40}")


def reads_payments(key):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api.get("/api/transactions/").status_code


def other_states(owner):
    """Tokens in the states a list must tell apart: expiring soon, expired, revoked."""
    make = ApiToken.objects.create_token
    make(owner, name="Nightly reconciliation", lifetime=timedelta(days=5))
    expired, _ = make(owner, name="Old BI export", lifetime=timedelta(days=30))
    ApiToken.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(days=2)
    )
    revoked, _ = make(owner, name="Leaked laptop")
    revoked.revoke()


def test_a_token_is_made_shown_once_rotated_and_listed_with_its_state(
    live_server, browser_page, screenshot
):
    owner = make_user(group=roles.FINANCE_REVIEWER, username="reporting")
    make_user(username="root", is_superuser=True, password=PASSWORD)
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/portal/apitoken/add/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/portal/apitoken/add/")

    page.select_option("#id_user", str(owner.pk))
    page.fill("#id_name", "BI export")
    page.check("input[name=scopes][value='payments:read']")
    page.fill("#id_lifetime_days", "90")
    page.click("input[name=_save]")

    key = page.input_value("#api-token-key")
    assert KEY.fullmatch(key)
    assert "never shown again" in page.locator("#content-main").inner_text()
    page.click("#copy-key")
    page.wait_for_function(
        "document.querySelector('#copy-key').textContent === 'Copied'"
    )
    screenshot("api-token-created")
    assert reads_payments(key) == 200

    page.click("text=The token's page")
    page.click("#rotate-token")
    assert "keeps the old key working for 24 hours" in page.content()
    page.click("#confirm-rotate")
    new_key = page.input_value("#api-token-key")
    assert KEY.fullmatch(new_key) and new_key != key
    assert "keeps working until" in page.locator("#api-token-overlap").inner_text()
    assert reads_payments(new_key) == 200
    assert reads_payments(key) == 200  # the overlap: callers switch without a gap

    other_states(owner)
    page.goto(f"{live_server.url}/admin/portal/apitoken/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 5
    listing = page.locator("#result_list").inner_text()
    for state in (
        "Active",
        "Rotated: old key still works",
        "Expiring soon",
        "Expired",
        "Revoked",
    ):
        assert state in listing
    assert "payments:read" in listing
    assert key not in page.content() and new_key not in page.content()
    screenshot("api-tokens")
