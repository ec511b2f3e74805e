"""Running the agent as a Windows service.

`python -m sagepro_agent.service install --config C:\\SageAgent\\site.toml` registers
the service; the Service Control Manager then runs `windows.AgentService`, which calls
`run_agent(config_path, stop_event)` (the same start-up sequence and serve loop as
`python -m sagepro_agent serve --config …`) and sets `stop_event` when Windows asks the
service to stop. `windows.py` imports pywin32 and is imported only on Windows; this
module and `__main__.py` import anywhere.

Logs go to a rotating file (`<log dir>\\agent.log`, UTC timestamps) and start, stop
and failure also to the Windows Application event log.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading
import time
from pathlib import Path

SERVICE_NAME = "SageProAgent"
DISPLAY_NAME = "Sage Pro agent (payments portal)"
DESCRIPTION = (
    "Posts the payments portal's cash receipts into the Sage Pro company files and "
    "answers its look-ups (outbound HTTPS only). See docs/agent-install.md."
)
LOG_FILE = "agent.log"
LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 10


MODES = ("relay", "http")


def run_agent(
    config_path: str, stop_event: threading.Event, mode: str = "relay"
) -> int:
    """Start the agent and serve until `stop_event` is set; returns the exit code.

    `relay` (the default): poll the portal through the relay, outbound HTTPS only.
    `http`: serve the direct HTTP binding (sites the portal reaches over a VPN)."""
    if mode == "http":
        from sagepro_agent.agent import run

        return run(config_path, stop_event)
    if mode != "relay":
        raise ValueError(f"unknown service mode {mode!r}; use one of {MODES}")
    from sagepro_agent.relay import client

    return client.run(config_path, stop_event)


def default_log_dir(config_path: str | os.PathLike[str]) -> str:
    """Logs live on the agent's own disk, next to the site mapping."""
    return str(Path(config_path).resolve().parent / "logs")


def configure_logging(log_dir: str | os.PathLike[str], level: int = logging.INFO):
    """A rotating log file with UTC timestamps on the root logger; returns the handler.
    Idempotent for the same folder (a restarted service does not log twice)."""
    folder = Path(log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / LOG_FILE)
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "baseFilename", None) == os.path.abspath(path):
            return handler
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    formatter = logging.Formatter(
        "%(asctime)sZ %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
