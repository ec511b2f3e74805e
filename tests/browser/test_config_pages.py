"""An integration admin changes configuration and checks a connection, in a browser.

The GL-rule case reported in issue 13: one rule for payments of 1,000 or more on a
connection without a suspense account. Saving it first shows that every smaller recent
payment would fail, and points to the connection's suspense account field. Then the
connection page: "Test connection" against the sandboxes, and the webhook URLs.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from integrations.models import PaymentTransaction
from mappings.models import GlRule

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "admin-pass-2025"
AMOUNTS = ["48.10", "151.61", "515.65", "672.35", "888.23", "1500.00", "2405.51"]


@pytest.fixture
def setup(live_connections):
    sagepro, paytrace = live_connections
    now = datetime.now(UTC)
    for n, amount in enumerate(AMOUNTS):
        PaymentTransaction.objects.create(
            connection=paytrace,
            transaction_id=str(184224400 + n),
            transaction_type="SALE",
            amount=Decimal(amount),
            invoice_reference=f"{10050 + n}",
            customer_reference="ACME",
            card_brand="Visa",
            card_last4="1111",
            channel="API",
            gateway_status="settled",
            mapped_status="Paid",
            status_code="GB812",
            created_at=now - timedelta(hours=n),
            first_seen_at=now - timedelta(hours=n),
            source_record={"invoice_id": f"{10050 + n}", "amount": amount},
        )
    get_user_model().objects.create_superuser("ines", "ines@example.com", PASSWORD)
    return {"sagepro": sagepro, "paytrace": paytrace}


def sign_in(page, live_server):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ines")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_a_gl_rule_that_would_fail_small_payments_is_previewed_before_saving(
    live_server, browser_page, screenshot, setup
):
    page = browser_page
    paytrace = setup["paytrace"]
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/mappings/glrule/")
    assert "Sage Pro books it to its default cash account" in " ".join(
        page.locator("#content").inner_text().split()
    )
    page.goto(f"{live_server.url}/admin/mappings/glrule/add/")
    page.select_option("#id_connection", str(paytrace.pk))
    page.fill("#id_name", "Large payments")
    page.fill("#id_priority", "10")
    page.fill("#id_account", "2100-00")
    page.fill("#id_amount_min", "1000.00")
    page.click("input[name=_save]")

    page.wait_for_selector(".portal-impact")
    text = page.locator("#content").inner_text()
    assert "Checked against the connection's last 7 payments" in text
    assert (
        "5 payments would now fail validation: no GL rule matches them and the "
        "connection has no suspense account" in text
    )
    assert (
        "2 payments would change GL account from Sage Pro's default cash account to 2100-00"
        in text
    )
    assert "$151.61" in text
    assert "Save anyway" in page.locator("input[type=submit]").last.get_attribute(
        "value"
    )
    fix = page.locator("a.portal-impact-fix")
    assert fix.get_attribute("href").endswith(
        f"/admin/integrations/connection/{paytrace.pk}/change/#id_suspense_account"
    )
    assert not GlRule.objects.exists()
    screenshot("config-impact-preview")

    # The fix: give the connection a suspense account; the same rule then only
    # moves payments between accounts.
    fix.click()
    page.fill("#id_suspense_account", "9999-00")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    paytrace.refresh_from_db()
    assert paytrace.suspense_account == "9999-00"

    page.goto(f"{live_server.url}/admin/mappings/glrule/add/")
    page.select_option("#id_connection", str(paytrace.pk))
    page.fill("#id_name", "Large payments")
    page.fill("#id_account", "2100-00")
    page.fill("#id_amount_min", "1000.00")
    page.click("input[name=_save]")
    page.wait_for_selector(".portal-impact")
    text = page.locator("#content").inner_text()
    assert "would now fail" not in text
    assert "2 payments would change GL account from 9999-00 to 2100-00" in text
    page.click("input.portal-impact-confirm")
    page.wait_for_selector(".messagelist .success")
    assert GlRule.objects.get().amount_min == Decimal("1000.00")


def test_an_admin_tests_a_connection_and_copies_its_webhook_url(
    live_server, browser_page, screenshot, setup
):
    page = browser_page
    paytrace, sagepro = setup["paytrace"], setup["sagepro"]
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/integrations/connection/{sagepro.pk}/change/")
    labels = page.locator("#connection_form").inner_text()
    assert "Company id" in labels or "Company" in labels
    assert "Integrator id" not in labels
    assert "Payment method" not in labels
    assert "Suspense account" in labels
    page.click("button.portal-test-connection")
    page.wait_for_selector(".portal-connection-check")
    assert (
        "Sage Pro company 01 answered"
        in page.locator(".portal-connection-check").inner_text()
    )

    page.goto(f"{live_server.url}/admin/integrations/connection/{paytrace.pk}/change/")
    labels = page.locator("#connection_form").inner_text()
    assert "Transport" not in labels
    assert "Integrator id" in labels
    page.click("button.portal-test-connection")
    result = page.locator(".portal-connection-check")
    result.wait_for()
    text = result.inner_text()
    assert "Connection works." in text
    assert "PayTrace signed in" in text
    assert " ms." in text
    urls = page.locator("code.portal-webhook-url").all_inner_texts()
    assert urls == [
        f"{live_server.url}/webhooks/paytrace/paytrace-prod/",
        f"{live_server.url}/webhooks/paytrace/paytrace-prod/silent-post/",
    ]
    copy = page.locator("button.portal-copy").first
    copy.click()
    page.wait_for_function(
        "() => document.querySelector('button.portal-copy').textContent === 'Copied'"
    )
    screenshot("connection-test")


def test_the_status_map_list_fits_the_page(
    live_server, browser_page, screenshot, setup
):
    page = browser_page
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/mappings/statusmap/")

    action = page.locator("#result_list th.column-action").bounding_box()
    assert action is not None
    assert action["x"] + action["width"] <= 1400
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    assert page.locator("#result_list select[name$='-action']").count() == 12
    screenshot("status-map-list")


def test_config_history_lists_only_what_changed(
    live_server, browser_page, screenshot, setup
):
    import reversion
    from reversion.models import Version

    page = browser_page
    with reversion.create_revision():
        rule = GlRule.objects.create(
            connection=setup["paytrace"],
            name="Large payments",
            amount_min=Decimal("1000.00"),
            account="2100-00",
        )
    with reversion.create_revision():
        rule.amount_min = Decimal("1000")  # as typed: the same amount
        rule.account = "1100-00"
        rule.save()
    newest = Version.objects.get_for_object(rule).order_by("-pk").first()
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/reversion/version/{newest.pk}/change/")

    table = page.locator("table.portal-diff").first.inner_text()
    assert "1 field changed" in page.locator("#content").inner_text()
    assert "2100-00" in table and "1100-00" in table
    assert "Amount min" not in table
    assert "1000" not in table
    screenshot("config-history-diff")


def test_a_new_connection_shows_the_fields_of_the_kind_chosen(
    live_server, browser_page, setup
):
    page = browser_page
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/integrations/connection/add/")
    assert page.locator("#id_username").count() == 1  # kind not chosen yet: all
    page.select_option("#id_kind", "sagepro")
    page.wait_for_url("**/connection/add/?kind=sagepro")

    assert page.locator("#id_kind").input_value() == "sagepro"
    assert page.locator("#id_company_id").count() == 1
    assert page.locator("#id_username").count() == 0
    assert page.locator("#id_payment_method").count() == 0
