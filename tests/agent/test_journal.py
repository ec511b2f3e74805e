"""The journal: resuming after a crash at every step, the journal-deleted guard, the
watchdog, the heartbeat's facts. In-process crashes here (fast, both stores); real
killed processes in test_journal_kill.py."""

import os

import pytest

from sagepro_agent.core import receipts as receipts_module
from sagepro_agent.journal.db import Journal
from tests.agent.test_core_support import (
    check_invariants,
    env_fixture,  # noqa: F401
    menv_fixture,  # noqa: F401
    new_agent,
    receipt,
)


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, no handler sees it."""


def crash_at(monkeypatch, step: str, nth: int = 1) -> None:
    seen = {"n": 0}

    def fault(name: str) -> None:
        if name == step:
            seen["n"] += 1
            if seen["n"] == nth:
                raise Crash(step)

    monkeypatch.setattr(receipts_module, "fault_point", fault)


BODY = receipt("150.00", apps=[("90002", "50.00"), ("90001", "100.00")])


@pytest.mark.parametrize(
    ("step", "nth"),
    [
        ("S1", 1),
        ("S2", 1),
        ("S3", 1),
        ("S3", 2),
        ("S4", 1),
        ("S4", 2),
        ("S5", 1),
        ("S6", 1),
    ],
)
def test_a_crash_after_any_step_ends_in_one_receipt(env, monkeypatch, step, nth):
    crash_at(monkeypatch, step, nth)
    with pytest.raises(Crash):
        env.post("k1", BODY)
    monkeypatch.setattr(receipts_module, "fault_point", lambda name: None)
    env.agent.journal.close()
    env.agent = new_agent(env.tmp, env.store)  # start(): recovery before new work
    assert env.journal.backlog() == 0
    replay = env.post("k1", BODY)
    assert replay.status == 200, replay.body
    headers = list(env.table("receipts").rows())
    assert len(headers) == 1
    # A crash between taking a number and journalling it leaves a gap (never reuses
    # a number a Sage user might have taken meanwhile).
    assert replay.body["receipt_no"] == ("000002" if step == "S1" else "000001")
    assert len(list(env.table("receipt_lines").rows())) == 2
    assert env.invoice("90001")["balance"] == "0.00"
    assert env.invoice("90002")["paidamt"] == "100.00"
    check_invariants(env.store)
    assert env.post("k2", receipt(reference="NEXT")).status == 201


def test_recovery_flags_an_entry_whose_invoice_changed_meanwhile(menv, monkeypatch):
    from decimal import Decimal

    crash_at(monkeypatch, "S3", 2)
    with pytest.raises(Crash):
        menv.post("k1", BODY)
    monkeypatch.setattr(receipts_module, "fault_point", lambda name: None)
    invoices = menv.table("invoices")
    row = invoices.find({"INVNO": "     90001"})[0]
    invoices.update(
        row.ref,
        {"PAIDAMT": Decimal("7.00"), "BALANCE": Decimal("93.00")},
        expect={"INVNO": "     90001"},
    )
    menv.agent.journal.close()
    menv.agent = new_agent(menv.tmp, menv.store)
    review = menv.journal.needs_review()
    assert len(review) == 1 and review[0]["idempotency_key"] == "k1"
    assert review[0]["receipt_no"] == "000001" and "90001" in review[0]["detail"]
    assert menv.post("k1", BODY).status == 503
    health = menv.agent.health()
    assert health["needs_review"] == 1 and health["journal_backlog"] == 0


def delete_journal(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def test_a_deleted_journal_refuses_writes_until_confirmed(env):
    assert env.post("k1", receipt()).status == 201
    path = env.journal.path
    env.agent.journal.close()
    delete_journal(path)
    env.agent = new_agent(env.tmp, env.store)
    refused = env.post("k2", receipt(reference="R2"))
    assert refused.status == 503
    assert "confirm-journal" in refused.body["detail"]
    assert refused.headers["Retry-After"]
    batch = env.call(
        "POST",
        "/cash-receipts/batch",
        {"receipts": [{"idempotency_key": "k3", "receipt": receipt(reference="R3")}]},
    )
    assert batch.status == 503
    assert env.call("GET", "/invoices/90001").status == 200  # reads keep working
    assert env.agent.health()["writes_refused"]
    env.agent.confirm_journal()
    assert env.post("k2", receipt(reference="R2")).status == 201
    # The old key is unknown to the new journal, but Sage's REFNO still refuses a second
    # receipt for the same PayTrace transaction.
    again = env.post("k1", receipt())
    assert again.status == 409 and again.body["code"] == "DUPLICATE_RECEIPT"


def test_a_journal_deleted_while_running_stops_writes(menv):
    delete_journal(menv.journal.path)
    response = menv.post("k1", receipt())
    assert response.status == 503 and "confirm-journal" in response.body["detail"]
    assert menv.call("GET", "/customers/test").status == 200


def test_a_replaced_journal_is_refused_too(menv, tmp_path):
    path = menv.journal.path
    menv.agent.journal.close()
    delete_journal(path)
    Journal(path).ensure_install_id()  # someone else's journal in its place
    menv.agent = new_agent(menv.tmp, menv.store)
    assert menv.post("k1", receipt()).status == 503


def test_a_table_failing_the_watchdog_is_not_written(menv):
    menv.store.findings[("01", "invoices")] = ["SIZE truncated: header says 9 records"]
    menv.agent._checks.clear()
    response = menv.post("k1", receipt())
    assert response.status == 503
    assert (
        "ARMAST01" in response.body["detail"]
        and "SIZE truncated" in response.body["detail"]
    )
    assert menv.call("GET", "/invoices/90001").status == 200
    health = menv.agent.health()
    assert health["last_integrity_ok"] is False
    assert "01/ARMAST01" in health["last_integrity"]["problems"]
    menv.store.findings.clear()
    menv.agent.watchdog()
    assert menv.post("k1", receipt()).status == 201
    assert menv.agent.health()["last_integrity_ok"] is True


def test_health_reports_what_the_heartbeat_needs(menv):
    health = menv.agent.health()
    assert set(health) >= {
        "version",
        "sage_reachable",
        "journal_backlog",
        "needs_review",
        "last_integrity",
        "last_integrity_at",
        "last_error",
    }
    assert health["sage_reachable"] is True
    menv.store.offline = True
    assert menv.agent.health()["sage_reachable"] is False


def test_agent_only_facts_live_in_the_journal(menv):
    menv.post("k1", receipt("300.00", apps=[("90001", "250.00")]))
    entry = menv.journal.active_entry("01", "k1")
    assert entry.state == "DONE" and entry.receipt_no == "    000001"
    assert entry.plan["apps"][0]["requested"] == "250.00"
    assert [s for s, _ in menv.journal.steps(entry.id)] == [
        "PLANNED",
        "NUMBERED",
        "HEADER_WRITTEN",
        "LINES_WRITTEN",
        "LINES_WRITTEN",
        "INVOICES_APPLIED",
        "CUSTOMER_UPDATED",
        "DONE",
    ]
    db = menv.journal.db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
