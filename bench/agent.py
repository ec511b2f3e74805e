"""The on-site agent: relay round-trip overhead, and receipts/s on the fixture store.

    .venv/bin/python -m bench.agent [--db sqlite|postgres|both] [--quick]
        [--part all|relay|store] [--seconds 10] [--threads 4] [--rows 100000]
        [--customers 20000] [--receipt-rows 100000] [--big-receipts 5]
        [--big-batch 25]

Part 1, relay (needs the portal: a fresh database, gunicorn, one agent process):

1. The harness seeds the portal; the bench creates the sandbox's baseline company as
   FoxPro fixture files, an agent and a Sage Pro connection with transport "agent",
   and enrols the agent with a one-time code.
2. One agent process (`python -m bench.agent --serve-agent site.toml`) serves the
   same gateway core two ways at once: its direct HTTP binding on 127.0.0.1, and the
   relay client long-polling the portal. Same agent, same journal, same files.
3. The portal's own Sage Pro client makes the same calls three ways, one after the
   other for `--seconds` each: `GET /invoices/{invno}` and `POST /cash-receipts` (one
   application of 0.01, a new key and reference each), sequentially, then from
   `--threads` threads at once:
   - relay:   `RelaySageProConnector` (command row -> agent poll -> answer row),
   - direct:  `SageProConnector` against the agent's direct binding,
   - sandbox: `SageProConnector` against the emulator in the same gunicorn (a
     baseline of the same receipts on the sandbox, PostgreSQL/SQLite-backed).
   Printed: calls, calls/s, p50/p95 ms, and the ratios relay/direct.

Part 2, store (in this process, no HTTP: the agent's gateway core on the fixture
store, which is what a relay command or a direct call runs once it arrives):

1. A company with `--rows` ARMAST rows and `--customers` ARCUST rows (the sandbox's
   baseline padded by `seed.create_company(rows=, customers=)`), receipt tables empty.
   Reads (`GET /invoices/{invno}`, random) are the baseline; then single receipts and
   batches of 100 (`POST /cash-receipts/batch`) for `--seconds` each.
2. The same with `--receipt-rows` rows already in ARCASH and ARCAPP. The fixture store
   rebuilds a table's whole CDX after every append (dbflib's `build_cdx`, a
   fixture-store property: Visual FoxPro's engine updates the index in place), so here
   each receipt costs two 100k-row index rebuilds: `--big-receipts` single receipts
   and one batch of `--big-batch`.
   Start-up (journal, recovery) and the first write (the integrity check before the
   first write to each table) are timed on their own and printed.

Validity (exit 1 otherwise): every call answered 2xx, and the record counts of
ARCASH/ARCAPP read from the files' headers (not through the agent) equal the receipts
posted. Timings are printed, never asserted. `--quick` is ~1 minute, the default ~5.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import random
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import say

COMPANY = "01"
API_KEY_ENV = "BENCH_AGENT_API_KEY"
AGENT_SLUG = "sagepro-agent-bench"
CENT = Decimal("0.01")
HISTORY_FIRST = 500_000  # receipt numbers of the pre-written history rows


# --- measuring ----------------------------------------------------------------------


@dataclass
class Run:
    """Latencies of one timed loop."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    items: int = 0  # receipts (a batch call carries many)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    @property
    def item_rate(self) -> float:
        return self.items / self.elapsed if self.elapsed else 0.0

    def ms(self, pct: float) -> float:
        return harness.percentile(self.latencies, pct) * 1000 if self.latencies else 0


def timed(
    name: str,
    call: Callable[[int], int],
    seconds: float,
    threads: int = 1,
    max_calls: int = 100_000,
    min_calls: int = 1,
) -> Run:
    """Call `call(i)` (returning how many receipts it carried) from `threads` threads
    until `seconds` have passed (at least `min_calls`, at most `max_calls` calls)."""
    run = Run(name)
    counter = itertools.count()
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + seconds

    def worker() -> None:
        try:
            while True:
                i = next(counter)
                if i >= max_calls or (i >= min_calls and time.monotonic() >= deadline):
                    return
                began = time.monotonic()
                try:
                    items = call(i)
                except Exception as exc:  # counted, printed, and fails the run
                    with lock:
                        run.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                took = time.monotonic() - began
                with lock:
                    run.latencies.append(took)
                    run.items += items
        finally:
            from django.db import connections

            connections.close_all()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    run.elapsed = time.monotonic() - start
    return run


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b else "-"


