"""The agent's relay client: poll the portal, check and run commands, post answers.

One cycle (`RelayClient.run_once`):

1. `POST /api/agent/poll` leases up to `max_commands` commands, waiting up to `wait`
   seconds for one;
2. each command is checked before it runs: the portal's signature, that it is for this
   agent, that it has not expired (with `skew_seconds` of clock tolerance), and that
   its id was never seen before (a small SQLite file of seen ids in the state
   folder). A command that fails a check is reported as refused and not run;
3. the others run through `handler(Request) -> Response` (the gateway core) and each
   answer is posted to `/api/agent/commands/<id>/result`, retried with backoff. An
   answer that is lost anyway is not a duplicate risk: the portal times out, asks
   Sage Pro for the receipt by idempotency key, and a repeat post with the same key is
   answered from the journal.

`run_forever(stop_event)` repeats cycles with a long poll, backs off on errors and
sends a heartbeat (`health()`) every `heartbeat_seconds`. Outbound HTTPS only; TLS is
verified unless `insecure_local` is set, which is accepted for 127.0.0.1 alone.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from sagepro_agent.relay import credentials as creds
from sagepro_agent.relay import signing
from sagepro_agent.wire import Handler, Request, Response

logger = logging.getLogger(__name__)

SEEN_FILE = "relay-seen.sqlite3"
SEEN_DAYS = 7
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class RelayError(Exception):
    """The portal could not be reached or refused the agent."""


class UnauthorisedError(RelayError):
    """The portal refused the agent's token: revoked or replaced. Enrol again."""


@dataclass
class CycleResult:
    """What one `run_once` did, by command id."""

    ran: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    unposted: list[int] = field(default_factory=list)


def _session(portal_url: str, insecure_local: bool) -> requests.Session:
    host = urlsplit(portal_url).hostname or ""
    if insecure_local and host not in LOCAL_HOSTS:
        raise RelayError(
            f"--insecure-local is for a portal on 127.0.0.1 only, not {host}."
        )
    if not insecure_local and urlsplit(portal_url).scheme != "https":
        raise RelayError(
            f"The portal URL {portal_url} is not https. Use https (or "
            "--insecure-local for a demo portal on 127.0.0.1)."
        )
    session = requests.Session()
    session.verify = True
    session.headers["User-Agent"] = "sagepro-agent-relay"
    return session


def enrol(
    portal_url: str,
    code: str,
    state_dir: str | Path,
    *,
    version: str = "",
    name: str = "",
    insecure_local: bool = False,
    session: requests.Session | None = None,
) -> creds.Credentials:
    """Trade a one-time enrolment code for credentials and store them (see
    `sagepro_agent.relay.credentials` for where)."""
    if not version:
        from sagepro_agent import __version__ as version
    portal_url = portal_url.rstrip("/")
    session = session or _session(portal_url, insecure_local)
    try:
        reply = session.post(
            f"{portal_url}/api/agent/enrol",
            json={"code": code.strip(), "name": name, "version": version},
            timeout=30,
        )
    except requests.RequestException as exc:
        raise RelayError(
            f"The portal at {portal_url} could not be reached: {exc}"
        ) from exc
    if reply.status_code != 201:
        raise RelayError(f"The portal refused the enrolment: {_detail(reply)}")
    data = reply.json()
    credentials = creds.Credentials(
        portal_url, int(data["agent_id"]), str(data["token"]), str(data["signing_key"])
    )
    creds.save(credentials, state_dir)
    _seen_db(Path(state_dir))  # create it now: a missing file later means it was lost
    return credentials


