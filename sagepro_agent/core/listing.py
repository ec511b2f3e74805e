"""`GET /cash-receipts?date_from=…&date_to=…[&limit][&cursor]`: receipts by date, a
page at a time, keyed by receipt number (contract section 7; sandbox `listing.py`)."""

from __future__ import annotations

from typing import Any

from sagepro_agent.core import keys, reads
from sagepro_agent.core.errors import ValidationError
from sagepro_agent.core.validation import page_size, parse_date
from sagepro_agent.journal.db import Journal
from sagepro_agent.store.base import Store

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 5000
LISTING_PARAMS = ("date_from", "date_to", "cursor")


def receipt_listing(
    store: Store, journal: Journal, compid: str, params: dict[str, str]
) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    date_from = parse_date(params.get("date_from"), "date_from", errors)
    date_to = parse_date(params.get("date_to"), "date_to", errors)
    limit = page_size(params.get("limit"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, errors)
    cursor = params.get("cursor", "").strip()
    if cursor:
        try:
            cursor = keys.pad_receipt_no(cursor)
        except keys.InvalidKeyError:
            errors["cursor"] = ["is not a cursor this listing returned"]
    if not errors and date_to < date_from:
        errors["date_to"] = ["must not be before date_from"]
    if errors:
        raise ValidationError(errors)
    rows = [
        r
        for r in store.table(compid, "receipts").rows()
        if r["DTEPAID"] is not None
        and date_from <= r["DTEPAID"] <= date_to
        and (not cursor or r["RCPTNO"] > cursor)
    ]
    rows.sort(key=lambda r: r["RCPTNO"])
    page = rows[: limit + 1]
    more = len(page) > limit
    page = page[:limit]
    return {
        "results": [
            reads.receipt_json(
                store, compid, r, journal.key_for_receipt(compid, r["RCPTNO"])
            )
            for r in page
        ],
        "next_cursor": reads.text(page[-1]["RCPTNO"]).strip() if more else None,
    }