def dbf_count(path: Path) -> int:
    """The record count in a DBF header (bytes 4-7), read without the agent's code."""
    with path.open("rb") as fh:
        return struct.unpack("<I", fh.read(8)[4:8])[0]


# --- part 1: relay vs direct binding vs sandbox --------------------------------------


def site_text(data: Path, journal: Path, port: int, time_zone: str) -> str:
    return (
        "[sage]\n"
        'store = "fixture"\n'
        f'data = "{data}"\n'
        f'companies = ["{COMPANY}"]\n'
        "[agent]\n"
        'user = "BNCH"\n'
        f'journal = "{journal}"\n'
        f'time_zone = "{time_zone}"\n'
        "[http]\n"
        f'bind = "127.0.0.1:{port}"\n'
        f'api_key_env = "{API_KEY_ENV}"\n'
    )


def serve_agent(site: str, state: str) -> int:
    """The agent process of part 1: the direct binding and the relay client, one core.

    No background scan/recovery thread: nothing here is left unfinished, and the
    bench measures the two transports only."""
    from sagepro_agent import agent as agent_module
    from sagepro_agent.http.wsgi import serve
    from sagepro_agent.relay import credentials as creds
    from sagepro_agent.relay.client import RelayClient

    agent = agent_module.build(site)
    agent.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    http = threading.Thread(
        target=serve,
        args=(agent, agent.mapping.http_host, agent.mapping.http_port),
        kwargs={"stop_event": stop},
        daemon=True,
    )
    http.start()
    credentials = creds.load(state)
    client = RelayClient(
        credentials.portal_url,
        credentials,
        agent.gateway.handle,
        agent.health,
        state_dir=state,
        insecure_local=True,
        heartbeat_seconds=30,
    )
    try:
        client.run_forever(stop, wait=5)
    finally:
        stop.set()
        http.join(timeout=5)
        agent.close()
    return 0


class Calls:
    """The two contract calls, made through one Sage Pro client per thread."""

    def __init__(self, make_client: Callable[[], Any], invoices: list[dict], tag: str):
        self.make_client = make_client
        self.invoices = invoices
        self.tag = tag
        self.local = threading.local()
        self.sequence = itertools.count(1)
        from integrations.sandbox.sagepro.seed import today

        self.today = today()

    def client(self) -> Any:
        if not hasattr(self.local, "client"):
            self.local.client = self.make_client()
        return self.local.client

    def get(self, i: int) -> int:
        invoice = self.invoices[i % len(self.invoices)]
        if self.client().get_invoice(invoice["invno"]) is None:
            raise RuntimeError(f"invoice {invoice['invno']} not found")
        return 0

    def post(self, i: int) -> int:
        from integrations.connectors.sagepro import Application, CashReceipt

        invoice = self.invoices[i % len(self.invoices)]
        reference = f"{self.tag}{next(self.sequence)}"  # unique in the run
        receipt = CashReceipt(
            invoice["custno"],
            self.today,
            CENT,
            "CARD",
            reference[:20],
            (Application(invoice["invno"], CENT),),
        )
        reply = self.client().post_cash_receipt(f"bench-{reference}", receipt)
        if reply.get("replayed"):
            raise RuntimeError(f"receipt {reference} was a replay")
        return 1


