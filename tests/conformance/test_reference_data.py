"""Contract 4.5 and 4.6: `GET /gl-accounts`, `GET /gl-accounts/{glacnt}`,
`GET /periods`."""

import calendar
from urllib.parse import quote

import pytest

from tests.conformance.contract import expect_error, ok

ACCOUNTS = [
    ("1000-00", "Cash - operating", "", True),
    ("1100-00", "Undeposited card receipts", "", True),
    ("1200-00", "Accounts receivable", "", True),
    ("2100-00", "Customer deposits", "", True),
    ("4000-00", "Sales", "", True),
    ("4900-00", "Sales discounts", "", True),
    ("6100-00", "Merchant card fees", "", True),
    ("6900-00", "Old bank charges", "I", False),
    ("9999-00", "Suspense", "", True),
]


def test_the_chart_of_accounts_without_deleted_accounts(target):
    rows = ok(target.call("GET", "/gl-accounts"))["results"]
    assert [
        (r["glacnt"], r["gldesc"], r["glstat"], r["active"]) for r in rows
    ] == ACCOUNTS
    for row in rows:
        assert set(row) == {"glacnt", "gldesc", "glstat", "active"}


@pytest.mark.parametrize("code", ["1100-00", "110000", " 1100-00 ", "11-00-00"])
def test_an_account_with_or_without_the_masks_dashes(target, code):
    body = ok(target.call("GET", f"/gl-accounts/{quote(code)}"))
    assert body == {
        "glacnt": "1100-00",
        "gldesc": "Undeposited card receipts",
        "glstat": "",
        "active": True,
    }


def test_an_inactive_account_reads_as_inactive(target):
    body = ok(target.call("GET", "/gl-accounts/690000"))
    assert (body["glacnt"], body["glstat"], body["active"]) == ("6900-00", "I", False)


@pytest.mark.parametrize("code", ["1050-00", "105000", "7777-00", "12345", "X" * 30])
def test_a_deleted_or_unknown_account_is_404(target, code):
    expect_error(target.call("GET", f"/gl-accounts/{code}"), 404, "ACCOUNT_NOT_FOUND")


def test_the_fiscal_calendar_around_today(target):
    rows = ok(target.call("GET", "/periods"))["results"]
    assert len(rows) == 16  # 12 months back to 3 ahead
    assert [r["yearprd"] for r in rows] == sorted(r["yearprd"] for r in rows)
    for offset, row in zip(range(-12, 4), rows, strict=True):
        start = target.period_date(offset, 1)
        last = calendar.monthrange(start.year, start.month)[1]
        assert row == {
            "yearprd": f"{start.year:04d}{start.month:02d}",
            "bdate": start.isoformat(),
            "edate": start.replace(day=last).isoformat(),
            "pclosed": offset <= -3,
            "plocked": offset == -2,
            "permlck": offset <= -4,
            "current": offset == 0,
        }, offset


def test_period_flags_read_back_as_set(target):
    target.set_period(0, plocked=True)
    target.set_period(-2)
    rows = {r["yearprd"]: r for r in ok(target.call("GET", "/periods"))["results"]}
    now = target.period_date(0).strftime("%Y%m")
    before = target.period_date(-2).strftime("%Y%m")
    assert (rows[now]["plocked"], rows[now]["current"]) == (True, True)
    assert (
        rows[before]["pclosed"],
        rows[before]["plocked"],
        rows[before]["permlck"],
    ) == (
        False,
        False,
        False,
    )
