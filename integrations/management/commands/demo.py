"""`manage.py demo`: the whole product on one port, with payments flowing through it.

Steps: migrate, collect static files, seed (`seed_demo`), start gunicorn and one
django-q2 cluster as child processes, wait for /healthz, give the demo its past on the
first start (`demo_history`: about 60 days of payments, settlements, refunds and a
closed month), print the URLs and logins, then make card payments in the foreground
until Ctrl-C.

With DEMO_SAGEPRO=agent, a third child plays Sage Pro: the on-site agent
(`python -m sagepro_agent relay run`) over FoxPro fixture files under the clone,
reached through the relay. The demo waits for its first heartbeat before the payments
start, and prints where its `.DBF` files are.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import environ
import gunicorn
import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from integrations import demo

HEALTHZ_TIMEOUT_SECONDS = 60
HEARTBEAT_TIMEOUT_SECONDS = 60
STOP_GRACE_SECONDS = 10


class StopDemo(BaseException):
    """Ctrl-C or SIGTERM arrived. A BaseException so `except Exception` lets it pass."""


class Child:
    """One process the demo started, in its own process group.

    Its own group keeps the terminal's Ctrl-C away from it (the demo stops it in
    order instead), and lets the demo signal its workers along with it.
    """

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        # The agent stops on SIGINT (its Ctrl+C); gunicorn and qcluster on SIGTERM.
        self.stop_signal = stop_signal
        self.process = subprocess.Popen(
            args, cwd=settings.BASE_DIR, env=env, process_group=0
        )

    def __str__(self) -> str:
        return f"{self.name} (pid {self.process.pid})"

    def exit_code(self) -> int | None:
        return self.process.poll()

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


class Command(BaseCommand):
    help = (
        "Run the demo: migrate, seed, start gunicorn and a django-q2 cluster, and send "
        "sandbox card payments through the pipeline until Ctrl-C. DEMO_MODE=1 only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, default=8000, help="Port to serve on (8000)."
        )
        parser.add_argument(
            "--no-stream",
            dest="stream",
            action="store_false",
            help="Start everything but make no payments (DEMO_STREAM=0 does the same).",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=3.0,
            help="Average seconds between payments (3: one every 2 to 4 s).",
        )
        parser.add_argument(
            "--no-history",
            dest="history",
            action="store_false",
            help="Do not seed the demo's past (about 60 days of payments).",
        )

    def handle(
        self,
        *args: Any,
        port: int,
        stream: bool,
        interval: float,
        history: bool = True,
        **options: Any,
    ) -> None:
        demo.require_demo_mode()
        self.sagepro_mode = demo.sagepro_mode()  # a bad DEMO_SAGEPRO stops us here
        stream = stream and environ.Env().bool("DEMO_STREAM", default=True)
        self.children: list[Child] = []
        self.stopping = False
        previous = {
            signum: signal.signal(signum, self.on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.run(port, stream, interval, history)
        except StopDemo:
            self.say("\nStopping the demo…")
        finally:
            self.stopping = True
            self.stop_children()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def on_signal(self, signum: int, frame: object) -> None:
        if not self.stopping:  # while stopping, a second Ctrl-C must not cut it short
            raise StopDemo

    def run(self, port: int, stream: bool, interval: float, history: bool) -> None:
        check_port_is_free(port)
        self.say("Migrating the database… ", ending="")
        call_command("migrate", interactive=False, verbosity=0)
        self.say("done.")
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("seed_demo", port=port, stdout=self.stdout)
        connections.close_all()  # the children open their own

        env = child_environment(port)
        python = sys.executable
        self.start_child(
            "gunicorn", [python, "-m", "gunicorn", *gunicorn_options(port)], env
        )
        self.start_child(
            "qcluster", [python, str(settings.BASE_DIR / "manage.py"), "qcluster"], env
        )
        self.wait_until_healthy(f"http://127.0.0.1:{port}/healthz")
        if self.sagepro_mode == "agent":
            self.start_agent(env)
        # Cards on file go through the sandbox's hosted fields over HTTP: the server
        # must be up.
        for line in demo.seed_vault_customers():
            self.say(line)
        if history:
            self.seed_history()
        self.print_banner(port)
        if not stream:
            while True:
                self.wait(1.0)
        demo.run_stream(demo.DemoStream.for_demo(port), self.say, self.wait, interval)

    def seed_history(self) -> None:
        """The demo's past, on the first start (later starts find it and say so)."""
        started = time.monotonic()
        try:
            lines = demo.seed_history(self.say)
        except Exception as exc:  # the demo still runs; the next start tries again
            self.check_children()  # unless a child died: that is the real story
            self.say(
                f"The demo's past could not be seeded ({type(exc).__name__}: {exc}); "
                "the next start tries again."
            )
            return
        for line in lines:
            self.say(line)
        self.say(f"The demo's past is ready ({time.monotonic() - started:.0f} s).")

    def start_child(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        child = Child(name, args, env, stop_signal)
        self.children.append(child)
        self.say(f"Started {child}.")

    def start_agent(self, env: dict[str, str]) -> None:
        """Start the on-site agent through the relay; wait for its first heartbeat."""
        from django.utils import timezone

        from integrations.models import Connection

        agent = Connection.objects.get(slug=demo.SAGEPRO_SLUG).agent
        assert agent is not None, "seed_demo enrols the demo agent"
        since = timezone.now()
        self.start_child(
            "agent",
            demo.AgentSite().agent_command(sys.executable),
            env,
            stop_signal=signal.SIGINT,
        )
        self.say("Waiting for the agent's first heartbeat… ", ending="")
        deadline = time.monotonic() + HEARTBEAT_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            agent.refresh_from_db()
            if agent.last_heartbeat_at and agent.last_heartbeat_at >= since:
                state = "reachable" if agent.sage_reachable else "NOT reachable"
                self.say(f"received (version {agent.version}, FoxPro files {state}).")
                return
            self.wait(0.3)
        raise CommandError(
            f"The agent sent no heartbeat within {HEARTBEAT_TIMEOUT_SECONDS} s; its "
            "output is above."
        )

    def check_children(self) -> None:
        for child in self.children:
            code = child.exit_code()
            if code is not None:
                how = (
                    f"was killed by {signal.Signals(-code).name}"
                    if code < 0
                    else f"exited with code {code}"
                )
                raise CommandError(f"{child} {how}; stopping the rest of the demo.")

    def wait(self, seconds: float) -> None:
        """Sleep, checking every fraction of a second that the children still run."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_children()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))

    def wait_until_healthy(self, url: str) -> None:
        deadline = time.monotonic() + HEALTHZ_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            self.wait(0.3)
        raise CommandError(
            f"{url} did not answer 200 within {HEALTHZ_TIMEOUT_SECONDS} s."
        )

    def stop_children(self) -> None:
        """Stop every child, wait a few seconds, then kill what is left.

        The agent goes last: once the portal is gone no new command can reach it, so
        its Ctrl+C does not land in the middle of a write (its journal would finish
        such a write on the next start, but a clean stop needs no recovery)."""
        running = [c for c in self.children if c.exit_code() is None]
        if running:
            self.say(f"Stopping {', '.join(str(c) for c in running)}…")
        for wave in (
            [c for c in running if c.name != "agent"],
            [c for c in running if c.name == "agent"],
        ):
            for child in wave:
                # Only the leader: gunicorn and qcluster each stop their own workers.
                child.process.send_signal(child.stop_signal)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for child in wave:
                try:
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.say(
                        f"{child} did not stop within {STOP_GRACE_SECONDS} s; "
                        "killing it."
                    )
        for child in self.children:
            # Also catches workers left behind by a parent that died first.
            child.signal_group(signal.SIGKILL)
            child.process.wait()
        if running:
            self.say("Stopped.")

    def print_banner(self, port: int) -> None:
        root = f"http://127.0.0.1:{port}"
        self.say(
            f"\nThe demo is running at {root}/\n"
            f"  Admin:         {root}/admin/\n"
            f"  Review queue:  {root}/admin/integrations/reviewitem/\n"
            f"  API docs:      {root}/api/docs/\n"
            f"  Health:        {root}/healthz\n"
            "Logins:"
        )
        for username, password, is_superuser, group in demo.DEMO_USERS:
            role = "superuser" if is_superuser else group
            self.say(f"  {username} / {password}  ({role})")
        secret = demo.storefront_secret()
        shown = (
            f"the default {secret} (set DEMO_STOREFRONT_SECRET to change it)"
            if secret == demo.DEFAULT_STOREFRONT_SECRET
            else "DEMO_STOREFRONT_SECRET"
        )
        self.say(
            f"Storefront webhooks: {demo.storefront_webhook_url(port)}\n"
            f"  signed (X-Shopify-Hmac-Sha256) with {shown}"
        )
        for line in demo.api_banner(port):
            self.say(line)
        if self.sagepro_mode == "agent":
            for line in demo.AgentSite().banner(sys.executable):
                self.say(line)
        self.say("Press Ctrl-C to stop.\n")

    def say(self, line: str, ending: str | None = None) -> None:
        self.stdout.write(line, ending=ending)
        self.stdout.flush()  # children share this stream; keep the order readable


def check_port_is_free(port: int) -> None:
    with socket.socket() as sock:
        # Same option gunicorn sets, so a port in TIME_WAIT does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise CommandError(
                f"Port {port} on 127.0.0.1 is already in use ({exc.strerror}). Stop what "
                f"is using it, or choose another port: make demo PORT={port + 1}"
            ) from exc


def gunicorn_options(port: int) -> list[str]:
    options = [
        "portal.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--workers", "2",
        "--threads", "4",
        "--worker-class", "gthread",
        "--graceful-timeout", "5",
    ]  # fmt: skip
    if gunicorn.version_info >= (27,):
        # gunicorn 27 opens a control socket at one fixed path in $HOME, shared by
        # every instance; the demo does not use it.
        options.append("--no-control-socket")
    return options


def child_environment(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DEMO_MODE="1",
        SANDBOX_ENABLED="1",
        SANDBOX_PAYTRACE_WEBHOOK_URL=demo.webhook_url(port),
        DJANGO_SETTINGS_MODULE=os.environ.get(
            "DJANGO_SETTINGS_MODULE", "portal.settings"
        ),
    )
    # Keep the terminal for the payment lines; set LOG_LEVEL=INFO to see the workers.
    env.setdefault("LOG_LEVEL", "WARNING")
    env.setdefault("Q_LOG_LEVEL", "WARNING")
    return env
