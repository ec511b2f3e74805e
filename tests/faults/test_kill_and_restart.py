"""The agent killed in the middle of a receipt, then restarted.

For each write step (S1 number ... S6 publish) and for points inside the fixture
store's own writes (a record appended but not counted, an index built but not renamed
into place, ...), the portal posts a receipt through the relay to an agent started with
that kill point. The agent dies; the portal's call ends as outcome unknown. The agent
is restarted plainly and finishes the receipt before it takes new work; the portal's
look-up by idempotency key finds exactly one receipt, a replay of the request answers
with that same receipt, and independent readers find the books whole: one receipt,
its lines, each invoice paid once, balances that add up, nothing left marked in
progress, every table and index intact.
"""

from decimal import Decimal

import pytest

from integrations.connectors.base import ConnectorError
from tests.faults.books import check_receipt_once, pick_invoices, read_books
from tests.faults.support import receipt_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

KILL_POINTS = [
    "exit_after:S1",  # number taken, no header yet
    "exit_after:S2",  # header written with the in-progress marker
    "exit_after:S3:2",  # the second application line written
    "exit_after:S4:1",  # the first invoice paid, the second not
    "exit_after:S4:2",  # both invoices paid, customer not updated
    "exit_after:S5",  # customer balance updated, markers still set
    "exit_after:S6",  # markers cleared, journal not yet DONE
    # Inside the fixture store's writes:
    "store:append:record-written@ARCASH01",  # header bytes written, count not
    "store:cdx:built-not-renamed@ARCASH01",  # header counted, new index not in place
    "store:append:count-written@ARCAPP01",  # line counted, index not rebuilt
    "store:update:record-written@ARMAST01",  # invoice rewritten, index not rebuilt
]


@pytest.mark.parametrize("fault", KILL_POINTS)
def test_a_receipt_interrupted_by_a_kill_is_written_once_after_restart(site, fault):
    custno, invnos = pick_invoices(site.folder)
    applications = {invnos[0]: Decimal("10.00"), invnos[1]: Decimal("15.50")}
    reference = "KILL-" + fault.split(":")[1].upper()[:20]
    key = f"fault-{fault}"
    receipt = receipt_for(custno, reference, applications)
    before = read_books(site.folder)

    site.start(fault)
    with pytest.raises(ConnectorError) as lost:
        site.sage(timeout=5).post_cash_receipt(key, receipt)
    assert lost.value.code == "TIMEOUT" and lost.value.outcome_unknown, (
        f"the portal should not know whether the receipt was posted: {lost.value!r}"
    )
    assert site.wait_exit() == 137, (
        f"the agent was not killed at {fault}:\n{site.output()}"
    )

    site.start()  # plain; its first heartbeat comes after the start-up recovery
    sage = site.sage()
    found = sage.find_cash_receipts(idempotency_key=key)
    assert len(found) == 1, (
        f"after the restart the portal's look-up by key finds {len(found)} receipts "
        f"for payment {reference}, not one:\n{site.output()}"
    )
    again = sage.post_cash_receipt(key, receipt)
    assert again["replayed"] is True, "sending the payment again posted it again"
    assert again["receipt_no"] == found[0]["receipt_no"]
    assert again["amount"] == Decimal("25.50")

    check_receipt_once(
        site.folder, reference, before, applications, receipt_no=again["receipt_no"]
    )
    site.agent.refresh_from_db()
    assert site.agent.journal_backlog == 0 and site.agent.needs_review_count == 0, (
        "the agent still reports unfinished or flagged receipts after recovering"
    )
