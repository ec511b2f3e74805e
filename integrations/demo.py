"""The demo: its seed rows and the stream of card payments it sends to the sandbox.

Only `manage.py seed_demo` and `manage.py demo` use this module, and both refuse to run
unless DEMO_MODE is on. The payment stream talks to the sandboxes over HTTP, exactly as
a real client of PayTrace would, so every payment travels the whole pipeline: sandbox
sale → signed webhook → event → worker → Sage Pro cash receipt.

`DEMO_SAGEPRO` picks what plays Sage Pro: `sandbox` (the default, the emulator inside
the portal) or `agent`: a real `sagepro_agent` process, started by `manage.py demo`,
serving FoxPro fixture files under the clone (`var/demo-sagepro/data/`, or
`$DEMO_SAGEPRO_DIR/data/`) through the relay, so each receipt lands in `ARCASH01.DBF`.
The fixture files are test data written by the agent's fixture store, never a real
Sage Pro company.
"""

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import CommandError
from django.utils import timezone

from integrations.models import Agent, Connection, WebhookSecret
from integrations.roles import FINANCE_REVIEWER, ensure_groups

SAGEPRO_SLUG = "sagepro-sandbox"
PAYTRACE_SLUG = "paytrace-sandbox"
DEMO_INTEGRATOR_ID = "DEMO0001"
DEMO_SECRET_LABEL = "Demo webhook secret (DEMO_WEBHOOK_SECRET)"
# (username, password, superuser?, group): printed by `manage.py demo`.
DEMO_USERS = [
    ("admin", "admin", True, None),
    ("reviewer", "reviewer", False, FINANCE_REVIEWER),
]

# Published test card numbers only. The sandbox declines any card ending in 0002.
APPROVED_CARDS = ["4111111111111111", "5454545454545454", "371449635398431"]
DECLINED_CARD = "4000000000000002"
CENT = Decimal("0.01")

# What plays Sage Pro in the demo (DEMO_SAGEPRO): the emulator, or an on-site agent.
SAGEPRO_MODES = ("sandbox", "agent")
DEMO_AGENT_NAME = "Demo agent (this machine)"
DEMO_AGENT_USER = "DEMO"
# Seconds between the demo agent's heartbeats (the agent's default is 30).
DEMO_AGENT_HEARTBEAT = 5
COMPANY = "01"


def require_demo_mode() -> None:
    if not settings.DEMO_MODE:
        raise CommandError(
            "This only runs in demo mode: set DEMO_MODE=1 (it creates well-known "
            "logins such as admin/admin and sandbox connections)."
        )


def sagepro_mode() -> str:
    """What plays Sage Pro: DEMO_SAGEPRO, `sandbox` when unset or empty."""
    mode = os.environ.get("DEMO_SAGEPRO", "").strip().lower() or "sandbox"
    if mode not in SAGEPRO_MODES:
        raise CommandError(
            f"DEMO_SAGEPRO={os.environ['DEMO_SAGEPRO']!r} is not a demo mode: use "
            "DEMO_SAGEPRO=sandbox (the built-in Sage Pro emulator, the default) or "
            "DEMO_SAGEPRO=agent (an on-site agent over FoxPro fixture files)."
        )
    return mode


def portal_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def sagepro_base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/sandbox/sagepro/api/v1"


def paytrace_base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/sandbox/paytrace"


def webhook_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/webhooks/paytrace/{PAYTRACE_SLUG}/"


# Seeding ---------------------------------------------------------------------------


