"""`python -m sagepro_agent.service <command>`: install and control the Windows service.

    install --config SITE.toml [--mode relay|http] [--username DOMAIN\\account]
            [--password …] [--startup auto|delayed|manual] [--log-dir DIR]
            [--name NAME]
    remove | start | stop | status [--name NAME]
    run --config SITE.toml [--mode relay|http]
                                the service's loop in the foreground (any platform;
                                Ctrl+C stops it), for a first test before installing

Run install/remove from an elevated prompt. Exit codes: 0 done, 1 Windows refused,
2 bad arguments, site mapping or platform.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sagepro_agent import service

STARTUPS = ("auto", "delayed", "manual")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sagepro_agent.service",
        description="Install and control the Sage Pro agent's Windows service.",
    )
    sub = p.add_subparsers(dest="command", metavar="command", required=True)

    install = sub.add_parser("install", help="register the service (elevated prompt)")
    install.add_argument("--config", required=True, help="the site mapping (TOML)")
    install.add_argument(
        "--mode",
        choices=service.MODES,
        default="relay",
        help="relay: reach the portal outbound (default); http: serve the direct "
        "binding for a portal on a VPN",
    )
    install.add_argument(
        "--username",
        help="the service account, DOMAIN\\name or .\\name (default: LocalSystem; a "
        "dedicated account with rights only to the Sage folders is recommended)",
    )
    install.add_argument(
        "--password", help="the account's password (asked for when left out)"
    )
    install.add_argument(
        "--startup", choices=sorted(STARTUPS), default="auto", help="default: auto"
    )
    install.add_argument("--log-dir", help="default: a logs folder next to the mapping")
    install.add_argument("--name", default=service.SERVICE_NAME)

    for command, text in (
        ("remove", "unregister the service (stop it first)"),
        ("start", "start the service"),
        ("stop", "stop the service"),
        ("status", "print the service's state"),
    ):
        cmd = sub.add_parser(command, help=text)
        cmd.add_argument("--name", default=service.SERVICE_NAME)

    run = sub.add_parser("run", help="run the service's loop in the foreground")
    run.add_argument("--config", required=True, help="the site mapping (TOML)")
    run.add_argument("--mode", choices=service.MODES, default="relay")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        return run_in_foreground(args.config, args.mode)
    windows = windows_module()
    if windows is None:
        return 2
    if args.command == "install":
        return install(windows, args)
    try:
        if args.command == "status":
            say(f"{args.name}: {windows.status(args.name)}")
            return 0
        getattr(windows, args.command)(args.name)
    except Exception as exc:  # pywin32 raises pywintypes.error with Windows' reason
        say(f"{args.command} {args.name} failed: {exc}", error=True)
        return 1
    say(f"{args.name}: {args.command} done")
    return 0


def install(windows: Any, args: argparse.Namespace) -> int:
    config = Path(args.config).resolve()
    problems = validate_config(config)
    if problems:
        say(f"{config}: the site mapping is not usable yet:", error=True)
        for problem in problems:
            say(f"  - {problem}", error=True)
        return 2
    password = args.password
    if args.username and password is None:
        password = getpass.getpass(f"password for {args.username}: ")
    if not args.username:
        say(
            "note: the service will run as LocalSystem. Prefer a dedicated account "
            "with access only to the Sage folders (--username); see "
            "docs/agent-install.md."
        )
    try:
        windows.install(
            str(config),
            name=args.name,
            username=args.username,
            password=password,
            startup=args.startup,
            log_dir=args.log_dir,
            mode=args.mode,
        )
    except Exception as exc:
        say(f"install {args.name} failed: {exc}", error=True)
        return 1
    say(
        f"{args.name} installed ({args.mode}, {args.startup} start) with {config}; "
        "start it with "
        f"python -m sagepro_agent.service start --name {args.name}"
    )
    return 0


def validate_config(path: Path) -> list[str]:
    """Every mistake in the site mapping (empty when it loads)."""
    if not path.is_file():
        return [f"the file does not exist: {path}"]
    from sagepro_agent.config import ConfigError, load

    try:
        load(path)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def run_in_foreground(config: str, mode: str) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return service.run_agent(str(Path(config).resolve()), stop, mode)


def windows_module() -> Any:
    try:
        windows = importlib.import_module("sagepro_agent.service.windows")
    except ImportError as exc:
        say(
            "the service commands need Windows with pywin32 installed "
            f'(pip install "sagepro_agent[windows]"): {exc}. Elsewhere run '
            "python -m sagepro_agent serve --config <site.toml> under the system's "
            "service manager.",
            error=True,
        )
        return None
    return windows


def say(message: str, *, error: bool = False) -> None:
    (sys.stderr if error else sys.stdout).write(message + "\n")


if __name__ == "__main__":
    sys.exit(main())
