"""The demo: its seed rows, its past, and the stream of card payments it sends.

Only `manage.py seed_demo`, `manage.py demo_history` and `manage.py demo` use this
module, and they refuse to run unless DEMO_MODE is on. The payment stream talks to the
sandboxes over HTTP, exactly as a real client of PayTrace would, so every payment
travels the whole pipeline: sandbox sale → signed webhook → event → worker → Sage Pro
cash receipt. The past (`seed_history`, about 60 days) is written into the sandboxes
once and read by the portal the way it reads PayTrace: a backfill of the export and
the settlement sweep, so what the dashboard and month-end show was made by the
pipeline itself. The demo bills as well as pays: its invoices carry a PONUM starting
with DEMO_PONUM_PREFIX, and it pays only those.

`DEMO_SAGEPRO` picks what plays Sage Pro: `sandbox` (the default, the emulator inside
the portal) or `agent`: a real `sagepro_agent` process, started by `manage.py demo`,
serving FoxPro fixture files under the clone (`var/demo-sagepro/data/`, or
`$DEMO_SAGEPRO_DIR/data/`) through the relay, so each receipt lands in `ARCASH01.DBF`.
The fixture files are test data written by the agent's fixture store, never a real
Sage Pro company.
"""

import json
import logging
import os
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import CommandError
from django.utils import timezone

from integrations.connectors.base import ConnectorError
from integrations.models import Agent, Connection, SyncRun, WebhookSecret
from integrations.roles import FINANCE_MANAGER, FINANCE_REVIEWER, ensure_groups
from mappings.gl import Purpose
from mappings.models import GlRule
from portal.models import KEY_BYTES, PREFIX_LENGTH

logger = logging.getLogger(__name__)

