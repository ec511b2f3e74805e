"""`python -m sagepro_agent …`: commands, exit codes, clear errors."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from sagepro_agent.__main__ import main
from tests.agent.test_core_support import (
    TODAY,
    fixture_store_available,
)

needs_fixture = pytest.mark.skipif(
    not fixture_store_available(), reason="fixture store missing"
)
ROOT = Path(__file__).resolve().parents[2]


def site(tmp_path, port=8765, extra=""):
    from sagepro_agent.store.fixture.seed import create_company

    create_company(tmp_path / "sage", "01", today=TODAY)
    config = tmp_path / "site.toml"
    config.write_text(
        textwrap.dedent(f"""
        [sage]
        store = "fixture"
        data = "sage"
        [agent]
        user = "AGNT"
        journal = "agent/journal.sqlite3"
        [http]
        bind = "127.0.0.1:{port}"
        api_key_env = "CLI_TEST_KEY"
        {extra}
        """)
    )
    return config


def test_help_and_no_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "confirm-journal" in capsys.readouterr().out
    assert main([]) == 2


def test_a_bad_config_exits_2_listing_the_problems(tmp_path, capsys):
    (tmp_path / "site.toml").write_text('[sage]\nstore = "nope"\n')
    assert main(["check", "--config", str(tmp_path / "site.toml")]) == 2
    err = capsys.readouterr().err
    assert "sage.store = 'nope'" in err and "agent.journal is missing" in err


def test_hash_key(capsys):
    assert main(["hash-key", "--key", "abc"]) == 0
    assert capsys.readouterr().out.strip().startswith("ba7816bf")


@needs_fixture
def test_check_recover_and_confirm_journal(tmp_path, capsys):
    config = str(site(tmp_path))
    assert main(["check", "--config", config]) == 0
    assert '"ok": true' in capsys.readouterr().out
    assert main(["recover", "--config", config]) == 0
    # The journal is lost: recover refuses, confirm-journal accepts the new one.
    for suffix in ("", "-wal", "-shm"):
        path = tmp_path / "agent" / f"journal.sqlite3{suffix}"
        if path.exists():
            path.unlink()
    assert main(["recover", "--config", config]) == 1
    assert "confirm-journal --config" in capsys.readouterr().err
    assert main(["confirm-journal", "--config", config]) == 0
    assert main(["recover", "--config", config]) == 0


def test_delegated_tools_are_called_with_their_arguments(monkeypatch, tmp_path):
    import types

    seen = {}
    fake = types.ModuleType("sagepro_agent.dbf.schema")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "sagepro_agent.dbf.schema", fake)
    assert main(["schema", str(tmp_path), "--json"]) == 0
    assert seen["argv"] == [str(tmp_path), "--json"]


@needs_fixture
def test_fixture_seed(tmp_path, capsys):
    assert main(["fixture-seed", str(tmp_path / "demo"), "--today", "2026-12-06"]) == 0
    assert (tmp_path / "demo" / "ARMAST01.DBF").exists()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@needs_fixture
def test_serve_answers_over_http_and_stops_on_sigterm(tmp_path):
    port = free_port()
    config = site(tmp_path, port, extra="")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLI_TEST_KEY": "k3y"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagepro_agent", "serve", "--config", str(config)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1/customers/acme"
        for _ in range(100):
            try:
                response = requests.get(
                    url, headers={"Authorization": "Bearer k3y"}, timeout=2
                )
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail(
                proc.stderr.read().decode() if proc.poll() is not None else "no answer"
            )
        assert response.status_code == 200 and response.json()["custno"] == "ACME"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