def part_relay(args: argparse.Namespace, bench: harness.Bench) -> bool:
    """Measure; True when every call succeeded and every receipt is written once."""
    from django.conf import settings
    from django.db import connections
    from django.utils import timezone

    from integrations.connectors.relay import RelaySageProConnector
    from integrations.connectors.sagepro import SageProConnector
    from integrations.models import Agent, Connection
    from integrations.relay import enrolment
    from integrations.sandbox.sagepro.seed import today
    from sagepro_agent.relay import credentials as creds
    from sagepro_agent.store.fixture.seed import create_company

    folder = bench.tmp / "agent"
    data = folder / "data"
    create_company(data, COMPANY, today=today())
    direct_port = harness.free_port()
    site = folder / "site.toml"
    site.write_text(
        site_text(
            data, folder / "journal.sqlite3", direct_port, settings.BUSINESS_TIME_ZONE
        )
    )
    agent = Agent.objects.create(name="Bench agent")
    Connection.objects.create(
        kind=Connection.Kind.SAGEPRO,
        name="Sage Pro via the bench agent",
        slug=AGENT_SLUG,
        base_url="https://agent.relay.invalid/api/v1",
        company_id=COMPANY,
        transport=Connection.Transport.AGENT,
        agent=agent,
    )
    issued = enrolment.enrol(enrolment.create_code(agent))
    creds.save(
        creds.Credentials(
            bench.base_url, issued.agent_id, issued.token, issued.signing_key
        ),
        folder,
    )
    connections.close_all()

    api_key = "bench-agent-key"
    bench.start_web()
    env = {**bench.environment(), API_KEY_ENV: api_key}
    started = timezone.now()
    child = harness.Child(
        "agent",
        [
            sys.executable, "-m", "bench.agent", "--serve-agent", str(site),
            "--state", str(folder),
        ],
        env,
        bench.tmp / "agent.log",
    )  # fmt: skip
    bench.children.append(child)
    direct_url = f"http://127.0.0.1:{direct_port}/api/v1"
    timeout = settings.OUTBOUND_TIMEOUT_SECONDS
    clients = {
        "relay": lambda: RelaySageProConnector(
            Connection.objects.get(slug=AGENT_SLUG), timeout=timeout
        ),
        "direct": lambda: SageProConnector(
            direct_url, api_key, COMPANY, timeout=timeout
        ),
        "sandbox": lambda: SageProConnector(
            bench.sagepro_url,
            settings.SANDBOX_SAGEPRO_API_KEY,
            COMPANY,
            timeout=timeout,
        ),
    }
    deadline = time.monotonic() + 60
    while True:
        bench.check_children()
        agent.refresh_from_db()
        try:
            clients["direct"]().get_invoice("10001")
            if agent.last_heartbeat_at and agent.last_heartbeat_at >= started:
                break
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise RuntimeError(f"the agent did not start:\n{child.tail()}")
        time.sleep(0.2)
    say(
        f"Agent (pid {child.process.pid}): direct binding {direct_url}, relay heartbeat "
        "received"
    )

    open_invoices = [
        {"invno": str(row["invno"]).strip(), "custno": str(row["custno"]).strip()}
        for row in clients["direct"]().call(
            "GET", "/invoices", params={"status": "open"}
        )["results"]
        if Decimal(str(row["balance"])) > 1
    ]
    runs: dict[tuple[str, str, int], Run] = {}
    tag = itertools.count(1)
    posted = [0]  # receipts the agent answered (warm-ups included)
    for threads in (1, args.threads):
        for call in ("GET", "POST"):
            for transport in ("direct", "relay", "sandbox"):
                calls = Calls(clients[transport], open_invoices, f"B{next(tag)}-")
                fn = calls.get if call == "GET" else calls.post
                warm = timed(f"warm-up {transport}", fn, 0, 1, max_calls=3)
                run = timed(f"{call} {transport}", fn, args.seconds, threads)
                runs[(call, transport, threads)] = run
                if transport != "sandbox":
                    posted[0] += warm.items + run.items
                run.errors += warm.errors
                say(
                    f"  {call:<4} {transport:<7} ×{threads}: {len(run.latencies)} calls "
                    f"in {run.elapsed:.1f} s"
                )

    rows = []
    for (call, transport, threads), run in runs.items():
        rows.append(
            [
                f"{call} {'/invoices/{invno}' if call == 'GET' else '/cash-receipts'}",
                transport,
                threads,
                len(run.latencies),
                f"{run.rate:.1f}",
                f"{run.ms(50):.1f}",
                f"{run.ms(95):.1f}",
                len(run.errors),
            ]
        )
    say("\nSame calls, same agent and files: relay vs the agent's direct binding")
    say("(and the sandbox in the same gunicorn as a baseline)")
    say(
        harness.table(
            [
                "call",
                "via",
                "threads",
                "calls",
                "calls/s",
                "p50 ms",
                "p95 ms",
                "errors",
            ],
            rows,
        )
    )
    ratio_rows = []
    for call in ("GET", "POST"):
        for threads in (1, args.threads):
            relay, direct = (
                runs[(call, "relay", threads)],
                runs[(call, "direct", threads)],
            )
            ratio_rows.append(
                [
                    call,
                    threads,
                    ratio(direct.rate, relay.rate),
                    ratio(relay.ms(50), direct.ms(50)),
                    ratio(relay.ms(95), direct.ms(95)),
                    f"+{relay.ms(50) - direct.ms(50):.0f}",
                ]
            )
    say("\nRelay overhead (direct/relay calls/s; relay/direct latency)")
    say(
        harness.table(
            ["call", "threads", "calls/s ratio", "p50 ratio", "p95 ratio", "p50 +ms"],
            ratio_rows,
        )
    )
    from integrations.connectors import relay as relay_connector
    from integrations.relay import views as relay_views

    say(
        "The relay's floor: the portal's poll view checks for queued commands every "
        f"{relay_views.POLL_INTERVAL} s and the portal's wait loop re-reads the answer "
        f"every {relay_connector.WAIT_INTERVAL}-{relay_connector.MAX_WAIT_INTERVAL} s "
        "(integrations/relay/views.py POLL_INTERVAL, connectors/relay.py WAIT_INTERVAL)."
    )
    errors = [e for run in runs.values() for e in run.errors]
    for error in errors[:5]:
        say(f"  error: {error}")
    # Every receipt the agent answered is in its files once: counted from the DBF
    # headers, not through the agent.
    bench.stop_all()
    written = dbf_count(data / f"ARCASH{COMPANY}.DBF")
    lines = dbf_count(data / f"ARCAPP{COMPANY}.DBF")
    if not written == lines == posted[0]:
        say(
            f"  INVALID: {posted[0]} receipts answered, ARCASH {written}, ARCAPP {lines}"
        )
        return False
    say(f"  {written} receipts answered by the agent, {written} in ARCASH01.DBF")
    return not errors


