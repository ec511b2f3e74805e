"""Contract 7: `GET /cash-receipts?date_from=…&date_to=…` with keyset paging."""

import pytest

from tests.conformance.contract import check_receipt, expect_error, ok, receipt_body


def post_on(target, key, date):
    body = receipt_body(target, reference=f"ref-{key}", amount="1.00")
    body["date"] = date.isoformat()
    receipt = ok(target.post_receipt(key, body), 201)
    check_receipt(receipt)
    return receipt


@pytest.fixture
def dated(target):
    """Seven receipts: 1, 2, 4, 6 dated in the current period (days 3, 10, 10, 20), 3
    and 7 last month, 5 on the first of the current period."""
    dates = [
        target.period_date(0, 3),
        target.period_date(0, 10),
        target.period_date(-1, 28),
        target.period_date(0, 10),
        target.period_date(0, 1),
        target.period_date(0, 20),
        target.period_date(-1, 1),
    ]
    receipts = [post_on(target, f"k{i}", d) for i, d in enumerate(dates, 1)]
    return target, receipts


def listing(target, **params):
    return target.get("/cash-receipts", **params)


def read_all(target, limit, **params):
    pages, cursor = [], None
    while True:
        query = dict(params, limit=str(limit))
        if cursor:
            query["cursor"] = cursor
        page = ok(listing(target, **query))
        assert set(page) == {"results", "next_cursor"}
        pages.append([r["receipt_no"] for r in page["results"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert cursor == page["results"][-1]["receipt_no"]  # keyset: the last number


def test_the_range_is_inclusive_and_in_receipt_number_order(dated):
    target, receipts = dated
    page = ok(
        listing(
            target,
            date_from=target.period_date(0, 1).isoformat(),
            date_to=target.period_date(0, 20).isoformat(),
        )
    )
    assert [r["receipt_no"] for r in page["results"]] == [
        "000001",
        "000002",
        "000004",
        "000005",
        "000006",
    ]
    assert page["next_cursor"] is None
    by_number = {r["receipt_no"]: r for r in receipts}
    for row in page["results"]:
        assert row == by_number[row["receipt_no"]]


def test_one_day(dated):
    target, _ = dated
    day = target.period_date(0, 10).isoformat()
    page = ok(listing(target, date_from=day, date_to=day))
    assert [r["receipt_no"] for r in page["results"]] == ["000002", "000004"]


def test_a_range_with_nothing_in_it(dated):
    target, _ = dated
    page = ok(
        listing(
            target,
            date_from=target.period_date(0, 21).isoformat(),
            date_to=target.period_date(0, 28).isoformat(),
        )
    )
    assert page == {"results": [], "next_cursor": None}


@pytest.mark.parametrize(
    "limit, pages",
    [
        (
            1,
            [
                ["000001"],
                ["000002"],
                ["000003"],
                ["000004"],
                ["000005"],
                ["000006"],
                ["000007"],
            ],
        ),
        (
            2,
            [
                ["000001", "000002"],
                ["000003", "000004"],
                ["000005", "000006"],
                ["000007"],
            ],
        ),
        (
            3,
            [
                ["000001", "000002", "000003"],
                ["000004", "000005", "000006"],
                ["000007"],
            ],
        ),
        (7, [["000001", "000002", "000003", "000004", "000005", "000006", "000007"]]),
        (
            5000,
            [["000001", "000002", "000003", "000004", "000005", "000006", "000007"]],
        ),
    ],
)
def test_pages_follow_the_cursor_with_nothing_missed_or_repeated(dated, limit, pages):
    target, _ = dated
    got = read_all(
        target,
        limit,
        date_from=target.period_date(-1, 1).isoformat(),
        date_to=target.period_date(0, 28).isoformat(),
    )
    if got[-1] == [] and len(got) > 1:
        # A page that fills `limit` exactly may announce an empty next page.
        got = got[:-1]
    assert got == pages


def test_a_receipt_posted_between_pages_is_met_on_a_later_page(dated):
    target, _ = dated
    params = {
        "date_from": target.period_date(-1, 1).isoformat(),
        "date_to": target.period_date(0, 28).isoformat(),
        "limit": "4",
    }
    first = ok(listing(target, **params))
    post_on(target, "k8", target.period_date(-1, 2))
    second = ok(listing(target, **params, cursor=first["next_cursor"]))
    assert [r["receipt_no"] for r in second["results"]] == [
        "000005",
        "000006",
        "000007",
        "000008",
    ]


def test_the_default_limit_is_1000(dated):
    target, _ = dated
    page = ok(
        listing(
            target,
            date_from=target.period_date(-1, 1).isoformat(),
            date_to=target.period_date(0, 28).isoformat(),
        )
    )
    assert len(page["results"]) == 7 and page["next_cursor"] is None


@pytest.mark.parametrize(
    "params, fields",
    [
        ({"date_to": "2025-05-31"}, {"date_from"}),
        ({"date_from": "2025-05-01"}, {"date_to"}),
        ({"cursor": "000001"}, {"date_from", "date_to"}),
        ({"date_from": "2025-5-1", "date_to": "2025-05-31"}, {"date_from"}),
        ({"date_from": "2025-05-01", "date_to": "2025-02-30"}, {"date_to"}),
        ({"date_from": "", "date_to": ""}, {"date_from", "date_to"}),
        ({"date_from": "2025-05-02", "date_to": "2025-05-01"}, {"date_to"}),
        ({"date_from": "2025-05-01", "date_to": "2025-05-31", "limit": "0"}, {"limit"}),
        (
            {"date_from": "2025-05-01", "date_to": "2025-05-31", "limit": "5001"},
            {"limit"},
        ),
        (
            {"date_from": "2025-05-01", "date_to": "2025-05-31", "limit": "-1"},
            {"limit"},
        ),
        (
            {"date_from": "2025-05-01", "date_to": "2025-05-31", "limit": "ten"},
            {"limit"},
        ),
        (
            {"date_from": "2025-05-01", "date_to": "2025-05-31", "limit": "1.5"},
            {"limit"},
        ),
        ({"date_from": "2025-05-01", "date_to": "2025-05-31", "limit": ""}, {"limit"}),
        (
            {
                "date_from": "2025-05-01",
                "date_to": "2025-05-31",
                "cursor": "12345678901",
            },
            {"cursor"},
        ),
        (
            {"date_from": "x", "date_to": "y", "limit": "0"},
            {"date_from", "date_to", "limit"},
        ),
    ],
)
def test_bad_parameters_are_400_naming_them(target, params, fields):
    expect_error(listing(target, **params), 400, "VALIDATION_ERROR", fields=fields)


def test_without_dates_or_cursor_it_is_the_search(dated):
    target, receipts = dated
    page = ok(listing(target, limit="2"))
    assert set(page) == {"results"}
    assert [r["receipt_no"] for r in page["results"]] == [
        r["receipt_no"] for r in reversed(receipts)
    ]
