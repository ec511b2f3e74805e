"""The site-wide Content-Security-Policy in a real browser (issue 16): the pages a
reviewer and an integration admin use work under it — Chromium refuses nothing, the
scripts that moved out of inline tags still run — and markup smuggled into a
payment's fields is not run."""

import pytest

from tests.factories import make_review_item, make_transaction, make_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "csp-pages-2026"
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def watch_for_refusals(page) -> list[str]:
    """Every policy refusal Chromium reports on any page visited afterwards."""
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    return refused


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def test_the_portals_pages_work_under_the_policy_and_refuse_smuggled_scripts(
    live_server, live_connections, browser_page
):
    sagepro, paytrace = live_connections
    make_user(username="ines", password=PASSWORD, is_superuser=True)
    item = make_review_item(
        make_transaction(paytrace, invoice_reference=HOSTILE[:60]),
        reason=f"No open invoice matches {HOSTILE}",
    )
    page = browser_page
    refused = watch_for_refusals(page)
    base = live_server.url
    sign_in(page, base, "ines")

    for path in (
        "/admin/",
        "/dashboard/",
        "/admin/integrations/reviewitem/",
        f"/admin/integrations/reviewitem/{item.pk}/change/",
        "/admin/integrations/paymenttransaction/",
        "/admin/mappings/glrule/",
        f"/admin/integrations/connection/{paytrace.pk}/change/",
    ):
        reply = page.goto(f"{base}{path}")
        assert reply is not None and reply.status == 200, path
        assert "script-src 'self'" in reply.headers["content-security-policy"]

    # The smuggled markup is shown as text, and none of its scripts ran.
    page.goto(f"{base}/admin/integrations/reviewitem/{item.pk}/change/")
    assert page.evaluate("window.__pwned === undefined")

    # Behaviour that moved from inline scripts to static/portal/actions.js still works:
    # choosing a kind on a new connection reloads the page with that kind's fields.
    page.goto(f"{base}/admin/integrations/connection/add/")
    page.select_option("#id_kind", "sagepro")
    page.wait_for_url("**kind=sagepro**")
    assert page.locator("#id_kind").input_value() == "sagepro"

    # The API's interactive documentation renders its operations under the policy.
    page.goto(f"{base}/api/docs/")
    page.wait_for_selector(".opblock", timeout=15_000)

    assert refused == []