def seed_demo(port: int) -> list[str]:
    """Make the demo's rows exist and match the settings; return what was done.

    1. Seed the Sage Pro sandbox (customers, open invoices, GL accounts, periods).
       With DEMO_SAGEPRO=agent, also the agent's side (`seed_agent_site`): the fixture
       company, the site mapping, the agent and its credentials.
    2. Create or update the two sandbox connections (Sage Pro's transport: direct to
       the emulator, or the agent through the relay).
    3. Give the PayTrace connection one active secret equal to DEMO_WEBHOOK_SECRET.
    4. Create or repair the demo logins.

    Safe to run again: rows that already match are left untouched.
    """
    from integrations.sandbox.sagepro.seed import seed as seed_sagepro

    require_demo_mode()
    mode = sagepro_mode()
    report = [f"Sage Pro sandbox: {_describe_counts(seed_sagepro(company=COMPANY))}"]
    transport: dict[str, Any] = {
        "name": "Sage Pro sandbox",
        "transport": Connection.Transport.DIRECT,
        "agent": None,
    }
    if mode == "agent":
        site = AgentSite()
        agent, lines = site.seed()
        report += lines
        transport = {
            "name": "Sage Pro via the demo agent",
            "transport": Connection.Transport.AGENT,
            "agent": agent,
        }
    sagepro, verb = _upsert_connection(
        SAGEPRO_SLUG,
        kind=Connection.Kind.SAGEPRO,
        base_url=sagepro_base_url(port),
        password=settings.SANDBOX_SAGEPRO_API_KEY,
        company_id=COMPANY,
        is_active=True,
        **transport,
    )
    report.append(f"Connection {SAGEPRO_SLUG}: {verb}")
    if mode == "agent":
        report.append(site.ensure_credentials(port))
    paytrace, verb = _upsert_connection(
        PAYTRACE_SLUG,
        kind=Connection.Kind.PAYTRACE,
        name="PayTrace sandbox",
        base_url=paytrace_base_url(port),
        username=settings.SANDBOX_PAYTRACE_USERNAME,
        password=settings.SANDBOX_PAYTRACE_PASSWORD,
        integrator_id=DEMO_INTEGRATOR_ID,
        time_zone=settings.SANDBOX_PAYTRACE_TIME_ZONE,
        sagepro=sagepro,
        is_active=True,
    )
    report.append(f"Connection {PAYTRACE_SLUG}: {verb}")
    verb = _ensure_webhook_secret(paytrace, settings.DEMO_WEBHOOK_SECRET)
    report.append(f"Webhook secret for {PAYTRACE_SLUG}: {verb}")
    ensure_groups(sender=None)
    for username, password, is_superuser, group in DEMO_USERS:
        verb = _ensure_user(username, password, is_superuser, group)
        report.append(f"User {username}: {verb}")
    return report


