"""The change-journal scanner (contract section 8, "What an agent over FoxPro must do").

DBF tables have no rowversion and no triggers the agent can rely on, so the agent reads
`ARMAST`/`ARCUST`, hashes what the contract exposes of each row plus its deleted flag,
and journals every key that is new, changed, deleted, or gone (a row that vanished
after a PACK is journalled as deleted, with its last known values). A change made and
undone between two scans is not seen; the feed promises current state, not history.
"""

from __future__ import annotations

from typing import Any

from sagepro_agent.core import reads
from sagepro_agent.journal.db import Change, Journal
from sagepro_agent.store.base import Row, Store

KINDS = ("invoices", "customers")


def render(kind: str, row: Row, compid: str) -> tuple[str, dict[str, Any]]:
    if kind == "invoices":
        return reads.text(row["INVNO"]).strip(), reads.invoice_json(row)
    return reads.text(row["CUSTNO"]).strip(), reads.customer_json(row, compid)


def current_rows(store: Store, compid: str, kind: str) -> dict[str, tuple[dict, bool]]:
    """Every key of the table -> (rendered row, deleted); a live row wins over deleted
    copies of the same key (FoxPro keeps deleted rows until a PACK)."""
    out: dict[str, tuple[dict, bool]] = {}
    for row in store.table(compid, kind).rows(include_deleted=True):
        key, body = render(kind, row, compid)
        if key in out and not out[key][1] and row.deleted:
            continue
        out[key] = (body, row.deleted)
    return out


def scan(
    store: Store,
    journal: Journal,
    compid: str,
    kinds: tuple[str, ...] = KINDS,
) -> dict[str, int]:
    """Journal what changed since the last scan; return how many rows per kind."""
    counts = {}
    for kind in kinds:
        rows = current_rows(store, compid, kind)
        changes = [
            Change(kind, key, body, deleted) for key, (body, deleted) in rows.items()
        ]
        for key, was_deleted in journal.known_keys(compid, kind).items():
            if key not in rows and not was_deleted:
                last = journal.body(compid, kind, key) or {}
                changes.append(Change(kind, key, last, True))
        counts[kind] = journal.record(compid, changes)
    return counts
