"""Real threads: what happens when the same thing happens at once.

On PostgreSQL (row locks, unique constraints) and on SQLite (one writer at a time,
IMMEDIATE transactions): the same code must be right on both."""

from decimal import Decimal

import pytest
from django.test import Client

from integrations import review
from integrations.models import Event, Posting, ReviewItem
from integrations.sandbox.sagepro.models import CashReceipt
from tests.support.threads import run_at_once
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_the_same_event_delivered_three_times_at_once_is_stored_once(
    paytrace_conn, secret
):
    body = event_body("transaction.approved", paytrace_record())
    headers = sign(body, secret)

    statuses = run_at_once(
        3, lambda i: post_event(Client(), "paytrace-sandbox", body, headers).status_code
    )

    assert sorted(statuses) == [200, 200, 202]
    assert Event.objects.count() == 1


def test_two_reviewers_applying_the_same_payment_at_once_make_one_receipt(
    paytrace_conn, sage, http, run_tasks, client, secret, django_user_model
):
    invno = sage.seed_invoice("ACME", "55.00")
    record = paytrace_record(invoice_id="NOPE-1", amount=Decimal("55.00"))
    body = event_body("transaction.approved", record)
    post_event(client, "paytrace-sandbox", body, sign(body, secret))
    run_tasks()
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.UNMATCHED)
    users = [django_user_model.objects.create_user(f"r{i}") for i in range(2)]

    postings = run_at_once(
        2, lambda i: review.apply_review_item(item, invno, users[i]).pk
    )
    run_tasks()

    assert postings[0] == postings[1]
    assert Posting.objects.get().state == Posting.State.POSTED
    assert (
        CashReceipt.objects.filter(reference=str(record["transaction_id"])).count() == 1
    )


def test_retry_now_pressed_twice_at_once_posts_once(
    paytrace_conn, sage, http, run_tasks, client, secret
):
    invno = sage.seed_invoice("ACME", "65.00")
    record = paytrace_record(invoice_id=invno, amount=Decimal("65.00"))
    body = event_body("transaction.approved", record)
    post_event(client, "paytrace-sandbox", body, sign(body, secret))
    auth = {"Authorization": f"Bearer {paytrace_conn.sagepro.password}"}
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "locked", "seconds": 600},
        content_type="application/json",
        headers=auth,
    )
    run_tasks()
    posting = Posting.objects.get()
    Posting.objects.filter(pk=posting.pk).update(
        state=Posting.State.DEAD
    )  # as after the last attempt
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "none"},
        content_type="application/json",
        headers=auth,
    )

    results = run_at_once(2, lambda i: review.retry_posting(posting))
    run_tasks()

    assert sorted(results) == [False, True]
    assert Posting.objects.get().state == Posting.State.POSTED
    assert (
        CashReceipt.objects.filter(reference=str(record["transaction_id"])).count() == 1
    )


def test_reviewers_deciding_at_once_each_count_once_and_one_mapping_is_accepted(
    paytrace_conn, sage, http, run_tasks, client, secret, django_user_model
):
    """Four reviewers place four payments of one payer at the same moment: the learned
    proposal counts four agreeing decisions (none lost), and two admins accepting it
    at once make one customer mapping."""
    from integrations import learning
    from mappings.models import MatchingProposal, PayerLink

    items = []
    for amount in ("21.00", "22.00", "23.00", "24.00"):
        invno = sage.seed_invoice("GRANIT", amount)
        record = paytrace_record(
            invoice_id="", customer_id="VAULT-9", amount=Decimal(amount)
        )
        body = event_body("transaction.approved", record)
        assert (
            post_event(client, "paytrace-sandbox", body, sign(body, secret)).status_code
            == 202
        )
        run_tasks()
        item = ReviewItem.objects.get(
            transaction__transaction_id=str(record["transaction_id"])
        )
        items.append((item, invno))
    reviewers = [django_user_model.objects.create_user(f"rev{i}") for i in range(4)]

    run_at_once(
        4, lambda i: review.apply_review_item(items[i][0], items[i][1], reviewers[i])
    )

    proposal = MatchingProposal.objects.get(subject="customer_id", key="VAULT-9")
    assert (proposal.agreeing, proposal.disagreeing, proposal.state) == (4, 0, "open")
    assert MatchingProposal.objects.filter(subject="customer_id").count() == 1

    admins = [django_user_model.objects.create_user(f"adm{i}") for i in range(2)]
    run_at_once(
        2,
        lambda i: learning.accept(
            MatchingProposal.objects.get(pk=proposal.pk), admins[i]
        ),
    )
    assert PayerLink.objects.filter(kind="customer_id", key="VAULT-9").count() == 1
