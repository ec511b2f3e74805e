"""Reading the processor's dispute report and judging each row (pure functions)."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from mappings import disputes

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dispute_report.csv"
COLUMNS = {
    "case_number": "Case ID",
    "transaction_id": "Transaction ID",
    "amount": "Dispute Amount",
    "state": "Status",
    "opened_on": "Received Date",
    "due_on": "Reply By",
    "resolved_on": "Resolved Date",
    "reason_code": "Reason Code",
    "reason_text": "Reason",
    "fee": "Fee",
}
MAPPING = disputes.ReportMapping(COLUMNS, "%m/%d/%Y")
PAYMENTS = {
    "9000001": Decimal("100.00"),
    "9000002": Decimal("25.00"),
    "9000003": Decimal("60.00"),
    "9000004": Decimal("100.00"),
}


def mask(text):
    return text.replace("4111 1111 1111 1111", "************1111")


def verdicts(content=None):
    report = disputes.read_report(content or FIXTURE.read_bytes(), mask)
    return {r.line: r for r in disputes.check_rows(report, MAPPING, PAYMENTS)}


def test_it_reads_the_good_rows_with_decimal_amounts_and_dates():
    results = verdicts()
    good = {r.line: r.row for r in results.values() if r.is_good}
    assert sorted(good) == [2, 3, 4, 11]
    assert good[2].amount == Decimal("40.00")
    assert good[2].fee == Decimal("15.00")
    assert good[2].due_on == date(2026, 11, 20)
    assert good[3].amount == Decimal("25.00")
    assert good[3].state == "lost"
    assert good[3].event_on == date(2026, 11, 18)
    assert good[4].state == "won"


def test_it_names_each_bad_row_by_line_and_error():
    results = verdicts()
    errors = {line: " ".join(r.errors) for line, r in results.items() if not r.is_good}
    assert "unknown transaction id 9999999" in errors[5]
    assert "amount '=1+2' is not a number" in errors[6]
    assert "more than the payment's 100.00" in errors[7]
    assert "bad opened date '31/31/2026' (expected MM/DD/YYYY)" in errors[8]
    assert "unknown state 'Appealed'" in errors[9]
    assert "case CB-1001 is already on line 2 of this file" in errors[10]
    assert "missing column 'Dispute Amount'" in errors[12]


def test_formula_text_stays_text_and_card_numbers_are_masked():
    row = verdicts()[11].row
    assert row.reason_text.startswith('=HYPERLINK("http://evil.example"')
    assert "4111 1111" not in row.reason_text
    assert "************1111" in row.reason_text


def test_a_bom_and_windows_1252_are_read():
    text = "Case ID,Transaction ID,Dispute Amount,Status,Received Date,Reason\n"
    text += "CB-9,9000004,10.00,lost,11/02/2026,Caf\u00e9 refus\u00e9\n"
    with_bom = verdicts(b"\xef\xbb\xbf" + text.encode())
    assert with_bom[2].errors == ("a lost case needs its resolved date",)
    report = disputes.read_report(text.encode("cp1252"), mask)
    assert report.notes == ("Not UTF-8: read as Windows-1252.",)
    assert report.rows[0][1]["Reason"] == "Caf\u00e9 refus\u00e9"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary", "not a CSV text file"),
        (b"a" * (disputes.MAX_BYTES + 1), "at most 2,000,000 bytes"),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(content, message):
    with pytest.raises(disputes.ReportError, match=message):
        disputes.read_report(content, mask)


def test_too_many_rows_are_refused():
    content = "Case ID\n" + "x\n" * (disputes.MAX_ROWS + 1)
    with pytest.raises(disputes.ReportError, match="more than 5,000 rows"):
        disputes.read_report(content.encode(), mask)


def test_a_mapped_column_missing_from_the_file_is_named():
    report = disputes.read_report(b"Case ID,Status\nCB-1,open\n", mask)
    missing = disputes.missing_columns(report, MAPPING)
    assert "column 'Transaction ID' (paytrace transaction id) is not in the file" in (
        missing
    )


def test_the_mapping_and_date_format_are_guessed_from_the_header():
    report = disputes.read_report(FIXTURE.read_bytes(), mask)
    columns = disputes.guess_mapping(report.headers)
    assert columns == COLUMNS
    assert disputes.guess_date_format(report, columns) == "%m/%d/%Y"
    assert disputes.ReportMapping(columns, "%m/%d/%Y").problems() == []
    assert (
        disputes.ReportMapping({}, "%Y").problems()[-1] == "Unknown date format '%Y'."
    )


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("$1,234.50", Decimal("1234.50")),
        ("(25.00)", Decimal("25.00")),
        ("-25", Decimal("25.00")),
        ("1e3", None),
        ("NaN", None),
        ("12.345", None),
        ("=SUM(A1)", None),
    ],
)
def test_money_is_read_as_decimal_or_refused(text, amount):
    assert disputes.parse_money(text) == amount
