"""Cash application in a real browser: an automatic decision that explains itself, and
a customer mapping learned from reviewers that an admin accepts."""

from decimal import Decimal

import pytest

from integrations import learning
from integrations.models import Connection
from integrations.roles import FINANCE_REVIEWER, INTEGRATION_ADMIN
from mappings import matching, payers
from mappings.models import MatchingProposal, PayerLink
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

PASSWORD = "cash-application-2025"
ACME_RECORD = {
    "billing_address": {"name": "Acme Tools, Inc."},
    "receipt_emailed_to": "ap@acme.example",
}


@pytest.fixture
def paytrace():
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO, name="Sage Pro company 01")
    return make_connection(name="PayTrace production", sagepro=sagepro)


def sign_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def acme_decision(link: PayerLink) -> matching.Decision:
    """A real decision: the payer known from a customer mapping, a reference that is
    both ACME's invoice number and another customer's order number."""
    payment = matching.Payment(
        transaction_id="184223377",
        amount=Decimal("412.80"),
        reference="Invoice #10045",
        card_last4="4242",
    )
    invoices = [
        matching.Invoice("10045", "ACME", Decimal("412.80"), Decimal("412.80")),
        matching.Invoice(
            "10311", "BLUEOX", Decimal("412.80"), Decimal("412.80"), ornum="10045"
        ),
    ]
    identity = payers.identify(
        payers.Payer(email="ap@acme.example", name="ACME TOOLS"),
        [link.as_link()],
    )
    return matching.decide(payment, invoices, identity=identity)


def test_a_transaction_explains_its_automatic_decision(
    live_server, browser_page, screenshot, paytrace
):
    link = PayerLink.objects.create(
        connection=paytrace,
        kind=PayerLink.Kind.EMAIL,
        key="ap@acme.example",
        custno="ACME",
        source=PayerLink.Source.PROPOSAL,
    )
    decision = acme_decision(link)
    assert decision.action == matching.Action.APPLY
    txn = make_transaction(
        paytrace,
        transaction_id="184223377",
        amount=Decimal("412.80"),
        invoice_reference="Invoice #10045",
        customer_reference="",
        card_last4="4242",
        source_record=ACME_RECORD,
        match_explanation=decision.explanation,
    )
    make_posting(
        txn,
        sagepro=paytrace.sagepro,
        decided_automatically=True,
        match_method=decision.method,
        payer_link=link,
        decision=decision.explanation,
    )
    make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)

    page = browser_page
    sign_in(page, live_server, "rita")
    page.goto(
        f"{live_server.url}/admin/integrations/paymenttransaction/{txn.pk}/change/"
    )
    panel = page.locator(".portal-explanation")
    text = panel.inner_text()
    assert "Why this decision" in text
    assert "applied without review" in text
    assert "invoice number, normalised" in text
    assert "customer mapping (e-mail ap@acme.example → ACME)" in text
    assert "10311" in panel.locator(".portal-explanation-rejected").inner_text()
    assert "BLUEOX" in text
    assert "invoice 10045: 412.80" in text
    panel.scroll_into_view_if_needed()
    screenshot("matching-explained")


def test_an_admin_accepts_a_mapping_learned_from_reviewers(
    live_server, browser_page, screenshot, paytrace
):
    reviewer = make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)
    make_user(group=INTEGRATION_ADMIN, username="adam", password=PASSWORD)
    for n in range(3):
        txn = make_transaction(
            paytrace,
            transaction_id=f"18422340{n}",
            amount=Decimal("150.00") + n,
            invoice_reference="paid by card",
            customer_reference="",
            source_record=ACME_RECORD,
        )
        learning.observe(make_review_item(txn), "ACME", [f"1004{n}"], reviewer)
    proposal = MatchingProposal.objects.get(subject="email")
    assert (proposal.state, proposal.agreeing) == (MatchingProposal.State.OPEN, 3)

    page = browser_page
    sign_in(page, live_server, "adam")
    page.goto(f"{live_server.url}/admin/mappings/matchingproposal/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2  # e-mail and billing name, both open
    page.click(f"#result_list a[href$='/matchingproposal/{proposal.pk}/change/']")
    page.wait_for_selector("input.portal-accept")
    evidence = page.locator(".portal-evidence").inner_text()
    assert evidence.count("rita") == 3
    assert "184223402" in evidence
    screenshot("proposal-learned")

    page.click("input.portal-accept")
    page.wait_for_selector(".messagelist")
    assert (
        "Accepted: E-mail ap@acme.example → ACME"
        in page.locator(".messagelist").inner_text()
    )
    assert page.locator("input.portal-accept").count() == 0

    page.goto(f"{live_server.url}/admin/mappings/payerlink/")
    table = page.locator("#result_list").inner_text()
    assert "ap@acme.example" in table
    assert "ACME" in table
    assert "An accepted proposal" in table
    screenshot("proposal-accepted")
    link = PayerLink.objects.get()
    assert (link.custno, link.source, link.created_by.username) == (
        "ACME",
        PayerLink.Source.PROPOSAL,
        "adam",
    )


def test_a_reviewer_remembers_the_payer_and_its_next_payment_posts_itself(
    live_server, browser_page, screenshot, live_connections
):
    from django.conf import settings
    from django.test import Client

    from integrations.models import Posting, ReviewItem
    from integrations.sandbox.sagepro import seed
    from tests.queue import run_queued_tasks
    from tests.webhooks import event_body, paytrace_record, post_event, sign

    _, paytrace = live_connections
    sender = Client()

    def pay(invoice_id, amount):
        record = paytrace_record(
            invoice_id=invoice_id,
            amount=Decimal(amount),
            customer_reference_id="",
            billing_address={"name": "Northwind Traders"},
            receipt_emailed_to="payables@northwind.example",
        )
        body = event_body("transaction.approved", record)
        response = post_event(
            sender, paytrace.slug, body, sign(body, settings.DEMO_WEBHOOK_SECRET)
        )
        assert response.status_code == 202
        run_queued_tasks()
        return str(record["transaction_id"])

    first = seed.seed_invoice("ACME", "218.40")
    txid = pay("see remittance", "218.40")
    item = ReviewItem.objects.get(transaction__transaction_id=txid)
    make_user(group=FINANCE_REVIEWER, username="rita", password=PASSWORD)

    page = browser_page
    sign_in(page, live_server, "rita")
    page.goto(f"{live_server.url}/admin/integrations/reviewitem/{item.pk}/change/")
    why = page.locator(".portal-explanation").inner_text()
    assert "Why this decision" in why
    assert "sent to review" in why
    row = page.locator(".portal-candidate", has_text=first)
    row.locator("input[name=remember]").check()
    assert "Remember: this payer is customer ACME" in row.inner_text()
    screenshot("review-explained")
    row.locator("input.portal-apply").click()
    page.wait_for_selector(".portal-outcome")
    page.click("input[type=submit][value='Confirm and post the receipt']")
    page.wait_for_selector(".messagelist")
    said = page.locator(".messagelist").inner_text()
    assert f"Applied to invoice {first}" in said
    assert "Remembered: this payer" in said
    assert "customer ACME" in said

    second = seed.seed_invoice("ACME", "77.15")
    again = pay("", "77.15")
    posting = Posting.objects.get(transaction__transaction_id=again)
    assert posting.decided_automatically
    assert posting.payer_link is not None
    assert posting.payer_link.custno == "ACME"
    assert [a["invno"] for a in posting.payload["applications"]] == [second]