class AgentSite:
    """The demo agent's files under the clone, and its row in the portal.

        <folder>/data/              the fixture company (FoxPro DBF + CDX + FPT)
        <folder>/site.toml          the site mapping the agent runs with
        <folder>/journal.sqlite3    the agent's journal
        <folder>/relay.json, credentials.json   what enrolment gave the agent

    `folder` is $DEMO_SAGEPRO_DIR, else var/demo-sagepro (relative to the clone).
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        folder = folder or os.environ.get("DEMO_SAGEPRO_DIR", "") or "var/demo-sagepro"
        # A relative folder is relative to the clone, wherever the demo is started.
        self.folder = (Path(settings.BASE_DIR) / folder).resolve()
        self.data = self.folder / "data"
        self.site_file = self.folder / "site.toml"
        self.journal = self.folder / "journal.sqlite3"

    def table(self, physical: str) -> Path:
        from sagepro_agent.store.fixture import table_path

        return Path(table_path(str(self.data), physical))

    def seed(self) -> tuple[Agent, list[str]]:
        """The fixture company (once), the site mapping and the agent's row."""
        report = [f"Demo agent's FoxPro files: {self.ensure_company()}"]
        report.append(
            f"Demo agent's site mapping {self.site_file}: {self.write_site()}"
        )
        agent, created = Agent.objects.get_or_create(name=DEMO_AGENT_NAME)
        if agent.is_revoked:  # revoked from the admin: the demo needs a working one
            agent = Agent.objects.create(name=DEMO_AGENT_NAME)
            created = True
        report.append(f"Agent {agent.name!r}: {'created' if created else 'unchanged'}")
        return agent, report

    def ensure_company(self) -> str:
        """Create the sandbox's baseline company in FoxPro files, unless it is there.

        Created once: the receipts the demo posts stay, as the sandbox's do."""
        from sagepro_agent.store.fixture import guard
        from sagepro_agent.store.fixture.seed import create_company

        if guard.is_fixture_folder(str(self.data)) and all(
            self.table(name.format(co=COMPANY)).exists()
            for name in ("SYCCOMP", "ARCUST{co}", "ARMAST{co}", "ARCASH{co}")
        ):
            return f"already in {self.data}"
        from integrations.sandbox.sagepro.seed import today

        create_company(self.data, COMPANY, today=today())
        return f"created company {COMPANY} in {self.data}"

    def site_text(self) -> str:
        return (
            "# The demo agent's site mapping, written by `manage.py seed_demo` "
            "(DEMO_SAGEPRO=agent).\n"
            "# Relative paths are relative to this file. The fixture store is for tests "
            "and the demo only.\n"
            "[sage]\n"
            'store = "fixture"\n'
            'data = "data"\n'
            f'companies = ["{COMPANY}"]\n'
            "\n[agent]\n"
            f'user = "{DEMO_AGENT_USER}"\n'
            'journal = "journal.sqlite3"\n'
            f'time_zone = "{settings.BUSINESS_TIME_ZONE}"\n'
            "scan_interval = 60\n"
        )

    def write_site(self) -> str:
        text = self.site_text()
        if self.site_file.exists() and self.site_file.read_text() == text:
            return "unchanged"
        verb = "updated" if self.site_file.exists() else "created"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.site_file.write_text(text)
        return verb

    def ensure_credentials(self, port: int) -> str:
        """Enrol the agent once; later runs reuse its credentials (following a changed
        port). Enrolment is the relay's own: a one-time code, traded for a token and a
        signing key, stored where `python -m sagepro_agent relay run` reads them."""
        from integrations.relay import enrolment
        from sagepro_agent import __version__
        from sagepro_agent.relay import credentials as creds

        agent = Connection.objects.get(slug=SAGEPRO_SLUG).agent
        assert agent is not None, "seed_demo links the connection to the agent first"
        url = portal_url(port)
        try:
            stored = creds.load(self.folder)
        except creds.CredentialsError:
            stored = None
        if (
            stored is not None
            and stored.agent_id == agent.pk
            and agent.token_matches(stored.token.partition(".")[2])
        ):
            if stored.portal_url == url:
                return f"Agent credentials in {self.folder}: unchanged"
            creds.save(replace(stored, portal_url=url), self.folder)
            return f"Agent credentials in {self.folder}: portal URL updated to {url}"
        code = enrolment.create_code(agent)
        issued = enrolment.enrol(code, version=__version__)
        creds.save(
            creds.Credentials(url, issued.agent_id, issued.token, issued.signing_key),
            self.folder,
        )
        return f"Agent credentials in {self.folder}: enrolled as agent {agent.pk}"

    def agent_command(self, python: str) -> list[str]:
        """The command `manage.py demo` runs the agent with."""
        return [
            python, "-m", "sagepro_agent", "relay", "run",
            "--config", str(self.site_file),
            "--insecure-local",  # the demo portal is plain HTTP on 127.0.0.1
            "--heartbeat", str(DEMO_AGENT_HEARTBEAT),
        ]  # fmt: skip

    def banner(self, python: str) -> list[str]:
        """What `manage.py demo` prints about the agent's FoxPro files."""
        cash = self.table(f"ARCASH{COMPANY}")
        show_last = (
            f"{python} -c \"import dbfread; rows = list(dbfread.DBF('{cash}', "
            "char_decode_errors='replace')); print(len(rows), 'receipts'); "
            '[print(dict(r)) for r in rows[-3:]]"'
        )
        return [
            "Sage Pro is played by an on-site agent (DEMO_SAGEPRO=agent), through the "
            "relay, over FoxPro fixture files (test data, not a real Sage Pro company):",
            f"  FoxPro files:  {self.data}/",
            f"  Site mapping:  {self.site_file}",
            f"  Agent journal: {self.journal}",
            f"  Structure:     {python} -m sagepro_agent schema {self.data}",
            f"  Last receipts: {show_last}",
        ]


