"""The agent: the site mapping, a store, the journal and the gateway core, wired.

`build(config) -> Agent`; `Agent.start()` runs the start-up sequence before any new
work is taken:
1. the journal-deleted guard: the journal's install id must match the marker file kept
   next to the config. A journal that is missing, new or replaced while the marker
   exists means idempotency of earlier receipts may be lost, so every write is refused
   (503 UNAVAILABLE naming the command to run) until an operator runs
   `python -m sagepro_agent confirm-journal --config …`; reads keep working;
2. recovery: every unfinished journal entry is finished or flagged NEEDS_REVIEW.

While running: `scan()` (the change-journal scanner, on `agent.scan_interval`) and
`watchdog()` (the integrity check of the tables the agent writes, before the first
write to a table and every `agent.watchdog_interval` minutes; a failing table is no
longer written: writes touching it answer 503 naming it). `health()` is what the relay's
heartbeat sends.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from sagepro_agent import __version__
from sagepro_agent.config import SiteMapping, load
from sagepro_agent.core.errors import unavailable
from sagepro_agent.core.gateway import Gateway, utc_now
from sagepro_agent.core.receipts import RECEIPT_TABLES
from sagepro_agent.journal.db import Journal
from sagepro_agent.store.base import Locked, Store, StoreError

log = logging.getLogger("sagepro_agent")


def open_store(mapping: SiteMapping) -> Store:
    """The store the mapping names (imported lazily: vfpoledb needs Windows)."""
    if mapping.store_kind == "fixture":
        from sagepro_agent.store.fixture import FixtureStore

        return cast(
            Store,
            FixtureStore(
                mapping.data_path, reprocess=mapping.reprocess, user=mapping.agent_user
            ),
        )
    if mapping.store_kind == "vfpoledb":
        from sagepro_agent.store.vfpoledb.store import VfpOleDbStore

        return cast(
            Store,
            VfpOleDbStore(
                mapping.data_path,
                user=mapping.agent_user,
                tables=mapping.physical_names(),
                fields=mapping.field_renames(),
                reprocess=mapping.reprocess,
            ),
        )
    raise ValueError(f"unknown store kind {mapping.store_kind!r}")


class Agent:
    def __init__(
        self,
        mapping: SiteMapping,
        store: Store,
        journal: Journal,
        *,
        clock: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self.mapping = mapping
        self.store = store
        self.journal = journal
        self.clock = clock
        self.gateway = Gateway(
            mapping, store, journal, clock=clock, write_guard=self.check_writable
        )
        self.write_refusal: str | None = None
        self.started = False
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        # (company, table) -> (checked at (monotonic), problems)
        self._checks: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._last_integrity: dict[str, Any] | None = None
        self._watch_lock = threading.Lock()
        self._start_lock = threading.Lock()

    # --- start-up ------------------------------------------------------------------------

    @property
    def marker_path(self) -> str:
        return self.mapping.marker_path or self.mapping.journal_path + ".install-id"

    def confirm_command(self) -> str:
        config = self.mapping.path or "<site.toml>"
        return f"python -m sagepro_agent confirm-journal --config {config}"

    def start(self) -> list[tuple[str, str, str]]:
        """Check the journal's identity, then finish or flag unfinished entries."""
        self.check_journal_identity()
        self.repair_fixture()
        outcomes: list[tuple[str, str, str]] = []
        if self.write_refusal is None:
            outcomes = self.recover()
        self.started = True
        return outcomes

    def repair_fixture(self) -> None:
        """The fixture store only (its folder is marked as holding no live data): undo
        what a kill left half-done in the files (an orphan append, an index rebuilt but
        not renamed) before the journal resumes its entries. What it will not repair
        is left for the watchdog, which stops writes to that table."""
        repair = getattr(self.store, "recover", None)
        if not callable(repair):
            return
        result = repair()
        if str(result) != "nothing to repair":
            log.warning("fixture repair on start:\n%s", result)

    def recover(self) -> list[tuple[str, str, str]]:
        if self.write_refusal is not None:
            return []
        return self.gateway.receipts.recover()

    def check_journal_identity(self) -> None:
        marker = read_marker(self.marker_path)
        journal_id = self.journal.install_id
        if journal_id is None and marker is None:
            write_marker(self.marker_path, self.journal.ensure_install_id())
        elif journal_id is None or (marker is not None and marker != journal_id):
            self.write_refusal = (
                f"the journal {self.journal.path} is not the one this agent wrote "
                f"(install id {marker} in {self.marker_path}); it was deleted or replaced, "
                "so receipts posted before could be posted again. Writes are refused "
                "until an operator restores the journal or confirms this one with: "
                f"{self.confirm_command()}"
            )
            self.note_error(self.write_refusal)
            log.error(self.write_refusal)
        elif marker is None:
            write_marker(self.marker_path, journal_id)

    def confirm_journal(self) -> str:
        """The operator's confirmation: this journal is the one to use from now on."""
        install_id = self.journal.ensure_install_id()
        write_marker(self.marker_path, install_id)
        self.write_refusal = None
        return install_id

    # --- guards ---------------------------------------------------------------------------

    def check_writable(self, compid: str, tables: tuple[str, ...]) -> None:
        """Raise 503 when writes must not happen: the journal guard or the watchdog.

        An agent not started yet starts now, so unfinished entries are always finished
        or flagged before new work."""
        if not self.started:
            with self._start_lock:
                if not self.started:
                    self.start()
        if self.write_refusal is None and not self.journal.is_intact():
            self.write_refusal = (
                f"the journal {self.journal.path} was deleted or replaced while the agent "
                "ran; stop the agent, restore the journal or confirm a new one with: "
                f"{self.confirm_command()}"
            )
            self.note_error(self.write_refusal)
        if self.write_refusal is not None:
            raise unavailable(self.write_refusal)
        for name in tables or RECEIPT_TABLES:
            problems = self._table_problems(compid, name)
            if problems:
                raise unavailable(
                    f"table {self._physical(compid, name)} failed its integrity check and "
                    f"is not written until it passes again: {'; '.join(problems)}"
                )

    def _physical(self, compid: str, name: str) -> str:
        table = self.mapping.tables.get(name)
        return table.physical.format(co=compid) if table else name

    def _table_problems(self, compid: str, name: str) -> list[str]:
        interval = self.mapping.watchdog_interval * 60
        with self._watch_lock:
            seen = self._checks.get((compid, name))
            if seen is not None and time.monotonic() - seen[0] < interval:
                return seen[1]
        return self._check_table(compid, name)

    def _check_table(self, compid: str, name: str) -> list[str]:
        try:
            problems = self.store.check(compid, name)
        except Locked:
            # Someone holds the table for a moment: answer 423 now and check again
            # next time, rather than refusing writes for a whole watchdog interval.
            raise
        except StoreError as exc:
            # The data cannot be reached (share offline, folder gone): this call is
            # refused, and the next write checks again instead of waiting out the
            # interval.
            problems = [f"could not be checked: {exc}"]
            self.note_error(f"{self._physical(compid, name)}: {problems[0]}")
            return problems
        with self._watch_lock:
            self._checks[(compid, name)] = (time.monotonic(), problems)
            self._last_integrity = {
                "ok": all(not p for _, p in self._checks.values()),
                "at": self.clock().isoformat(),
                "problems": {
                    f"{c}/{self._physical(c, n)}": p
                    for (c, n), (_, p) in self._checks.items()
                    if p
                },
            }
        if problems:
            self.note_error(f"{self._physical(compid, name)}: {'; '.join(problems)}")
        return problems

    def watchdog(self) -> dict[str, Any] | None:
        """Check every table the agent writes, for every company, now."""
        for compid in self.mapping.companies:
            for name in RECEIPT_TABLES:
                self._check_table(compid, name)
        return self._last_integrity

    def scan(self) -> dict[str, dict[str, int]]:
        out = {}
        for compid in self.mapping.companies:
            try:
                out[compid] = self.gateway.scan(compid)
            except StoreError as exc:
                self.note_error(f"scan of company {compid}: {exc}")
        return out

    def note_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = self.clock().isoformat()

    # --- heartbeat ---------------------------------------------------------------------------

    def sage_reachable(self) -> bool:
        try:
            for compid in self.mapping.companies:
                self.store.table(compid, "company").find({"COMPID": compid})
        except StoreError:
            return False
        return True

    def health(self) -> dict[str, Any]:
        review = self.journal.needs_review()
        return {
            "version": __version__,
            "sage_reachable": self.sage_reachable(),
            "journal_backlog": self.journal.backlog(),
            "needs_review": len(review),
            "needs_review_entries": review,
            "writes_refused": self.write_refusal,
            "last_integrity": self._last_integrity,
            "last_integrity_ok": None
            if self._last_integrity is None
            else self._last_integrity["ok"],
            "last_integrity_at": None
            if self._last_integrity is None
            else self._last_integrity["at"],
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }

    # --- the serve loop ------------------------------------------------------------------------

    def background(self, stop: threading.Event) -> None:
        """Scan, watchdog and retry unfinished entries until `stop` is set."""
        next_scan = 0.0
        next_watch = time.monotonic() + self.mapping.watchdog_interval * 60
        while not stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_scan:
                    self.recover()
                    self.scan()
                    next_scan = now + self.mapping.scan_interval
                if now >= next_watch:
                    self.watchdog()
                    next_watch = now + self.mapping.watchdog_interval * 60
            except Exception as exc:  # keep serving; the heartbeat reports it
                log.exception("background work failed")
                self.note_error(f"background work failed: {exc}")
            stop.wait(min(1.0, self.mapping.scan_interval))

    def close(self) -> None:
        self.store.close()
        self.journal.close()


def read_marker(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    except FileNotFoundError:
        return None


def write_marker(path: str, install_id: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(install_id + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def build(
    config: SiteMapping | str | os.PathLike[str],
    *,
    store: Store | None = None,
    clock: Callable[[], datetime.datetime] = utc_now,
) -> Agent:
    """An agent for a site mapping (or the path of its TOML file), not yet started."""
    mapping = config if isinstance(config, SiteMapping) else load(config)
    return Agent(
        mapping,
        store or open_store(mapping),
        Journal(mapping.journal_path),
        clock=clock,
    )


def run(config_path: str | os.PathLike[str], stop_event: threading.Event) -> int:
    """Start the agent and serve its direct HTTP binding until `stop_event` is set
    (the Windows service and `python -m sagepro_agent serve` both call this)."""
    from sagepro_agent.http.wsgi import serve

    agent = build(config_path)
    try:
        agent.start()
        worker = threading.Thread(
            target=agent.background, args=(stop_event,), daemon=True
        )
        worker.start()
        serve(
            agent,
            agent.mapping.http_host,
            agent.mapping.http_port,
            stop_event=stop_event,
        )
        worker.join(timeout=5)
    finally:
        agent.close()
    return 0
