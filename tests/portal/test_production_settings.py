"""Production settings turn on HTTPS protections from the environment; the demo's
encryption key is random and kept under var/, not derived from a public secret."""

import base64
import hashlib
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

from portal.keyfile import load_or_create_key_file

ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_SECRET_KEY = "insecure-development-key-do-not-use-in-production"

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "portal.settings",
    "DEBUG": "0",
    "DEMO_MODE": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "portal.example.com",
}
HTTPS = {
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
}


def manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DJ"))}
    for name in ("SANDBOX_ENABLED", "FIELD_ENCRYPTION_KEYS", "SECRET_KEY"):
        clean.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_https_settings_on():
    done = manage("check", "--deploy", **PRODUCTION, **HTTPS)

    assert done.returncode == 0, done.stderr
    assert "security." not in done.stdout + done.stderr


def test_check_deploy_names_what_is_off_without_them():
    done = manage("check", "--deploy", **PRODUCTION)

    for check in ("W004", "W008", "W012", "W016"):
        assert f"security.{check}" in done.stderr


def test_the_proxy_header_setting_is_read_as_a_header_and_value():
    code = "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"

    done = manage("shell", "--no-imports", "-c", code, **PRODUCTION, **HTTPS)

    assert done.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_a_malformed_proxy_header_setting_stops_startup_with_the_fix():
    done = manage(
        "check", **PRODUCTION, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https"
    )

    assert done.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER must be two comma-separated values" in done.stderr


def test_the_demo_encrypts_with_a_random_key_kept_under_var():
    derived = base64.urlsafe_b64encode(
        hashlib.sha256(f"field-encryption:{DEVELOPMENT_SECRET_KEY}".encode()).digest()
    ).decode()
    # A secret saved by an earlier release's demo, under the derived key.
    old = "fernet:" + Fernet(derived.encode()).encrypt(b"old").decode()
    code = (
        "from django.conf import settings; from integrations import crypto; "
        "print(settings.FIELD_ENCRYPTION_KEYS[0]); print(crypto.encrypt('s')); "
        f"print(crypto.decrypt({old!r}))"
    )
    demo = {"DJANGO_SETTINGS_MODULE": "portal.settings", "DEMO_MODE": "1"}

    first = manage("shell", "--no-imports", "-c", code, **demo).stdout.split()
    again = manage("shell", "--no-imports", "-c", code, **demo).stdout.split()

    key_file = ROOT / "var" / "field-encryption.key"
    assert first[0] == again[0] == key_file.read_text().strip()
    assert first[0] != derived
    ciphertext = first[1].removeprefix("fernet:").encode()
    assert Fernet(first[0].encode()).decrypt(ciphertext) == b"s"
    assert first[2] == "old"  # an earlier demo database still opens


def test_a_key_file_is_made_once_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "var" / "field-encryption.key"

    keys = load_or_create_key_file(path)

    assert keys == load_or_create_key_file(path)
    assert len(keys) == 1
    Fernet(keys[0])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["field-encryption.key"]
