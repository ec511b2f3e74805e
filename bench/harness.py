"""Shared harness for the benchmarks: a fresh database, gunicorn and qcluster children.

One `Bench` per run:

1. create a fresh database (SQLite: a new file in a temp dir; PostgreSQL: drop and
   recreate `portal_bench` on 127.0.0.1:5432, or `$BENCH_PG_DB`),
2. point this process's Django at it, migrate, and seed the Sage Pro sandbox, the two
   sandbox connections and the demo webhook secret (`integrations.demo.seed_demo`),
3. start gunicorn (and, when asked, `manage.py qcluster`) as children, each in its own
   process group, and wait for `/healthz`,
4. stop every child on exit, on Ctrl-C, on SIGTERM and on exceptions.

`--db both` re-runs the benchmark once per database in a fresh interpreter, because
Django settings (the database URL) are fixed once a process has loaded them.
"""

import argparse
import http.client
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
# BENCH_PG_DB picks another database name, so two runs on one server don't collide.
PG_DB = os.environ.get("BENCH_PG_DB", "portal_bench")
PG_URL = f"postgres://postgres@127.0.0.1:5432/{PG_DB}"
PAYTRACE_SLUG = "paytrace-sandbox"
WEBHOOK_PATH = f"/webhooks/paytrace/{PAYTRACE_SLUG}/"
BARE_PATH = "/sandbox/bare-202/"
SAGEPRO_PATH = "/sandbox/sagepro/api/v1"
HEALTHZ_TIMEOUT = 60.0
STOP_GRACE = 10.0


class Stop(BaseException):
    """SIGTERM arrived: unwind through every `finally` so the children get stopped."""


def say(line: str = "") -> None:
    print(line, flush=True)


# --- command line ------------------------------------------------------------------


def argument_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres", "both"],
        default="both",
        help="Database to run on (both: SQLite, then PostgreSQL).",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Keep the temp dir (SQLite file, child logs) after the run.",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Extra environment for this process and the children (repeatable), "
        "e.g. --env DRAIN_BATCH_SIZE=100.",
    )
    return parser