class RelayClient:
    def __init__(
        self,
        portal_url: str,
        credentials: creds.Credentials,
        handler: Handler,
        health: Callable[[], dict[str, Any]] | None = None,
        *,
        state_dir: str | Path,
        session: requests.Session | None = None,
        insecure_local: bool = False,
        max_commands: int = 10,
        heartbeat_seconds: float = 30.0,
        skew_seconds: float = 30.0,
        result_attempts: int = 5,
        backoff_seconds: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.portal_url = portal_url.rstrip("/")
        self.credentials = credentials
        self.handler = handler
        self.health = health
        self.state_dir = Path(state_dir)
        self.session = session or _session(self.portal_url, insecure_local)
        self.session.headers["Authorization"] = f"Bearer {credentials.token}"
        self.max_commands = max_commands
        self.heartbeat_seconds = heartbeat_seconds
        self.skew_seconds = skew_seconds
        self.result_attempts = result_attempts
        self.backoff_seconds = backoff_seconds
        self.clock = clock
        self._seen = _seen_db(self.state_dir)

    # --- one cycle ---------------------------------------------------------------

    def run_once(self, wait: float = 0.0) -> CycleResult:
        """Poll once (waiting up to `wait` seconds), then check, run and answer every
        command received."""
        result = CycleResult()
        for command in self.poll(wait):
            command_id = command.get("id")
            if not isinstance(command_id, int):
                logger.warning("relay: ignored a command without an id")
                continue
            problem = self.check(command)
            if problem:
                logger.warning("relay: refused command %s: %s", command_id, problem)
                result.refused[command_id] = problem
                if not self._post(command_id, {"refused": problem}):
                    result.unposted.append(command_id)
                continue
            try:
                response = self.handler(_request(command))
            except Exception:
                # A bug in the core: post nothing, so the portal treats the outcome as
                # unknown and asks Sage Pro by key before anything is sent again.
                logger.exception("relay: command %s failed in the gateway", command_id)
                continue
            result.ran.append(command_id)
            if not self._post_raw(command_id, _answer(response)):
                result.unposted.append(command_id)
        return result

    def poll(self, wait: float) -> list[dict[str, Any]]:
        reply = self._call(
            "/api/agent/poll", {"wait": wait, "max": self.max_commands}, wait + 30
        )
        data = reply.json()
        commands = data.get("commands") if isinstance(data, dict) else None
        return [c for c in commands or [] if isinstance(c, dict)]

    def check(self, command: dict[str, Any]) -> str:
        """Why the command must not run ("" when it may): tampered, not ours,
        expired or already seen. A command that passes is recorded as seen."""
        if not signing.verify(command, self.credentials.signing_key):
            return "bad signature: the command was altered or not signed by the portal"
        if command.get("agent") != self.credentials.agent_id:
            return "the command is for another agent"
        try:
            expires = datetime.datetime.fromisoformat(str(command["expires_at"]))
        except (KeyError, ValueError):
            return "the command has no valid expiry"
        if expires.tzinfo is None:
            return "the command's expiry has no time zone"
        if self.clock() > expires.timestamp() + self.skew_seconds:
            return f"expired at {expires.isoformat()}"
        key = f"{self.credentials.agent_id}:{command['id']}"
        with self._seen:
            cursor = self._seen.execute(
                "INSERT OR IGNORE INTO seen (key, seen_at) VALUES (?, ?)",
                (key, self.clock()),
            )
        if cursor.rowcount == 0:
            return "replayed: this command id was already received"
        return ""

    def heartbeat(self) -> dict[str, Any]:
        """Send the agent's health to the portal; returns what was sent."""
        try:
            report: dict[str, Any] = dict(self.health() if self.health else {})
        except Exception as exc:  # the heartbeat still goes, saying what failed
            logger.exception("relay: the agent's health could not be read")
            report = {"last_error": f"health check failed: {exc}"}
        if "version" not in report:
            from sagepro_agent import __version__

            report["version"] = __version__
        self._call("/api/agent/heartbeat", report, 30)
        self.prune_seen()
        return report

    def prune_seen(self) -> None:
        with self._seen:
            self._seen.execute(
                "DELETE FROM seen WHERE seen_at < ?",
                (self.clock() - SEEN_DAYS * 86400,),
            )

    # --- the loop ------------------------------------------------------------------

    def run_forever(self, stop_event: threading.Event, *, wait: float = 25.0) -> None:
        """Cycle until `stop_event` is set; heartbeat every `heartbeat_seconds`, back
        off (up to a minute) while the portal is unreachable. A refused token stops
        the loop: the agent was revoked or re-enrolled elsewhere."""
        next_heartbeat = 0.0
        delay = 0.0
        while not stop_event.is_set():
            try:
                if time.monotonic() >= next_heartbeat:
                    self.heartbeat()
                    next_heartbeat = time.monotonic() + self.heartbeat_seconds
                self.run_once(wait=min(wait, self.heartbeat_seconds))
                delay = 0.0
            except UnauthorisedError:
                logger.error("relay: the portal refused the agent's token; stopping")
                raise
            except Exception as exc:
                delay = min(60.0, max(1.0, delay * 2))
                logger.warning("relay: %s; trying again in %.0f s", exc, delay)
                stop_event.wait(delay)

    # --- HTTP --------------------------------------------------------------------------

    def _call(self, path: str, payload: Any, timeout: float) -> requests.Response:
        try:
            reply = self.session.post(
                f"{self.portal_url}{path}",
                data=json.dumps(payload, default=str).encode(),
                headers={"Content-Type": "application/json"},
                timeout=timeout,
            )
        except requests.RequestException as exc:
            raise RelayError(f"the portal could not be reached: {exc}") from exc
        if reply.status_code == 401:
            raise UnauthorisedError(f"the portal refused the token: {_detail(reply)}")
        if reply.status_code != 200:
            raise RelayError(
                f"the portal answered {path} with {reply.status_code}: {_detail(reply)}"
            )
        return reply

    def _post(self, command_id: int, payload: dict[str, Any]) -> bool:
        return self._post_raw(command_id, json.dumps(payload).encode())

    def _post_raw(self, command_id: int, body: bytes) -> bool:
        """Post one answer, retrying with backoff; False when it could not be
        delivered (the portal's look-up by key copes)."""
        url = f"{self.portal_url}/api/agent/commands/{command_id}/result"
        delay = self.backoff_seconds
        for attempt in range(1, self.result_attempts + 1):
            try:
                reply = self.session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                if reply.status_code == 200:
                    return True
                if reply.status_code in (400, 401, 404):
                    logger.error(
                        "relay: the answer to command %s was refused (%s): %s",
                        command_id,
                        reply.status_code,
                        _detail(reply),
                    )
                    return False
            except requests.RequestException as exc:
                logger.warning(
                    "relay: posting the answer to command %s failed (attempt %s): %s",
                    command_id,
                    attempt,
                    exc,
                )
            if attempt < self.result_attempts:
                time.sleep(delay)
                delay *= 2
        return False


def _seen_db(state_dir: Path) -> sqlite3.Connection:
    state_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(state_dir / SEEN_FILE, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, seen_at REAL NOT NULL)"
    )
    db.commit()
    return db


