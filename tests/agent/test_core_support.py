"""Shared fixtures and helpers of the core tests (no tests here).

`env` is an agent over either store: the in-memory one (fast) and, when
`sagepro_agent.store.fixture` is importable, real FoxPro fixture files. Tests seed
their own customer `TEST` and invoices `9000x` through the Store interface, so the same
test runs unchanged on both.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sagepro_agent.agent import Agent, build
from sagepro_agent.config import SiteMapping
from sagepro_agent.store.base import Store
from sagepro_agent.store.memory import MemoryStore, period_date, seed_company
from sagepro_agent.wire import Request, Response

TODAY = datetime.date(2026, 12, 6)
USER = "AGNT"


def fixture_store_available() -> bool:
    try:
        import sagepro_agent.store.fixture.seed  # noqa: F401
    except ImportError:
        return False
    return True


def make_store(kind: str, folder: Path) -> Store:
    if kind == "memory":
        store = MemoryStore(user=USER)
        seed_company(store, "01", TODAY)
        return store
    from sagepro_agent.store.fixture import FixtureStore
    from sagepro_agent.store.fixture.seed import create_company

    create_company(folder, "01", today=TODAY)
    return FixtureStore(folder, reprocess=0.3, user=USER)


@dataclass
class Env:
    kind: str
    agent: Agent
    store: Store
    tmp: Path

    @property
    def journal(self):  # noqa: ANN201
        return self.agent.journal

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | list[tuple[str, str]] | None = None,
        raw: bytes | None = None,
    ) -> Response:
        pairs = tuple(query.items() if isinstance(query, dict) else (query or ()))
        data = (
            raw
            if raw is not None
            else (json.dumps(body).encode() if body is not None else b"")
        )
        response = self.agent.gateway.handle(
            Request(method, path, pairs, headers or {}, data)
        )
        json.loads(response.encode() or b"null")  # always JSON-encodable
        return response

    def post(self, key: str | None, body: Any) -> Response:
        headers = {"Idempotency-Key": key} if key is not None else {}
        return self.call("POST", "/cash-receipts", body, headers=headers)

    def table(self, name: str):  # noqa: ANN201
        return self.store.table("01", name)

    def invoice(self, invno: str) -> dict[str, Any]:
        return self.call("GET", f"/invoices/{invno}").body

    def customer(self, custno: str) -> dict[str, Any]:
        return self.call("GET", f"/customers/{custno}").body


def mapping_for(tmp: Path, kind: str = "memory") -> SiteMapping:
    return SiteMapping(
        store_kind=kind if kind != "memory" else "fixture",
        data_path=str(tmp / "sage"),
        journal_path=str(tmp / "agent" / "journal.sqlite3"),
        marker_path=str(tmp / "config" / "journal-install-id"),
        agent_user=USER,
    )


def new_agent(tmp: Path, store: Store) -> Agent:
    agent = build(mapping_for(tmp), store=store)
    agent.start()
    return agent


def add_customer(
    store: Store, custno: str = "TEST", name: str = "Test Customer"
) -> None:
    store.table("01", "customers").append(
        {"CUSTNO": custno.ljust(6), "COMPANY": name, "CURRENCY": "USD", "CUSTSTAT": "A"}
    )


def add_invoice(
    store: Store,
    custno: str,
    invno: str,
    amount: str,
    paid: str = "0",
    *,
    artype: str = "",
    deleted: bool = False,
) -> None:
    table = store.table("01", "invoices")
    invamt, paidamt = Decimal(amount), Decimal(paid)
    row = table.append(
        {
            "INVNO": invno.rjust(10),
            "CUSTNO": custno.ljust(6),
            "INVDTE": TODAY,
            "INVAMT": invamt,
            "PAIDAMT": paidamt,
            "BALANCE": invamt - paidamt,
            "ARTYPE": artype,
        }
    )
    if deleted:
        table.set_deleted(row.ref, True, expect={"INVNO": invno.rjust(10)})
    recompute(store, custno)


def recompute(store: Store, custno: str) -> None:
    customers = store.table("01", "customers")
    key = custno.ljust(6)
    total = sum(
        (r["BALANCE"] for r in store.table("01", "invoices").find({"CUSTNO": key})),
        Decimal(0),
    )
    row = customers.find({"CUSTNO": key})[0]
    customers.update(row.ref, {"BALANCE": total}, expect={"CUSTNO": key})


def receipt(
    amount: str = "100.00",
    reference: str = "TX1",
    apps: list | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "custno": "test",
        "date": period_date(0, TODAY).isoformat(),
        "amount": amount,
        "method": "visa",
        "reference": reference,
        "applications": [{"invno": i, "amount": a} for i, a in (apps or [])],
    }
    body.update(extra)
    return body


def check_invariants(store: Store) -> None:
    """invamt - paidamt = balance on every invoice, each customer's balance = the sum
    of its live invoices, no in-progress marker left anywhere, one live receipt per
    reference."""
    invoices = list(store.table("01", "invoices").rows())
    for inv in invoices:
        assert inv["INVAMT"] - inv["PAIDAMT"] == inv["BALANCE"], inv.values
        assert not inv["LCKSTAT"].strip(), inv.values
    for cust in store.table("01", "customers").rows():
        total = sum(
            (i["BALANCE"] for i in invoices if i["CUSTNO"] == cust["CUSTNO"]),
            Decimal(0),
        )
        assert cust["BALANCE"] == total, (cust["CUSTNO"], cust["BALANCE"], total)
    refs = [r["REFNO"] for r in store.table("01", "receipts").rows()]
    assert len(refs) == len(set(refs)), refs
    for name in ("receipts", "receipt_lines"):
        for row in store.table("01", name).rows():
            assert not row["LCKSTAT"].strip(), (name, row.values)


STORES = [
    "memory",
    pytest.param(
        "fixture",
        marks=pytest.mark.skipif(
            not fixture_store_available(),
            reason="sagepro_agent.store.fixture not importable",
        ),
    ),
]


@pytest.fixture(params=STORES, name="env")
def env_fixture(request, tmp_path) -> Env:
    store = make_store(request.param, tmp_path / "sage")
    add_customer(store)
    add_invoice(store, "TEST", "90001", "100.00")
    add_invoice(store, "TEST", "90002", "250.00", "50.00")
    add_invoice(store, "TEST", "90003", "-40.00", artype="C")
    add_invoice(store, "TEST", "90004", "80.00", deleted=True)
    agent = new_agent(tmp_path, store)
    yield Env(request.param, agent, store, tmp_path)
    agent.close()


@pytest.fixture(name="menv")
def menv_fixture(tmp_path) -> Env:
    """The same, memory store only (for tests that inject store failures)."""
    store = make_store("memory", tmp_path / "sage")
    add_customer(store)
    add_invoice(store, "TEST", "90001", "100.00")
    add_invoice(store, "TEST", "90002", "250.00", "50.00")
    agent = new_agent(tmp_path, store)
    yield Env("memory", agent, store, tmp_path)
    agent.close()


def table_as(env: Env, name: str, user: str):  # noqa: ANN201
    """The table opened by another Sage user (to set or clear their object lock)."""
    if env.kind == "fixture":
        from sagepro_agent.store.fixture import FixtureStore

        return FixtureStore(env.tmp / "sage", reprocess=0.3, user=user).table(
            "01", name
        )
    other = MemoryStore(user=user)
    other._tables = env.store._tables  # the same rows, another user
    for table in other._tables.values():
        table.store = other
    return _Restoring(env.store, other.table("01", name))


class _Restoring:
    """A memory table seen as another user; `done()` hands the rows back."""

    def __init__(self, original: MemoryStore, table) -> None:  # noqa: ANN001
        self.original, self.table = original, table

    def __getattr__(self, name: str):  # noqa: ANN204
        attr = getattr(self.table, name)

        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            try:
                return attr(*args, **kwargs)
            finally:
                for table in self.original._tables.values():
                    table.store = self.original

        return call if callable(attr) else attr
