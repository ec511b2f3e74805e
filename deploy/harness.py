"""The production layout on this machine, shared by `make prod-check` and the load test.

`deploy/prod_check.py` proves the layout posts a batch exactly once; `bench/load_test.py`
drives it for minutes with faults. Both need the same pieces, kept here:

- `production_environment`: the variables docs/deploy.md lists, set explicitly;
- `setup_django`, `check_deploy_and_migrate` and `seed`: this process on that database,
  migrated and seeded as an integration admin would (sandbox connections, a random
  webhook secret, the receipt GL rule, N open invoices);
- `Layout`: the children (the sandboxes' gunicorn, one or more portal gunicorns, several
  `qcluster` processes), each in its own process group, started, watched, and stopped
  however the run ends; a qcluster can be SIGKILLed and started again.
"""

import base64
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402

PROXY_HEADERS = {"X-Forwarded-Proto": "https"}
STARTUP_TIMEOUT = 60.0
WEBHOOK_SECRET_LABEL = "prod-check"


class CheckFailed(Exception):
    """A step of the run failed; the message says which and why."""


# --- the environment (pure: tested in tests/portal/test_prod_check.py) ---------------


def fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def production_environment(
    database_url: str, portal_url: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of every process: `base` (e.g. os.environ) with the production
    variables docs/deploy.md lists set explicitly, so a developer's `.env` (read only
    for variables the environment lacks) cannot turn on DEBUG or demo mode."""
    env = dict(base or {})
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PYTHONPATH": str(ROOT),
            "DEBUG": "0",
            "DEMO_MODE": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEYS": fernet_key(),
            "DATABASE_URL": database_url,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CSRF_TRUSTED_ORIGINS": "https://127.0.0.1,https://localhost",
            # HTTPS, terminated by a proxy in front (here: the script).
            "SECURE_SSL_REDIRECT": "1",
            "SECURE_HSTS_SECONDS": "31536000",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
            "SECURE_HSTS_PRELOAD": "1",
            "SESSION_COOKIE_SECURE": "1",
            "CSRF_COOKIE_SECURE": "1",
            "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
            # The ORM broker in the same database (an inherited REDIS_URL is cleared).
            "REDIS_URL": "",
            "Q_SYNC": "0",
            "Q_WORKERS": "2",
            "LOG_LEVEL": "WARNING",
            "Q_LOG_LEVEL": "INFO",
            "SANDBOX_ENABLED": "1",
            "SANDBOX_PAYTRACE_WEBHOOK_URL": (
                f"{portal_url}/webhooks/paytrace/paytrace-sandbox/"
            ),
        }
    )
    return env


def sandbox_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The sandboxes' server: PayTrace and Sage Pro are reached over plain HTTP here,
    as an outside service would be, so that server does not redirect to HTTPS."""
    return {**env, "SECURE_SSL_REDIRECT": "0"}


def database_url(name: str, host: str) -> str:
    return f"postgres://postgres@{host}/{name}"


# --- this process on the layout's database ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.began = time.monotonic()

    def say(self, line: str) -> None:
        harness.say(f"[{time.monotonic() - self.began:5.1f}s] {line}")


def setup_django(env: Mapping[str, str]) -> None:
    import os

    os.environ.update(env)
    os.chdir(ROOT)
    import django

    django.setup()


def check_deploy_and_migrate(clock: Clock) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    try:
        call_command("check", deploy=True, fail_level="WARNING")
    except SystemCheckError as exc:
        raise CheckFailed(f"check --deploy is not clean:\n{exc}") from None
    clock.say("check --deploy --fail-level WARNING: clean")
    call_command("migrate", interactive=False, verbosity=0)
    clock.say("migrate: done")


