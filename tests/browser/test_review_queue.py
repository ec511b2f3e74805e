"""A finance reviewer works the review queue and replays dead letters, in a browser.

The payments come in through the webhook and the pipeline, and the portal talks to the
Sage Pro sandbox served by the live server, so the candidates are the real ranking.
"""

from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client

from integrations.models import Posting, ReviewItem
from integrations.roles import FINANCE_REVIEWER
from integrations.sandbox.sagepro import seed
from integrations.sandbox.sagepro.models import CashReceipt
from mappings.models import MatchingRule
from tests.factories import make_user
from tests.queue import run_queued_tasks
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "reviewer-pass-2025"
SLUG = "paytrace-prod"


@pytest.fixture
def portal(live_connections):
    """Connections to the sandboxes on the live server, and a webhook sender."""
    sagepro, paytrace = live_connections
    sender = Client()

    def pay(invoice_id, amount, **fields):
        record = paytrace_record(
            invoice_id=invoice_id, amount=Decimal(amount), **fields
        )
        body = event_body("transaction.approved", record)
        response = post_event(
            sender, SLUG, body, sign(body, settings.DEMO_WEBHOOK_SECRET)
        )
        assert response.status_code == 202
        run_queued_tasks()
        return str(record["transaction_id"])

    def fault(mode, seconds=3600):
        response = sender.post(
            "/sandbox/sagepro/api/v1/_faults",
            {"mode": mode, "seconds": seconds},
            content_type="application/json",
            headers={"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"},
        )
        assert response.status_code in (200, 201)

    make_user(
        group=FINANCE_REVIEWER, username="rita", first_name="Rita", password=PASSWORD
    )
    return {"pay": pay, "fault": fault, "paytrace": paytrace}


def sign_in(page, live_server, username="rita"):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_a_reviewer_applies_a_payment_to_the_best_candidate(
    live_server, browser_page, screenshot, portal
):
    pay = portal["pay"]
    # References compared as written: the standard rule would read the one below.
    MatchingRule.objects.create(
        connection=portal["paytrace"], name="as written", reference_mode="exact"
    )
    target = seed.seed_invoice("ACME", "412.80")
    # The customer wrote the invoice number with a prefix and padding Sage Pro lacks.
    txid = pay(f"INV-{int(target):010d}", "412.80", customer_id="ACME")
    pay("", "89.00", customer_id="BLUEOX")  # names no invoice
    paid = seed.seed_invoice("ACME", "100.00")
    pay(paid, "130.00", customer_id="ACME")  # overpayment
    item = ReviewItem.objects.get(transaction__transaction_id=txid)
    assert item.kind == ReviewItem.Kind.UNMATCHED

    page = browser_page
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/admin/integrations/reviewitem/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    queue = page.locator("#result_list").inner_text()
    assert "Paid more than the invoice balance" in queue
    assert "Apply to the best candidate invoice" in queue

    page.click(f"#result_list a[href$='/reviewitem/{item.pk}/change/']")
    page.wait_for_selector(".portal-candidate-table")
    candidates = page.locator(".portal-candidate")
    assert candidates.count() == 3
    best = candidates.first
    assert best.locator(".portal-invno").inner_text() == target
    scores = [float(s) for s in page.locator(".portal-score-value").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.8
    assert best.locator(".portal-part").count() == 5
    assert "Reference" in best.inner_text()
    assert "0.90" in best.locator("[data-part=reference]").inner_text()
    assert "Suggested actions:" in page.locator(".portal-suggestion").inner_text()
    screenshot("review-candidates")

    best.locator("input.portal-apply").click()
    page.wait_for_selector(".portal-outcome")
    assert not Posting.objects.filter(transaction__transaction_id=txid).exists()
    assert f"Apply $412.80 to invoice {target}" in page.locator("#content").inner_text()
    page.click("input[type=submit][value='Confirm and post the receipt']")
    page.wait_for_selector(".messagelist")
    message = page.locator(".messagelist").inner_text()
    assert f"Applied to invoice {target}" in message
    assert page.locator(".portal-state").inner_text() == "Resolved"
    assert "Rita" in page.locator(".portal-decisions").inner_text() or (
        "rita" in page.locator(".portal-decisions").inner_text()
    )
    assert page.locator("input.portal-apply").count() == 0
    screenshot("review-applied")

    run_queued_tasks()
    assert CashReceipt.objects.filter(reference=txid, deleted=False).count() == 1


def test_a_reviewer_replays_the_dead_letters_since_a_time(
    live_server, browser_page, screenshot, portal
):
    invno = seed.seed_invoice("ACME", "250.00")
    portal["fault"]("locked")
    txid = portal["pay"](invno, "250.00", customer_id="ACME")
    Posting.objects.update(state=Posting.State.DEAD)  # as after the last attempt
    portal["fault"]("none")

    page = browser_page
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/admin/integrations/deadletter/")
    assert txid in page.locator("#result_list").inner_text()
    page.click("text=Replay everything since…")
    page.wait_for_selector("input[name=since]")
    page.fill("input[name=since]", "2000-01-01 00:00")
    page.click("input[type=submit][value=Replay]")
    page.wait_for_selector(".portal-replay-list")
    assert txid in page.locator(".portal-replay-list").inner_text()
    assert "$250.00" in page.locator(".portal-replay-list").inner_text()
    page.click("input[type=submit][value='Confirm: replay 1 receipt']")
    page.wait_for_selector(".messagelist")
    assert "Queued a replay of 1 dead letter(s)" in (
        page.locator(".messagelist").inner_text()
    )
    screenshot("dead-letter-replay")

    run_queued_tasks()
    assert Posting.objects.get().state == Posting.State.POSTED
    assert CashReceipt.objects.filter(reference=txid, deleted=False).count() == 1
