"""Latency: received→posted under a steady open-loop load, with and without WAN latency.

    .venv/bin/python -m bench.latency [--db sqlite|postgres|both] [--rate 50]
        [--seconds 60] [--latency-ms 0,50] [--senders 16] [--warmup 5]

For each gateway latency in `--latency-ms` (one after the other, on one database):

1. Set the Sage Pro sandbox's latency fault (0 clears every fault), start a real
   qcluster (Q_WORKERS=2) and send `--warmup` events, waiting until they are posted
   (not measured).
2. Open loop: event i is due at start + i / rate, for `--seconds`; `--senders` threads
   (keep-alive connections) each take the next event, sleep until it is due, sign it
   and POST it to the webhook. The schedule does not wait for answers: a slow answer
   makes a sender late only when every sender is busy, and that lateness is measured
   (sender lag = send time − due time) and printed, so a run whose load generator
   fell behind is visible.
3. Wait (bounded) until every event is processed and posted, then print
   received→posted p50/p95/p99/max from `Event.received_at` and `Posting.posted_at`,
   and verify exactly once (one receipt per transaction, none duplicated).

Goals: p95 < 2 s at 0 ms gateway latency, p95 < 3 s at 50 ms.
"""

import itertools
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime

from bench import harness, pipeline
from bench.harness import WEBHOOK_PATH, Delivery, say

P95_GOALS = {0: 2.0, 50: 3.0}  # seconds, by gateway latency in ms
LATE = 0.1  # a send more than this many seconds after its due time counts as late
FIRST_TXN = 820_000_000
RUN_SPAN = 10_000_000


