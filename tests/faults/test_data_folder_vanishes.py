"""The Sage Pro data folder vanishing (a file server dropping off the network).

Between two receipts: the agent answers `503 UNAVAILABLE`, writes nothing, reports
Sage Pro unreachable in its heartbeat, and the receipt posts on retry once the folder
is back. In the middle of a receipt (the folder renamed away right after the lines
are written, by a fault hook in the agent process): `503 UNAVAILABLE`, and once the
folder is back the agent finishes the receipt on its own, so nothing stays
half-written, and the portal's retry is answered with that receipt.
"""

import os
from decimal import Decimal

import pytest

from integrations.connectors.base import ConnectorError
from tests.faults.books import check_receipt_once, pick_invoices, read_books
from tests.faults.support import HERE, receipt_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def away(site):
    return site.folder.with_name(site.folder.name + ".away")


def test_a_folder_gone_between_two_receipts_answers_503_and_writes_nothing(site):
    custno, invnos = pick_invoices(site.folder)
    first = {invnos[0]: Decimal("12.00")}
    second = {invnos[1]: Decimal("8.00")}
    site.start()
    sage = site.sage(timeout=10)
    posted = sage.post_cash_receipt("gone-1", receipt_for(custno, "GONE-1", first))
    before = read_books(site.folder)

    os.rename(site.folder, away(site))
    receipt = receipt_for(custno, "GONE-2", second)
    with pytest.raises(ConnectorError) as refused:
        sage.post_cash_receipt("gone-2", receipt)
    error = refused.value
    assert (error.status, error.code) == (503, "UNAVAILABLE"), (
        f"with the Sage Pro folder gone the portal should be told to retry: {error!r}"
    )
    assert error.transient and not error.outcome_unknown
    assert str(site.folder) in str(error), f"the error names no folder: {error}"
    site.heartbeat(lambda a: a.sage_reachable is False, "Sage Pro reported unreachable")

    os.rename(away(site), site.folder)
    after = read_books(site.folder)
    assert after.counts == before.counts, "something was written while it was gone"
    site.heartbeat(lambda a: a.sage_reachable is True, "Sage Pro reachable again")
    again = sage.post_cash_receipt("gone-2", receipt)
    assert again["replayed"] is False
    assert again["receipt_no"] != posted["receipt_no"]
    check_receipt_once(
        site.folder, "GONE-2", before, second, receipt_no=again["receipt_no"]
    )


def test_a_folder_gone_in_the_middle_of_a_receipt_leaves_nothing_half_written(site):
    custno, invnos = pick_invoices(site.folder)
    applications = {invnos[0]: Decimal("30.00"), invnos[1]: Decimal("4.75")}
    receipt = receipt_for(custno, "VANISH-1", applications)
    before = read_books(site.folder)
    site.start(script=HERE / "vanishing_agent.py")

    with pytest.raises(ConnectorError) as refused:
        site.sage(timeout=10).post_cash_receipt("vanish-1", receipt)
    error = refused.value
    assert (error.status, error.code) == (503, "UNAVAILABLE"), (
        f"a folder lost mid-receipt should answer 503 (retry), not: {error!r}\n"
        f"{site.output()}"
    )
    assert not error.outcome_unknown
    assert away(site).is_dir() and not site.folder.exists(), (
        "the fault hook did not move the data folder away"
    )

    os.rename(away(site), site.folder)
    # The agent's background recovery finishes the receipt once Sage Pro is back.
    site.heartbeat(
        lambda a: a.journal_backlog == 0 and a.sage_reachable is True,
        "no unfinished receipt left",
    )
    check_receipt_once(site.folder, "VANISH-1", before, applications)

    again = site.sage(timeout=10).post_cash_receipt("vanish-1", receipt)
    assert again["replayed"] is True, "the portal's retry posted the payment again"
    check_receipt_once(
        site.folder, "VANISH-1", before, applications, receipt_no=again["receipt_no"]
    )
    site.agent.refresh_from_db()
    assert site.agent.needs_review_count == 0
