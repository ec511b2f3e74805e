"""Change feeds of invoices and customers (contract section 8), served from the
journal's change positions (`sagepro_agent.journal.db`, `row_state`).

The cursor is a journal position as a decimal string; `""` or `"0"` is the beginning
(a full listing: the first scan journals every row). Each row answered is the single
GET's JSON as of its last journalled change, plus `"deleted"`.
"""

from __future__ import annotations

import re
from typing import Any

from sagepro_agent.core.errors import ValidationError
from sagepro_agent.core.validation import page_size
from sagepro_agent.journal.db import Journal

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
CURSOR_RE = re.compile(r"[0-9]{1,18}")


def parse_cursor(value: str, errors: dict[str, list[str]]) -> int:
    text = value.strip()
    if text == "":
        return 0
    if not CURSOR_RE.fullmatch(text):
        errors["changed_since"] = [
            "must be empty, 0 or a next_cursor this feed returned"
        ]
        return 0
    return int(text)


def change_page(
    journal: Journal, compid: str, kind: str, params: dict[str, str]
) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    after = parse_cursor(params.get("changed_since", ""), errors)
    limit = page_size(params.get("limit"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, errors)
    if errors:
        raise ValidationError(errors)
    rows = journal.feed(compid, kind, after, limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    if rows:
        after = rows[-1][0]
    return {
        "results": [{**body, "deleted": deleted} for _, body, deleted in rows],
        "next_cursor": str(after),
        "has_more": has_more,
    }