SAGEPRO_SLUG = "sagepro-sandbox"
PAYTRACE_SLUG = "paytrace-sandbox"
DEMO_INTEGRATOR_ID = "DEMO0001"
DEMO_SECRET_LABEL = "Demo webhook secret (DEMO_WEBHOOK_SECRET)"
STOREFRONT_SLUG = "storefront-sandbox"
STOREFRONT_SECRET_LABEL = "Demo storefront secret (DEMO_STOREFRONT_SECRET)"
# The storefront's signing secret when DEMO_STOREFRONT_SECRET is not set (printed by
# `manage.py demo`, like the logins: it is a demo value, never a real shop's).
DEFAULT_STOREFRONT_SECRET = "shpss_demo-storefront-secret-change-me"
# (username, password, superuser?, group): printed by `manage.py demo`. The manager
# gives a one-person demo a second person: a reviewer's correction waits for a finance
# manager's signature, and nobody signs their own (docs/second-signature.md).
DEMO_USERS = [
    ("admin", "admin", True, None),
    ("reviewer", "reviewer", False, FINANCE_REVIEWER),
    ("manager", "manager", False, FINANCE_MANAGER),
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


def storefront_webhook_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/webhooks/storefront/{STOREFRONT_SLUG}/"


def storefront_secret() -> str:
    """DEMO_STOREFRONT_SECRET (the setting, read from the environment), or the default."""
    return settings.DEMO_STOREFRONT_SECRET or DEFAULT_STOREFRONT_SECRET


# The demo admin's API token: DEMO_API_TOKEN, else a random key made once and kept in
# this file (the portal stores only a key's digest, so the banner needs it from here).
API_TOKEN_LABEL = "Demo API token (DEMO_API_TOKEN)"
API_TOKEN_FILE = Path("var") / "demo-api-token"
API_TOKEN_USER = "admin"
_API_KEY_RE = re.compile(r"[0-9a-f]{40}")


def api_token_setting() -> str:
    """DEMO_API_TOKEN, checked: "" when unset, else 40 lowercase hex characters."""
    key = settings.DEMO_API_TOKEN.strip()
    if key and not _API_KEY_RE.fullmatch(key):
        # The value is not echoed: it is meant to be a secret.
        raise CommandError(
            f"DEMO_API_TOKEN is not a portal API key: it must be 40 lowercase "
            f"hexadecimal characters (0-9, a-f), like the output of "
            f"`python -c 'import secrets; print(secrets.token_hex(20))'`; the value "
            f"set is {len(key)} characters long. Fix it, or unset it to let the demo "
            "make one."
        )
    return key


def api_token_file() -> Path:
    return Path(settings.BASE_DIR) / API_TOKEN_FILE


def demo_api_key(create: bool = False) -> str:
    """The demo admin's API key: DEMO_API_TOKEN, else the one kept in the key file
    (made there once when `create`); "" when there is none yet."""
    key = api_token_setting()
    if key:
        return key
    path = api_token_file()
    if path.exists():
        stored = path.read_text().strip()
        if _API_KEY_RE.fullmatch(stored):
            return stored
    if not create:
        return ""
    key = secrets.token_hex(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(key + "\n")
    partial.chmod(0o600)
    partial.replace(path)  # atomic: two seeds at once both end with a whole key
    return key


def _ensure_api_token() -> str:
    """One working API token for the demo admin whose key is `demo_api_key()`, with
    every scope (the printed curl charges a card); earlier demo tokens (another
    DEMO_API_TOKEN before) are deleted so their keys stop working. The key is fixed by
    the setting or the key file, so a demo token that expired, was revoked or rotated
    in the admin is made to work again (DEMO_MODE only)."""
    from portal.models import ApiToken, digest_of
    from portal.tokens import Scope, default_expiry

    key = demo_api_key(create=True)
    user = get_user_model().objects.get(username=API_TOKEN_USER)
    token = ApiToken.objects.find(key)
    verb = "unchanged"
    if token is None:
        token = ApiToken(user=user, name=API_TOKEN_LABEL, prefix=key[:PREFIX_LENGTH])
        token.digest = digest_of(key)
        token.scopes = list(Scope.values)
        token.save(force_insert=True)
        verb = "created"
    elif token.user_id != user.pk:
        token.user = user
        token.save(update_fields=["user"])
        verb = "moved to the demo admin"
    if token.refusal() or token.scopes != list(Scope.values):
        token.scopes, token.expires_at = list(Scope.values), default_expiry()
        token.revoked_at = token.rotated_at = None
        token.save(update_fields=["scopes", "expires_at", "revoked_at", "rotated_at"])
        verb = "renewed" if verb == "unchanged" else verb
    old = ApiToken.objects.filter(name=API_TOKEN_LABEL).exclude(pk=token.pk)
    removed, _ = old.delete()
    if removed:
        verb += f", {removed} earlier demo token(s) deleted"
    source = "DEMO_API_TOKEN" if api_token_setting() else str(api_token_file())
    return f"{verb} (key from {source})"


def api_banner(port: int) -> list[str]:
    """What `manage.py demo` prints about the API: the key and a charge to paste."""
    key = demo_api_key()
    if not key:
        return ["API token: none yet (run `manage.py seed_demo`)."]
    source = (
        "DEMO_API_TOKEN"
        if api_token_setting()
        else f"made once, kept in {api_token_file()}; set DEMO_API_TOKEN to choose it"
    )
    example = charge_example()
    customer_id, invno = example or ("<vault customer id>", "<open invoice>")
    body = json.dumps({"customer_id": customer_id, "invno": invno, "amount": "1.00"})
    return [
        f"API token ({API_TOKEN_USER}): {key}  ({source})",
        "  Charge a card on file (the curl again with the same KEY is a replay: "
        "it answers 200 and charges nothing):",
        "  KEY=demo-$(date +%s)",
        f"  curl -i -X POST {portal_url(port)}/api/payments/charge \\",
        f'    -H "Authorization: Token {key}" \\',
        '    -H "Idempotency-Key: $KEY" \\',
        f"    -H 'Content-Type: application/json' -d '{body}'",
    ]


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
    api_token_setting()  # a bad DEMO_API_TOKEN stops the seed before it writes
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
    report += _seed_money_movement_rules(paytrace)
    report += _seed_storefront(port, paytrace, sagepro)
    ensure_groups(sender=None)
    for username, password, is_superuser, group in DEMO_USERS:
        verb = _ensure_user(username, password, is_superuser, group)
        report.append(f"User {username}: {verb}")
    report.append(f"API token for {API_TOKEN_USER}: {_ensure_api_token()}")
    return report


# Getting paid (issue 15): vault customers the demo puts on file, as a customer would
# through the hosted fields. (custno, sandbox test card, autopay?, recurring amount)
DEMO_VAULT_CARDS = (
    ("ACME", "4111111111111111", True, None),
    ("BLUEOX", "5454545454545454", False, Decimal("49.00")),
    ("CASCAD", "371449635398431", False, None),
    ("DELTA", DECLINED_CARD, False, None),  # every sale on it declines (ends 0002)
)
DEMO_CARD_EXPIRY = (12, 2030)
DEMO_FINANCE_EMAIL = "finance@example.com"
DEMO_RECURRING_DESCRIPTION = "Demo: monthly support plan"


def seed_vault_customers() -> list[str]:
    """Put the demo's cards on file; return a report. Safe to run again.

    Each card goes the way a customer's does: a hosted-fields token from the PayTrace
    sandbox (its tokenize endpoint, over HTTP: the portal must be serving), then
    `integrations.cards.enrol_card`, so the portal keeps only the vault id, brand,
    last four and expiry. ACME's card pays by autopay (enabled on the Sage Pro
    connection, reports to finance@example.com); BLUEOX gets one monthly recurring
    schedule. A customer who already has an active card on file is left alone.
    """
    from integrations.models.autopay import AutopaySettings
    from integrations.models.cards import CardOnFile

    require_demo_mode()
    paytrace = Connection.objects.get(slug=PAYTRACE_SLUG)
    sagepro = Connection.objects.get(slug=SAGEPRO_SLUG)
    admin = get_user_model().objects.filter(username=API_TOKEN_USER).first()
    report = []
    for custno, number, autopay, recurring in DEMO_VAULT_CARDS:
        card = (
            CardOnFile.objects.filter(
                sagepro=sagepro, custno=custno, state=CardOnFile.State.ACTIVE
            )
            .order_by("pk")
            .first()
        )
        if card is None:
            card = _enrol_demo_card(paytrace, sagepro, custno, number, admin)
            verb = f"{card} put on file (vault id {card.vault_customer_id})"
        else:
            verb = f"{card} already on file"
        if autopay and not card.autopay and card.autopay_stopped_at is None:
            # Once only: a card whose autopay a hard decline stopped stays stopped.
            card.autopay = True
            card.save(update_fields=["autopay", "updated_at"])
            verb += ", autopay on"
        if recurring is not None:
            verb += _ensure_recurring(card, recurring, admin)
        report.append(f"Card on file for {custno}: {verb}")
    config, created = AutopaySettings.objects.get_or_create(
        sagepro=sagepro,
        defaults={"enabled": True, "finance_emails": DEMO_FINANCE_EMAIL},
    )
    report.append(
        f"Autopay for {SAGEPRO_SLUG}: "
        + (
            f"enabled, reports to {DEMO_FINANCE_EMAIL}"
            if created
            else "settings already there (left as they are)"
        )
    )
    return report


def _enrol_demo_card(
    paytrace: Connection, sagepro: Connection, custno: str, number: str, user: Any
) -> Any:
    """The hosted fields' part (the sandbox's tokenize endpoint), then the portal's."""
    import requests

    from integrations import cards

    month, year = DEMO_CARD_EXPIRY
    client_key = paytrace.paytrace().payment_fields_client_key()
    # What the hosted-fields iframe does in a browser: the number goes to PayTrace
    # (here its sandbox) only, never to the portal.
    reply = requests.post(
        f"{paytrace.base_url.rstrip('/')}/protect/tokenize",
        json={
            "clientKey": client_key,
            "number": number,
            "expiration_month": str(month),
            "expiration_year": str(year),
            "csc": "999" if len(number) == 15 else "123",
        },
        timeout=10,
    )
    if reply.status_code != 200:
        raise CommandError(
            f"The PayTrace sandbox's hosted fields refused the demo card for {custno} "
            f"(HTTP {reply.status_code}); is the portal serving {paytrace.base_url}?"
        )
    token = reply.json()
    return cards.enrol_card(
        paytrace=paytrace,
        sagepro=sagepro,
        custno=custno,
        hpf_token=token["hpf_token"],
        enc_key=token["enc_key"],
        billing_name=f"Accounts payable, {custno}",
        email=f"ap@{custno.lower()}.example.com",
        billing_zip="99201",
        user=user,
    )


def _ensure_recurring(card: Any, amount: Decimal, user: Any) -> str:
    """One monthly schedule on the card, made through PayTrace (once)."""
    from integrations import recurring

    create = getattr(recurring, "create_schedule", None)
    if create is None:
        return ", no recurring schedule (not available in this build)"
    if card.recurring_schedules.exclude(state__in=["cancelled", "failed"]).exists():
        return ", recurring schedule already there"
    start = timezone.localdate() + timedelta(days=1)
    schedule = create(
        card=card,
        amount=amount,
        frequency="monthly",
        start_date=start,
        total_count=0,
        description=DEMO_RECURRING_DESCRIPTION,
        invoice_reference="",
        user=user,
    )
    return f", recurring ${amount} monthly from {start} ({schedule.state})"


def charge_example() -> tuple[str, str] | None:
    """A demo vault id and one open invoice of its customer, for the banner's curl."""
    from integrations.models import MirroredInvoice
    from integrations.models.cards import CardOnFile

    cards = CardOnFile.objects.filter(
        paytrace__slug=PAYTRACE_SLUG, state=CardOnFile.State.ACTIVE
    ).order_by("pk")
    for card in cards:
        if card.last4 == DECLINED_CARD[-4:]:
            continue
        invoice = (
            MirroredInvoice.objects.filter(
                connection=card.sagepro,
                custno=card.custno,
                deleted=False,
                balance__gt=0,
            )
            .order_by("invno")
            .first()
        )
        if invoice is not None:
            return card.vault_customer_id, invoice.invno
    return None


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

    def make_invoice(self, custno: str, amount: Decimal, ponum: str) -> dict[str, Any]:
        """Bill a customer in the FoxPro files (the stream's invoices, agent mode)."""
        from sagepro_agent.store.fixture.seed import seed_invoice

        invno = seed_invoice(self.data, COMPANY, custno, amount, ponum=ponum)
        return {
            "invno": invno,
            "custno": custno,
            "balance": str(amount),
            "ponum": ponum,
        }

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


# The demo's GL rules (receipts, refunds' credit memos, chargebacks' batches) on the
# sandbox's chart: (purpose, name, account).
DEMO_GL_RULES = (
    # Receipts name their cash account, so a chargeback knows which account the
    # processor took the money back from.
    (Purpose.RECEIPT, "Demo: card receipts to undeposited funds", "1100-00"),
    (Purpose.REFUND, "Demo: refunds to sales discounts", "4900-00"),
    (
        Purpose.CHARGEBACK,
        "Demo: an opened chargeback reopens the receivable",
        "1200-00",
    ),
    (Purpose.CHARGEBACK_LOSS, "Demo: a lost chargeback is a card expense", "6100-00"),
    (Purpose.CHARGEBACK_FEE, "Demo: dispute fees are card fees", "6100-00"),
)


def _seed_money_movement_rules(paytrace: Connection) -> list[str]:
    """One GL rule per purpose, created when the connection has none for it (an
    admin's own rules are left alone)."""
    report = []
    for purpose, name, account in DEMO_GL_RULES:
        if GlRule.objects.filter(connection=paytrace, purpose=purpose).exists():
            continue
        GlRule.objects.create(
            connection=paytrace, purpose=purpose, name=name, account=account
        )
        report.append(f"GL rule {name!r} ({account}): created")
    return report


def _seed_storefront(port: int, paytrace: Connection, sagepro: Connection) -> list[str]:
    """The storefront connection, its secret (DEMO_STOREFRONT_SECRET) and settings."""
    from integrations.models.storefront import StorefrontSettings

    shop, verb = _upsert_connection(
        STOREFRONT_SLUG,
        kind=Connection.Kind.STOREFRONT,
        name="Storefront sandbox",
        base_url=portal_url(port),
        is_active=True,
    )
    report = [f"Connection {STOREFRONT_SLUG}: {verb}"]
    verb = _ensure_webhook_secret(
        shop, storefront_secret(), STOREFRONT_SECRET_LABEL, "DEMO_STOREFRONT_SECRET"
    )
    report.append(f"Webhook secret for {STOREFRONT_SLUG}: {verb}")
    wanted = {
        "paytrace": paytrace,
        "sagepro": sagepro,
        "reference_prefix": "SHOP",
        "default_location": "MAIN",
        "wait_minutes": 30,
    }
    config = StorefrontSettings.objects.filter(connection=shop).first()
    if config is None:
        StorefrontSettings.objects.create(connection=shop, **wanted)
        verb = "created"
    elif any(getattr(config, k) != v for k, v in wanted.items()):
        StorefrontSettings.objects.filter(pk=config.pk).update(**wanted)
        verb = "updated"
    else:
        verb = "unchanged"
    report.append(f"Storefront settings for {STOREFRONT_SLUG}: {verb}")
    return report


def _ensure_webhook_secret(
    connection: Connection,
    secret: str,
    label: str = DEMO_SECRET_LABEL,
    setting: str = "DEMO_WEBHOOK_SECRET",
) -> str:
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
        verb = f"updated to the current {setting}"
    elif keep is None:
        keep = WebhookSecret.objects.create(
            connection=connection, label=label, secret=secret
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


# The past: about 60 days of history ------------------------------------------------

HISTORY_DAYS = 60
# Seconds (one try a second) the backfill waits for a scheduled poll to finish.
BACKFILL_TRIES = 60
# Sage Pro invoices the demo made carry this prefix in their customer PO (PONUM): the
# stream pays only those, and leaves invoices a user creates by hand alone.
DEMO_PONUM_PREFIX = "DEMO-"
# The sandbox sales of the seeded past carry this customer reference; it also tells a
# second start that the past is already there.
HISTORY_REFERENCE = "DEMO-HISTORY"
# Customers the demo invoices (HOLDCO is on credit hold, ZEROBL owes nothing).
DEMO_CUSTOMERS = ["ACME", "BLUEOX", "CASCAD", "DELTA", "EVERGR", "FOXRUN", "GRANIT",
                  "HARBOR", "IRONWD", "JUNIPR"]  # fmt: skip


@dataclass(frozen=True)
class PastSale:
    """One sale of the seeded past, before it is written to the sandboxes."""

    kind: str  # "full", "partial", "over", "unmatched" or "decline"
    custno: str
    invoice_amount: Decimal
    amount: Decimal
    created_at: datetime
    card_number: str


def history_exists() -> bool:
    from integrations.sandbox.paytrace.models import Transaction

    return Transaction.objects.filter(customer_reference_id=HISTORY_REFERENCE).exists()


def seed_history(
    say: Callable[[str], None],
    *,
    days: int = HISTORY_DAYS,
    per_day: float = 1.0,
    rng: random.Random | None = None,
) -> list[str]:
    """Give the demo a past, as if the portal had run for `days` days; return a report.

    1. The sandboxes (once): Sage Pro invoices and the PayTrace sales that pay them,
       day by day (weekdays busier than weekends; `per_day` scales the volume), a few
       declines, partial payments, overpayments and unknown invoices, some refunds,
       and one settlement batch per gateway day, the night after.
    2. The portal reads that past as it reads PayTrace: a backfill of the export
       (`polling.poll`), the pipeline's own workers posting the receipts
       (`batches.drain`), and the settlement sweep of each day (`sweep_settlements`).
       The Sage Pro periods of the past are opened for the backfill and locked again.
    3. A reconciliation run of the previous month (the month-end a team closed).

    The portal must be serving (the connectors talk HTTP). Safe to run again: the
    sandboxes are written once, the pipeline skips what it holds, and the month's run
    is made once.
    """
    from integrations import polling
    from integrations.reconciliation import business_today

    require_demo_mode()
    report = []
    paytrace = Connection.objects.get(slug=PAYTRACE_SLUG)
    today = business_today()
    first = today - timedelta(days=days)
    if history_exists():
        report.append("Past: the sandboxes already hold it")
    elif sagepro_mode() != "sandbox":
        report.append(
            "Past: not seeded (only the built-in Sage Pro sandbox can be given one)"
        )
        return report
    else:
        started = time.monotonic()
        sales = plan_history(first, today, rng or random.Random(2026), per_day)
        say(f"Writing {len(sales)} past sales into the sandboxes… ")
        report.append(f"Past: {write_history(sales, today)}")
        say(f"  done in {time.monotonic() - started:.1f} s.")
    with _past_periods_open():
        _sync_mirror(paytrace)
        started = time.monotonic()

        def progress(run: Any, day_from: date, day_to: date) -> None:
            if day_from.day == 1 or day_to >= today:
                say(f"  read PayTrace up to {day_to} ({run.new} new so far)")

        say(f"Reading the past {days} days from PayTrace (a backfill)…")
        for _ in range(BACKFILL_TRIES):
            run = polling.poll(
                paytrace,
                start=first - timedelta(days=1),
                end=today,
                kind=SyncRun.Kind.BACKFILL,
                progress=progress,
            )
            if run.state != SyncRun.State.SKIPPED:
                break
            # The cluster's scheduled poll holds the lease; it is short. Wait for it.
            time.sleep(1)
        if run.state != SyncRun.State.SUCCEEDED:
            raise CommandError(
                f"The backfill of the demo's past did not run ({run.state}"
                f"{': ' + run.error if run.error else ''})."
            )
        processed = _drain_events(say)
        report.append(
            f"Past read from PayTrace: {run.new} new transaction states, "
            f"{processed} events processed ({time.monotonic() - started:.1f} s)"
        )
        batches = _record_past_batches(paytrace, first, today)
        report.append(f"Settlement batches recorded: {batches}")
    report.append(f"Month-end: {_close_previous_month(paytrace, today, say)}")
    return report


def plan_history(
    first: date, today: date, rng: random.Random, per_day: float = 1.0
) -> list[PastSale]:
    """The sales of each day from `first` to yesterday, at business hours."""
    zone = ZoneInfo(settings.BUSINESS_TIME_ZONE)
    kinds = {"full": 88, "partial": 4, "over": 2, "unmatched": 3, "decline": 3}
    sales = []
    day = first
    while day < today:
        busy = day.weekday() < 5
        count = round(rng.randint(8, 14) * per_day) if busy else rng.randint(0, 3)
        for _ in range(max(count, 1 if busy else 0)):
            kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
            invoice = _avoid_decline_cents(
                Decimal(rng.randint(4_000, 350_000)).scaleb(-2)
            )
            amount = invoice
            if kind == "partial":
                amount = (invoice * Decimal(rng.randint(30, 80)) / 100).quantize(CENT)
            elif kind == "over":
                amount = invoice + Decimal(rng.randint(500, 10_000)).scaleb(-2)
            moment = datetime.combine(
                day, dt_time(rng.randint(7, 17), rng.randint(0, 59)), tzinfo=zone
            )
            sales.append(
                PastSale(
                    kind=kind,
                    custno=rng.choice(DEMO_CUSTOMERS),
                    invoice_amount=invoice,
                    amount=_avoid_decline_cents(amount),
                    created_at=moment.astimezone(UTC),
                    card_number=(
                        DECLINED_CARD
                        if kind == "decline"
                        else rng.choice(APPROVED_CARDS)
                    ),
                )
            )
        day += timedelta(days=1)
    return sales


def write_history(sales: list[PastSale], today: date) -> str:
    """Write the past into both sandboxes in one transaction; return what was made.

    Each sale's invoice is dated a few weeks before it; each gateway day's approved
    sales (and refunds) settle into one batch at 01:30 the next night; one sale in
    forty is refunded in part a few days later."""
    from django.db import transaction

    from integrations.sandbox.paytrace.cards import brand_of
    from integrations.sandbox.paytrace.models import Batch, Transaction
    from integrations.sandbox.sagepro import ledger
    from integrations.sandbox.sagepro.models import ArCust

    rng = random.Random(len(sales))
    gateway = ZoneInfo(settings.SANDBOX_PAYTRACE_TIME_ZONE)
    names = {c.custno.strip(): c for c in ArCust.objects.filter(company=COMPANY)}
    by_day: dict[date, list[Any]] = {}
    invoices = refunds = 0
    with transaction.atomic():
        for n, sale in enumerate(sales):
            if sale.kind == "unmatched":
                # Sage Pro invoices are numbered from 10001; 9xxxx never exists.
                invno = str(rng.randint(90000, 99999))
            else:
                invno = ledger.create_invoice(
                    COMPANY,
                    sale.custno,
                    sale.invoice_amount,
                    (sale.created_at - timedelta(days=rng.randint(5, 40))).date(),
                    ponum=f"{DEMO_PONUM_PREFIX}H{n + 1:05d}",
                ).invno.strip()
                invoices += 1
            customer = names.get(sale.custno)
            txn = Transaction.create_sale(
                approved=sale.kind != "decline",
                notify=False,
                amount=sale.amount,
                invoice_id=invno,
                customer_reference_id=HISTORY_REFERENCE,
                description=f"Payment of invoice {invno}",
                customer_id=sale.custno,
                email=customer.email.strip() if customer else "",
                card_last4=sale.card_number[-4:],
                card_brand=brand_of(sale.card_number),
                expiration_month=12,
                expiration_year=(today.year + 3) % 100,
                billing_address={"name": customer.name.strip() if customer else ""},
                created_by=settings.SANDBOX_PAYTRACE_USERNAME,
                created_through="API",
            )
            Transaction.objects.filter(pk=txn.pk).update(created_at=sale.created_at)
            if sale.kind == "decline":
                continue
            by_day.setdefault(sale.created_at.astimezone(gateway).date(), []).append(
                txn.pk
            )
        settled: list[tuple[Any, datetime]] = []
        for day in sorted(by_day):
            settled_at = datetime.combine(
                day + timedelta(days=1), dt_time(1, 30), tzinfo=gateway
            )
            if settled_at.date() >= today:
                continue  # last night's batch is the live stream's first settle
            batch = Batch.objects.create(settled_at=settled_at)
            code = f"GB{batch.number}"
            Transaction.objects.filter(pk__in=by_day[day]).update(
                batch=batch,
                settled_at=settled_at,
                status_code=code,
                status_message=code,
            )
            settled.append((batch, settled_at))
        # Refunds: one settled sale in forty, a few days later, in that day's batch.
        batches = {at.date(): batch for batch, at in settled}
        for txn in Transaction.objects.filter(
            customer_reference_id=HISTORY_REFERENCE, batch__isnull=False
        ).order_by("pk")[::40]:
            when = txn.created_at + timedelta(days=rng.randint(2, 6), hours=2)
            night = when.astimezone(gateway).date() + timedelta(days=1)
            refund_batch = batches.get(night)
            if refund_batch is None:
                continue
            refund = txn.refund(
                (txn.amount * Decimal(rng.choice([25, 50, 100])) / 100).quantize(CENT),
                created_by=settings.SANDBOX_PAYTRACE_USERNAME,
                notify=False,
            )
            code = f"GB{refund_batch.number}"
            Transaction.objects.filter(pk=refund.pk).update(
                created_at=when,
                batch=refund_batch,
                settled_at=refund_batch.settled_at,
                status_code=code,
                status_message=code,
            )
            refunds += 1
    return (
        f"{len(sales)} sales, {invoices} invoices, {refunds} refunds, "
        f"{len(settled)} settlement batches"
    )


@contextmanager
def _past_periods_open() -> Iterator[None]:
    """Open the Sage Pro sandbox's periods of the past while the backfill posts into
    them (a team posted each day's receipts in its own month, before the month was
    locked); then set the calendar back to what the sandbox's seed makes it."""
    from integrations.sandbox.sagepro.models import SycDfis
    from integrations.sandbox.sagepro.seed import reset_periods

    SycDfis.objects.filter(compid=COMPANY, permlck=False).update(
        pclosed=False, plocked=False
    )
    try:
        yield
    finally:
        reset_periods(COMPANY)


def _sync_mirror(paytrace: Connection) -> None:
    from integrations import mirror

    if paytrace.sagepro is not None:
        try:
            mirror.sync(paytrace.sagepro)
        except Exception as exc:  # the pipeline asks Sage Pro itself without it
            logger.warning("demo: the Sage Pro mirror could not sync: %s", exc)


def _drain_events(say: Callable[[str], None]) -> int:
    """Process the queued events here, as a worker would (the demo's own cluster may
    take some too: events are claimed, never processed twice)."""
    from integrations.batches import drain
    from integrations.models import Event

    done = 0
    while Event.objects.filter(state=Event.State.QUEUED).exists():
        outcome = drain()
        count = int(outcome.split()[0])
        if not count:
            break
        done += count
        say(f"  the pipeline processed {done} events")
    return done


def _record_past_batches(paytrace: Connection, first: date, today: date) -> int:
    """Record each gateway day's batches, as the nightly settlement sweep does."""
    from integrations import polling
    from integrations.models import SettlementBatch

    day = first
    while day <= today:
        polling.sweep_settlements(paytrace, day)
        day += timedelta(days=1)
    return SettlementBatch.objects.filter(connection=paytrace).count()


def _close_previous_month(
    paytrace: Connection, today: date, say: Callable[[str], None]
) -> str:
    """Reconcile the previous calendar month once (the month-end a team closed)."""
    from integrations.models import ReconciliationRun
    from integrations.reconciliation import reconcile, summarize

    last = today.replace(day=1) - timedelta(days=1)
    first = last.replace(day=1)
    done = ReconciliationRun.objects.filter(
        connection=paytrace,
        date_from=first,
        date_to=last,
        state=ReconciliationRun.State.DONE,
    ).first()
    if done is not None:
        return f"{first:%B %Y} already reconciled ({summarize(done)})"
    say(f"Reconciling {first:%B %Y} (the month-end the team closed)…")
    try:
        run = reconcile(paytrace, first, last, progress=lambda line: say(f"  {line}"))
    except Exception as exc:  # the run is stored as failed, with its error
        return f"the run of {first:%B %Y} failed ({exc}); start it again from the admin"
    return summarize(run)


# The payment stream ----------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    """One sale the stream is about to make. `card_number` is never printed."""

    kind: str  # a key of PaymentStream.MIX
    amount: Decimal
    invoice: str
    card_number: str
    custno: str = ""


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

    The stream bills as well as pays: it keeps `stock` open Sage Pro invoices of its
    own (their PONUM starts with DEMO_PONUM_PREFIX), creating new ones as they are
    paid, so payments keep matching however long the demo runs. It pays only those:
    an invoice a user creates by hand is left alone.

    Mostly full payments; a small share of partial payments, overpayments, payments
    for an invoice number Sage Pro does not know (the review queue's "unmatched"),
    second payments of an invoice already paid (duplicates) and declines. Every
    `settle_every` payments the sandbox settles its pending sales into a batch, and
    `record_batches` (if given) records it as the pipeline's settlement sweep does.
    """

    # Weights of each kind of payment.
    MIX = {
        "full": 84,
        "partial": 4,
        "over": 2,
        "unmatched": 3,
        "duplicate": 2,
        "decline": 5,
    }

    def __init__(
        self,
        paytrace: Any,
        sage: Any,
        *,
        rng: random.Random | None = None,
        settle_every: int = 40,
        stock: int = 6,
        make_invoice: Callable[[str, Decimal, str], dict[str, Any]] | None = None,
        record_batches: Callable[[], str] | None = None,
    ) -> None:
        self.paytrace = paytrace
        self.sage = sage
        self.rng = rng or random.Random()
        self.settle_every = settle_every
        self.stock = stock
        self.make_invoice = make_invoice or self.post_invoice
        self.record_batches = record_batches
        self.sent = 0
        self.made = 0
        # Invoices paid in full (and what was paid): their receipts may not be posted
        # yet, so Sage Pro can still show them open for a few seconds. A duplicate
        # pays one of them again.
        self.paid: dict[str, Decimal] = {}
        # Invoices paid in part: left alone, their balance is in flight.
        self.touched: set[str] = set()

    @classmethod
    def for_demo(cls, **kwargs: Any) -> "PaymentStream":
        from integrations import polling

        paytrace = Connection.objects.get(slug=PAYTRACE_SLUG)
        assert paytrace.sagepro is not None, "the demo posts to Sage Pro"
        if sagepro_mode() == "agent":
            kwargs.setdefault("make_invoice", AgentSite().make_invoice)

        def record_batches() -> str:
            run = polling.sweep_settlements(paytrace, polling.gateway_today(paytrace))
            if run.state == SyncRun.State.SUCCEEDED:
                return "recorded in the portal"
            return f"not recorded: {run.error}"

        kwargs.setdefault("record_batches", record_batches)
        return cls(paytrace.paytrace(), paytrace.sagepro.sage(), **kwargs)

    def open_invoices(self) -> list[dict]:
        """The stream's own open invoices that nothing is paying yet."""
        reply = self.sage.call("GET", "/invoices", params={"status": "open"})
        rows = reply.get("results", []) if isinstance(reply, dict) else reply
        return [
            row
            for row in rows or []
            if is_demo_invoice(row)
            and str(row["invno"]).strip() not in self.paid
            and str(row["invno"]).strip() not in self.touched
            and Decimal(str(row["balance"])) > 0
        ]

    def stocked_invoices(self) -> list[dict]:
        """`open_invoices`, topped up to `stock` with new invoices."""
        invoices = self.open_invoices()
        while len(invoices) < self.stock:
            invoices.append(self.bill())
        return invoices

    def bill(self) -> dict[str, Any]:
        """Create one invoice of the stream's own for a demo customer."""
        self.made += 1
        custno = self.rng.choice(DEMO_CUSTOMERS)
        amount = _avoid_decline_cents(
            Decimal(self.rng.randint(4_000, 250_000)).scaleb(-2)
        )
        ponum = f"{DEMO_PONUM_PREFIX}S{self.rng.randint(0, 99_999):05d}{self.made:04d}"
        return self.make_invoice(custno, amount, ponum[:20])

    def post_invoice(self, custno: str, amount: Decimal, ponum: str) -> dict[str, Any]:
        """Create an invoice through the Sage Pro sandbox's seeding endpoint."""
        return self.sage.call(
            "POST",
            "/invoices",
            json={"custno": custno, "invamt": str(amount), "ponum": ponum},
        )

    def choose(self) -> Payment:
        kind = self.rng.choices(list(self.MIX), weights=list(self.MIX.values()))[0]
        if kind == "duplicate" and self.paid:
            invoice = self.rng.choice(sorted(self.paid))
            return Payment(kind, self.paid[invoice], invoice, self._approved_card())
        invoices = [] if kind == "unmatched" else self.stocked_invoices()
        if not invoices:  # unmatched, or a stream told to keep no stock
            # Sage Pro invoices are numbered from 10001; 9xxxx never exists.
            invoice = str(self.rng.randint(90000, 99999))
            amount = Decimal(self.rng.randint(2500, 90000)).scaleb(-2)
            return Payment(
                "unmatched",
                _avoid_decline_cents(amount),
                invoice,
                self._approved_card(),
            )
        row = self.rng.choice(invoices)
        invoice = str(row["invno"]).strip()
        custno = str(row.get("custno") or "").strip()
        balance = Decimal(str(row["balance"]))
        if kind == "decline":
            return Payment(kind, balance, invoice, DECLINED_CARD, custno)
        if kind == "partial" or (kind != "over" and _has_decline_cents(balance)):
            share = Decimal(self.rng.randint(20, 80)) / 100
            amount = _avoid_decline_cents(max(CENT, (balance * share).quantize(CENT)))
            return Payment("partial", amount, invoice, self._approved_card(), custno)
        if kind == "over":
            extra = Decimal(self.rng.randint(100, 5_000)).scaleb(-2)
            amount = _avoid_decline_cents(balance + extra)
            return Payment(kind, amount, invoice, self._approved_card(), custno)
        return Payment("full", balance, invoice, self._approved_card(), custno)

    def send(self, payment: Payment) -> PaymentResult:
        reply = self.paytrace.sale_keyed(
            amount=payment.amount,
            card_number=payment.card_number,
            expiration_month=12,
            expiration_year=timezone.now().year + 3,
            csc="999",
            invoice_id=payment.invoice,
            customer_id=payment.custno,
            description=f"Payment of invoice {payment.invoice}",
        )
        approved = reply.get("success") is True  # a decline is a reply, not an error
        if approved and payment.kind in ("full", "over"):
            self.paid[payment.invoice] = payment.amount
        elif approved and payment.kind == "partial":
            self.touched.add(payment.invoice)
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
        line = (
            f"Settled {reply.get('count', 0)} pending sale(s) in the PayTrace sandbox "
            f"(batch {reply.get('batch_number') or '-'})"
        )
        if self.record_batches is not None and reply.get("batch_number"):
            line += f"; settlement batches {self.record_batches()}"
        return line

    def _approved_card(self) -> str:
        return self.rng.choice(APPROVED_CARDS)


def is_demo_invoice(row: dict[str, Any]) -> bool:
    """Whether the demo made this Sage Pro invoice (a user's own are left alone)."""
    return str(row.get("ponum") or "").strip().startswith(DEMO_PONUM_PREFIX)


def _has_decline_cents(amount: Decimal) -> bool:
    return amount % 1 == Decimal("0.13")


def _avoid_decline_cents(amount: Decimal) -> Decimal:
    """The sandbox declines amounts ending in .13; step off them."""
    return amount + CENT if _has_decline_cents(amount) else amount


def run_stream(
    stream: "PaymentStream | DemoStream",
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


# The storefront, its refunds and a chargeback report ------------------------------------


@dataclass
class ShopSale:
    """A storefront order the stream paid: what a refund of it needs."""

    number: int
    order_id: int
    transaction_id: str
    amount: Decimal
    refunded: bool = False


class StorefrontStream:
    """Storefront orders with their PayTrace payments, as a shop and its buyers make
    them: a signed `orders/create` webhook to the portal and a keyed sale whose
    invoice id names the order (`SHOP-1001` or `#1001`), order first or payment
    first; now and then an order with a SKU Sage Pro does not stock (it waits in
    review). `refund` refunds part of an earlier, settled sale through the PayTrace
    sandbox and tells the portal with a `refunds/create` webhook.
    """

    ITEMS = [
        ("WIDGET", "Widget", "19.99"),
        ("GADGET", "Gadget", "49.50"),
        ("CABLE-6FT", "Cable, 6 ft", "7.25"),
        ("SVC-INSTALL", "Installation", "120.00"),
    ]
    BUYERS = [
        ("Ada", "Lovelace", "ada.lovelace@example.com"),
        ("Grace", "Hopper", "grace.hopper@example.com"),
        ("Alan", "Turing", "alan.turing@example.com"),
        ("Katherine", "Johnson", "k.johnson@example.com"),
        ("Edsger", "Dijkstra", "edsger@example.com"),
    ]

    def __init__(
        self,
        paytrace: Any,
        url: str,
        secret: str,
        *,
        rng: random.Random | None = None,
        first_number: int = 1001,
    ) -> None:
        self.paytrace = paytrace
        self.url = url
        self.secret = secret
        self.rng = rng or random.Random()
        self.number = first_number - 1
        self.sales: list[ShopSale] = []

    @classmethod
    def for_demo(cls, port: int, **kwargs: Any) -> "StorefrontStream":
        from integrations.models.storefront import StorefrontOrder

        paytrace = Connection.objects.get(slug=PAYTRACE_SLUG)
        keys = StorefrontOrder.objects.filter(
            connection__slug=STOREFRONT_SLUG
        ).values_list("reference_key", flat=True)
        last = max((int(k) for k in keys if k.isdigit()), default=1000)
        return cls(
            paytrace.paytrace(),
            storefront_webhook_url(port),
            storefront_secret(),
            first_number=last + 1,
            **kwargs,
        )

    def order_body(self, number: int, *, unknown_item: bool = False) -> dict[str, Any]:
        first, last, email = self.rng.choice(self.BUYERS)
        picks = self.rng.sample(self.ITEMS, self.rng.randint(1, 3))
        lines = [
            (sku, title, self.rng.randint(1, 3), Decimal(price))
            for sku, title, price in picks
        ]
        if unknown_item:
            lines.append(("NOSUCH-SKU", "Discontinued gizmo", 1, Decimal("9.99")))
        subtotal = sum((q * p for _, _, q, p in lines), Decimal(0))
        tax = (subtotal * Decimal("0.08")).quantize(CENT)
        freight = Decimal(self.rng.choice(["0.00", "5.00", "8.50"]))
        total = _avoid_decline_cents(subtotal + tax + freight)
        tax += total - (subtotal + tax + freight)
        address = {
            "first_name": first,
            "last_name": last,
            "address1": f"{self.rng.randint(1, 999)} Market St",
            "city": "Spokane",
            "province_code": "WA",
            "zip": "99201",
            "country_code": "US",
        }
        return {
            "id": 5_000_000 + number,
            "name": f"#{number}",
            "order_number": number,
            "email": email,
            "currency": "USD",
            "financial_status": "pending",
            "subtotal_price": f"{subtotal:.2f}",
            "total_tax": f"{tax:.2f}",
            "total_price": f"{total:.2f}",
            "customer": {"id": 70_000 + self.BUYERS.index((first, last, email))},
            "billing_address": address,
            "shipping_address": {**address, "name": f"{first} {last}"},
            "line_items": [
                {
                    "sku": sku,
                    "title": title,
                    "quantity": quantity,
                    "price": f"{price:.2f}",
                    "taxable": True,
                }
                for sku, title, quantity, price in lines
            ],
            "shipping_lines": [{"title": "Ground", "price": f"{freight:.2f}"}],
        }

    def send_webhook(self, topic: str, body: dict[str, Any]) -> int:
        import base64
        import hashlib
        import hmac
        import json
        import uuid

        import requests

        raw = json.dumps(body).encode()
        signature = hmac.new(self.secret.encode(), raw, hashlib.sha256).digest()
        response = requests.post(
            self.url,
            data=raw,
            headers={
                "Content-Type": "application/json",
                "X-Shopify-Topic": topic,
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "X-Shopify-Hmac-Sha256": base64.b64encode(signature).decode(),
            },
            timeout=10,
        )
        return response.status_code

    def pay(self, number: int, amount: Decimal, reference: str) -> str:
        reply = self.paytrace.sale_keyed(
            amount=amount,
            card_number=self.rng.choice(APPROVED_CARDS),
            expiration_month=12,
            expiration_year=timezone.now().year + 3,
            csc="999",
            invoice_id=reference,
            description=f"Web order #{number}",
        )
        return str(reply.get("transaction_id") or "")

    def step(self) -> list[str]:
        """One order and its payment; returns the lines to print."""
        self.number += 1
        number = self.number
        unknown = self.rng.random() < 0.12
        body = self.order_body(number, unknown_item=unknown)
        amount = Decimal(body["total_price"])
        reference = self.rng.choice([f"SHOP-{number}", f"#{number}"])
        payment_first = self.rng.random() < 0.3
        if payment_first:
            transaction_id = self.pay(number, amount, reference)
        status = self.send_webhook("orders/create", body)
        if not payment_first:
            transaction_id = self.pay(number, amount, reference)
        if transaction_id:
            self.sales.append(ShopSale(number, body["id"], transaction_id, amount))
        how = "payment first" if payment_first else "order first"
        note = ", unknown SKU: goes to review" if unknown else ""
        return [
            f"Storefront order #{number}  {amount:>10} USD  webhook {status}, "
            f"PayTrace {transaction_id or '-'} ({how}{note})"
        ]

    def refund(self) -> list[str]:
        """Refund part of an earlier sale (PayTrace refunds settled sales only)."""
        for sale in self.sales:
            if sale.refunded:
                continue
            amount = max(CENT, (sale.amount * Decimal("0.25")).quantize(CENT))
            try:
                reply = self.paytrace.refund(sale.transaction_id, amount)
            except ConnectorError:
                continue  # not settled yet (817): try the next one, or later
            if reply.get("success") is not True:
                continue
            sale.refunded = True
            status = self.send_webhook(
                "refunds/create",
                {
                    "id": 9_000_000 + sale.number,
                    "order_id": sale.order_id,
                    "note": "Customer returned part of the order",
                    "transactions": [{"kind": "refund", "amount": f"{amount:.2f}"}],
                },
            )
            return [
                f"Refunded {amount} USD of storefront order #{sale.number} "
                f"(PayTrace {reply.get('transaction_id') or '-'}), webhook {status}"
            ]
        return []


def import_demo_chargebacks(paytrace: Connection) -> str:
    """Import one dispute report naming three of the demo's posted payments (opened,
    lost, won) and one payment PayTrace never made (reported as a bad row)."""
    try:
        from integrations import chargebacks
    except ImportError:
        return "Chargeback import skipped: chargebacks are not installed."
    from integrations.models import PaymentTransaction, Posting

    paid = list(
        PaymentTransaction.objects.filter(
            connection=paytrace,
            postings__kind=Posting.Kind.CASH_RECEIPT,
            postings__state=Posting.State.POSTED,
        ).order_by("-pk")[:3]
    )
    if len(paid) < 3:
        return ""
    today = timezone.localdate()
    rows = [
        "Case ID,Transaction ID,Dispute Amount,Status,Received Date,Reply By,"
        "Resolved Date,Reason Code,Reason,Fee"
    ]
    for n, (txn, status) in enumerate(zip(paid, ["Open", "Lost", "Won"], strict=True)):
        resolved = "" if status == "Open" else f"{today:%m/%d/%Y}"
        rows.append(
            f"DEMO-{txn.transaction_id},{txn.transaction_id},"
            f"{min(txn.amount, Decimal('25.00')):.2f},{status},{today:%m/%d/%Y},"
            f"{today + timedelta(days=14):%m/%d/%Y},{resolved},10.4,"
            f"Fraud - card absent,{'15.00' if n == 0 else ''}"
        )
    rows.append(f"DEMO-MISSING,9999999999,10.00,Open,{today:%m/%d/%Y},,,10.4,Fraud,")
    content = ("\n".join(rows) + "\n").encode()
    try:
        record = chargebacks.import_report(paytrace, "demo-dispute-report.csv", content)
    except Exception as exc:  # the demo goes on: say what failed
        return f"Chargeback import failed: {type(exc).__name__}: {exc}"
    return f"Imported a dispute report ({record.get_state_display()})"


class DemoStream:
    """The demo's whole stream: invoice payments, and every `order_every` of them a
    storefront order; every `refund_every` a storefront refund; once, after
    `chargebacks_after` payments, a chargeback report."""

    def __init__(
        self,
        payments: PaymentStream,
        shop: StorefrontStream | None,
        *,
        order_every: int = 4,
        refund_every: int = 15,
        chargebacks_after: int = 25,
        import_chargebacks: Callable[[], str] | None = None,
    ) -> None:
        self.payments = payments
        self.shop = shop
        self.rng = payments.rng
        self.order_every = order_every
        self.refund_every = refund_every
        self.chargebacks_after = chargebacks_after
        self.import_chargebacks = import_chargebacks
        self.steps = 0
        self.chargebacks_done = import_chargebacks is None

    @classmethod
    def for_demo(cls, port: int) -> "DemoStream":
        payments = PaymentStream.for_demo()
        paytrace = Connection.objects.get(slug=PAYTRACE_SLUG)
        shop = (
            StorefrontStream.for_demo(port, rng=payments.rng)
            if Connection.objects.filter(slug=STOREFRONT_SLUG, is_active=True).exists()
            else None
        )
        return cls(
            payments, shop, import_chargebacks=lambda: import_demo_chargebacks(paytrace)
        )

    def step(self) -> list[str]:
        self.steps += 1
        lines = self.payments.step()
        if self.shop is not None and self.steps % self.order_every == 0:
            lines += self.shop.step()
        if self.shop is not None and self.steps % self.refund_every == 0:
            lines += self.shop.refund()
        if not self.chargebacks_done and self.steps >= self.chargebacks_after:
            assert self.import_chargebacks is not None
            line = self.import_chargebacks()
            self.chargebacks_done = bool(line)
            lines += [line] if line else []
        return lines
