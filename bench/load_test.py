"""Load test: the production layout under sustained traffic, a worker kill and a DB restart.

    .venv/bin/python -m bench.load_test [--minutes 4] [--rate 10] [--clusters 3]
        [--senders 8] [--saturation-events 600] [--drain-timeout 420]
        [--output bench/results/load_test.json] [--json] [--keep-logs]

Not run in CI: it takes every core for several minutes. `make load-test` runs it.

1. Its own PostgreSQL cluster: `initdb` into a temp dir (as the `postgres` OS user when
   run as root), trust auth, 127.0.0.1 on a free port; stopped and removed at the end,
   however the run ends. The restart below touches nothing else.
2. The production layout of `make prod-check` (deploy/harness.py): production settings,
   the sandboxes' gunicorn, two portal gunicorns on two ports (the senders alternate
   between them) and `--clusters` qclusters (Q_WORKERS=2 each). Each qcluster is
   `manage.py qcluster` plus two django-q2 signal receivers that log when a worker
   process starts and finishes a task (`--qcluster` below): that is how tasks and events
   are attributed to processes.
3. Warm-up (20 events), then the saturation phase: every qcluster stopped, a backlog of
   `--saturation-events` stored through the webhook, then one qcluster started and the
   backlog drained; again with every qcluster. Events/s = backlog ÷ (last receipt posted
   − first event claimed): what one qcluster handles, and N.
4. The sustained phase: `--rate` events/s for `--minutes`, open loop (event i is due at
   start + i ÷ rate), from `--senders` threads that behave like a webhook relay: each
   delivery is retried (same webhook-id, signed afresh) until it is answered 2xx, with
   backoff, alternating between the two web ports. At 25 % of the phase qcluster-2 is
   SIGKILLed with its workers, and started again 20 s later; at 60 % PostgreSQL is
   restarted (`pg_ctl restart -m fast`).
5. Wait (at most `--drain-timeout`) until every acknowledged event is processed and its
   posting finished, then count: sent, acknowledged, posted (a posted `Posting` and a
   Sage Pro receipt), lost (acknowledged, never posted), duplicated (more than one
   posting or receipt for a payment). Every half second the queue depth is sampled: a
   worker slot with no task while events waited in the queue counts as idle.
6. Print the figures, write them as JSON, and exit non-zero unless nothing was lost,
   duplicated or left unacknowledged.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import say
from deploy.harness import (
    PROXY_HEADERS,
    CheckFailed,
    Clock,
    Layout,
    check_deploy_and_migrate,
    production_environment,
    seed,
    setup_django,
    signing_secret,
    wait_until_settled,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "load_test.json"
DB_NAME = "portal_load"
TASK_MARK = "LOADTEST-TASK"
WARMUP_EVENTS = 20
WARMUP_TXN = 710_000_000
SAT_ONE_TXN = 720_000_000
SAT_ALL_TXN = 730_000_000
SUSTAINED_TXN = 740_000_000
KILLED_CLUSTER = 2
RESTART_AFTER = 20.0  # seconds between the SIGKILL and the new qcluster
KILL_AT = 0.25  # of the sustained phase
DB_RESTART_AT = 0.60
WINDOW_TAIL = 30.0  # a fault's window: from 5 s before it to 30 s after it ends
SAMPLE_EVERY = 0.5
INF = float("inf")
GIVE_UP = 300.0  # a relay gives a delivery up after this many seconds
# Production settings but one: the emulated Sage Pro shares this machine's cores with
# everything else, so under a backlog its batch calls take longer than a real gateway's
# on its own machine; at the production 10 s they time out and are retried.
TEST_ENV = {"OUTBOUND_TIMEOUT_SECONDS": "20"}


# --- counting (pure: tested in tests/portal/test_load_test.py) ------------------------


@dataclass
class Tally:
    """Exactly once, counted per payment (PayTrace transaction id)."""

    sent: int
    acknowledged: int
    unacknowledged: int
    posted: int
    lost: int
    duplicated: int
    unexpected: int
    lost_ids: list[str] = field(default_factory=list)
    duplicated_ids: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)


def tally(
    sent: Iterable[str],
    acked: Iterable[str],
    postings: Counter,
    posted: Iterable[str],
    receipts: Counter,
) -> Tally:
    """Count the run from the ids it sent and acknowledged, the `Posting` rows per
    transaction (any state), the transactions with a posted one, and the live Sage Pro
    receipts per reference (the transaction id).

    Lost: acknowledged (the portal said it had it) but without a posted posting or a
    receipt. Duplicated: more than one posting or receipt for one payment. Unexpected:
    a posting or receipt for an id nobody sent.
    """
    sent, acked, posted = set(sent), set(acked), set(posted)
    done = {txn for txn in posted if receipts[txn] > 0}
    lost = sorted(acked - done)
    duplicated = sorted(
        txn
        for txn in set(postings) | set(receipts)
        if postings[txn] > 1 or receipts[txn] > 1
    )
    unexpected = (set(postings) | set(receipts)) - sent
    return Tally(
        sent=len(sent),
        acknowledged=len(acked),
        unacknowledged=len(sent - acked),
        posted=len(done & sent),
        lost=len(lost),
        duplicated=len(duplicated),
        unexpected=len(unexpected),
        lost_ids=lost[:20],
        duplicated_ids=duplicated[:20],
    )


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """p50/p95/p99/max and how many, in seconds (NaN when there are none)."""
    return {
        "n": len(values),
        "p50": harness.percentile(values, 50),
        "p95": harness.percentile(values, 95),
        "p99": harness.percentile(values, 99),
        "max": max(values, default=float("nan")),
    }


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline and baseline == baseline else float("nan")


@dataclass
class TaskRun:
    """One django-q2 task in one worker process, from the qcluster's log."""

    cluster: str  # qcluster-2#1: the first incarnation of qcluster-2
    pid: int
    start: float
    stop: float | None
    func: str = ""
    events: int = 0


