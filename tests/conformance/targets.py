"""The implementations of the Sage Pro gateway contract the conformance suite drives.

Every target answers `call(method, path, ...) -> Answer(status, headers, json)` over
HTTP, raw (no `SageProConnector` conversions), so status codes, headers and bodies are
compared exactly, and offers the seeding the tests need, each in its own way:

- `SandboxTarget`: the emulator at `/sandbox/sagepro/api/v1`, reached through the
  in-process bridge (`tests/bridge.py`), seeded with the sandbox's own `seed`;
- `AgentTarget`: the on-site agent over its direct HTTP binding on a real 127.0.0.1
  server, in front of a fixture FoxPro company seeded for the same business date;
- `RelayTarget` (tests/conformance/relay.py): the same agent, reached through the
  portal's relay transport, so status and body are what the portal sees.

Seeding changes the data the way a Sage Pro user would (behind the gateway's back); an
agent target then runs its change scanner, as its schedule would.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests

SANDBOX_BASE = "http://testserver/sandbox/sagepro/api/v1"
AGENT_API_KEY = "conformance-agent-key"
COMPANY = "01"
# A Sage Pro user id other than the agent's: its LCKSTAT object locks stop the agent.
OTHER_USER = "OTHR"


class Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]  # case-insensitive
    json: Any  # the decoded body; None when empty, or the raw text when not JSON


def decode(content: bytes) -> Any:
    """The JSON body (fractional numbers as Decimal, so a float shows), or the text of
    a body that is not JSON (for the failure message)."""
    if not content:
        return None
    try:
        return json.loads(content, parse_float=Decimal)
    except ValueError:
        return content.decode("utf-8", "replace")


def encode(json_body: Any) -> bytes:
    """Plain `json.dumps`: a test that sends a JSON number as money passes a float."""
    return json.dumps(json_body).encode()


class Target:
    """What every target offers; subclasses fill in transport and seeding."""

    name = "target"
    base_url = ""
    api_key = ""
    # False when the transport authenticates the caller itself (the relay signs its
    # commands), so bearer-key tests do not apply.
    bearer_auth = True
    # False when the transport carries bodies as text, so bytes that are not UTF-8
    # cannot be sent (the relay).
    raw_bodies = True

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        body: bytes | None = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        auth: bool | str = True,
    ) -> Answer:
        """Send one request. `auth=True` sends the target's key, a string sends that
        value as the whole `Authorization` header, False sends none."""
        sent = {"Accept": "application/json"}
        if auth is True:
            sent["Authorization"] = f"Bearer {self.api_key}"
        elif auth:
            sent["Authorization"] = auth
        if json is not None:
            body = encode(json)
        if body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        return self.send(method, path, sent, body, params)

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        params: Any,
    ) -> Answer:
        response = requests.request(
            method,
            self.base_url + path,
            headers=headers,
            data=body,
            params=params,
            timeout=30,
        )
        return Answer(response.status_code, response.headers, decode(response.content))

    # Convenience wrappers used by almost every test.

    def get(self, path: str, **params: str) -> Answer:
        return self.call("GET", path, params=params or None)

    def post_receipt(
        self, key: str | None, body: Any, headers: Mapping[str, str] | None = None
    ) -> Answer:
        sent = dict(headers or {})
        if key is not None:
            sent["Idempotency-Key"] = key
        return self.call("POST", "/cash-receipts", json=body, headers=sent)

    # Seeding: subclasses implement these.

    def today(self) -> datetime.date:
        raise NotImplementedError

    def period_date(self, offset: int, day: int = 15) -> datetime.date:
        """A date `offset` months from the current period (0 = this month), the
        sandbox seed's calendar."""
        base = self.today()
        index = base.year * 12 + base.month - 1 + offset
        return datetime.date(index // 12, index % 12 + 1, day)

    def seed_customer(self, custno: str, name: str = "") -> str:
        raise NotImplementedError

    def seed_invoice(
        self,
        custno: str,
        invamt: str,
        invno: str | None = None,
        *,
        invdte: datetime.date | None = None,
        paidamt: str = "0.00",
        artype: str = "",
        ornum: str = "",
        ponum: str = "",
    ) -> str:
        raise NotImplementedError

    def delete_invoice(self, invno: str) -> None:
        raise NotImplementedError

    def delete_customer(self, custno: str) -> None:
        raise NotImplementedError

    def set_period(
        self,
        offset: int,
        *,
        pclosed: bool = False,
        plocked: bool = False,
        permlck: bool = False,
    ) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def hold_lock(
        self, *, custno: str = "", invnos: tuple[str, ...] = ()
    ) -> Iterator[None]:
        """Another Sage Pro user holds a lock on the customer and invoices named (the
        sandbox cannot aim: its `locked` fault refuses every write)."""
        raise NotImplementedError
        yield

    @contextlib.contextmanager
    def make_unavailable(self) -> Iterator[None]:
        raise NotImplementedError
        yield

    def close(self) -> None:
        """Release what the target started."""


# --- the sandbox ---------------------------------------------------------------------


class SandboxTarget(Target):
    """The emulator through the in-process bridge (needs the test database and the
    bridge, the `bridged` fixture)."""

    name = "sandbox"
    base_url = SANDBOX_BASE

    def __init__(self) -> None:
        from django.conf import settings

        from integrations.sandbox.sagepro import seed

        self.api_key = settings.SANDBOX_SAGEPRO_API_KEY
        self._seed = seed
        seed.seed(COMPANY)

    def today(self) -> datetime.date:
        return self._seed.today()

    def seed_customer(self, custno: str, name: str = "") -> str:
        return self._seed.seed_customer(custno, name, company=COMPANY)

    def seed_invoice(
        self,
        custno: str,
        invamt: str,
        invno: str | None = None,
        *,
        invdte: datetime.date | None = None,
        paidamt: str = "0.00",
        artype: str = "",
        ornum: str = "",
        ponum: str = "",
    ) -> str:
        return self._seed.seed_invoice(
            custno,
            Decimal(invamt),
            invno,
            company=COMPANY,
            invdte=invdte,
            paidamt=Decimal(paidamt),
            artype=artype,
            ornum=ornum,
            ponum=ponum,
        )

    def delete_invoice(self, invno: str) -> None:
        from integrations.sandbox.sagepro import keys
        from integrations.sandbox.sagepro.models import ArMast

        changed = ArMast.objects.filter(
            company=COMPANY, invno=keys.pad_invno(invno)
        ).update(deleted=True)
        assert changed == 1, f"no invoice {invno!r} to delete"

    def delete_customer(self, custno: str) -> None:
        from integrations.sandbox.sagepro import keys
        from integrations.sandbox.sagepro.models import ArCust

        changed = ArCust.objects.filter(
            company=COMPANY, custno=keys.pad_custno(custno)
        ).update(deleted=True)
        assert changed == 1, f"no customer {custno!r} to delete"

    def set_period(
        self,
        offset: int,
        *,
        pclosed: bool = False,
        plocked: bool = False,
        permlck: bool = False,
    ) -> None:
        from integrations.sandbox.sagepro.models import SycDfis

        start = self._seed.month_start(offset)
        changed = SycDfis.objects.filter(
            compid=COMPANY, yearprd=f"{start.year:04d}{start.month:02d}"
        ).update(pclosed=pclosed, plocked=plocked, permlck=permlck)
        assert changed == 1, f"no period at offset {offset}"

    def _fault(self, **body: Any) -> None:
        answer = self.call("POST", "/_faults", json=body)
        assert answer.status == 200, answer

    @contextlib.contextmanager
    def hold_lock(
        self, *, custno: str = "", invnos: tuple[str, ...] = ()
    ) -> Iterator[None]:
        self._fault(mode="locked", seconds=600)
        try:
            yield
        finally:
            self._fault(mode="none")

    @contextlib.contextmanager
    def make_unavailable(self) -> Iterator[None]:
        self._fault(mode="unavailable", seconds=600)
        try:
            yield
        finally:
            self._fault(mode="none")


# --- the agent over its direct HTTP binding --------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def create_template(folder: Path, today: datetime.date) -> Path:
    """A fixture FoxPro company 01 with the sandbox's baseline for `today`; created
    once per session and copied for each test (`AgentTarget`)."""
    from sagepro_agent.store.fixture import seed

    seed.create_company(folder, COMPANY, today=today)
    return folder


class AgentTarget(Target):
    """The agent built from a site mapping over a copy of the template company, served
    by its WSGI app on 127.0.0.1 (port 0) in a thread."""

    name = "agent"
    api_key = AGENT_API_KEY

    def __init__(self, template: Path, workdir: Path, today: datetime.date) -> None:
        from sagepro_agent import agent as agent_module
        from sagepro_agent import config as config_module
        from sagepro_agent.http import wsgi

        self._today = today
        self.workdir = workdir
        self.data = workdir / "data"
        shutil.copytree(template, self.data)
        self.config_path = write_site_config(workdir, self.data)
        self.config = config_module.load(self.config_path)
        self.agent = agent_module.build(self.config)
        self.agent.start()
        self.app = wsgi.make_app(self.agent, AGENT_API_KEY)
        self.server = make_server(
            "127.0.0.1",
            0,
            self.app,
            server_class=WSGIServer,
            handler_class=_QuietHandler,
        )
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/api/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.02},
            daemon=True,
        )
        self.thread.start()
        self.session = requests.Session()

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        params: Any,
    ) -> Answer:
        response = self.session.request(
            method,
            self.base_url + path,
            headers=headers,
            data=body,
            params=params,
            timeout=30,
        )
        return Answer(response.status_code, response.headers, decode(response.content))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.session.close()
        self.agent.close()

    # Seeding, the way a Sage Pro user would change the files, then a scan.

    def today(self) -> datetime.date:
        return self._today

    def scan(self) -> None:
        """What the agent's schedule does between two changes by a Sage Pro user."""
        self.agent.scan()

    def seed_customer(self, custno: str, name: str = "") -> str:
        from sagepro_agent.store.fixture import seed

        result = seed.seed_customer(self.data, COMPANY, custno, name)
        self.scan()
        return result

    def seed_invoice(
        self,
        custno: str,
        invamt: str,
        invno: str | None = None,
        *,
        invdte: datetime.date | None = None,
        paidamt: str = "0.00",
        artype: str = "",
        ornum: str = "",
        ponum: str = "",
    ) -> str:
        from sagepro_agent.store.fixture import seed

        result = seed.seed_invoice(
            self.data,
            COMPANY,
            custno,
            Decimal(invamt),
            invno,
            invdte=invdte or self._today,
            paidamt=Decimal(paidamt),
            artype=artype,
            ornum=ornum,
            ponum=ponum,
        )
        self.scan()
        return result

    def delete_invoice(self, invno: str) -> None:
        from sagepro_agent.store.fixture import seed

        assert seed.delete_row(self.data, COMPANY, "invoices", invno), invno
        self.scan()

    def delete_customer(self, custno: str) -> None:
        from sagepro_agent.store.fixture import seed

        assert seed.delete_row(self.data, COMPANY, "customers", custno), custno
        self.scan()

    def set_period(
        self,
        offset: int,
        *,
        pclosed: bool = False,
        plocked: bool = False,
        permlck: bool = False,
    ) -> None:
        from sagepro_agent.store.fixture import seed

        start = self.period_date(offset, 1)
        seed.set_period_flags(
            self.data,
            COMPANY,
            f"{start.year:04d}{start.month:02d}",
            pclosed=pclosed,
            plocked=plocked,
            permlck=permlck,
        )

    @contextlib.contextmanager
    def hold_lock(
        self, *, custno: str = "", invnos: tuple[str, ...] = ()
    ) -> Iterator[None]:
        """A Sage Pro user edits the rows: `LCKSTAT = 'L'` by another user id."""
        from sagepro_agent.store.fixture import FixtureStore

        store = FixtureStore(self.data, user=OTHER_USER)
        targets = []
        if custno:
            targets.append(("customers", {"CUSTNO": custno.strip().upper().ljust(6)}))
        for invno in invnos:
            targets.append(("invoices", {"INVNO": invno.strip().upper().rjust(10)}))
        locked = []
        try:
            for name, where in targets:
                table = store.table(COMPANY, name)
                (row,) = table.find(where)
                table.update(
                    row.ref,
                    {"LCKSTAT": "L", "LCKUSER": OTHER_USER},
                    expect={**where, "LCKSTAT": row["LCKSTAT"]},
                )
                locked.append((name, where))
            yield
        finally:
            for name, where in locked:
                table = store.table(COMPANY, name)
                (row,) = table.find(where)
                table.update(
                    row.ref,
                    {"LCKSTAT": " ", "LCKUSER": "    "},
                    expect={**where, "LCKSTAT": "L"},
                )
            store.close()

    @contextlib.contextmanager
    def make_unavailable(self) -> Iterator[None]:
        """The share goes offline: the data folder is renamed away, then back."""
        away = self.data.with_name("data-offline")
        os.rename(self.data, away)
        try:
            yield
        finally:
            os.rename(away, self.data)


def write_site_config(workdir: Path, data: Path) -> Path:
    """The site mapping of a fixture company (see sagepro_agent/site.example.toml)."""
    from sagepro_agent.config import hash_api_key

    path = workdir / "site.toml"
    path.write_text(
        SITE_TOML.format(
            data=data.as_posix(),
            journal=(workdir / "journal.sqlite3").as_posix(),
            key_hash=hash_api_key(AGENT_API_KEY),
        )
    )
    return path


SITE_TOML = """\
# Written by tests/conformance/targets.py: a fixture company, never live data.
[sage]
store = "fixture"
data = "{data}"
companies = ["01"]
receipt_mode = "direct"
reprocess = 0.5

[agent]
user = "AGNT"
journal = "{journal}"
time_zone = "America/Los_Angeles"

[http]
bind = "127.0.0.1:0"
api_key_sha256 = "{key_hash}"
"""
