"""Where the agent keeps what enrolment gave it.

The bearer token and the signing key go to the operating system's secret store through
`keyring` when it is installed and has a usable backend (Windows Credential Manager on
the agent's Windows server), under the service name `sagepro-agent` and the state
folder's absolute path as the user name. Otherwise they go to `credentials.json` in the
state folder, created with mode 0600 (on Windows, where modes do not apply, restrict
the state folder to the service account: docs/agent-install.md). Either way
`relay.json` in the state folder says which portal and agent id it is and where the
secrets are; it holds no secret itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

SERVICE = "sagepro-agent"
PUBLIC_FILE = "relay.json"
SECRET_FILE = "credentials.json"


class CredentialsError(Exception):
    """No usable credentials in the state folder: enrol the agent first."""


@dataclass(frozen=True)
class Credentials:
    portal_url: str
    agent_id: int
    token: str
    signing_key: str


def _keyring():  # noqa: ANN202 - the module, or None
    """`keyring` when importable and backed by a real secret store, else None."""
    if os.environ.get("SAGEPRO_AGENT_NO_KEYRING"):
        return None
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken backend configuration: use the file
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        return None
    return keyring


def save(credentials: Credentials, state_dir: str | Path) -> str:
    """Store the credentials; returns where the secrets went ("keyring" or a path)."""
    folder = Path(state_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    secrets = json.dumps({"token": credentials.token, "key": credentials.signing_key})
    where = ""
    keyring = _keyring()
    if keyring is not None:
        try:
            keyring.set_password(SERVICE, str(folder), secrets)
            where = "keyring"
        except Exception:  # locked or refusing store: fall back to the file
            where = ""
    if not where:
        _write_private(folder / SECRET_FILE, secrets)
        where = str(folder / SECRET_FILE)
    public = {
        "portal_url": credentials.portal_url,
        "agent_id": credentials.agent_id,
        "secrets": "keyring" if where == "keyring" else SECRET_FILE,
    }
    (folder / PUBLIC_FILE).write_text(json.dumps(public, indent=2) + "\n")
    if where == "keyring":
        (folder / SECRET_FILE).unlink(missing_ok=True)
    return where


def load(state_dir: str | Path) -> Credentials:
    folder = Path(state_dir).resolve()
    try:
        public = json.loads((folder / PUBLIC_FILE).read_text())
        if public.get("secrets") == "keyring":
            keyring = _keyring()
            text = keyring.get_password(SERVICE, str(folder)) if keyring else None
            if text is None:
                raise CredentialsError(
                    f"The agent's secrets for {folder} are not in the OS secret store; "
                    "enrol it again with a new code."
                )
        else:
            text = (folder / SECRET_FILE).read_text()
        secrets = json.loads(text)
        return Credentials(
            str(public["portal_url"]),
            int(public["agent_id"]),
            str(secrets["token"]),
            str(secrets["key"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(
            f"No usable relay credentials in {folder} ({exc}). Enrol the agent: "
            "python -m sagepro_agent relay enrol --portal URL --code CODE "
            f"--state {folder}"
        ) from exc


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read (mode 0600 from creation)."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


__all__ = ["Credentials", "CredentialsError", "load", "save"]