TASK_LINE = re.compile(
    TASK_MARK + r" (?P<what>start|stop) pid=(?P<pid>\d+) id=(?P<id>\S+) "
    r"at=(?P<at>[\d.]+)(?: func=(?P<func>\S+) events=(?P<events>\d+))?"
)


def parse_task_lines(cluster: str, text: str) -> list[TaskRun]:
    """The task runs a qcluster's log records; a task still running when the process
    died (SIGKILL) has `stop` None."""
    runs: dict[str, TaskRun] = {}
    for match in TASK_LINE.finditer(text):
        at = float(match["at"])
        if match["what"] == "start":
            runs[match["id"]] = TaskRun(cluster, int(match["pid"]), at, None)
        elif match["id"] in runs:
            run = runs[match["id"]]
            run.stop, run.func = at, match["func"]
            run.events = int(match["events"])
    return list(runs.values())


def idle_while_waiting(
    samples: Sequence[tuple[float, ...]],
    runs: Sequence[TaskRun],
    alive: dict[str, tuple[float, float]],
    slots: int,
    min_wait: float = 0.0,
) -> dict[str, float | int]:
    """Worker slots without a task while events waited in the queue.

    `samples` are (time, queued events[, seconds the oldest queued event has waited]);
    `alive` maps each qcluster incarnation to the span it ran; each has `slots` worker
    processes. A sample counts when events were queued and the oldest had waited at
    least `min_wait` seconds: 0 counts every queued event, including one committed a
    moment before the wake-up reached a worker; 1 s counts only work a free worker
    should already have taken. At each such sample a slot of a running qcluster is busy
    when one of its task runs spans the instant (a run cut short by a SIGKILL spans to
    the kill)."""
    by_cluster: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        end = run.stop if run.stop is not None else alive[run.cluster][1]
        by_cluster[run.cluster].append((run.start, end))
    waiting = slot_samples = idle = 0
    for at, queued, *oldest in samples:
        waited = oldest[0] if oldest else float("inf")
        if queued <= 0 or waited < min_wait:
            continue
        waiting += 1
        for cluster, (born, died) in alive.items():
            if not born <= at < died:
                continue
            busy = sum(1 for s, e in by_cluster[cluster] if s <= at < e)
            slot_samples += slots
            idle += max(0, slots - busy)
    return {
        "samples_with_work_waiting": waiting,
        "slot_samples": slot_samples,
        "idle_slot_samples": idle,
        "idle_share": idle / slot_samples if slot_samples else 0.0,
    }


