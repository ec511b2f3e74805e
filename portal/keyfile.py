"""The demo's encryption key: random, made once, kept in a file under var/.

Settings import this module, so it uses nothing from Django but its exception.
"""

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured


def load_or_create_key_file(path: Path) -> list[str]:
    """Return the Fernet keys in `path`, one a line; create it with a new key if absent.

    The file is created exclusively and readable by its owner only, so two processes
    starting together (the web server and a worker) end up with the same key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole under a private name, then linked into place: a reader never
        # sees a half-written file, and of two racing processes the first link wins.
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode() + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    keys = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            keys = []
            break
    if not keys:
        raise ImproperlyConfigured(
            f"{path} holds no valid Fernet key; delete it to have a new one made "
            "(secrets saved with the old key must then be entered again)."
        )
    return keys


def legacy_development_key(secret_key: str) -> str:
    """The Fernet key development and demo databases were encrypted with before the
    key file: derived from SECRET_KEY (public in development)."""
    digest = hashlib.sha256(f"field-encryption:{secret_key}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()
