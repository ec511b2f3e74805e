"""The roles in a real browser (issue 16): an auditor reads a review item's list but
is refused, on the portal's own page, when opening an action it may not take — the page
names the missing permission and who can grant it; the access audit log shows the
auditor's sign-in."""

import pytest

from integrations import roles
from portal.models import AccessAuditEntry
from tests.factories import make_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "roles-pages-2026"


def test_an_auditor_reads_but_is_refused_a_change_with_a_page_saying_why(
    live_server, browser_page, screenshot
):
    make_user(group=roles.AUDITOR, username="ada", password=PASSWORD)
    make_user(username="root", is_superuser=True)
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    listing = page.goto(f"{live_server.url}/admin/integrations/reviewitem/")
    assert listing is not None and listing.status == 200

    refused = page.goto(f"{live_server.url}/admin/mappings/glrule/add/")
    assert refused is not None and refused.status == 403
    reason = page.locator("#forbidden-reason").inner_text()
    assert "permission" in reason.lower()
    assert "Signed in as ada (Auditor)" in page.locator("#content-main").inner_text()
    screenshot("permission-denied")

    assert AccessAuditEntry.objects.filter(kind="signed_in", username="ada").exists()
