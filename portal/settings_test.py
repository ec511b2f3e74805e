"""Test settings: the production settings with sandboxes on and fixed keys."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault(
    "FIELD_ENCRYPTION_KEYS", "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdDE="
)
os.environ["SANDBOX_ENABLED"] = "1"
os.environ.setdefault(
    "SANDBOX_PAYTRACE_WEBHOOK_URL",
    "http://testserver/webhooks/paytrace/paytrace-sandbox/",
)

from portal.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}

# Tests change connections and secrets between requests: no in-memory caching.
WEBHOOK_CACHE_SECONDS = 0
# One wake-up per event, in the event's transaction: tests run queued tasks in order.
DRAIN_WAKE_SECONDS = 0