def _describe_counts(created: Any) -> str:
    if isinstance(created, dict) and any(created.values()):
        return "created " + ", ".join(f"{n} {what}" for what, n in created.items() if n)
    return "already seeded"


def _upsert_connection(slug: str, **fields: Any) -> tuple[Connection, str]:
    connection = Connection.objects.filter(slug=slug).first()
    if connection is None:
        connection = Connection(slug=slug, environment="dev", **fields)
        connection.full_clean()
        connection.save()  # seeds the default status map for PayTrace
        return connection, "created"
    changed = [
        name for name, value in fields.items() if getattr(connection, name) != value
    ]
    if not changed:
        return connection, "unchanged"
    for name in changed:
        setattr(connection, name, fields[name])
    connection.full_clean()
    connection.save()
    return connection, f"updated ({', '.join(changed)})"


def _ensure_webhook_secret(connection: Connection, secret: str) -> str:
    """Leave exactly one active secret on the connection, equal to `secret`."""
    active = list(connection.webhook_secrets.filter(is_active=True).order_by("pk"))
    keep = next((s for s in active if s.secret == secret), None)
    verb = "unchanged"
    if keep is None and active:
        # DEMO_WEBHOOK_SECRET changed since the last seed: replace the value in place.
        keep = active[0]
        keep.secret = secret
        keep.expires_at = None
        keep.save(update_fields=["secret", "expires_at"])
        verb = "updated to the current DEMO_WEBHOOK_SECRET"
    elif keep is None:
        keep = WebhookSecret.objects.create(
            connection=connection, label=DEMO_SECRET_LABEL, secret=secret
        )
        verb = "created"
    others = [s.pk for s in active if s.pk != keep.pk]
    if others:
        WebhookSecret.objects.filter(pk__in=others).update(is_active=False)
        verb += f", {len(others)} other active secret(s) deactivated"
    return verb


def _ensure_user(
    username: str, password: str, is_superuser: bool, group: str | None
) -> str:
    User = get_user_model()  # noqa: N806
    user, created = User.objects.get_or_create(username=username)
    wanted = {"is_active": True, "is_staff": True, "is_superuser": is_superuser}
    changed = [name for name, value in wanted.items() if getattr(user, name) != value]
    for name in changed:
        setattr(user, name, wanted[name])
    if not user.check_password(password):
        user.set_password(password)
        changed.append("password")
    if changed:
        user.save()
    if group and not user.groups.filter(name=group).exists():
        user.groups.add(Group.objects.get(name=group))
        changed.append("group")
    if created:
        return f"created ({'superuser' if is_superuser else group})"
    return f"updated ({', '.join(changed)})" if changed else "unchanged"


# The payment stream ----------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    """One sale the stream is about to make. `card_number` is never printed."""

    kind: str  # "full", "partial", "unmatched" or "decline"
    amount: Decimal
    invoice: str
    card_number: str


@dataclass(frozen=True)
class PaymentResult:
    payment: Payment
    transaction_id: str
    approved: bool

    def describe(self) -> str:
        outcome = "approved" if self.approved else "declined"
        return (
            f"PayTrace {self.transaction_id or '-':>10}  {self.payment.amount:>10} USD  "
            f"invoice {self.payment.invoice:<8} {outcome:<8} ({self.payment.kind})"
        )


