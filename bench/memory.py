"""Memory: the qcluster's peak RSS while it drains a backlog of 1,000, then 10,000 events.

    .venv/bin/python -m bench.memory [--db sqlite|postgres|both]
        [--backlogs 1000,10000] [--concurrency 16]

On one database, after a qcluster has run the due schedules once (the Sage Pro mirror's
first sync among them; not sampled) and stopped, for each backlog size B in turn:

1. With no qcluster running, POST B signed `transaction.approved` events (one per open
   invoice, paying it in full) through the webhook, the way they arrive in production:
   every one is stored and waits for a worker.
2. Start `manage.py qcluster` (Q_WORKERS=2) in its own process group and sample, every
   0.2 s, the RSS of every process in that group (/proc/<pid>/stat: the cluster's
   parent, sentinel, monitor, pusher and workers) until every event of the backlog is
   processed and posted (bounded), then stop the cluster. The sampling starts while
   the cluster is still starting.
3. Print, per backlog: drain time and rate, the group's RSS just after start, its peak,
   the peak of its largest process, and the ratio peak(largest) ÷ peak(smallest
   backlog) for both. Flat ≈ 1.0 (memory does not grow with the backlog); this
   benchmark calls a ratio above 1.2 growing.
"""

import sys
import threading
import time

from bench import harness, pipeline
from bench.harness import say

FLAT = 1.2
FIRST_TXN = 860_000_000
RUN_SPAN = 1_000_000


class Sampler(threading.Thread):
    """Sample the RSS of the bench's current qcluster process group."""

    def __init__(self, bench: harness.Bench, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.bench = bench
        self.every = every
        self.stopping = threading.Event()
        self.first_total = 0  # the first sample with the workers up
        self.peak_total = 0
        self.peak_process = 0
        self.most_processes = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            cluster = self.bench.cluster
            if cluster is None or not cluster.running():
                continue
            rss = harness.group_rss(cluster.process.pid)
            if not rss:
                continue
            total = sum(rss.values())
            self.samples += 1
            if not self.first_total and len(rss) >= 3:
                self.first_total = total
            self.peak_total = max(self.peak_total, total)
            self.peak_process = max(self.peak_process, max(rss.values()))
            self.most_processes = max(self.most_processes, len(rss))

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)

    def describe(self) -> str:
        return (
            f"group peak {mib(self.peak_total)} MiB over {self.most_processes} "
            f"processes, largest process {mib(self.peak_process)} MiB"
        )


def mib(value: float) -> str:
    return f"{value / 2**20:.1f}"


def drain(args, bench: harness.Bench, size: int, invoices: list, index: int) -> dict:  # noqa: ANN001
    from django.conf import settings

    run = pipeline.Run(FIRST_TXN + index * RUN_SPAN, size)
    deliveries = pipeline.build_events(invoices, run.first, f"mem{size}")
    say(f"\n--- backlog of {size} events ---")
    say(f"Queueing {size} events through the webhook (no qcluster running)…")
    harness.sign_all(deliveries, settings.DEMO_WEBHOOK_SECRET)
    sent = harness.post_all(
        bench.port,
        harness.WEBHOOK_PATH,
        deliveries,
        args.concurrency,
        "webhook",
        time_limit=args.time_limit,
    )
    say(f"  {sent.describe()}")
    if sent.failed:
        raise RuntimeError(f"{sent.failed} events were not accepted")

    sampler = Sampler(bench)
    sampler.start()
    try:
        bench.start_cluster()
        began = time.monotonic()  # drain time from "running.", start-up excluded
        say(f"qcluster running (pid {bench.cluster.process.pid}); draining…")
        ticker = harness.Ticker(
            5.0, lambda: f"{pipeline.progress_line(run)}; {sampler.describe()}"
        )
        deadline = time.monotonic() + args.time_limit
        finished = False
        while time.monotonic() < deadline:
            bench.check_children()
            if pipeline.is_settled(run):
                finished = True
                break
            ticker.tick()
            time.sleep(0.5)
        seconds = time.monotonic() - began
    finally:
        sampler.stop()
    bench.stop_cluster()
    if not finished:
        say(f"TIMED OUT after {args.time_limit:.0f} s: {pipeline.progress_line(run)}")
    problems = pipeline.verify(run) if finished else ["timed out"]
    say(f"  drained in {seconds:.1f} s; {sampler.describe()}")
    return {
        "size": size,
        "seconds": seconds,
        "first": sampler.first_total,
        "peak": sampler.peak_total,
        "largest": sampler.peak_process,
        "processes": sampler.most_processes,
        "samples": sampler.samples,
        "problems": problems,
    }