def work_by_process(runs: Sequence[TaskRun]) -> dict[str, dict[str, Any]]:
    """Tasks, events drained and busy seconds per qcluster incarnation and per worker."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        row = out.setdefault(
            run.cluster, {"tasks": 0, "events": 0, "busy_s": 0.0, "workers": {}}
        )
        worker = row["workers"].setdefault(str(run.pid), {"tasks": 0, "events": 0})
        for target in (row, worker):
            target["tasks"] += 1
            target["events"] += run.events
        if run.stop is not None:
            row["busy_s"] += run.stop - run.start
    return dict(sorted(out.items()))


# --- the qcluster with task lines ----------------------------------------------------


def run_qcluster() -> None:
    """`manage.py qcluster`, with a line in its log when a worker process starts and
    finishes each task (its pid, the time, and for a drain how many events it took).

    The receivers are connected before django-q2 forks its workers, so every worker
    inherits them; they only write a line, so the work is the production command's.
    The lines go straight to stderr (the log file), not through logging, whose card
    number masking could take a timestamp for a card number."""
    import django

    django.setup()
    from django.core.management import call_command
    from django_q.signals import post_execute_in_worker, pre_execute

    def started(sender: Any, task: dict, **kwargs: Any) -> None:
        write_task_line(f"start pid={os.getpid()} id={task['id']} at={time.time():.3f}")

    def finished(sender: Any, task: dict, **kwargs: Any) -> None:
        func = str(task.get("func")).rsplit(".", 1)[-1]
        write_task_line(
            f"stop pid={os.getpid()} id={task['id']} at={time.time():.3f} "
            f"func={func} events={events_done(func, task)}"
        )

    pre_execute.connect(started, weak=False)
    post_execute_in_worker.connect(finished, weak=False)
    call_command("qcluster")


def events_done(func: str, task: dict) -> int:
    """Events a finished task processed: a drain says how many ("12 events in 1
    batches"); `process_event` (the sweeper's hand-on of one event) did one."""
    if not task.get("success"):
        return 0
    if func == "process_event":
        return 1
    drained = re.match(r"(\d+) events in", str(task.get("result")))
    return int(drained[1]) if drained else 0


def write_task_line(text: str) -> None:
    # One write per line on the inherited, append-mode log: lines don't interleave.
    os.write(2, f"{TASK_MARK} {text}\n".encode())


# --- a PostgreSQL cluster of its own -------------------------------------------------


class PgCluster:
    """A throwaway PostgreSQL cluster: initdb in a temp dir, trust auth, 127.0.0.1."""

    def __init__(self) -> None:
        versions = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
            key=lambda p: (
                int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0
            ),
        )
        if not versions:
            raise CheckFailed(
                "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin"
            )
        self.bin = versions[-1].parent
        self.port = harness.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="portal-loadtest-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.as_postgres = os.geteuid() == 0

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def command(self, tool: str, *args: str) -> None:
        argv = [str(self.bin / tool), *args]
        if self.as_postgres:
            # PostgreSQL refuses to run as root.
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise CheckFailed(
                f"{tool} {' '.join(args[:3])}… failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )

    def start(self) -> None:
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.command(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.dir} -c max_connections=200"
        )
        self.command(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def restart(self) -> float:
        """`pg_ctl restart -m fast`; returns the seconds it took."""
        began = time.monotonic()
        # -l again: without it the new server would write to (and hold open) the
        # pipe pg_ctl answers on.
        self.command(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast",
            "-w", "-t", "60", "restart",
        )  # fmt: skip
        return time.monotonic() - began

    def remove(self) -> None:
        """Stop the server (if it runs) and delete its files."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.command(
                    "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"
                )
            except (CheckFailed, subprocess.TimeoutExpired) as exc:
                say(f"  could not stop the load test's PostgreSQL: {exc}")
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the relay: senders that retry until 2xx -----------------------------------------


@dataclass
class Delivery:
    """One event as the relay tracks it."""

    txn: str
    body: bytes
    msg_id: str
    first_at: float = 0.0  # wall clock (time.time()) of the first attempt
    acked_at: float = 0.0
    attempts: int = 0


@dataclass
class Attempt:
    at: float  # wall clock when it was sent
    seconds: float
    answer: int | str  # the status, or the connection error's name
    port: int


class Relay:
    """Send each delivery on an open-loop schedule; retry (same id, signed afresh,
    alternating web ports) until a 2xx answer, with backoff, or until GIVE_UP."""

    def __init__(
        self,
        ports: list[int],
        deliveries: list[Delivery],
        secret: str,
        rate: float,
        senders: int,
    ) -> None:
        self.ports = ports
        self.deliveries = deliveries
        self.secret = secret
        self.rate = rate
        self.attempts: list[Attempt] = []
        self.lock = threading.Lock()
        self.next_index = 0
        self.stopping = threading.Event()
        self.started = 0.0
        self.threads = [
            threading.Thread(target=self.sender, daemon=True, name=f"relay-{i}")
            for i in range(senders)
        ]

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)

    def sender(self) -> None:
        import http.client

        conns: dict[int, http.client.HTTPConnection] = {}
        try:
            while not self.stopping.is_set():
                with self.lock:
                    index = self.next_index
                    self.next_index += 1
                if index >= len(self.deliveries):
                    return
                delay = self.started + index / self.rate - time.monotonic()
                if delay > 0 and self.stopping.wait(delay):
                    return
                self.deliver(index, conns)
        finally:
            for conn in conns.values():
                conn.close()

    def deliver(self, index: int, conns: dict) -> None:
        item = self.deliveries[index]
        give_up = time.monotonic() + GIVE_UP
        backoff = 0.25
        while not self.stopping.is_set():
            port = self.ports[(index + item.attempts) % len(self.ports)]
            at = time.time()
            item.first_at = item.first_at or at
            item.attempts += 1
            began = time.perf_counter()
            answer = self.post(conns, port, item)
            attempt = Attempt(at, time.perf_counter() - began, answer, port)
            with self.lock:
                self.attempts.append(attempt)
            if isinstance(answer, int) and 200 <= answer < 300:
                item.acked_at = time.time()
                return
            if time.monotonic() > give_up:
                return
            self.stopping.wait(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, 5.0)

    def post(self, conns: dict, port: int, item: Delivery) -> int | str:
        import http.client

        signed = harness.Delivery(body=item.body, msg_id=item.msg_id)
        harness.sign_all([signed], self.secret)
        headers = {
            "Content-Type": "application/json",
            **PROXY_HEADERS,
            **signed.headers,
        }
        conn = conns.get(port) or http.client.HTTPConnection(
            "127.0.0.1", port, timeout=15
        )
        conns[port] = conn
        try:
            conn.request("POST", harness.WEBHOOK_PATH, body=item.body, headers=headers)
            reply = conn.getresponse()
            reply.read()
            if reply.getheader("connection", "").lower() == "close":
                conn.close()
            return reply.status
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return type(exc).__name__

    def progress(self) -> str:
        with self.lock:
            answers = Counter(a.answer for a in self.attempts)
        started = sum(1 for d in self.deliveries if d.attempts)
        acked = sum(1 for d in self.deliveries if d.acked_at)
        return (
            f"sent {started}/{len(self.deliveries)}, acknowledged {acked}, "
            f"answers {dict(answers)}"
        )


def build_deliveries(invoices: list, first_txn: int, prefix: str) -> list[Delivery]:
    from bench import pipeline

    return [
        Delivery(txn=str(first_txn + i), body=item.body, msg_id=item.msg_id)
        for i, item in enumerate(pipeline.build_events(invoices, first_txn, prefix))
    ]


# --- the run -------------------------------------------------------------------------


@dataclass
class Timeline:
    """Wall-clock times (time.time()) of what happened, for the windows."""

    started: float = 0.0
    sending_ended: float = 0.0
    drained: float = 0.0
    kill: float = 0.0
    cluster_back: float = 0.0
    db_restart: float = 0.0
    db_back: float = 0.0
    alive: dict[str, tuple[float, float]] = field(default_factory=dict)


class Sampler:
    """Queue depth (queued events, and how long the oldest has waited) every
    SAMPLE_EVERY seconds, skipping moments the database does not answer (its
    restart)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, float]] = []
        self.next_at = 0.0

    def tick(self) -> None:
        if time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + SAMPLE_EVERY
        from django.db import DatabaseError, connections
        from django.db.models import Count, Min
        from django.utils import timezone

        from integrations.models import Event

        try:
            depth = Event.objects.filter(state=Event.State.QUEUED).aggregate(
                queued=Count("pk"), oldest=Min("received_at")
            )
        except DatabaseError:
            connections.close_all()
            return
        oldest = depth["oldest"]
        waited = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        self.samples.append((time.time(), depth["queued"], waited))


