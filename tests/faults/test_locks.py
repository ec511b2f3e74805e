"""FoxPro locks held by another process (another Sage Pro user's program).

A helper process holds, with a POSIX lock at Visual FoxPro's lock offset, either the
record lock of an invoice the receipt pays or the header (append) lock of the receipt
table. The agent waits its bounded `reprocess` time and answers `423 RECORD_LOCKED`;
through the relay the portal's connector raises a transient `RECORD_LOCKED` (the
pipeline retries it later). Once the holder lets go, the same request posts the
receipt (201) and the books are whole.
"""

from decimal import Decimal

import pytest

from integrations.connectors.base import ConnectorError
from tests.faults.books import (
    check_receipt_once,
    dbf_path,
    pick_invoices,
    read_books,
)
from tests.faults.support import LOCKPOS, LockHolder, receipt_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("what", ["invoice record", "receipt table header"])
def test_a_lock_held_by_another_user_answers_423_then_the_retry_posts(site, what):
    # The background recovery would finish the receipt on its own once the lock goes;
    # a long scan interval leaves the retry to the portal, as the test means.
    site.write_config(reprocess=0.5, scan_interval=600)
    custno, invnos = pick_invoices(site.folder)
    applications = {invnos[0]: Decimal("20.00"), invnos[1]: Decimal("5.25")}
    before = read_books(site.folder)
    if what == "invoice record":
        path = dbf_path(site.folder, "invoices")
        offset = LOCKPOS - before.invoices[invnos[1]]["_recno"]
    else:
        path = dbf_path(site.folder, "receipts")
        offset = LOCKPOS
    reference = "LOCK-" + what.split()[1].upper()
    receipt = receipt_for(custno, reference, applications)
    key = f"lock-{what}"
    site.start()

    holder = LockHolder(path, offset)
    try:
        with pytest.raises(ConnectorError) as refused:
            site.sage(timeout=10).post_cash_receipt(key, receipt)
        error = refused.value
        assert (error.status, error.code) == (423, "RECORD_LOCKED"), (
            f"a Sage Pro user holding the {what} should make the portal wait and "
            f"retry, not: {error!r}"
        )
        assert error.transient and not error.outcome_unknown
        assert "locked" in str(error).lower(), str(error)
    finally:
        holder.release()
        holder.close()

    posted = site.sage(timeout=10).post_cash_receipt(key, receipt)
    assert posted["replayed"] is False, "the retry after the lock went was a replay"
    assert posted["amount"] == Decimal("25.25")
    check_receipt_once(
        site.folder, reference, before, applications, receipt_no=posted["receipt_no"]
    )