def run(args) -> int:  # noqa: ANN001
    sizes = parse_sizes(args.backlogs)
    bench = harness.Bench(
        args.db, env_overrides=harness.env_overrides(args), keep=args.keep
    )
    results = []
    with bench:
        bench.prepare()
        from django.db import connections

        say(f"Seeding {sum(sizes)} open invoices…")
        invoices = pipeline.seed_invoices(sum(sizes), seed=17)
        connections.close_all()
        bench.start_web()
        say(
            "\nFirst tick (the mirror's first sync among the due schedules), not sampled…"
        )
        pipeline.start_cluster(bench)
        pipeline.warm_up(bench, [], FIRST_TXN - 1, args.time_limit)
        bench.stop_cluster()
        start = 0
        for index, size in enumerate(sizes):
            chunk = invoices[start : start + size]
            start += size
            results.append(drain(args, bench, size, chunk, index))
    return report(args, results)


def report(args, results: list[dict]) -> int:  # noqa: ANN001
    base = results[0]
    rows = []
    for r in results:
        rows.append(
            [
                f"{r['size']:,}",
                f"{r['seconds']:.1f}",
                f"{r['size'] / r['seconds']:.1f}",
                mib(r["first"]),
                mib(r["peak"]),
                mib(r["largest"]),
                r["processes"],
                f"{r['peak'] / base['peak']:.2f}" if base["peak"] else "n/a",
                f"{r['largest'] / base['largest']:.2f}" if base["largest"] else "n/a",
            ]
        )
    say(
        f"\nMemory on {args.db}: qcluster (Q_WORKERS=2) draining a backlog queued "
        "through the webhook; RSS in MiB, sampled every 0.2 s"
    )
    say(
        harness.table(
            [
                "backlog",
                "drain s",
                "events/s",
                "group at start",
                "group peak",
                "largest process peak",
                "processes",
                "group ratio",
                "largest ratio",
            ],
            rows,
        )
    )
    failed = False
    last = results[-1]
    if len(results) > 1 and base["peak"] and base["largest"]:
        for label, key in (("group", "peak"), ("largest process", "largest")):
            ratio = last[key] / base[key]
            say(
                f"peak RSS ({label}) {last['size']:,} ÷ {base['size']:,} = {ratio:.2f} "
                f"(flat ≈ 1.0) → {'FLAT' if ratio <= FLAT else 'GROWS'}"
            )
    for r in results:
        for problem in r["problems"]:
            say(f"VERIFY FAILED for {r['size']:,}: {problem}")
            failed = True
        if r["samples"] == 0:
            say(f"NO SAMPLES for {r['size']:,}: /proc could not be read")
            failed = True
    if not failed:
        say("Verified: every backlog drained, each payment posted exactly once")
    return 1 if failed else 0


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--backlogs {text!r}: expected e.g. 1000,10000") from None
    if not sizes or any(not 1 <= s <= 100_000 for s in sizes):
        raise SystemExit(f"--backlogs {text!r}: sizes from 1 to 100000")
    return sizes


def main() -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--backlogs",
        default="1000,10000",
        help="Backlog sizes, drained in turn (default 1000,10000).",
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="Webhook senders (16)."
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=900.0,
        help="Max seconds to queue, and to drain, each backlog.",
    )
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        parser.error("reads /proc: Linux only")
    if args.db == "both":
        return harness.run_per_database("bench.memory", args, sys.argv[1:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
