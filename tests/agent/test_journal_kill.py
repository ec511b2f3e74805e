"""Real processes killed after each write step (`AGENT_FAULT=exit_after:<STEP>`), then
restarted: one receipt, the replay answers 200, the invariants hold and the CDX still
finds every row (checked by the store's full integrity check and by Perl's XBase)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.agent.test_core_support import (
    TODAY,
    USER,
    check_invariants,
    fixture_store_available,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not fixture_store_available(), reason="fixture store not importable"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
POST = textwrap.dedent(
    """
    import json, sys
    from sagepro_agent.agent import build
    from sagepro_agent.wire import Request
    agent = build(sys.argv[1])
    agent.start()
    body = json.loads(sys.argv[2])
    response = agent.gateway.handle(Request("POST", "/cash-receipts", (),
        {"Idempotency-Key": "kill-1"}, json.dumps(body).encode()))
    print(json.dumps({"status": response.status, "body": response.body}))
    """
)


def write_config(tmp: Path) -> Path:
    config = tmp / "site.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [sage]
            store = "fixture"
            data = "sage"
            companies = ["01"]
            reprocess = 0.5
            [agent]
            user = "{USER}"
            journal = "agent/journal.sqlite3"
            time_zone = "America/Los_Angeles"
            """
        )
    )
    return config


def run_post(
    config: Path, body: dict, fault: str | None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("AGENT_FAULT", None)
    if fault:
        env["AGENT_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-c", POST, str(config), json.dumps(body)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "fault",
    [
        "exit_after:S1",
        "exit_after:S2",
        "exit_after:S3:2",
        "exit_after:S4:1",
        "exit_after:S5",
        "exit_after:S6",
    ],
)
def test_killed_after_a_step_and_restarted(tmp_path, fault):
    from sagepro_agent.store.fixture import FixtureStore
    from sagepro_agent.store.fixture.seed import create_company
    from tests.agent.test_core_support import add_customer, add_invoice, receipt

    create_company(tmp_path / "sage", "01", today=TODAY)
    store = FixtureStore(tmp_path / "sage", user=USER)
    add_customer(store)
    add_invoice(store, "TEST", "90001", "100.00")
    add_invoice(store, "TEST", "90002", "250.00", "50.00")
    store.close()
    config = write_config(tmp_path)
    body = receipt("150.00", apps=[("90002", "50.00"), ("90001", "100.00")])

    killed = run_post(config, body, fault)
    assert killed.returncode == 137, killed.stderr
    restarted = run_post(config, body, None)
    assert restarted.returncode == 0, restarted.stderr
    answer = json.loads(restarted.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200, answer  # recovered at start, so this is a replay

    store = FixtureStore(tmp_path / "sage", user=USER)
    headers = list(store.table("01", "receipts").rows())
    assert len(headers) == 1
    assert answer["body"]["receipt_no"] == headers[0]["RCPTNO"].strip()
    check_invariants(store)
    for name in ("counters", "receipts", "receipt_lines", "invoices", "customers"):
        assert store.check("01", name, sample=None) == [], name
    from tests.agent.cdxcheck import cdx_keys, xbase_available

    if xbase_available():
        keys = cdx_keys(str(tmp_path / "sage" / "ARCASH01.DBF"), "REFNO")
        assert [k.rstrip(b" ") for k, _ in keys] == [b"TX1"]
    store.close()