def safely(query: Any, default: Any = None) -> Any:
    """Run a progress query; during the database restart answer `default`."""
    from django.db import DatabaseError, connections

    try:
        return query()
    except DatabaseError:
        connections.close_all()
        return default


def send_backlog(
    layout: Layout, invoices: list, first_txn: int, label: str, secret: str
) -> None:
    """Store a backlog through the webhook, every event answered 2xx."""
    from bench import pipeline

    deliveries = pipeline.build_events(invoices, first_txn, label)
    harness.sign_all(deliveries, secret)
    for item in deliveries:
        item.headers.update(PROXY_HEADERS)
    sent = harness.post_all(layout.web_port, harness.WEBHOOK_PATH, deliveries, 8, label)
    layout.clock.say(sent.describe())
    if sent.failed:
        raise CheckFailed(f"{label}: {sent.failed} webhooks were not accepted")


def drain_rate(run: Any) -> dict[str, float]:
    """Events/s of a backlog: count ÷ (last receipt posted − first event claimed)."""
    from django.db.models import Max, Min

    from integrations.models import Posting

    first = run.events().aggregate(at=Min("started_at"))["at"]
    last = (
        run.postings()
        .filter(state=Posting.State.POSTED)
        .aggregate(at=Max("posted_at"))["at"]
    )
    seconds = (last - first).total_seconds() if first and last else float("nan")
    return {
        "events": run.count,
        "seconds": seconds,
        "events_per_s": run.count / seconds,
    }


def saturation(
    layout: Layout, invoices: list, args: argparse.Namespace, secret: str
) -> dict:
    """Events/s one qcluster drains from a backlog, and every qcluster together; every
    qcluster runs again afterwards."""
    from bench import pipeline

    n, k = args.clusters, args.saturation_events
    out = {}
    for label, first, count, slice_ in (
        ("one", SAT_ONE_TXN, 1, invoices[:k]),
        ("all", SAT_ALL_TXN, n, invoices[k : 2 * k]),
    ):
        for i in range(1, n + 1):
            if any(c.name == f"qcluster-{i}" for c in layout.children):
                layout.stop_cluster(i)
        send_backlog(layout, slice_, first, f"sat{label}", secret)
        run = pipeline.Run(first, k)
        for i in range(1, count + 1):
            layout.spawn_cluster(i)
        for i in range(1, count + 1):
            layout.wait_running(layout.cluster(i))
        layout.clock.say(f"saturation: {k} events queued, {count} qcluster(s) draining")
        if not wait_until_settled(run, layout, args.drain_timeout):
            raise CheckFailed(f"saturation ({count} qclusters): backlog not drained")
        problems = pipeline.verify(run)
        if problems:
            raise CheckFailed(f"saturation ({count} qclusters): {'; '.join(problems)}")
        out[label] = {"qclusters": count, **drain_rate(run)}
        layout.clock.say(
            f"saturation, {count} qcluster(s): {out[label]['events_per_s']:.1f} events/s"
        )
    out["ratio_all_to_one"] = out["all"]["events_per_s"] / out["one"]["events_per_s"]
    return out