def _request(command: dict[str, Any]) -> Request:
    """The contract request a command carries, as the direct binding would build it
    (the path decoded, as WSGI's PATH_INFO is)."""
    headers = command.get("headers") or {}
    text = command.get("body") or ""
    if command.get("body_encoding") == "base64":
        body = base64.b64decode(text)
    else:
        body = text.encode() if isinstance(text, str) else b""
    return Request(
        method=str(command.get("method", "GET")).upper(),
        path=unquote(str(command.get("path", "/"))),
        query=tuple(
            (str(pair[0]), str(pair[1]))
            for pair in command.get("query") or []
            if isinstance(pair, list) and len(pair) == 2
        ),
        headers={str(k): str(v) for k, v in headers.items()},
        body=body,
    )


def _answer(response: Response) -> bytes:
    """`{status, headers, body}` with the core's body encoded as it would be over
    HTTP (money as strings, numbers exact)."""
    encoded = response.encode() or b"null"
    headers = json.dumps({str(k): str(v) for k, v in response.headers.items()})
    return (
        f'{{"status":{int(response.status)},"headers":{headers},"body":'.encode()
        + encoded
        + b"}"
    )


def _detail(reply: requests.Response) -> str:
    try:
        data = reply.json()
    except ValueError:
        return reply.text[:200]
    if isinstance(data, dict):
        return str(data.get("detail") or data.get("code") or data)[:500]
    return str(data)[:200]


