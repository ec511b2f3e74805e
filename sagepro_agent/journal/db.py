"""The journal: SQLite, WAL, `synchronous=FULL`, on the agent's own disk.

Tables:
- `meta`: the install id (the journal-deleted guard, see `sagepro_agent.agent`) and the
  change counter;
- `receipts`: one entry per accepted `POST /cash-receipts` (key, request hash, plan,
  state, progress, response). At most one entry per company and key is not `VOID`
  (a receipt a Sage user deleted frees its key, as in the sandbox);
- `step_log`: every state change, for the operator;
- `row_state`: the change journal. One row per company, kind (`invoices`/`customers`)
  and key: the hash of what the contract exposes, the rendered row, its deleted flag and
  `seq`, the change number it was last given. Every change takes the next number from
  `meta.change_seq` inside the writing transaction; SQLite serialises writers, so
  numbers follow commit order and a feed reader never meets a lower number later.

One connection shared by the agent's threads, each call under one lock.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PLANNED = "PLANNED"
NUMBERED = "NUMBERED"
HEADER_WRITTEN = "HEADER_WRITTEN"
LINES_WRITTEN = "LINES_WRITTEN"
INVOICES_APPLIED = "INVOICES_APPLIED"
CUSTOMER_UPDATED = "CUSTOMER_UPDATED"
DONE = "DONE"
NEEDS_REVIEW = "NEEDS_REVIEW"
VOID = "VOID"  # its receipt was deleted in Sage: the key and reference are free again
IN_PROGRESS = (
    PLANNED,
    NUMBERED,
    HEADER_WRITTEN,
    LINES_WRITTEN,
    INVOICES_APPLIED,
    CUSTOMER_UPDATED,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  company TEXT NOT NULL, idem_key TEXT NOT NULL, req_hash TEXT NOT NULL,
  reference TEXT NOT NULL, state TEXT NOT NULL, receipt_no TEXT,
  plan_json TEXT NOT NULL, progress_json TEXT NOT NULL DEFAULT '{}',
  response_json TEXT, detail TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS receipts_live_key
  ON receipts(company, idem_key) WHERE state <> 'VOID';
CREATE INDEX IF NOT EXISTS receipts_reference ON receipts(company, reference);
CREATE INDEX IF NOT EXISTS receipts_number ON receipts(company, receipt_no);
CREATE INDEX IF NOT EXISTS receipts_state ON receipts(state);
CREATE TABLE IF NOT EXISTS step_log(
  entry_id INTEGER NOT NULL, state TEXT NOT NULL, detail TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS row_state(
  company TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
  hash TEXT NOT NULL, deleted INTEGER NOT NULL, body_json TEXT NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY(company, kind, key));
CREATE INDEX IF NOT EXISTS row_state_seq ON row_state(company, kind, seq);
"""


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def row_hash(body: dict[str, Any], deleted: bool) -> str:
    text = json.dumps([body, deleted], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Entry:
    id: int
    company: str
    idem_key: str
    req_hash: str
    reference: str
    state: str
    receipt_no: str | None
    plan: dict[str, Any]
    progress: dict[str, Any]
    response: dict[str, Any] | None
    detail: str
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Entry:
        return cls(
            id=row["id"],
            company=row["company"],
            idem_key=row["idem_key"],
            req_hash=row["req_hash"],
            reference=row["reference"],
            state=row["state"],
            receipt_no=row["receipt_no"],
            plan=json.loads(row["plan_json"]),
            progress=json.loads(row["progress_json"]),
            response=json.loads(row["response_json"]) if row["response_json"] else None,
            detail=row["detail"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True)
class Change:
    """One row of the change journal to record: its key, rendered body, deleted flag."""

    kind: str  # "invoices" | "customers"
    key: str  # trimmed contract key
    body: dict[str, Any]
    deleted: bool


class Journal:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self.existed = os.path.exists(self.path)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(
            self.path, isolation_level=None, timeout=30, check_same_thread=False
        )
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self._identity = self._stat()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # --- the journal-deleted guard -----------------------------------------------------

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def is_intact(self) -> bool:
        """False when the file this connection opened was deleted or replaced."""
        return self._identity is not None and self._stat() == self._identity

    @property
    def install_id(self) -> str | None:
        return self.get_meta("install_id")

    def ensure_install_id(self) -> str:
        with self._lock:
            current = self.install_id
            if current is None:
                current = uuid.uuid4().hex
                self.set_meta("install_id", current)
            return current

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self.db.execute(
                "SELECT value FROM meta WHERE key=?", (key,)
            ).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self.transaction():
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # --- receipts ------------------------------------------------------------------------

    def _select(self, where: str, params: tuple[Any, ...]) -> list[Entry]:
        with self._lock:
            rows = self.db.execute(
                f"SELECT * FROM receipts WHERE {where} ORDER BY id", params
            ).fetchall()
        return [Entry.from_row(r) for r in rows]

    def active_entry(self, company: str, idem_key: str) -> Entry | None:
        found = self._select(
            "company=? AND idem_key=? AND state<>?", (company, idem_key, VOID)
        )
        return found[0] if found else None

    def entry(self, entry_id: int) -> Entry:
        return self._select("id=?", (entry_id,))[0]

    def entries_with_reference(self, company: str, reference: str) -> list[Entry]:
        return self._select(
            "company=? AND reference=? AND state<>?", (company, reference, VOID)
        )

    def unfinished(self) -> list[Entry]:
        marks = ",".join("?" * len(IN_PROGRESS))
        return self._select(f"state IN ({marks})", IN_PROGRESS)

    def key_for_receipt(self, company: str, receipt_no: str) -> str:
        """The idempotency key a receipt was posted with ("" for one keyed in Sage)."""
        found = self._select(
            "company=? AND receipt_no=? AND state=?", (company, receipt_no, DONE)
        )
        return found[-1].idem_key if found else ""

    def receipts_for_key(self, company: str, idem_key: str) -> list[str]:
        return [
            e.receipt_no
            for e in self._select(
                "company=? AND idem_key=? AND state=?", (company, idem_key, DONE)
            )
            if e.receipt_no
        ]

    def insert(
        self,
        company: str,
        idem_key: str,
        req_hash: str,
        reference: str,
        plan: dict[str, Any],
    ) -> Entry:
        stamp = now_iso()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO receipts(company, idem_key, req_hash, reference, state,"
                " plan_json, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                (
                    company,
                    idem_key,
                    req_hash,
                    reference,
                    PLANNED,
                    json.dumps(plan),
                    stamp,
                    stamp,
                ),
            )
            entry_id = int(cur.lastrowid or 0)
            db.execute(
                "INSERT INTO step_log VALUES (?,?,?,?)",
                (entry_id, PLANNED, "planned", stamp),
            )
        return self.entry(entry_id)

    def advance(
        self,
        entry: Entry,
        state: str,
        detail: str,
        *,
        receipt_no: str | None = None,
        response: dict[str, Any] | None = None,
        changes: Iterable[Change] = (),
    ) -> None:
        """Record a step: the entry's new state (and number, progress, response) and,
        in the same SQLite transaction, the change-journal rows it produced."""
        stamp = now_iso()
        if receipt_no is not None:
            entry.receipt_no = receipt_no
        if response is not None:
            entry.response = response
        with self.transaction() as db:
            db.execute(
                "UPDATE receipts SET state=?, receipt_no=?, progress_json=?,"
                " response_json=?, detail=?, updated_at=? WHERE id=?",
                (
                    state,
                    entry.receipt_no,
                    json.dumps(entry.progress),
                    json.dumps(entry.response) if entry.response is not None else None,
                    detail if state in (NEEDS_REVIEW, VOID) else entry.detail,
                    stamp,
                    entry.id,
                ),
            )
            db.execute(
                "INSERT INTO step_log VALUES (?,?,?,?)",
                (entry.id, state, detail, stamp),
            )
            self._record(db, entry.company, changes)
        entry.state = state
        if state in (NEEDS_REVIEW, VOID):
            entry.detail = detail
        entry.updated_at = stamp

    def backlog(self) -> int:
        """Entries accepted but not finished (they are finished before new work)."""
        return len(self.unfinished())

    def needs_review(self) -> list[dict[str, Any]]:
        return [
            {
                "company": e.company,
                "idempotency_key": e.idem_key,
                "reference": e.reference,
                "receipt_no": (e.receipt_no or "").strip(),
                "detail": e.detail,
                "since": e.updated_at,
            }
            for e in self._select("state=?", (NEEDS_REVIEW,))
        ]

    def steps(self, entry_id: int) -> list[tuple[str, str]]:
        with self._lock:
            rows = self.db.execute(
                "SELECT state, detail FROM step_log WHERE entry_id=? ORDER BY rowid",
                (entry_id,),
            ).fetchall()
        return [(r["state"], r["detail"]) for r in rows]

    # --- the change journal ------------------------------------------------------------

    def _record(
        self, db: sqlite3.Connection, company: str, changes: Iterable[Change]
    ) -> int:
        """Give every row whose hash changed the next change number; return how many."""
        recorded = 0
        for change in changes:
            digest = row_hash(change.body, change.deleted)
            old = db.execute(
                "SELECT hash FROM row_state WHERE company=? AND kind=? AND key=?",
                (company, change.kind, change.key),
            ).fetchone()
            if old is not None and old["hash"] == digest:
                continue
            seq = self._next_seq(db)
            db.execute(
                "INSERT INTO row_state(company, kind, key, hash, deleted, body_json, seq)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT(company, kind, key) DO UPDATE SET"
                " hash=excluded.hash, deleted=excluded.deleted,"
                " body_json=excluded.body_json, seq=excluded.seq",
                (
                    company,
                    change.kind,
                    change.key,
                    digest,
                    int(change.deleted),
                    json.dumps(change.body),
                    seq,
                ),
            )
            recorded += 1
        return recorded

    def _next_seq(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key='change_seq'").fetchone()
        seq = int(row["value"]) + 1 if row else 1
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('change_seq', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(seq),),
        )
        return seq

    def record(self, company: str, changes: Iterable[Change]) -> int:
        with self.transaction() as db:
            return self._record(db, company, changes)

    def known_keys(self, company: str, kind: str) -> dict[str, bool]:
        """Every key journalled for this company and kind -> its deleted flag."""
        with self._lock:
            rows = self.db.execute(
                "SELECT key, deleted FROM row_state WHERE company=? AND kind=?",
                (company, kind),
            ).fetchall()
        return {r["key"]: bool(r["deleted"]) for r in rows}

    def body(self, company: str, kind: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute(
                "SELECT body_json FROM row_state WHERE company=? AND kind=? AND key=?",
                (company, kind, key),
            ).fetchone()
        return json.loads(row["body_json"]) if row else None

    def feed(
        self, company: str, kind: str, after: int, limit: int
    ) -> list[tuple[int, dict[str, Any], bool]]:
        """Rows changed after position `after`, oldest change first, at most `limit`."""
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, body_json, deleted FROM row_state"
                " WHERE company=? AND kind=? AND seq>? ORDER BY seq LIMIT ?",
                (company, kind, after, limit),
            ).fetchall()
        return [
            (r["seq"], json.loads(r["body_json"]), bool(r["deleted"])) for r in rows
        ]