def env_overrides(args: argparse.Namespace) -> dict[str, str]:
    """`--env NAME=VALUE` options as a dict (a malformed one stops the run)."""
    out = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def parse_ms_list(text: str) -> list[int]:
    """`--latency-ms 0,50` → [0, 50] (whole milliseconds, each run in turn)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--latency-ms {text!r}: expected e.g. 0,50") from None
    if not values or any(not 0 <= v <= 10_000 for v in values):
        raise SystemExit(f"--latency-ms {text!r}: whole ms from 0 to 10000")
    return values


def run_per_database(module: str, args: argparse.Namespace, argv: list[str]) -> int:
    """For `--db both`, run the benchmark once per database, each in a fresh process."""
    codes = []
    for db in ("sqlite", "postgres"):
        say(f"\n===== {module} on {db} =====")
        command = [sys.executable, "-m", module, *strip_db(argv), "--db", db]
        codes.append(subprocess.run(command, cwd=ROOT).returncode)
    return max(codes)


def strip_db(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--db":
            skip = True
        elif not arg.startswith("--db="):
            out.append(arg)
    return out


# --- the run -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_major() -> int:
    import gunicorn

    return gunicorn.version_info[0]


class Child:
    """A process the harness started, leader of its own process group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.log = log
        self.log_file = log.open("ab")
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            process_group=0,
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def kill_group(self) -> None:
        """SIGKILL the leader and everything in its group (workers included)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        self.log_file.close()

    def stop(self) -> None:
        """SIGTERM the leader, give it a few seconds, then kill whatever is left."""
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                say(f"  {self.name} did not stop in {STOP_GRACE:.0f} s; killing it")
        self.kill_group()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Bench:
    """One benchmark run on one fresh database."""

    db: str
    env_overrides: dict[str, str] = field(default_factory=dict)
    keep: bool = False
    port: int = field(default_factory=free_port)
    children: list[Child] = field(default_factory=list)
    cluster: Child | None = None

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="portal-bench-"))
        if self.db == "sqlite":
            self.database_url = f"sqlite:///{self.tmp / 'bench.sqlite3'}"
        elif self.db == "postgres":
            self.database_url = PG_URL
        else:
            raise ValueError(f"unknown database {self.db!r}")
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.sagepro_url = f"{self.base_url}{SAGEPRO_PATH}"

    # context manager: every child is stopped however the run ends
    def __enter__(self) -> "Bench":
        self._previous_term = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
            for child in self.children:
                say(f"--- last lines of {child.name} ({child.log}) ---")
                say(child.tail())
        self.stop_all()
        signal.signal(signal.SIGTERM, self._previous_term)
        if exc_type is None and not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            say(f"Logs and files kept in {self.tmp}")

    def _on_term(self, signum: int, frame: Any) -> None:
        raise Stop

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.cluster = None

    # environment shared by this process and the children
    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": self.database_url,
            "DEMO_MODE": "1",
            "SANDBOX_ENABLED": "1",
            "LOG_LEVEL": "WARNING",
            "Q_LOG_LEVEL": "INFO",
            "Q_WORKERS": "2",
            "PYTHONPATH": str(ROOT),
        }
        env.update(self.env_overrides)
        return env

    def prepare(self) -> None:
        """Create the database, set up Django here on it, migrate and seed."""
        started = time.monotonic()
        if self.db == "postgres":
            recreate_postgres()
        os.environ.update(self.environment())
        os.chdir(ROOT)
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections, transaction

        from integrations import demo

        call_command("migrate", interactive=False, verbosity=0)
        with transaction.atomic():
            demo.seed_demo(self.port)
        connections.close_all()
        say(
            f"Database {self.db} ({self.database_url}) migrated and seeded "
            f"in {time.monotonic() - started:.1f} s"
        )

    def start_web(self) -> None:
        args = [
            sys.executable, "-m", "gunicorn", "portal.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", "2", "--threads", "4", "--worker-class", "gthread",
            "--graceful-timeout", "5",
        ]  # fmt: skip
        if gunicorn_major() >= 27:
            # gunicorn 27 opens a control socket at one fixed path in $HOME, shared
            # by every instance on the machine; the benchmarks don't use it.
            args.append("--no-control-socket")
        child = Child("gunicorn", args, self.environment(), self.tmp / "gunicorn.log")
        self.children.append(child)
        self.wait_healthy()
        say(f"gunicorn (pid {child.process.pid}) serving {self.base_url}")

    def start_cluster(self, timeout: float = 30.0) -> Child:
        """Start `manage.py qcluster` and wait until it logs that it is running."""
        log = self.tmp / "qcluster.log"
        offset = log.stat().st_size if log.exists() else 0
        args = [sys.executable, str(ROOT / "manage.py"), "qcluster"]
        # django-q2 logs "running." at INFO through the root logger, so the cluster
        # gets LOG_LEVEL=INFO (one line per task, to its own log file).
        env = {**self.environment(), "LOG_LEVEL": "INFO"}
        child = Child("qcluster", args, env, log)
        self.children.append(child)
        self.cluster = child
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with log.open("rb") as handle:
                handle.seek(offset)
                if b"running." in handle.read():
                    return child
            if not child.running():
                raise RuntimeError(f"qcluster exited:\n{child.tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"qcluster did not report running in {timeout:.0f} s")

    def stop_cluster(self) -> None:
        """Stop the qcluster the way an operator would (SIGTERM, then kill)."""
        if self.cluster is None:
            return
        self.cluster.stop()
        self.children.remove(self.cluster)
        self.cluster = None

    def kill_cluster(self) -> None:
        """SIGKILL the whole qcluster process group: nothing gets to clean up."""
        if self.cluster is None:
            return
        self.cluster.kill_group()
        self.children.remove(self.cluster)
        self.cluster = None

    def check_children(self) -> None:
        for child in self.children:
            if not child.running():
                raise RuntimeError(
                    f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"
                )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTHZ_TIMEOUT
        while time.monotonic() < deadline:
            self.check_children()
            try:
                status, _ = request(self.port, "GET", "/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"/healthz did not answer 200 in {HEALTHZ_TIMEOUT:.0f} s")

    def set_fault(self, mode: str, seconds: float = 60, **extra: Any) -> dict:
        """Set the Sage Pro sandbox's injected fault; return its answer."""
        import json

        body = json.dumps({"mode": mode, "seconds": seconds, **extra}).encode()
        # The sandbox's API key: _faults needs it like every other Sage Pro call.
        key = os.environ.get("SANDBOX_SAGEPRO_API_KEY", "sandbox-sagepro-key")
        status, reply = request(
            self.port,
            "POST",
            f"{SAGEPRO_PATH}/_faults",
            body,
            {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        if status != 200:
            raise RuntimeError(f"_faults answered {status}: {reply[:300]!r}")
        return json.loads(reply)

    def set_latency(self, ms: int, seconds: float = 3600) -> None:
        """Delay every Sage Pro gateway call by `ms` (0: no fault at all)."""
        if ms == 0:
            self.set_fault("none", 0)
            say("Sage Pro sandbox: no injected latency")
            return
        try:
            reply = self.set_fault("latency", seconds, ms=ms)
        except RuntimeError as exc:
            raise RuntimeError(
                f"the sandbox refused the latency fault ({exc}); it needs "
                '`POST _faults {"mode": "latency", "ms": N}`'
            ) from None
        if reply.get("mode") != "latency" or reply.get("latency_ms", ms) != ms:
            raise RuntimeError(f"the sandbox did not set {ms} ms of latency: {reply}")
        say(f"Sage Pro sandbox: every gateway call delayed by {ms} ms")


def recreate_postgres() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_DB}"')


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One request to 127.0.0.1 on a fresh connection (setup and control, not timed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- memory --------------------------------------------------------------------------

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def group_rss(pgid: int) -> dict[int, int]:
    """Resident set size in bytes of every live process in process group `pgid`.

    Read from /proc/<pid>/stat (Linux): field 5 is the process group, field 24 the RSS
    in pages. A process that exits while it is read is skipped.
    """
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid:
            out[int(entry.name)] = int(fields[21]) * PAGE_SIZE
    return out


# --- load ----------------------------------------------------------------------------


@dataclass
class Delivery:
    """One POST to send: its body and (once signed) its headers."""

    body: bytes
    msg_id: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    label: str
    count: int
    seconds: float
    latencies: list[float]
    statuses: Counter
    errors: Counter
    reconnects: int = 0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        bad = sum(n for status, n in self.statuses.items() if not 200 <= status < 300)
        return bad + sum(self.errors.values())

    def describe(self) -> str:
        return (
            f"{self.label}: {self.count} in {self.seconds:.2f} s = {self.rate:.1f}/s, "
            f"p50 {percentile(self.latencies, 50) * 1000:.1f} ms, "
            f"p95 {percentile(self.latencies, 95) * 1000:.1f} ms, "
            f"statuses {dict(self.statuses)}, errors {self.failed}"
        )


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def post_all(
    port: int,
    path: str,
    deliveries: Sequence[Delivery],
    concurrency: int,
    label: str,
    *,
    time_limit: float = 600.0,
    progress_every: float = 5.0,
) -> LoadResult:
    """POST every delivery once with `concurrency` keep-alive clients (threads).

    Bounded: each delivery is sent at most once (a request the server dropped is
    retried once on a fresh connection, counted as a reconnect), and the whole run
    stops after `time_limit` seconds.
    """
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    reconnects = [0]
    done = [0]
    deadline = time.monotonic() + time_limit

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        try:
            while time.monotonic() < deadline:
                index = next(counter)
                if index >= len(deliveries):
                    break
                item = deliveries[index]
                headers = {"Content-Type": "application/json", **item.headers}
                for attempt in (1, 2):
                    began = time.perf_counter()
                    try:
                        conn.request("POST", path, body=item.body, headers=headers)
                        response = conn.getresponse()
                        response.read()
                        status = response.status
                        if response.getheader("connection", "").lower() == "close":
                            conn.close()
                    except (http.client.RemoteDisconnected, BrokenPipeError,
                            ConnectionResetError) as exc:  # fmt: skip
                        conn.close()
                        if attempt == 1:
                            with lock:
                                reconnects[0] += 1
                            continue
                        with lock:
                            errors[type(exc).__name__] += 1
                        break
                    except OSError as exc:
                        conn.close()
                        with lock:
                            errors[type(exc).__name__] += 1
                        break
                    mine.append(time.perf_counter() - began)
                    with lock:
                        statuses[status] += 1
                        done[0] += 1
                    break
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    next_report = time.monotonic() + progress_every
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(0.2)
        if time.monotonic() >= next_report:
            say(f"  {label}: {done[0]}/{len(deliveries)} sent")
            next_report += progress_every
    seconds = time.perf_counter() - began
    if done[0] + sum(errors.values()) < len(deliveries):
        errors["not_sent_time_limit"] += (
            len(deliveries) - done[0] - sum(errors.values())
        )
    return LoadResult(
        label, done[0], seconds, latencies, statuses, errors, reconnects[0]
    )


def sign_all(deliveries: Sequence[Delivery], secret: str) -> None:
    """Sign with the current time (the server accepts ±5 minutes)."""
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    hook = Webhook(secret)
    now = datetime.now(UTC)
    for item in deliveries:
        item.headers = {
            "webhook-id": item.msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": hook.sign(item.msg_id, now, item.body.decode()),
        }


# --- output --------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )  # fmt: skip
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(name: str, value: float, goal: float) -> str:
    met = value >= goal
    gap = "" if met else f" (short by {(goal - value) / goal:.0%} of the goal)"
    return f"{name} = {value:.2f} (goal ≥ {goal}) → {'MET' if met else 'MISSED'}{gap}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Ticker:
    """Call `report()` at most every `every` seconds."""

    def __init__(self, every: float, report: Callable[[], str]) -> None:
        self.every = every
        self.report = report
        self.next_at = time.monotonic() + every

    def tick(self) -> None:
        if time.monotonic() >= self.next_at:
            say(f"  [{time.strftime('%H:%M:%S')}] {self.report()}")
            self.next_at = time.monotonic() + self.every
