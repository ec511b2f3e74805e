"""The dispute report import, in a real browser: upload, the preview naming the bad
rows by line, the acknowledgement, and the result page."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from integrations.models.chargebacks import Chargeback, DisputeImport
from tests.factories import make_transaction

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "controller-pass-2025"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dispute_report.csv"


def test_a_dispute_report_import_shows_good_rows_created_and_bad_rows_by_line(
    live_server, live_connections, browser_page, screenshot
):
    _, paytrace = live_connections
    for tid, amount in (
        ("9000001", "100.00"),
        ("9000002", "25.00"),
        ("9000003", "60.00"),
        ("9000004", "100.00"),
    ):
        make_transaction(paytrace, transaction_id=tid, amount=Decimal(amount))
    get_user_model().objects.create_superuser("controller", "c@example.com", PASSWORD)
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "controller")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    page.goto(f"{live_server.url}/admin/integrations/chargeback/")
    page.click("text=Import a dispute report")
    page.set_input_files("#id_report", str(FIXTURE))
    page.click("#check-file")

    page.wait_for_selector("#import-rows")
    assert "Line 5: unknown transaction id 9999999" in page.inner_text("#line-5")
    assert not Chargeback.objects.exists()  # a preview imports nothing
    page.check("#skip-bad")
    page.click("#import-good")

    page.wait_for_selector("#import-counts")
    counts = page.inner_text("#import-counts")
    assert "4 new chargebacks" in counts
    assert "7 bad rows left out" in counts
    assert "Done: new chargeback" in page.inner_text("#line-2")
    assert "amount '=1+2' is not a number" in page.inner_text("#line-6")
    assert "4111 1111 1111 1111" not in page.content()
    assert DisputeImport.objects.get().state == DisputeImport.State.IMPORTED
    assert Chargeback.objects.count() == 4
    screenshot("chargeback-import")