def sustained(
    layout: Layout, pg: PgCluster, invoices: list, args: argparse.Namespace, secret: str
) -> tuple[Relay, Timeline, Sampler]:
    """The traffic with its two faults, then the drain."""
    from bench import pipeline

    seconds = args.minutes * 60
    deliveries = build_deliveries(invoices, SUSTAINED_TXN, "load")
    run = pipeline.Run(SUSTAINED_TXN, len(deliveries))
    relay = Relay(layout.web_ports, deliveries, secret, args.rate, args.senders)
    line = harness.Ticker(
        10.0,
        lambda: (
            f"{relay.progress()} | queued "
            f"{safely(lambda: run.events().filter(state='queued').count(), '?')}, "
            f"posted {safely(lambda: run.postings().filter(state='posted').count(), '?')}"
        ),
    )
    sampler = Sampler()
    faults = Faults(layout, pg, seconds, args.clusters)
    relay.start()
    layout.clock.say(
        f"sustained: {len(deliveries)} events at {args.rate:g}/s over {seconds:g} s"
    )
    while relay.alive() or faults.pending():
        faults.tick()
        layout.check_running()
        sampler.tick()
        line.tick()
        time.sleep(0.1)
    timeline = faults.timeline
    timeline.sending_ended = time.time()
    layout.clock.say(f"sending done: {relay.progress()}")
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline and not safely(
        lambda: drained(run, deliveries), False
    ):
        layout.check_running()
        sampler.tick()
        line.tick()
        time.sleep(0.25)
    timeline.drained = time.time()
    for name, (born, died) in timeline.alive.items():
        timeline.alive[name] = (born, min(died, timeline.drained))
    return relay, timeline, sampler


class Faults:
    """The sustained phase's faults, each when it is due, and when each happened.

    The restarted qcluster is started without waiting for it (the traffic and the
    sampling go on); it counts as running from its "running." line."""

    def __init__(self, layout: Layout, pg: PgCluster, seconds: float, clusters: int):
        self.layout = layout
        self.pg = pg
        self.timeline = Timeline(started=time.time())
        for i in range(1, clusters + 1):
            self.timeline.alive[f"qcluster-{i}#1"] = (self.timeline.started, INF)
        self.began = time.monotonic()
        self.due = sorted(
            [
                (KILL_AT * seconds, self.kill_worker),
                (KILL_AT * seconds + RESTART_AFTER, self.restart_worker),
                (DB_RESTART_AT * seconds, self.restart_database),
            ],
            key=lambda item: item[0],
        )
        self.starting: harness.Child | None = None
        self.name = f"qcluster-{KILLED_CLUSTER}"

    def pending(self) -> bool:
        return bool(self.due) or self.starting is not None

    def tick(self) -> None:
        while self.due and time.monotonic() - self.began >= self.due[0][0]:
            self.due.pop(0)[1]()
        if self.starting is not None and b"running." in self.starting.log.read_bytes():
            self.timeline.cluster_back = time.time()
            self.timeline.alive[f"{self.name}#2"] = (self.timeline.cluster_back, INF)
            self.layout.clock.say(f"{self.name} running again")
            self.starting = None

    def kill_worker(self) -> None:
        child = self.layout.kill_cluster(KILLED_CLUSTER)
        self.timeline.kill = time.time()
        born = self.timeline.alive[f"{self.name}#1"][0]
        self.timeline.alive[f"{self.name}#1"] = (born, self.timeline.kill)
        self.layout.clock.say(
            f"FAULT: SIGKILLed {self.name} (pid {child.process.pid}) and its workers"
        )

    def restart_worker(self) -> None:
        self.starting = self.layout.spawn_cluster(KILLED_CLUSTER)
        self.layout.clock.say(f"{self.name} starting again")

    def restart_database(self) -> None:
        self.timeline.db_restart = time.time()
        took = self.pg.restart()
        self.timeline.db_back = time.time()
        self.layout.clock.say(
            f"FAULT: PostgreSQL restarted (pg_ctl restart -m fast, {took:.1f} s)"
        )


def drained(run: Any, deliveries: list[Delivery]) -> bool:
    """Every acknowledged event stored and finished, every posting in an end state."""
    from integrations.models import Event, Posting

    acked = sum(1 for d in deliveries if d.acked_at)
    open_events = run.events().exclude(
        state__in=[Event.State.PROCESSED, Event.State.DEAD]
    )
    open_postings = run.postings().exclude(
        state__in=[Posting.State.POSTED, Posting.State.DEAD, Posting.State.NEEDS_REVIEW]
    )
    return (
        run.events().count() >= acked
        and not open_events.exists()
        and not open_postings.exists()
    )


# --- the figures ---------------------------------------------------------------------


def count_run(deliveries: list[Delivery]) -> Tally:
    from bench import pipeline
    from integrations.models import Posting

    run = pipeline.Run(SUSTAINED_TXN, len(deliveries))
    postings = Counter(
        run.postings().values_list("transaction__transaction_id", flat=True)
    )
    posted = run.postings().filter(state=Posting.State.POSTED)
    return tally(
        sent=[d.txn for d in deliveries if d.attempts],
        acked=[d.txn for d in deliveries if d.acked_at],
        postings=postings,
        posted=posted.values_list("transaction__transaction_id", flat=True),
        receipts=Counter(run.receipts().values_list("reference", flat=True)),
    )