class OpenLoop:
    """Send deliveries on a fixed schedule from several threads; record the lag."""

    def __init__(
        self, port: int, deliveries: list[Delivery], rate: float, senders: int
    ) -> None:
        self.port = port
        self.deliveries = deliveries
        self.rate = rate
        self.senders = senders
        self.counter = itertools.count()
        self.lock = threading.Lock()
        self.lags: list[float] = []
        self.busy = 0  # sends already late when a sender became free for them
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()
        self.sent = 0

    def run(self, secret: str) -> float:
        """Send everything (bounded: the schedule's length + 60 s); return seconds."""
        self.start = time.monotonic() + 0.5
        schedule = len(self.deliveries) / self.rate
        self.deadline = self.start + schedule + 60
        threads = [
            threading.Thread(target=self.sender, args=(secret,), daemon=True)
            for _ in range(self.senders)
        ]
        for thread in threads:
            thread.start()
        ticker = harness.Ticker(5.0, self.progress)
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(0.2)
            ticker.tick()
        return time.monotonic() - self.start

    def progress(self) -> str:
        with self.lock:
            lags = list(self.lags)
        late = sum(1 for lag in lags if lag > LATE)
        return (
            f"sent {self.sent}/{len(self.deliveries)}, "
            f"max sender lag {max(lags, default=0) * 1000:.0f} ms, late {late}"
        )

    def sender(self, secret: str) -> None:
        import http.client

        from standardwebhooks.webhooks import Webhook

        hook = Webhook(secret)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while True:
                index = next(self.counter)
                if index >= len(self.deliveries):
                    return
                due = self.start + index / self.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                elif -pause > LATE:
                    with self.lock:
                        self.busy += 1
                if time.monotonic() > self.deadline:
                    with self.lock:
                        self.errors["not_sent_time_limit"] += 1
                    continue
                lag = max(0.0, time.monotonic() - due)
                item = self.deliveries[index]
                now = datetime.now(UTC)
                headers = {
                    "Content-Type": "application/json",
                    "webhook-id": item.msg_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": hook.sign(
                        item.msg_id, now, item.body.decode()
                    ),
                }
                status = self.post(conn, item.body, headers)
                with self.lock:
                    self.lags.append(lag)
                    if isinstance(status, int):
                        self.statuses[status] += 1
                        self.sent += 1
                    else:
                        self.errors[status] += 1
        finally:
            conn.close()

    def post(self, conn, body: bytes, headers: dict) -> int | str:  # noqa: ANN001
        for attempt in (1, 2):
            try:
                conn.request("POST", WEBHOOK_PATH, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                return response.status
            except OSError as exc:  # reset, refused, timeout: one fresh retry
                conn.close()
                if attempt == 2:
                    return type(exc).__name__
        return "unreachable"

    @property
    def failed(self) -> int:
        bad = sum(n for s, n in self.statuses.items() if not 200 <= s < 300)
        return bad + sum(self.errors.values())


def run_latency(
    args, bench: harness.Bench, ms: int, invoices: list, index: int
) -> dict:  # noqa: ANN001
    from django.conf import settings

    base = FIRST_TXN + index * RUN_SPAN
    warm, load = invoices[: args.warmup], invoices[args.warmup :]
    run = pipeline.Run(base + RUN_SPAN // 2, len(load))

    say(f"\n--- gateway latency {ms} ms ---")
    bench.set_latency(ms)
    pipeline.start_cluster(bench)
    pipeline.warm_up(bench, warm, base, args.drain_limit)

    deliveries = pipeline.build_events(load, run.first, f"lat{ms}")
    say(
        f"Open loop: {len(deliveries)} events at {args.rate:g}/s for "
        f"{args.seconds:g} s, {args.senders} senders…"
    )
    loop = OpenLoop(bench.port, deliveries, args.rate, args.senders)
    send_seconds = loop.run(settings.DEMO_WEBHOOK_SECRET)
    say(
        f"  sent {loop.sent} in {send_seconds:.1f} s = {loop.sent / send_seconds:.1f}/s, "
        f"statuses {dict(loop.statuses)}, errors {dict(loop.errors)}"
    )
    if loop.failed:
        raise RuntimeError(f"{loop.failed} events were not accepted")
    say("Waiting until every event is posted…")
    finished = pipeline.wait_for(bench, run, args.drain_limit)
    if not finished:
        say(f"TIMED OUT after {args.drain_limit:.0f} s: {pipeline.progress_line(run)}")
    measured = pipeline.measure(run)
    problems = pipeline.verify(run)
    bench.stop_cluster()
    return {
        "ms": ms,
        "latencies": measured["latencies"],
        "lags": loop.lags,
        "busy": loop.busy,
        "send_rate": loop.sent / send_seconds,
        "problems": problems if finished else [*problems, "timed out"],
    }


def run(args) -> int:  # noqa: ANN001
    latencies = harness.parse_ms_list(args.latency_ms)
    count = round(args.rate * args.seconds)
    if count < 1:
        raise SystemExit("--rate × --seconds must be at least 1 event")
    bench = harness.Bench(
        args.db, env_overrides=harness.env_overrides(args), keep=args.keep
    )
    results = []
    with bench:
        bench.prepare()
        from django.db import connections

        per_run = count + args.warmup
        say(f"Seeding {per_run * len(latencies)} open invoices…")
        invoices = pipeline.seed_invoices(per_run * len(latencies), seed=11)
        connections.close_all()
        bench.start_web()
        for index, ms in enumerate(latencies):
            chunk = invoices[index * per_run : (index + 1) * per_run]
            results.append(run_latency(args, bench, ms, chunk, index))
    return report(args, count, results)


def report(args, count: int, results: list[dict]) -> int:  # noqa: ANN001
    say(
        f"\nLatency on {args.db}: {count} events, open loop at {args.rate:g}/s for "
        f"{args.seconds:g} s, {args.senders} senders, Q_WORKERS=2"
    )
    rows = []
    for r in results:
        lat, lags = r["latencies"], r["lags"]
        rows.append(
            [
                f"{r['ms']} ms",
                f"{r['send_rate']:.1f}",
                f"{harness.percentile(lat, 50):.2f}",
                f"{harness.percentile(lat, 95):.2f}",
                f"{harness.percentile(lat, 99):.2f}",
                f"{max(lat, default=float('nan')):.2f}",
                f"{sum(1 for lag in lags if lag > LATE)}",
                f"{max(lags, default=0) * 1000:.0f}",
                "yes" if not r["problems"] else "NO",
            ]
        )
    say(
        harness.table(
            [
                "gateway latency",
                "sent/s",
                "p50 s",
                "p95 s",
                "p99 s",
                "max s",
                f"late > {LATE * 1000:.0f} ms",
                "max lag ms",
                "exactly once",
            ],
            rows,
        )
    )
    failed = False
    for r in results:
        p95 = harness.percentile(r["latencies"], 95)
        goal = P95_GOALS.get(r["ms"])
        if goal is not None:
            met = p95 < goal
            say(
                f"at {r['ms']} ms: received→posted p95 = {p95:.2f} s (goal < {goal:g} s)"
                f" → {'MET' if met else 'MISSED'}"
            )
        late = sum(1 for lag in r["lags"] if lag > LATE)
        if late:
            say(
                f"at {r['ms']} ms: {late} of {len(r['lags'])} sends were more than "
                f"{LATE * 1000:.0f} ms late: {r['busy']} because every sender was "
                f"waiting for an answer (add --senders), {late - r['busy']} woke late "
                "(this process was short of CPU)"
            )
        for problem in r["problems"]:
            say(f"VERIFY FAILED at {r['ms']} ms: {problem}")
            failed = True
        if not r["problems"]:
            say(f"at {r['ms']} ms: verified {count} events posted exactly once")
    return 1 if failed else 0


def main() -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="Events per second.")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="Length of the load."
    )
    parser.add_argument(
        "--latency-ms",
        default="0,50",
        help="Gateway latencies to run, in turn (default 0,50).",
    )
    parser.add_argument("--senders", type=int, default=16, help="Sender threads (16).")
    parser.add_argument(
        "--warmup", type=int, default=5, help="Untimed events after each cluster start."
    )
    parser.add_argument(
        "--drain-limit",
        type=float,
        default=300.0,
        help="Max seconds to wait for the pipeline after the load.",
    )
    args = parser.parse_args()
    if not 0 < args.rate <= 1000 or not 0 < args.seconds <= 3600:
        parser.error("--rate must be in (0, 1000] and --seconds in (0, 3600]")
    if args.senders < 1 or args.senders > 64:
        parser.error("--senders must be 1..64")
    if args.db == "both":
        return harness.run_per_database("bench.latency", args, sys.argv[1:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