def seed(sandbox_port: int, invoices: int) -> list[tuple[str, str, Any]]:
    """The sandboxes' data, the two connections, a webhook secret and the receipt
    GL rule, as an integration admin would set them up; returns the open invoices."""
    from django.conf import settings
    from django.db import connections, transaction

    from bench import pipeline
    from integrations import demo
    from integrations.models import Connection, WebhookSecret
    from integrations.models.connections import Environment
    from integrations.sandbox.sagepro.seed import seed as seed_sagepro
    from mappings.gl import Purpose
    from mappings.models import GlRule

    seed_sagepro(company=demo.COMPANY)
    with transaction.atomic():
        sagepro = Connection(
            slug=demo.SAGEPRO_SLUG,
            name="Sage Pro sandbox",
            kind=Connection.Kind.SAGEPRO,
            environment=Environment.PROD,
            base_url=demo.sagepro_base_url(sandbox_port),
            password=settings.SANDBOX_SAGEPRO_API_KEY,
            company_id=demo.COMPANY,
        )
        sagepro.full_clean()
        sagepro.save()
        paytrace = Connection(
            slug=demo.PAYTRACE_SLUG,
            name="PayTrace sandbox",
            kind=Connection.Kind.PAYTRACE,
            environment=Environment.PROD,
            base_url=demo.paytrace_base_url(sandbox_port),
            username=settings.SANDBOX_PAYTRACE_USERNAME,
            password=settings.SANDBOX_PAYTRACE_PASSWORD,
            integrator_id=demo.DEMO_INTEGRATOR_ID,
            time_zone=settings.SANDBOX_PAYTRACE_TIME_ZONE,
            sagepro=sagepro,
        )
        paytrace.full_clean()
        paytrace.save()
        WebhookSecret.objects.create(
            connection=paytrace, label=WEBHOOK_SECRET_LABEL, secret=webhook_secret()
        )
        GlRule.objects.create(
            connection=paytrace,
            purpose=Purpose.RECEIPT,
            name="Card receipts to undeposited funds",
            account="1100-00",
        )
    opened = pipeline.seed_invoices(invoices)
    connections.close_all()
    return opened


def signing_secret() -> str:
    from integrations.models import WebhookSecret

    return WebhookSecret.objects.get(label=WEBHOOK_SECRET_LABEL).secret


# --- the children --------------------------------------------------------------------


def qcluster_args() -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), "qcluster"]