def event_times(deliveries: list[Delivery]) -> dict[str, dict[str, float]]:
    """Per transaction: first attempt, received (stored) and posted, as wall clock."""
    from bench import pipeline
    from integrations.models import Posting

    run = pipeline.Run(SUSTAINED_TXN, len(deliveries))
    times = {d.txn: {"sent": d.first_at} for d in deliveries if d.acked_at}
    for txn, at in run.events().values_list("transaction_id", "received_at"):
        if txn in times:
            times[txn]["received"] = min(
                at.timestamp(), times[txn].get("received", 1e12)
            )
    posted = run.postings().filter(state=Posting.State.POSTED)
    for txn, at in posted.values_list("transaction__transaction_id", "posted_at"):
        if txn in times and at is not None:
            times[txn]["posted"] = at.timestamp()
    return times


def windows(timeline: Timeline) -> dict[str, tuple[float, float]]:
    """The phases the figures are split by (wall clock, [start, end))."""
    return {
        "baseline (no fault)": (timeline.started, timeline.kill - 5),
        "worker kill": (timeline.kill - 5, timeline.cluster_back + WINDOW_TAIL),
        "database restart": (timeline.db_restart - 5, timeline.db_back + WINDOW_TAIL),
        "whole run": (timeline.started, timeline.sending_ended),
    }


def window_figures(
    span: tuple[float, float], times: dict, attempts: list[Attempt]
) -> dict[str, Any]:
    start, end = span
    mine = [t for t in times.values() if start <= t["sent"] < end]
    answered = [a.seconds for a in attempts if start <= a.at < end]
    posted_in = sum(
        1 for t in times.values() if "posted" in t and start <= t["posted"] < end
    )
    return {
        "seconds": end - start,
        "accepted_per_s": len(mine) / (end - start),
        "postings_per_s": posted_in / (end - start),
        "webhook_answer_s": spread(answered),
        "received_to_posted_s": spread(
            [
                t["posted"] - t["received"]
                for t in mine
                if "posted" in t and "received" in t
            ]
        ),
        "sent_to_posted_s": spread(
            [t["posted"] - t["sent"] for t in mine if "posted" in t]
        ),
    }


def with_ratios(phases: dict[str, dict]) -> dict[str, dict]:
    """Add each figure as a ratio against the baseline phase."""
    base = phases["baseline (no fault)"]
    for phase in phases.values():
        phase["vs_baseline"] = {
            "accepted_per_s": ratio(phase["accepted_per_s"], base["accepted_per_s"]),
            "postings_per_s": ratio(phase["postings_per_s"], base["postings_per_s"]),
            "webhook_answer_p95": ratio(
                phase["webhook_answer_s"]["p95"], base["webhook_answer_s"]["p95"]
            ),
            "received_to_posted_p95": ratio(
                phase["received_to_posted_s"]["p95"],
                base["received_to_posted_s"]["p95"],
            ),
            "sent_to_posted_p95": ratio(
                phase["sent_to_posted_s"]["p95"], base["sent_to_posted_s"]["p95"]
            ),
        }
    return phases


def task_runs(logs: Path) -> list[TaskRun]:
    """Every task run the qclusters logged; log q<i>-<n>.log is incarnation n of
    qcluster i, named qcluster-i#k, k counting from the sustained phase."""
    runs = []
    for log in sorted(logs.glob("q*-*.log")):
        runs.extend(parse_task_lines(log.stem, log.read_text(errors="replace")))
    return runs


def spread_figures(
    logs: Path, timeline: Timeline, samples: list[tuple[float, int, float]], slots: int
) -> dict[str, Any]:
    """How the sustained phase's work spread over the qclusters and their workers."""
    names = incarnation_names(logs)
    runs = [
        r for r in task_runs(logs) if r.cluster in names and r.start >= timeline.started
    ]
    for run in runs:
        run.cluster = names[run.cluster]
    return {
        "by_qcluster": work_by_process(runs),
        "idle_while_work_waited": idle_while_waiting(
            samples, runs, timeline.alive, slots
        ),
        "idle_while_work_waited_over_1s": idle_while_waiting(
            samples, runs, timeline.alive, slots, min_wait=1.0
        ),
    }


def incarnation_names(logs: Path) -> dict[str, str]:
    """Log stem → incarnation name, for the qclusters that ran in the sustained phase:
    the newest log of each qcluster started before it, and the restarted one after."""
    newest: dict[str, list[str]] = defaultdict(list)
    for log in sorted(logs.glob("q*-*.log"), key=lambda p: int(p.stem.split("-")[1])):
        newest[log.stem.split("-")[0]].append(log.stem)
    out = {}
    for q, stems in newest.items():
        i = int(q[1:])
        if i == KILLED_CLUSTER:
            out[stems[-2]], out[stems[-1]] = f"qcluster-{i}#1", f"qcluster-{i}#2"
        else:
            out[stems[-1]] = f"qcluster-{i}#1"
    return out


