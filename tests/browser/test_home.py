"""The reviewer's home in a real browser: what needs attention, each figure a link."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.models import Posting, ReviewItem
from integrations.roles import FINANCE_REVIEWER
from tests.factories import (
    make_connection,
    make_posting,
    make_review_item,
    make_transaction,
    make_user,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "reviewer-pass-2025"


@pytest.fixture
def waiting_work():
    """A morning's queue: items of four kinds and ages, two dead letters, payments
    received and posted today."""
    now = timezone.now()
    paytrace = make_connection(name="PayTrace production")
    sagepro = make_connection(kind="sagepro", name="Sage Pro company 01")
    for n, (kind, hours, amount) in enumerate(
        [
            (ReviewItem.Kind.VALIDATION, 150, "412.00"),
            (ReviewItem.Kind.UNMATCHED, 80, "515.65"),
            (ReviewItem.Kind.UNMATCHED, 30, "151.61"),
            (ReviewItem.Kind.UNMATCHED, 3, "67.22"),
            (ReviewItem.Kind.UNMATCHED, 1, "888.23"),
            (ReviewItem.Kind.OVERPAYMENT, 26, "672.35"),
            (ReviewItem.Kind.DEAD, 6, "1500.00"),
        ],
        1,
    ):
        at = now - timedelta(hours=hours)
        txn = make_transaction(
            paytrace,
            transaction_id=str(184_500_000 + n),
            amount=Decimal(amount),
            created_at=at,
            first_seen_at=at,
        )
        make_review_item(txn, kind=kind, created_at=at)
    for amount in ("1500.00", "99.95"):
        make_posting(
            make_transaction(paytrace, amount=Decimal(amount)),
            sagepro=sagepro,
            state=Posting.State.DEAD,
        )
    for amount in ("250.00", "1204.10", "32.50"):
        make_posting(
            make_transaction(paytrace, amount=Decimal(amount)),
            sagepro=sagepro,
            state=Posting.State.POSTED,
        )


def sign_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_a_reviewer_lands_on_what_needs_attention(
    live_server, browser_page, screenshot, waiting_work, settings
):
    page = browser_page
    missing = []
    page.on(
        "response",
        lambda r: missing.append(r.url) if r.status == 404 else None,
    )
    make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)
    sign_in(page, live_server, "rita")

    assert page.locator("h1").inner_text() == "What needs attention"
    assert (
        f"Times in {settings.BUSINESS_TIME_ZONE}"
        in page.locator("#header").inner_text()
    )
    kinds = page.locator("#home-open-items tr.home-kind")
    # Oldest first: the 150-hour-old validation item's kind leads.
    assert kinds.first.get_attribute("data-kind") == "validation"
    unmatched = page.locator("#home-open-items tr[data-kind=unmatched]")
    assert unmatched.locator(".home-count").inner_text() == "4"
    assert "$1,622.71" in unmatched.inner_text()
    sla = page.locator("#home-sla").inner_text()
    assert "Posting gave up after retries (SLA 4 h)" in sla
    assert page.locator("#home-dead-link").inner_text() == "2"
    assert "$1,599.95" in page.locator("#home-dead").inner_text()
    posted = page.locator("#home-today tr", has_text="Posted to Sage Pro")
    assert "$1,486.60" in posted.inner_text()
    nav = page.locator("#content-main .module caption").all_inner_texts()
    assert [t.strip().title() for t in nav] == [
        "Review",
        "Payments",
        "Month-End",
        "Configuration",
    ]
    assert page.locator("#home-pipeline").count() == 0
    screenshot("reviewer-home")

    # A figure opens the list behind it, filtered the same way.
    unmatched.locator(".home-age-under_1d a").click()
    page.wait_for_url("**/admin/integrations/reviewitem/?*")
    assert page.locator("#result_list tbody tr").count() == 2
    page.go_back()
    page.click("#home-dead-link")
    page.wait_for_url("**/admin/integrations/deadletter/*")
    assert page.locator("#result_list tbody tr").count() == 2
    assert not [url for url in missing if url.endswith("/favicon.ico")]

    # A page the reviewer may not open says why, inside the admin's look.
    page.goto(f"{live_server.url}/admin/auth/user/")
    assert "view users" in page.locator("#forbidden-reason").inner_text()
    assert page.locator("#site-name").inner_text().startswith("Payments portal")