class PaymentStream:
    """Make a realistic mix of keyed card sales against the PayTrace sandbox.

    Mostly full payments of open Sage Pro invoices, some partial payments, some for an
    invoice number Sage Pro does not know (the review queue's "unmatched"), and some
    declines. Every `settle_every` payments the sandbox settles its pending sales.
    """

    # Weights of each kind of payment.
    MIX = {"full": 60, "partial": 15, "unmatched": 12, "decline": 13}

    def __init__(
        self,
        paytrace: Any,
        sage: Any,
        *,
        rng: random.Random | None = None,
        settle_every: int = 10,
    ) -> None:
        self.paytrace = paytrace
        self.sage = sage
        self.rng = rng or random.Random()
        self.settle_every = settle_every
        self.sent = 0
        # Invoices already paid in full: their receipts may not be posted yet, so the
        # Sage Pro balance can still show them open for a few seconds.
        self.paid: set[str] = set()

    @classmethod
    def for_demo(cls, **kwargs: Any) -> "PaymentStream":
        paytrace = Connection.objects.get(slug=PAYTRACE_SLUG)
        assert paytrace.sagepro is not None, "the demo posts to Sage Pro"
        return cls(paytrace.paytrace(), paytrace.sagepro.sage(), **kwargs)

    def open_invoices(self) -> list[dict]:
        reply = self.sage.call("GET", "/invoices", params={"status": "open"})
        rows = reply.get("results", []) if isinstance(reply, dict) else reply
        return [
            row
            for row in rows or []
            if str(row["invno"]).strip() not in self.paid
            and Decimal(str(row["balance"])) > 0
        ]

    def choose(self) -> Payment:
        kind = self.rng.choices(list(self.MIX), weights=list(self.MIX.values()))[0]
        invoices = [] if kind == "unmatched" else self.open_invoices()
        if not invoices:
            kind = "unmatched"
        if kind == "unmatched":
            # Sage Pro invoices are numbered from 10001; 9xxxx never exists.
            invoice = str(self.rng.randint(90000, 99999))
            amount = Decimal(self.rng.randint(2500, 90000)).scaleb(-2)
            return Payment(
                kind, _avoid_decline_cents(amount), invoice, self._approved_card()
            )
        row = self.rng.choice(invoices)
        invoice = str(row["invno"]).strip()
        balance = Decimal(str(row["balance"]))
        if kind == "decline":
            return Payment(kind, balance, invoice, DECLINED_CARD)
        amount = balance
        if kind == "partial" or _has_decline_cents(balance):
            kind = "partial"
            share = Decimal(self.rng.randint(20, 80)) / 100
            amount = max(CENT, (balance * share).quantize(CENT))
            amount = _avoid_decline_cents(amount)
        return Payment(kind, amount, invoice, self._approved_card())

    def send(self, payment: Payment) -> PaymentResult:
        reply = self.paytrace.sale_keyed(
            amount=payment.amount,
            card_number=payment.card_number,
            expiration_month=12,
            expiration_year=timezone.now().year + 3,
            csc="999",
            invoice_id=payment.invoice,
            description=f"Payment of invoice {payment.invoice}",
        )
        approved = reply.get("success") is True  # a decline is a reply, not an error
        if payment.kind == "full" and approved:
            self.paid.add(payment.invoice)
        return PaymentResult(payment, str(reply.get("transaction_id") or ""), approved)

    def step(self) -> list[str]:
        """Make one payment (and settle if due); return the lines to print."""
        result = self.send(self.choose())
        self.sent += 1
        lines = [result.describe()]
        if self.settle_every and self.sent % self.settle_every == 0:
            lines.append(self.settle())
        return lines

    def settle(self) -> str:
        token = self.paytrace.access_token()
        reply = self.paytrace.call(
            "POST", "/_settle", headers={"Authorization": f"Bearer {token}"}
        )
        return (
            f"Settled {reply.get('count', 0)} pending sale(s) in the PayTrace sandbox "
            f"(batch {reply.get('batch_number') or '-'})"
        )

    def _approved_card(self) -> str:
        return self.rng.choice(APPROVED_CARDS)


def _has_decline_cents(amount: Decimal) -> bool:
    return amount % 1 == Decimal("0.13")


def _avoid_decline_cents(amount: Decimal) -> Decimal:
    """The sandbox declines amounts ending in .13; step off them."""
    return amount + CENT if _has_decline_cents(amount) else amount


def run_stream(
    stream: PaymentStream,
    write: Callable[[str], None],
    wait: Callable[[float], None],
    interval: float,
) -> None:
    """Make payments until `wait` raises (it sleeps, and checks on the processes)."""
    while True:
        try:
            for line in stream.step():
                write(line)
        except Exception as exc:  # the demo keeps going: say what failed, try again
            write(f"Payment not made: {type(exc).__name__}: {exc}")
        wait(stream.rng.uniform(interval * 2 / 3, interval * 4 / 3))