def report(
    args: argparse.Namespace,
    sat: dict,
    relay: Relay,
    timeline: Timeline,
    samples: list[tuple[float, int, float]],
    logs: Path,
    counted: Tally,
) -> dict[str, Any]:
    times = event_times(relay.deliveries)
    phases = with_ratios(
        {
            name: window_figures(span, times, relay.attempts)
            for name, span in windows(timeline).items()
        }
    )
    send_seconds = timeline.sending_ended - timeline.started
    posted_at = [t["posted"] for t in times.values() if "posted" in t]
    return {
        "command": "python -m bench.load_test " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "layout": {
            "web": "2 gunicorn (1 worker, 4 threads each) on two ports",
            "qclusters": args.clusters,
            "workers_per_qcluster": 2,
            "database": "PostgreSQL (own cluster, restarted once)",
            "sandboxes": "1 gunicorn, 2 workers, 4 threads each",
        },
        "settings": {
            "rate": args.rate,
            "minutes": args.minutes,
            "senders": args.senders,
            "saturation_events": args.saturation_events,
            "production_settings_except": TEST_ENV,
        },
        "counts": asdict(counted) | {"passed": counted.passed},
        "answers": dict(Counter(str(a.answer) for a in relay.attempts)),
        "redeliveries": sum(d.attempts - 1 for d in relay.deliveries if d.attempts),
        "throughput": {
            "accepted_per_s": counted.acknowledged / send_seconds,
            "postings_per_s": len(posted_at) / (max(posted_at) - timeline.started)
            if posted_at
            else float("nan"),
        },
        "phases": phases,
        "faults": {
            "kill_at_s": timeline.kill - timeline.started,
            "cluster_back_at_s": timeline.cluster_back - timeline.started,
            "db_restart_at_s": timeline.db_restart - timeline.started,
            "db_down_s": timeline.db_back - timeline.db_restart,
            "drained_after_s": timeline.drained - timeline.started,
        },
        "work": spread_figures(logs, timeline, samples, slots=2),
        "saturation": sat,
    }


def machine() -> dict[str, Any]:
    import platform

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_end": [round(x, 2) for x in load],
    }


