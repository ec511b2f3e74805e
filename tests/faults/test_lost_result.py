"""A result lost on its way back to the portal: the agent wrote the receipt, but every
post of its answer is dropped by a proxy between the agent and the portal. The
portal's call ends as outcome unknown; its look-up by idempotency key finds the
receipt, and the payment pipeline records the posting without booking it twice.
"""

from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.connectors.base import ConnectorError
from integrations.models import RelayCommand
from tests.faults.books import check_receipt_once, pick_invoices, read_books
from tests.faults.support import receipt_for, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
RESULT_ATTEMPTS = 5  # the relay client's tries at posting one answer


def drop_first_receipt_answer(proxy):
    """Drop every post of the answer to the first POST command, keep the rest."""
    doomed = []

    def drop(command_id, data):
        if not doomed:
            posts = [c for c in proxy.commands if c["method"] == "POST"]
            if posts:
                doomed.append(posts[0]["id"])
        return command_id in doomed

    proxy.drop_result = drop
    return doomed


def test_a_lost_answer_is_found_by_key_and_a_replay_books_nothing_new(site, proxy):
    custno, invnos = pick_invoices(site.folder)
    applications = {invnos[0]: Decimal("33.00")}
    receipt = receipt_for(custno, "LOST-1", applications)
    before = read_books(site.folder)
    doomed = drop_first_receipt_answer(proxy)
    site.start()

    with pytest.raises(ConnectorError) as lost:
        site.sage(timeout=4).post_cash_receipt("lost-1", receipt)
    assert lost.value.code == "TIMEOUT" and lost.value.outcome_unknown, (
        f"a receipt whose answer was lost must be outcome unknown: {lost.value!r}"
    )
    assert RelayCommand.objects.get(pk=doomed[0]).state == "abandoned"
    wait_for(
        lambda: proxy.dropped.count(doomed[0]) >= RESULT_ATTEMPTS,
        "the agent to give up posting its answer",
    )

    sage = site.sage(timeout=6)
    found = sage.find_cash_receipts(idempotency_key="lost-1")
    assert [r["reference"] for r in found] == ["LOST-1"], (
        f"the portal's look-up by key does not find the receipt the agent wrote: {found}"
    )
    again = sage.post_cash_receipt("lost-1", receipt)
    assert again["replayed"] is True and again["receipt_no"] == found[0]["receipt_no"]
    check_receipt_once(
        site.folder, "LOST-1", before, applications, receipt_no=found[0]["receipt_no"]
    )


def test_the_pipeline_records_a_payment_whose_answer_was_lost_once(
    site, proxy, client, paytrace_conn, http, secret, run_tasks, settings
):
    """A PayTrace payment through the whole pipeline with the agent as Sage Pro: the
    first post's answer is lost, the posting fails as outcome unknown, its next
    attempt finds the receipt by key: posted, one receipt in ARCASH."""
    from integrations import posting as posting_module
    from integrations.models import Posting
    from tests.webhooks import event_body, paytrace_record, post_event, sign

    settings.OUTBOUND_TIMEOUT_SECONDS = 6
    _, invnos = pick_invoices(site.folder)
    before = read_books(site.folder)
    doomed = drop_first_receipt_answer(proxy)
    site.start()
    record = paytrace_record(amount=Decimal("100.00"), invoice_id=invnos[0])
    body = event_body("transaction.approved", record)

    response = post_event(client, "paytrace-sandbox", body, sign(body, secret))
    run_tasks()

    assert response.status_code == 202
    posting = paytrace_conn.transactions.get().postings.get()
    assert doomed, "the pipeline never sent the receipt through the relay"
    assert posting.state == "failed", (
        f"with the answer lost the posting should wait to be checked: {posting.state}"
    )
    reference = str(record["transaction_id"])
    assert len(read_books(site.folder).receipts_for(reference)) == 1, (
        "the agent did not write the receipt whose answer was lost"
    )
    wait_for(
        lambda: proxy.dropped.count(doomed[0]) >= RESULT_ATTEMPTS,
        "the agent to give up posting its answer",
    )

    Posting.objects.filter(pk=posting.pk).update(next_attempt_at=timezone.now())
    outcome = posting_module.send_posting(posting.pk)

    assert outcome == "posted (found by idempotency key)", outcome
    posting.refresh_from_db()
    assert posting.state == "posted"
    posts = [c for c in proxy.commands if c["method"] == "POST"]
    assert len(posts) == 1, "the pipeline sent the receipt to Sage Pro again"
    receipt = check_receipt_once(
        site.folder, reference, before, {invnos[0]: Decimal("100.00")}
    )
    assert receipt["RCPTNO"].strip() == posting.document_number.strip(), (
        "the posting shows another receipt number than Sage Pro holds"
    )
