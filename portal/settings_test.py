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

# Django's test client signs in without a request, which django-axes refuses; the
# lockout tests turn it back on (tests/portal/test_lockout.py).
AXES_ENABLED = False

# The existing tests sign in with `force_login` and no second factor; the two-factor
# tests turn it on (tests/portal/test_two_factor.py).
TWO_FACTOR_REQUIRED = False

# On PostgreSQL, tests do not wait for each commit to reach the disk: a test database
# never outlives a crash of the server, and the transactional tests (which commit and
# truncate every table after each test) run faster. Visibility between sessions, which
# the concurrency tests check, is the same.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (  # noqa: F405
        "-c synchronous_commit=off"
    )