# --- part 2: the fixture store in process ------------------------------------------------


class Core:
    """The agent's gateway core over one fixture folder, called without HTTP."""

    def __init__(self, folder: Path, time_zone: str) -> None:
        from sagepro_agent import agent as agent_module
        from sagepro_agent import config

        self.folder = folder
        self.mapping = config.parse(
            {
                "sage": {
                    "store": "fixture",
                    "data": str(folder / "data"),
                    "companies": [COMPANY],
                },
                "agent": {
                    "user": "BNCH",
                    "journal": str(folder / "journal.sqlite3"),
                    "time_zone": time_zone,
                },
            },
            str(folder / "site.toml"),
        )
        self.agent = agent_module.build(self.mapping)
        self.keys = itertools.count(1)

    def handle(self, method: str, path: str, body: Any = None, key: str = "") -> Any:
        from sagepro_agent.wire import Request

        headers = {"Sage-Company": COMPANY, "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        response = self.agent.gateway.handle(
            Request(
                method,
                path,
                (),
                headers,
                json.dumps(body).encode() if body is not None else b"",
            )
        )
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} answered {response.status}: "
                               f"{str(response.body)[:200]}")  # fmt: skip
        return response.body

    def receipt(self, invoice: tuple[str, str], today: datetime.date) -> dict:
        n = next(self.keys)
        invno, custno = invoice
        return {
            "custno": custno,
            "date": today.isoformat(),
            "amount": "0.01",
            "method": "CARD",
            "reference": f"S{n}",
            "applications": [{"invno": invno, "amount": "0.01"}],
        }


def open_invoices(data: Path, sample: int, rng: random.Random) -> list[tuple[str, str]]:
    """(invno, custno) of open invoices, read with dbfread (not through the agent)."""
    import dbfread

    rows = [
        (r["INVNO"].strip(), r["CUSTNO"].strip())
        for r in dbfread.DBF(str(data / f"ARMAST{COMPANY}.DBF"))
        if r["BALANCE"] and r["BALANCE"] > 1
    ]
    return rng.sample(rows, min(sample, len(rows)))


