"""The agent's journal deleted while the agent is stopped.

The journal is what makes a repeated request safe (it maps idempotency keys to
receipts), so an agent that finds it gone refuses every write with `503 UNAVAILABLE`
naming the command an operator must run, while reads keep working. After
`python -m sagepro_agent confirm-journal --config …` writes are accepted again, and a
repeated request for a receipt written before the deletion still does not book the
payment twice: Sage Pro's own receipt table answers `DUPLICATE_RECEIPT` by reference.
"""

from decimal import Decimal

import pytest

from integrations.connectors.base import ConnectorError
from tests.faults.books import (
    check_invariants,
    check_receipt_once,
    pick_invoices,
    read_books,
)
from tests.faults.support import receipt_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_deleted_journal_stops_writes_until_an_operator_confirms(site):
    custno, invnos = pick_invoices(site.folder)
    first_apps = {invnos[0]: Decimal("40.00")}
    second_apps = {invnos[1]: Decimal("2.50")}
    first = receipt_for(custno, "JOURNAL-1", first_apps)
    second = receipt_for(custno, "JOURNAL-2", second_apps)
    before = read_books(site.folder)
    site.start()
    posted = site.sage(timeout=10).post_cash_receipt("journal-1", first)
    site.stop()

    for path in site.state.glob("journal.sqlite3*"):
        path.unlink()
    site.start()
    site.heartbeat(
        lambda a: "confirm-journal" in a.last_error, "the journal problem reported"
    )
    sage = site.sage(timeout=10)
    with pytest.raises(ConnectorError) as refused:
        sage.post_cash_receipt("journal-2", second)
    error = refused.value
    assert (error.status, error.code) == (503, "UNAVAILABLE"), repr(error)
    assert f"confirm-journal --config {site.config}" in str(error), (
        f"the refusal does not tell the operator what to run: {error}"
    )
    invoice = sage.get_invoice(invnos[1])
    assert invoice is not None and invoice["invno"] == invnos[1], "reads stopped too"
    assert check_invariants(site.folder).receipts_for("JOURNAL-2") == []

    site.stop()
    confirmed = site.cli("confirm-journal", "--config", str(site.config))
    assert confirmed.returncode == 0, confirmed.stderr
    site.start()

    with pytest.raises(ConnectorError) as duplicate:
        sage.post_cash_receipt("journal-1", first)
    error = duplicate.value
    assert (error.status, error.code) == (409, "DUPLICATE_RECEIPT"), (
        f"the payment posted before the journal was lost was not recognised: {error!r}"
    )
    assert posted["receipt_no"] in str(error), f"the error names no receipt: {error}"
    check_receipt_once(
        site.folder, "JOURNAL-1", before, first_apps, receipt_no=posted["receipt_no"]
    )

    again = sage.post_cash_receipt("journal-2", second)
    assert again["replayed"] is False
    check_receipt_once(
        site.folder, "JOURNAL-2", before, second_apps, receipt_no=again["receipt_no"]
    )
