"""Two finance managers sign the same override at the same moment, on PostgreSQL with
real threads: the correction is applied once (one "correct" decision, one send), and
the other manager is told it was already signed. The request's row lock is what keeps
it so."""

from decimal import Decimal

import pytest

from integrations import review
from integrations.models import PaymentTransaction, Posting, ReviewItem
from integrations.models.review import OverrideRequest
from integrations.roles import FINANCE_MANAGER, FINANCE_REVIEWER
from integrations.sandbox.sagepro.models import CashReceipt
from mappings.models import GlRule
from tests.factories import make_user
from tests.support.threads import POSTGRES_ONLY, run_at_once
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = POSTGRES_ONLY


@pytest.fixture
def waiting(client, paytrace_conn, secret, http, run_tasks, sage):
    """A reviewer's correction of a receipt stopped on an inactive GL account,
    awaiting its second signature."""
    GlRule.objects.create(
        connection=paytrace_conn, name="Old bank", priority=1, account="6900-00"
    )
    record = paytrace_record(
        amount=Decimal("25.00"), invoice_id=sage.seed_invoice("ACME", "500.00")
    )
    body = event_body("transaction.approved", record)
    post_event(client, "paytrace-sandbox", body, sign(body, secret))
    run_tasks()
    txn = PaymentTransaction.objects.get(transaction_id=str(record["transaction_id"]))
    item = ReviewItem.objects.get(transaction=txn, kind=ReviewItem.Kind.VALIDATION)
    reviewer = make_user(group=FINANCE_REVIEWER, username="rita")
    return review.request_override(item, reviewer, {"gl_account": "1100-00"})


def test_two_managers_signing_at_once_apply_the_correction_once(waiting, run_tasks):
    managers = [
        make_user(group=FINANCE_MANAGER, username=name) for name in ("max", "mia")
    ]

    def sign_as(i):
        try:
            return review.sign_override(waiting, managers[i])
        except review.ReviewError as exc:
            return exc

    results = run_at_once(2, sign_as)
    run_tasks()

    refused = [r for r in results if isinstance(r, review.ReviewError)]
    assert len(refused) == 1, results
    assert "already signed and applied" in str(refused[0])
    item = waiting.item
    assert item.decisions.filter(action="correct").count() == 1
    assert item.decisions.filter(action="override_signed").count() == 1
    assert OverrideRequest.objects.get().state == OverrideRequest.State.SIGNED
    posting = Posting.objects.get(pk=waiting.posting_id)
    assert posting.state == Posting.State.POSTED
    receipt = CashReceipt.objects.get(reference=item.transaction.transaction_id)
    assert receipt.glacnt.strip() == "1100-00"