def write_history(data: Path, count: int, today: datetime.date) -> None:
    """`count` receipts, one line each, already in ARCASH/ARCAPP (numbers from
    HISTORY_FIRST, so the receipt counter never meets them)."""
    from sagepro_agent.store.fixture import seed

    audit = seed._audit(today)
    created = datetime.datetime.combine(today, datetime.time(12))
    headers, lines = [], []
    for n in range(count):
        number = f"{HISTORY_FIRST + n:06d}".rjust(10)
        headers.append(
            {
                "RCPTNO": number, "CUSTNO": "ACME  ", "DTEPAID": today,
                "AMOUNT": Decimal("1.00"), "APPLIED": Decimal("1.00"),
                "UNAPPLIED": Decimal("0.00"), "PAYMETH": "CARD", "REFNO": f"H{n}",
                "GLACNT": "", "CREATED": created, **audit,
            }
        )  # fmt: skip
        lines.append(
            {
                "RCPTNO": number, "INVNO": "     10001", "CUSTNO": "ACME  ",
                "PAIDAMT": Decimal("1.00"), "REQAMT": Decimal("1.00"), "DTEPAID": today,
                **audit,
            }
        )  # fmt: skip
    seed._write_table(str(data), "receipts", COMPANY, headers)
    seed._write_table(str(data), "receipt_lines", COMPANY, lines)


@dataclass
class StoreCase:
    label: str
    history: int
    seconds: float
    singles: int  # at most
    batch: int
    batches: int  # at most


def part_store(args: argparse.Namespace, tmp: Path, time_zone: str) -> bool:
    from integrations.sandbox.sagepro.seed import today as sandbox_today

    today = sandbox_today()
    rng = random.Random(20261206)
    cases = [
        StoreCase("receipt tables empty", 0, args.seconds, 100_000, 100, 1000),
        StoreCase(
            f"{args.receipt_rows:,}-row receipt tables",
            args.receipt_rows,
            0,
            args.big_receipts,
            args.big_batch,
            1,
        ),
    ]
    rows, valid = [], True
    for case in cases:
        case_rows, ok = store_case(args, case, tmp, time_zone, today, rng)
        rows += case_rows
        valid &= ok
    say(
        f"\nThe agent's gateway core on the fixture store, in process "
        f"({args.rows:,} ARMAST, {args.customers:,} ARCUST)"
    )
    say(
        harness.table(
            ["receipt tables", "what", "n", "per s", "reads/s ÷", "p50 ms", "p95 ms"],
            rows,
        )
    )
    say(
        "Every append rebuilds the whole .CDX of the table it writes (dbflib's "
        "build_cdx): a FIXTURE-STORE property, not the agent's cost on a real Sage Pro "
        "company, where the VFP OLE DB provider updates the index in place. With "
        "100k-row receipt tables each receipt pays two 100k-row index rebuilds."
    )
    return valid


