"""`python -m sagepro_agent <command> …`: the agent's command line.

    serve            run the agent: start-up sequence, direct HTTP binding, scanner,
                     watchdog (until Ctrl+C or the service stops it)
    check            run the integrity watchdog on every table the agent writes, now
    recover          finish or flag unfinished journal entries, then exit
    confirm-journal  accept the current journal after it was deleted or replaced
    hash-key         print the SHA-256 of an API key for http.api_key_sha256
    schema | snapshot | diff   discovery tools (sagepro_agent.dbf)
    relay            the relay client (sagepro_agent.relay.client)
    fixture-seed     create a fixture company (tests and the demo only)

Exit codes: 0 success, 1 the command found a problem, 2 bad arguments or site mapping.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import importlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from sagepro_agent import __version__
from sagepro_agent.config import ConfigError, hash_api_key

DELEGATED = {
    "schema": "sagepro_agent.dbf.schema",
    "snapshot": "sagepro_agent.dbf.snapshot",
    "diff": "sagepro_agent.dbf.diff",
    "relay": "sagepro_agent.relay.client",
}


def say(*parts: object, file: TextIO | None = None) -> None:
    """Write a line for the operator (stdout, or stderr for problems)."""
    stream = file if file is not None else sys.stdout
    stream.write(" ".join(str(p) for p in parts) + "\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sagepro_agent",
        description="The on-site Sage Pro agent (gateway contract over FoxPro tables).",
    )
    p.add_argument(
        "--version", action="version", version=f"sagepro_agent {__version__}"
    )
    sub = p.add_subparsers(dest="command", metavar="command")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--config", required=True, help="the site mapping (TOML)")
        cmd.add_argument(
            "-v", "--verbose", action="store_true", help="log debug messages"
        )
        return cmd

    with_config("serve", "run the agent and its direct HTTP binding")
    with_config("check", "run the integrity watchdog now and print its findings")
    with_config("recover", "finish or flag unfinished journal entries, then exit")
    with_config(
        "confirm-journal", "accept the current journal after it was deleted or replaced"
    )
    hk = sub.add_parser("hash-key", help="print the SHA-256 of an API key")
    hk.add_argument("--key", help="the key (asked for when omitted)")
    for name in DELEGATED:
        sub.add_parser(
            name, help=f"see `python -m sagepro_agent {name} --help`", add_help=False
        )
    seed = sub.add_parser(
        "fixture-seed", help="create a fixture company (tests and demo only)"
    )
    seed.add_argument("folder")
    seed.add_argument("--company", default="01")
    seed.add_argument("--today", help="the business date (YYYY-MM-DD), default today")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in DELEGATED:
        return delegate(args_list[0], args_list[1:])
    p = parser()
    args = p.parse_args(args_list)
    if args.command is None:
        p.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "hash-key":
        key = args.key or getpass.getpass("API key: ")
        say(hash_api_key(key))
        return 0
    if args.command == "fixture-seed":
        return fixture_seed(args.folder, args.company, args.today)
    try:
        return run_command(args.command, args.config)
    except ConfigError as exc:
        say(exc, file=sys.stderr)
        return 2


def delegate(command: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(DELEGATED[command])
    except ImportError as exc:
        say(f"{command}: not available in this installation ({exc})", file=sys.stderr)
        return 2
    return int(module.main(argv) or 0)


def fixture_seed(folder: str, company: str, today: str | None) -> int:
    from sagepro_agent.store.fixture.seed import create_company

    day = (
        datetime.date.fromisoformat(today)
        if today
        else datetime.datetime.now(datetime.UTC).astimezone().date()
    )
    create_company(folder, company, today=day)
    say(f"fixture company {company} created in {folder} (NOT live data)")
    return 0


def run_command(command: str, config_path: str) -> int:
    from sagepro_agent.agent import build, run

    if command == "serve":
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        return run(config_path, stop)
    agent = build(config_path)
    try:
        if command == "confirm-journal":
            install_id = agent.confirm_journal()
            say(
                f"journal {agent.journal.path} confirmed (install id {install_id}); "
                "writes are accepted again after the agent restarts"
            )
            return 0
        if command == "recover":
            outcomes = agent.start()
            if agent.write_refusal:
                say(agent.write_refusal, file=sys.stderr)
                return 1
            for company, key, outcome in outcomes:
                say(f"{company} {key}: {outcome}")
            review = agent.journal.needs_review()
            say(
                f"{len(outcomes)} unfinished entries handled; "
                f"{agent.journal.backlog()} still unfinished; {len(review)} need review"
            )
            return 1 if agent.journal.backlog() or review else 0
        if command == "check":
            result = agent.watchdog() or {}
            say(json.dumps(result, indent=2))
            return 0 if result.get("ok") else 1
    finally:
        agent.close()
    raise AssertionError(command)


if __name__ == "__main__":
    sys.exit(main())