# --- command line ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`relay enrol --portal URL --code CODE --state DIR` and
    `relay run --config site.toml [--state DIR] [--insecure-local]`."""
    parser = argparse.ArgumentParser(
        prog="python -m sagepro_agent relay",
        description="Connect this agent to the portal through the relay.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    enrol_p = sub.add_parser("enrol", help="trade a one-time code for credentials")
    enrol_p.add_argument("--portal", required=True, help="the portal's https URL")
    enrol_p.add_argument("--code", required=True, help="the one-time enrolment code")
    enrol_p.add_argument("--state", required=True, help="the agent's state folder")
    enrol_p.add_argument("--name", default="", help="a name for this agent")
    enrol_p.add_argument("--insecure-local", action="store_true")
    run_p = sub.add_parser("run", help="serve the portal's commands until stopped")
    run_p.add_argument("--config", required=True, help="the site mapping (TOML)")
    run_p.add_argument(
        "--state", default="", help="state folder (default: the journal's folder)"
    )
    run_p.add_argument("--insecure-local", action="store_true")
    run_p.add_argument("--heartbeat", type=float, default=30.0, help="seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        if args.command == "enrol":
            credentials = enrol(
                args.portal,
                args.code,
                args.state,
                name=args.name,
                insecure_local=args.insecure_local,
            )
            print(  # noqa: T201 - the command's output
                f"Enrolled as agent {credentials.agent_id} of {credentials.portal_url}."
            )
            return 0
        return _run(args)
    except (RelayError, creds.CredentialsError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return run(
            args.config,
            stop,
            state=args.state,
            insecure_local=args.insecure_local,
            heartbeat=args.heartbeat,
        )
    except KeyboardInterrupt:
        stop.set()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    config_path: str,
    stop: threading.Event,
    *,
    state: str = "",
    insecure_local: bool = False,
    heartbeat: float = 30.0,
) -> int:
    """Serve the portal's commands until `stop` is set (SIGTERM, a service stop);
    the exit code. Used by `relay run` and by the Windows service."""
    from sagepro_agent import agent as agent_module
    from sagepro_agent import config as config_module

    site = config_module.load(config_path)
    state_dir = Path(state) if state else _state_dir_of(site, config_path)
    credentials = creds.load(state_dir)
    agent = agent_module.build(site)
    agent.start()  # the journal guard and recovery, before any new work
    threading.Thread(target=agent.background, args=(stop,), daemon=True).start()
    client = RelayClient(
        credentials.portal_url,
        credentials,
        agent.gateway.handle,
        agent.health,
        state_dir=state_dir,
        insecure_local=insecure_local,
        heartbeat_seconds=heartbeat,
    )
    try:
        client.run_forever(stop)
    except UnauthorisedError as exc:
        print(f"error: {exc}. Enrol the agent again.", file=sys.stderr)  # noqa: T201
        return 3
    finally:
        stop.set()
    return 0


def _state_dir_of(site: Any, config_path: str) -> Path:
    """The folder of the journal, where the agent keeps its state; else the config's."""
    journal = getattr(site, "journal_path", None) or getattr(site, "journal", None)
    if isinstance(journal, (str, Path)) and str(journal):
        return Path(journal).parent
    return Path(config_path).resolve().parent