def summary_lines(figures: dict[str, Any]) -> list[str]:
    c = figures["counts"]
    t = figures["throughput"]
    s = figures["saturation"]
    lines = [
        f"sent {c['sent']}, acknowledged {c['acknowledged']}, posted {c['posted']}, "
        f"lost {c['lost']}, duplicated {c['duplicated']}, unacknowledged "
        f"{c['unacknowledged']}, unexpected {c['unexpected']}",
        f"answers {figures['answers']}; {figures['redeliveries']} redeliveries",
        f"throughput: {t['accepted_per_s']:.1f} events/s accepted, "
        f"{t['postings_per_s']:.1f} postings/s",
        f"saturation: 1 qcluster {s['one']['events_per_s']:.1f} events/s, "
        f"{s['all']['qclusters']} qclusters {s['all']['events_per_s']:.1f} events/s "
        f"(ratio {s['ratio_all_to_one']:.2f})",
    ]
    header = ["phase", "accepted/s", "posted/s", "answer p50", "answer p95",
              "recv→posted p50", "p95", "p99", "sent→posted p95", "p95 × baseline"]  # fmt: skip
    rows = []
    for name, p in figures["phases"].items():
        a, r, e = (
            p["webhook_answer_s"],
            p["received_to_posted_s"],
            p["sent_to_posted_s"],
        )
        rows.append(
            [
                name,
                f"{p['accepted_per_s']:.1f}",
                f"{p['postings_per_s']:.1f}",
                f"{a['p50'] * 1000:.0f} ms",
                f"{a['p95'] * 1000:.0f} ms",
                f"{r['p50']:.2f} s",
                f"{r['p95']:.2f} s",
                f"{r['p99']:.2f} s",
                f"{e['p95']:.2f} s",
                f"{p['vs_baseline']['received_to_posted_p95']:.2f}",
            ]
        )
    lines.append(harness.table(header, rows))
    rows = [
        [name, row["tasks"], row["events"], f"{row['busy_s']:.0f}", len(row["workers"])]
        for name, row in figures["work"]["by_qcluster"].items()
    ]
    lines.append(
        harness.table(["qcluster", "tasks", "events", "busy s", "workers"], rows)
    )
    for key, what in (
        ("idle_while_work_waited", "any event queued"),
        ("idle_while_work_waited_over_1s", "an event queued over 1 s"),
    ):
        idle = figures["work"][key]
        lines.append(
            f"idle worker slots while {what}: {idle['idle_slot_samples']} of "
            f"{idle['slot_samples']} slot-samples ({idle['idle_share']:.1%}), "
            f"{idle['samples_with_work_waiting']} samples"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    clock = Clock()
    pg = PgCluster()
    layout = None
    logs = Path(tempfile.mkdtemp(prefix="portal-loadtest-"))
    ok = False
    try:
        pg.start()
        clock.say(
            f"PostgreSQL {pg.bin.parent.name} of its own on 127.0.0.1:{pg.port} ({pg.dir})"
        )
        layout = Layout(
            env={},
            logs=logs,
            clock=clock,
            webs=2,
            web_workers=1,
            clusters=args.clusters,
            sandbox_workers=2,
            cluster_args=[sys.executable, "-m", "bench.load_test", "--qcluster"],
        )
        layout.env = production_environment(
            pg.url(DB_NAME), layout.portal_url, os.environ
        )
        layout.env.update(TEST_ENV)
        setup_django(layout.env)
        check_deploy_and_migrate(clock)
        planned = round(args.rate * args.minutes * 60)
        needed = WARMUP_EVENTS + 2 * args.saturation_events + planned
        invoices = seed(layout.sandbox_port, needed)
        clock.say(f"seeded: {len(invoices)} open invoices, connections")
        secret = signing_secret()
        layout.start()
        warm_up(layout, invoices[:WARMUP_EVENTS], secret)
        rest = invoices[WARMUP_EVENTS:]
        sat = saturation(layout, rest, args, secret)
        relay, timeline, sampler = sustained(
            layout, pg, rest[2 * args.saturation_events :], args, secret
        )
        counted = count_run(relay.deliveries)
        figures = report(args, sat, relay, timeline, sampler.samples, logs, counted)
        write(figures, args)
        say("\nload test summary")
        for line in summary_lines(figures):
            say(line)
        ok = counted.passed and not counted.unacknowledged
        verdict = "PASSED" if ok else "FAILED"
        say(f"\n{verdict}: {counted.lost} lost, {counted.duplicated} duplicated")
    finally:
        if layout is not None:
            if not ok:
                layout.tails()
            layout.stop()
        pg.remove()
        if ok and not args.keep_logs:
            shutil.rmtree(logs, ignore_errors=True)
        else:
            say(f"logs kept in {logs}")
    return 0 if ok else 1


def warm_up(layout: Layout, invoices: list, secret: str) -> None:
    """Get to the steady state a live system is in before the measurements.

    The Sage Pro mirror is synced first, as before go-live: the open invoices were
    seeded just now, and a payment for an invoice the mirror lacks is decided again on
    invoices read fresh from Sage Pro (the slow path). Then a few events are posted end
    to end, and the tasks the clusters queued on their first tick are run."""
    from django_q.models import OrmQ

    from bench import pipeline
    from integrations import mirror

    layout.clock.say(f"Sage Pro mirror synced: {mirror.sync_all()}")
    send_backlog(layout, invoices, WARMUP_TXN, "warmup", secret)
    if not wait_until_settled(pipeline.Run(WARMUP_TXN, len(invoices)), layout, 120):
        raise CheckFailed("warm-up: 20 events were not posted within 120 s")
    deadline = time.monotonic() + 60
    while OrmQ.objects.exists() and time.monotonic() < deadline:
        layout.check_running()
        time.sleep(0.25)
    layout.clock.say(f"warm-up done; {OrmQ.objects.count()} tasks still queued")


def write(figures: dict[str, Any], args: argparse.Namespace) -> None:
    text = json.dumps(figures, indent=2, default=str)
    if args.json:
        say(text)
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    say(f"figures written to {path}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=4.0, help="Sustained phase (4)."
    )
    parser.add_argument("--rate", type=float, default=10.0, help="Events/s sent (10).")
    parser.add_argument("--clusters", type=int, default=3, help="qclusters (3).")
    parser.add_argument("--senders", type=int, default=8, help="Relay threads (8).")
    parser.add_argument(
        "--saturation-events",
        type=int,
        default=600,
        help="Backlog per saturation run (600).",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=420.0,
        help="Seconds to wait for the queue.",
    )
    parser.add_argument(
        "--output", default=str(RESULTS), help=f"JSON figures ({RESULTS})."
    )
    parser.add_argument(
        "--json", action="store_true", help="Print the JSON figures too."
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="Keep the processes' logs."
    )
    parser.add_argument("--qcluster", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.qcluster:
        return args
    if not 0.25 <= args.minutes <= 60:
        parser.error("--minutes: give 0.25 to 60")
    if not 1 <= args.rate <= 500:
        parser.error("--rate: give 1 to 500 events/s")
    if not 2 <= args.clusters <= 12:
        parser.error(f"--clusters: give 2 to 12 (qcluster-{KILLED_CLUSTER} is killed)")
    if not 1 <= args.senders <= 64:
        parser.error("--senders: give 1 to 64")
    if not 50 <= args.saturation_events <= 20_000:
        parser.error("--saturation-events: give 50 to 20000")
    return args


def _on_term(signum: int, frame: Any) -> None:
    raise harness.Stop  # unwinds through `finally`: children and PostgreSQL stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.qcluster:
        run_qcluster()
        return 0
    signal.signal(signal.SIGTERM, _on_term)
    try:
        return run(args)
    except CheckFailed as exc:
        say(f"\nload test FAILED: {exc}")
        return 1
    except harness.Stop:
        say("\nload test stopped (SIGTERM)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