@dataclass
class Layout:
    """The children: sandboxes, portal web, qclusters; every one stopped on exit.

    `webs` portal gunicorns of `web_workers` workers each, on their own ports,
    `clusters` qclusters started with `cluster_args` (`manage.py qcluster`), and the
    sandboxes in a gunicorn of `sandbox_workers`."""

    env: dict[str, str]
    logs: Path
    clock: Clock
    webs: int = 1
    web_workers: int = 2
    clusters: int = 3
    sandbox_workers: int = 1
    cluster_args: list[str] = field(default_factory=qcluster_args)
    web_ports: list[int] = field(default_factory=list)
    sandbox_port: int = field(default_factory=harness.free_port)
    children: list[harness.Child] = field(default_factory=list)
    started_clusters: int = 0

    def __post_init__(self) -> None:
        while len(self.web_ports) < self.webs:
            self.web_ports.append(harness.free_port())

    @property
    def web_port(self) -> int:
        return self.web_ports[0]

    @property
    def portal_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def gunicorn(self, name: str, port: int, workers: int, env: dict) -> None:
        args = [
            sys.executable, "-m", "gunicorn", "portal.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "gthread", "--threads", "4",
            "--graceful-timeout", "5",
        ]  # fmt: skip
        if harness.gunicorn_major() >= 27:
            args.append("--no-control-socket")  # one fixed path in $HOME otherwise
        self.children.append(harness.Child(name, args, env, self.logs / f"{name}.log"))

    def start(self) -> None:
        sandbox_env = sandbox_environment(self.env)
        self.gunicorn("sandboxes", self.sandbox_port, self.sandbox_workers, sandbox_env)
        for i, port in enumerate(self.web_ports, 1):
            self.gunicorn(self.web_name(i), port, self.web_workers, self.env)
        clusters = [self.spawn_cluster(i) for i in range(1, self.clusters + 1)]
        self.wait_for(self.sandbox_port, {}, "sandboxes")
        self.clock.say(
            f"sandboxes (gunicorn, {self.sandbox_workers} worker(s)) "
            f"on :{self.sandbox_port}"
        )
        for i, port in enumerate(self.web_ports, 1):
            self.wait_for(port, PROXY_HEADERS, self.web_name(i))
        ports = ", ".join(f":{port}" for port in self.web_ports)
        gunicorns = "gunicorn" if self.webs == 1 else f"{self.webs} gunicorns"
        self.clock.say(
            f"portal web ({gunicorns}, {self.web_workers} worker(s) each) on {ports}"
        )
        for child in clusters:
            self.wait_running(child)
        pids = ", ".join(str(c.process.pid) for c in clusters)
        self.clock.say(f"{len(clusters)} qcluster processes running (pids {pids})")

    def web_name(self, i: int) -> str:
        return "web" if self.webs == 1 else f"web-{i}"

    def spawn_cluster(self, i: int) -> harness.Child:
        """Start qcluster number `i` (a restart gets a log of its own)."""
        self.started_clusters += 1
        name = f"qcluster-{i}"
        log = self.logs / f"q{i}-{self.started_clusters}.log"
        # django-q2 logs "running." at INFO through the root logger.
        env = {**self.env, "LOG_LEVEL": "INFO"}
        child = harness.Child(name, self.cluster_args, env, log)
        self.children.append(child)
        return child

    def start_cluster(self, i: int) -> harness.Child:
        child = self.spawn_cluster(i)
        self.wait_running(child)
        return child

    def wait_running(self, child: harness.Child) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while b"running." not in child.log.read_bytes():
            self.check_running()
            if time.monotonic() > deadline:
                raise CheckFailed(f"{child.name} did not start:\n{child.tail()}")
            time.sleep(0.2)

    def cluster(self, i: int) -> harness.Child:
        return next(c for c in self.children if c.name == f"qcluster-{i}")

    def kill_cluster(self, i: int) -> harness.Child:
        """SIGKILL qcluster `i` and its workers: nothing gets to clean up."""
        child = self.cluster(i)
        child.kill_group()
        self.children.remove(child)
        return child

    def stop_cluster(self, i: int) -> None:
        """Stop qcluster `i` the way an operator would (SIGTERM, then kill)."""
        child = self.cluster(i)
        child.stop()
        self.children.remove(child)

    def wait_for(self, port: int, headers: dict[str, str], name: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            self.check_running()
            try:
                status, _ = harness.request(port, "GET", "/healthz", headers=headers)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise CheckFailed(f"{name}: /healthz did not answer 200 in {STARTUP_TIMEOUT}s")

    def check_running(self) -> None:
        for child in self.children:
            if not child.running():
                raise CheckFailed(
                    f"{child.name} exited with {child.process.returncode}:\n"
                    f"{child.tail()}"
                )

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.clock.say(f"stopped {len(self.children)} processes")
        self.children.clear()

    def tails(self) -> None:
        for child in self.children:
            harness.say(f"--- last lines of {child.name} ({child.log}) ---")
            harness.say(child.tail())


def wait_until_settled(run: Any, layout: Layout, timeout: float) -> bool:
    """Wait (at most `timeout` s) until every event of `run` is processed and every
    posting is in an end state, with a progress line every few seconds."""
    from bench import pipeline

    deadline = time.monotonic() + timeout
    next_line = time.monotonic() + 3
    while time.monotonic() < deadline:
        layout.check_running()
        if pipeline.is_settled(run):
            return True
        if time.monotonic() >= next_line:
            layout.clock.say(pipeline.progress_line(run))
            next_line += 3
        time.sleep(0.25)
    return False
