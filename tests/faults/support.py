"""Real processes for the fault tests: an agent (`python -m sagepro_agent relay run`)
over a fixture FoxPro company in `tmp_path`, long-polling the test's live portal
through a relay proxy the test controls, and a helper process that holds FoxPro locks.

`RelayProxy` stands between the agent and the portal (plain `http.client`, so the
`responses` mock of the `http` fixture does not catch it). By default it forwards
everything; a test can change a poll answer on its way to the agent (tamper with or
re-serve a command) or drop the agent's result posts (an answer lost on its way back).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
USER = "AGNT"
POLL_WAIT = 1.0  # the agent long-polls for its heartbeat interval, 1 s here
LOCKPOS = (
    0x7FFFFFFE  # VFP's lock offsets: record n at LOCKPOS - n, the header at LOCKPOS
)


def agent_env(fault: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAGEPRO_AGENT_NO_KEYRING": "1"}
    env.pop("AGENT_FAULT", None)
    if fault:
        env["AGENT_FAULT"] = fault
    return env


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.1
) -> Any:
    """Poll `condition` until it returns something true; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}")
        time.sleep(every)


# --- the relay proxy -----------------------------------------------------------------------


class RelayProxy:
    """A small HTTP proxy on 127.0.0.1 between the agent and the live portal."""

    def __init__(self, portal_url: str) -> None:
        parts = urlsplit(portal_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        # Hooks: change the poll answer's commands; decide whether to drop a result.
        self.on_poll: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = (
            None
        )
        self.drop_result: Callable[[int, dict[str, Any]], bool] | None = None
        self.commands: list[dict[str, Any]] = []  # every command the agent was given
        self.results: list[tuple[int, dict[str, Any]]] = []  # forwarded results
        self.dropped: list[int] = []  # command ids whose result post was dropped
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = proxy.handle(
                    self.path, dict(self.headers.items()), body
                )
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the agent was stopped during its long poll

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forward(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.target, timeout=60)
        try:
            sent = {
                k: v
                for k, v in headers.items()
                if k.lower() not in ("host", "connection", "content-length")
            }
            conn.request("POST", path, body=body, headers=sent)
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            conn.close()

    def handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/api/agent/commands/") and path.endswith("/result"):
            command_id = int(path.split("/")[4])
            data = json.loads(body or b"{}")
            if self.drop_result is not None and self.drop_result(command_id, data):
                with self.lock:
                    self.dropped.append(command_id)
                return 502, {"Content-Type": "text/plain"}, b"proxy lost it"
            with self.lock:
                self.results.append((command_id, data))
        status, out_headers, payload = self.forward(path, headers, body)
        if path == "/api/agent/poll" and status == 200:
            data = json.loads(payload)
            commands = data.get("commands") or []
            with self.lock:
                self.commands.extend(json.loads(json.dumps(commands)))
            if self.on_poll is not None:
                data["commands"] = self.on_poll(commands)
                payload = json.dumps(data).encode()
        return status, out_headers, payload

    def results_for(self, command_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return [data for cid, data in self.results if cid == command_id]


# --- the agent site ------------------------------------------------------------------------


class Site:
    """One agent site: the fixture company, the site mapping, the agent's state, the
    portal's Agent and Connection rows, and the agent process (at most one at a time)."""

    def __init__(self, tmp: Path, portal_url: str, agent: Any, connection: Any) -> None:
        self.tmp = tmp
        self.folder = tmp / "sage"
        self.config = tmp / "site.toml"
        self.state = tmp / "agent"
        self.journal = self.state / "journal.sqlite3"
        self.portal_url = portal_url
        self.agent = agent
        self.connection = connection
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0
        self.log: Path | None = None

    def write_config(self, *, reprocess: float = 0.5, scan_interval: int = 1) -> None:
        self.config.write_text(
            textwrap.dedent(
                f"""
                [sage]
                store = "fixture"
                data = "sage"
                companies = ["01"]
                reprocess = {reprocess}
                [agent]
                user = "{USER}"
                journal = "agent/journal.sqlite3"
                time_zone = "America/Los_Angeles"
                scan_interval = {scan_interval}
                """
            )
        )

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sagepro_agent", *args],
            env=agent_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )

    def enrol(self) -> None:
        from integrations.relay import enrolment

        code = enrolment.create_code(self.agent)
        done = self.cli(
            "relay",
            "enrol",
            "--portal",
            self.portal_url,
            f"--code={code}",  # a code may start with "-"
            "--state",
            str(self.state),
            "--insecure-local",
        )
        assert done.returncode == 0, f"the agent could not enrol: {done.stderr}"

    def start(self, fault: str | None = None, *, script: Path | None = None) -> None:
        """Start the agent (optionally with a fault) and wait for its first heartbeat,
        which it sends only after its start-up recovery."""
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        self.log = self.tmp / f"agent-{self.starts}.log"
        since = self._last_heartbeat()
        run = ["relay", "run", "--config", str(self.config)]
        run += ["--insecure-local", "--heartbeat", str(POLL_WAIT)]
        argv = (
            [sys.executable, str(script), str(self.folder), *run]
            if script
            else [sys.executable, "-m", "sagepro_agent", *run]
        )
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                argv,
                env=agent_env(fault),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=ROOT,
            )
        wait_for(
            lambda: self._last_heartbeat() != since or self.process.poll() is not None,
            "the agent's first heartbeat",
        )
        assert self.process.poll() is None, f"the agent did not start:\n{self.output()}"

    def _last_heartbeat(self) -> Any:
        self.agent.refresh_from_db()
        return self.agent.last_heartbeat_at

    def heartbeat(self, condition: Callable[[Any], bool], what: str) -> Any:
        """Wait for a heartbeat sent after this call whose stored report satisfies
        `condition` (the stored one before it may describe an older state)."""
        since = self._last_heartbeat()

        def check() -> bool:
            self.agent.refresh_from_db()
            fresh = self.agent.last_heartbeat_at != since
            return fresh and condition(self.agent)

        wait_for(check, f"a heartbeat with {what}")
        return self.agent

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the agent did not exit within {timeout}s:\n{self.output()}"
            ) from None

    def stop(self) -> None:
        """Stop the agent like an operator would (Ctrl+C), killing it if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        # The portal still holds the stopped agent's last long poll for up to its
        # wait (1 s): a command queued meanwhile would be leased to nobody and end
        # as outcome unknown. Let it run out.
        time.sleep(POLL_WAIT + 0.5)

    def output(self) -> str:
        return self.log.read_text()[-4000:] if self.log and self.log.exists() else ""

    def sage(self, timeout: float = 6.0) -> Any:
        """The portal's Sage Pro connector for this site, through the relay."""
        from integrations.connectors.relay import RelaySageProConnector

        return RelaySageProConnector(self.connection, timeout=timeout)


def receipt_for(custno: str, reference: str, applications: dict[str, Any]) -> Any:
    """The portal's receipt: `applications` {invno: Decimal}, paid today by card."""
    from integrations.connectors.sagepro import Application, CashReceipt
    from tests.agent.conftest import business_today

    total = sum(applications.values())
    return CashReceipt(
        custno,
        business_today(),
        total,
        "CARD",
        reference,
        tuple(Application(invno, amount) for invno, amount in applications.items()),
    )


# --- a helper process holding FoxPro locks ----------------------------------------------


class LockHolder:
    """Another process (as another Sage Pro user would) holding one VFP lock byte of a
    DBF with a POSIX lock until `release()`."""

    def __init__(self, path: Path, offset: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "lockholder.py"), str(path), str(offset)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        assert line == "locked", (
            f"the lock holder failed: {line} {self.process.stderr.read()}"
        )

    def release(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("release\n")
            self.process.stdin.flush()
            assert self.process.stdout.readline().strip() == "released"
            self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