def store_case(
    args: argparse.Namespace,
    case: StoreCase,
    tmp: Path,
    time_zone: str,
    today: datetime.date,
    rng: random.Random,
) -> tuple[list[list[Any]], bool]:
    """Seed one folder, then time reads, single receipts and batches on it."""
    from sagepro_agent.store.fixture.seed import create_company

    folder = tmp / f"store-{case.history}"
    data = folder / "data"
    began = time.monotonic()
    create_company(data, COMPANY, today=today, rows=args.rows, customers=args.customers)
    if case.history:
        write_history(data, case.history, today)
    say(
        f"\nFixture company: {args.rows:,} ARMAST, {args.customers:,} ARCUST, "
        f"{case.history:,} ARCASH/ARCAPP rows written in "
        f"{time.monotonic() - began:.1f} s (not timed below)"
    )
    invoices = open_invoices(data, 5000, rng)
    core = Core(folder, time_zone)
    began = time.monotonic()
    core.agent.start()
    startup = time.monotonic() - began
    began = time.monotonic()
    core.handle("POST", "/cash-receipts", core.receipt(invoices[0], today), "first")
    first = time.monotonic() - began
    say(
        f"  start-up {startup:.2f} s; first receipt {first:.2f} s (includes the "
        "integrity check before the first write to each table)"
    )

    def read(i: int) -> int:
        core.handle("GET", f"/invoices/{invoices[i % len(invoices)][0]}")
        return 0

    def single(i: int) -> int:
        receipt = core.receipt(invoices[(i + 1) % len(invoices)], today)
        core.handle("POST", "/cash-receipts", receipt, f"s{case.history}-{i}")
        return 1

    def batch(i: int) -> int:
        size = case.batch
        items = [
            {
                "idempotency_key": f"b{case.history}-{i}-{j}",
                "receipt": core.receipt(
                    invoices[(i * size + j) % len(invoices)], today
                ),
            }
            for j in range(size)
        ]
        reply = core.handle("POST", "/cash-receipts/batch", {"receipts": items})
        bad = [r for r in reply["results"] if r["status"] != 201]
        if bad:
            raise RuntimeError(f"{len(bad)} batch items failed: {bad[0]}")
        return size

    reads = timed("reads", read, max(case.seconds / 2, 2), max_calls=20_000)
    say(f"  reads: {len(reads.latencies)} in {reads.elapsed:.1f} s")
    singles = timed(
        "singles",
        single,
        case.seconds,
        max_calls=case.singles,
        min_calls=min(case.singles, 3),
    )
    say(f"  single receipts: {singles.items} in {singles.elapsed:.1f} s")
    batches = timed("batches", batch, case.seconds, max_calls=case.batches)
    say(f"  batches of {case.batch}: {batches.items} in {batches.elapsed:.1f} s")
    core.agent.close()
    posted = 1 + singles.items + batches.items
    headers = dbf_count(data / f"ARCASH{COMPANY}.DBF") - case.history
    lines = dbf_count(data / f"ARCAPP{COMPANY}.DBF") - case.history
    errors = reads.errors + singles.errors + batches.errors
    ok = headers == lines == posted and not errors
    for error in errors[:3]:
        say(f"  error: {error}")
    if not ok:
        say(f"  INVALID: posted {posted}, ARCASH +{headers}, ARCAPP +{lines}")
    rows = [
        [case.label, "reads GET /invoices/{invno}", len(reads.latencies),
         f"{reads.rate:.0f}", "-", f"{reads.ms(50):.2f}", f"{reads.ms(95):.2f}"],
        [case.label, "single receipts", singles.items, f"{singles.item_rate:.1f}",
         ratio(reads.rate, singles.item_rate), f"{singles.ms(50):.1f}",
         f"{singles.ms(95):.1f}"],
        [case.label, f"batches of {case.batch}", batches.items,
         f"{batches.item_rate:.1f}", ratio(reads.rate, batches.item_rate),
         f"{batches.ms(50) / case.batch:.1f} /item", "-"],
    ]  # fmt: skip
    return rows, ok


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve-agent":
        p = argparse.ArgumentParser()
        p.add_argument("--serve-agent", required=True)
        p.add_argument("--state", required=True)
        a = p.parse_args(argv)
        return serve_agent(a.serve_agent, a.state)
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.set_defaults(db="sqlite")
    parser.add_argument("--quick", action="store_true", help="~1 minute in all")
    parser.add_argument("--part", choices=["all", "relay", "store"], default="all")
    parser.add_argument("--seconds", type=float, help="per timed loop (10; quick 3)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rows", type=int, default=100_000, help="ARMAST rows")
    parser.add_argument("--customers", type=int, default=20_000, help="ARCUST rows")
    parser.add_argument("--receipt-rows", type=int, help="100000 (quick 20000)")
    parser.add_argument("--big-receipts", type=int, help="5 (quick 2)")
    parser.add_argument("--big-batch", type=int, help="25 (quick 5)")
    args = parser.parse_args(argv)
    if args.db == "both":
        return harness.run_per_database("bench.agent", args, argv)
    quick = args.quick
    args.seconds = args.seconds or (3.0 if quick else 10.0)
    args.receipt_rows = args.receipt_rows or (20_000 if quick else 100_000)
    args.big_receipts = args.big_receipts or (2 if quick else 5)
    args.big_batch = args.big_batch or (5 if quick else 25)
    if quick:
        args.rows = min(args.rows, 20_000)
        args.customers = min(args.customers, 5_000)
    os.environ.setdefault("SAGEPRO_AGENT_NO_KEYRING", "1")
    began = time.monotonic()
    valid = True
    with harness.Bench(args.db, harness.env_overrides(args), args.keep) as bench:
        bench.prepare()
        from django.conf import settings

        if args.part in ("all", "relay"):
            valid &= part_relay(args, bench)
        if args.part in ("all", "store"):
            valid &= part_store(args, bench.tmp, settings.BUSINESS_TIME_ZONE)
    say(f"\n{'VALID' if valid else 'INVALID'} run, {time.monotonic() - began:.0f} s")
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
