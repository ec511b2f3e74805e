"""Settings for the payments portal.

Deployment configuration comes from the environment (see `.env.example`); business
configuration (connections, status maps, GL rules) lives in the database.
"""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from portal.keyfile import legacy_development_key, load_or_create_key_file

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
DEMO_MODE = env.bool("DEMO_MODE", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or DEMO_MODE):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment or in .env "
            "(DEBUG=1 or DEMO_MODE=1 allow an insecure development key)."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS. Off by default so the demo and tests run over plain HTTP; production turns them
# on (see .env.example), and `manage.py check --deploy` is then clean.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False
)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
# Sessions end after SESSION_IDLE_MINUTES without a request (each request renews the
# cookie) and when the browser closes: a staff session left open on a shared machine
# does not outlive its user's break.
SESSION_COOKIE_AGE = 60 * env.int("SESSION_IDLE_MINUTES", default=60)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
# Behind a TLS-terminating proxy: the header (and value) that proxy sets on HTTPS
# requests, e.g. "HTTP_X_FORWARDED_PROTO,https". Only set it if the proxy always sets
# or strips that header, or clients can claim HTTPS.
_proxy_ssl_header = env.tuple("SECURE_PROXY_SSL_HEADER", default=())
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2 or not _proxy_ssl_header[0].startswith("HTTP_"):
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must be two comma-separated values, the request "
            "header as Django names it and its HTTPS value, e.g. "
            "HTTP_X_FORWARDED_PROTO,https."
        )
    SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header)

# Keys for secrets at rest (connection passwords, API keys, webhook secrets). The first
# key encrypts; every key decrypts, so a new key can be put in front to rotate.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# Development and demo: a random key made on the first run and kept under var/ (never
# derived from the public development SECRET_KEY, so the demo's secrets stay secret).
DEMO_ENCRYPTION_KEY_FILE = BASE_DIR / "var" / "field-encryption.key"
if not FIELD_ENCRYPTION_KEYS:
    if not (DEBUG or DEMO_MODE):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is not set. Generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
        )
    FIELD_ENCRYPTION_KEYS = [
        *load_or_create_key_file(DEMO_ENCRYPTION_KEY_FILE),
        # Decrypt only: the key earlier releases derived from the public development
        # SECRET_KEY, so a demo database made by one still opens. It protects nothing
        # (anyone can derive it), which is why nothing is encrypted with it any more.
        legacy_development_key(SECRET_KEY),
    ]

INSTALLED_APPS = [
    # Django's admin with the portal's site: the home, navigation grouped by job.
    "portal.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "reversion",
    "portal",
    "integrations",
    "mappings",
    "integrations.sandbox.sagepro",
    "integrations.sandbox.paytrace",
    # Issue 16, sign-in: two-factor sign-in and login lockout (portal/settings_security.py
    # configures both; docs/security.md). The devices are the portal's own
    # (portal.models: the app secret encrypted, recovery codes hashed), not django-otp's
    # stock plugins, which store both in clear.
    "django_otp",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session passed its second factor.
    "django_otp.middleware.OTPMiddleware",
    "portal.two_factor.middleware.TwoFactorMiddleware",
    # The site-wide Content-Security-Policy (portal/settings_csp.py); pages that set
    # their own (the card pages, which allow PayTrace's hosted fields) keep theirs.
    "csp.middleware.CSPMiddleware",
    # Who is making a change, for the access audit log (portal.audit).
    "portal.audit.AuditActor",
    "portal.middleware.BusinessTimeZoneMiddleware",
    # A request id on every log line and in the response; request counts for /metrics.
    "portal.logging.RequestIdMiddleware",
    "mappings.versioning.ConfigRevisionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Login throttling and lockout; last, as django-axes asks.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # Refuses a locked-out name or address before the password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "portal.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "portal.wsgi.application"

# Embedded default: SQLite in WAL mode. IMMEDIATE transactions take the write lock at
# BEGIN, so two writers queue on the busy timeout instead of failing mid-transaction.
DATABASES = {
    "default": env.db(
        "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'portal.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Keep connections open between requests: reconnecting re-runs the PRAGMAs.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # A file, not :memory:, so tests run in WAL mode like the product; one per process
    # so parallel test runs never share it.
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Sage Pro posting dates are calendar dates in the business's own time zone.
BUSINESS_TIME_ZONE = env.str("BUSINESS_TIME_ZONE", default="America/Los_Angeles")
# Pages show one date-time format, with the zone named (portal/formats/en/formats.py).
FORMAT_MODULE_PATH = ["portal.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LOGIN_URL = "admin:login"

# Task queue: django-q2 on the ORM broker in the same database, so an event row and the
# task that processes it commit or roll back together. `timeout` must stay below
# `retry` (checked at startup).
Q_CLUSTER = {
    "name": "portal",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=60),
    "retry": env.int("Q_RETRY", default=90),
    "max_attempts": 1,
    "ack_failures": True,
    # Our own tables (events, postings) record every outcome; django-q2 keeps only
    # failures, which saves a write per task.
    "save_limit": -1,
    "bulk": env.int("Q_BULK", default=5),
    "catch_up": False,
    "poll": env.float("Q_POLL", default=0.2),
    "sync": env.bool("Q_SYNC", default=False),
    "log_level": env.str("Q_LOG_LEVEL", default="WARNING"),
}
if env.str("REDIS_URL", default=""):
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = env.str("REDIS_URL")
else:
    # The ORM broker, polling again a second after a database restart instead of
    # django-q2's ten-second pause (integrations/broker.py).
    Q_CLUSTER["broker_class"] = "integrations.broker.ResilientORM"

# Largest configuration bundle import_config reads (a real one is tens of kilobytes).
CONFIG_BUNDLE_MAX_BYTES = env.int("CONFIG_BUNDLE_MAX_BYTES", default=5 * 1024 * 1024)

# Pipeline limits.
WEBHOOK_MAX_BODY_BYTES = 256 * 1024
WEBHOOK_TOLERANCE_SECONDS = 300
# How long the webhook endpoint keeps a connection and its decrypted secrets in memory.
WEBHOOK_CACHE_SECONDS = env.int("WEBHOOK_CACHE_SECONDS", default=30)
POSTING_MAX_ATTEMPTS = env.int("POSTING_MAX_ATTEMPTS", default=8)
EVENT_MAX_ATTEMPTS = env.int("EVENT_MAX_ATTEMPTS", default=8)
# A worker's claim on an event or posting; past it, the sweeper hands the work to
# another worker. Must exceed Q_CLUSTER timeout (checked at startup).
WORK_LEASE_SECONDS = env.int("WORK_LEASE_SECONDS", default=120)
# Workers drain events in batches: a woken worker takes up to DRAIN_BATCH_SIZE due
# events at a time and posts their receipts GATEWAY_BATCH_SIZE to a gateway call. A web
# process wakes the workers at most once per DRAIN_WAKE_SECONDS, after its events have
# committed (0: one wake-up per event, queued in the event's own transaction).
DRAIN_BATCH_SIZE = env.int("DRAIN_BATCH_SIZE", default=50)
GATEWAY_BATCH_SIZE = env.int("GATEWAY_BATCH_SIZE", default=50)
DRAIN_WAKE_SECONDS = env.float("DRAIN_WAKE_SECONDS", default=0.2)
# The local mirror of each Sage Pro company's reference data (customers, open invoices,
# GL accounts, periods): synced incrementally every MIRROR_SYNC_MINUTES; an alert fires
# when a mirror has not synced for MIRROR_MAX_AGE_MINUTES.
MIRROR_SYNC_MINUTES = env.int("MIRROR_SYNC_MINUTES", default=1)
MIRROR_MAX_AGE_MINUTES = env.int("MIRROR_MAX_AGE_MINUTES", default=15)
# PayTrace has no webhooks of its own: poll its export every N minutes over an
# overlapping window of the last D days.
PAYTRACE_POLL_MINUTES = env.int("PAYTRACE_POLL_MINUTES", default=5)
PAYTRACE_POLL_WINDOW_DAYS = env.int("PAYTRACE_POLL_WINDOW_DAYS", default=3)

# Alerts: by email to ALERT_EMAILS and, optionally, a JSON POST to ALERT_WEBHOOK_URL.
# One notice per condition per window, and a recovery notice when it clears.
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WINDOW_MINUTES = env.int("ALERT_WINDOW_MINUTES", default=60)
ALERT_STALE_EVENT_MINUTES = env.int("ALERT_STALE_EVENT_MINUTES", default=15)
REVIEW_SLA_HOURS = env.int("REVIEW_SLA_HOURS", default=24)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="payments-portal@localhost")
OUTBOUND_TIMEOUT_SECONDS = env.float("OUTBOUND_TIMEOUT_SECONDS", default=10.0)

# On-site Sage Pro agents (the relay): an agent is offline, and alerted on, after
# AGENT_OFFLINE_MINUTES without a heartbeat; it is told to send one every
# AGENT_HEARTBEAT_SECONDS; an enrolment code lives ENROLMENT_CODE_MINUTES.
AGENT_OFFLINE_MINUTES = env.int("AGENT_OFFLINE_MINUTES", default=5)
AGENT_HEARTBEAT_SECONDS = env.int("AGENT_HEARTBEAT_SECONDS", default=30)
ENROLMENT_CODE_MINUTES = env.int("ENROLMENT_CODE_MINUTES", default=15)

# Sandbox emulators (demo, tests, benchmarks). Never on in production.
SANDBOX_ENABLED = env.bool("SANDBOX_ENABLED", default=False)
SANDBOX_SAGEPRO_API_KEY = env.str(
    "SANDBOX_SAGEPRO_API_KEY", default="sandbox-sagepro-key"
)
SANDBOX_PAYTRACE_USERNAME = env.str(
    "SANDBOX_PAYTRACE_USERNAME", default="demo-api-user"
)
SANDBOX_PAYTRACE_PASSWORD = env.str(
    "SANDBOX_PAYTRACE_PASSWORD", default="demo-api-password"
)
# Where the PayTrace sandbox relays its signed events (the portal's own webhook).
SANDBOX_PAYTRACE_WEBHOOK_URL = env.str(
    "SANDBOX_PAYTRACE_WEBHOOK_URL",
    default="http://127.0.0.1:8000/webhooks/paytrace/paytrace-sandbox/",
)
# How long a refund (or a void) waits for its sale, or for the sale's receipt to post,
# before a person is asked (a "refund" review item).
REFUND_WAIT_MINUTES = env.int("REFUND_WAIT_MINUTES", default=60)
DEMO_WEBHOOK_SECRET = env.str(
    "DEMO_WEBHOOK_SECRET", default="whsec_ZGVtby13ZWJob29rLXNlY3JldC1jaGFuZ2UtbWU="
)
# The shared secret the demo's storefront (`storefront-sandbox`) signs its order webhooks
# with (HMAC-SHA256, base64, in X-Shopify-Hmac-Sha256).
DEMO_STOREFRONT_SECRET = env.str(
    "DEMO_STOREFRONT_SECRET", default="shpss_demo-storefront-secret-change-me"
)
# The demo admin's API key (40 lowercase hex characters, the portal's key format);
# unset: `seed_demo` makes a random one once and keeps it in var/demo-api-token.
DEMO_API_TOKEN = env.str("DEMO_API_TOKEN", default="")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its `WWW-Authenticate` header makes an anonymous caller's answer
        # 401 (with session auth first, DRF answers 403 and no way to authenticate).
        "portal.auth.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Payments portal API",
    "DESCRIPTION": "PayTrace → Sage Pro integration portal: webhooks and read API.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "portal.schema.document_error_responses",
    ],
}

EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
)
# The SMTP server when EMAIL_BACKEND is django.core.mail.backends.smtp.EmailBackend
# (alerts, the autopay report, enrolment links).
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # Masks card numbers in the whole line, tracebacks included (the record factory
        # installed by the integrations app already masks messages and exceptions).
        "plain": {
            "()": "integrations.redaction.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        # LOG_FORMAT=json: one JSON object per line with request_id, event_id and
        # posting_id when set, card numbers masked the same way.
        "json": {"()": "portal.logging.JsonFormatter"},
    },
    "filters": {
        # The ids of the request, event or posting in hand (portal/logging.py).
        "context": {"()": "portal.logging.ContextFilter"},
        # The sandboxes' expected 404s (lookups meant to miss) and declines (400).
        "quiet_sandbox_refusals": {
            "()": "integrations.sandbox.logfilters.QuietSandboxRefusals"
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            # Checked in settings_observability: plain or json.
            "formatter": "json"
            if env.str("LOG_FORMAT", default="") == "json"
            else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["quiet_sandbox_refusals"]},
        # django-q2 sets its own level only when its logger has no handler.
        "django-q": {"level": Q_CLUSTER["log_level"]},
    },
}

# The PayTrace sandbox writes its `created.at`/`settled` times in this zone, as the real
# gateway does in its local time; the sandbox connection's time zone must match.
SANDBOX_PAYTRACE_TIME_ZONE = env.str(
    "SANDBOX_PAYTRACE_TIME_ZONE", default="America/Los_Angeles"
)

# --- the finance workspace (issue 13): the reviewer's home and the dashboard ------------
# An open review item is an SLA breach on the home after REVIEW_SLA_HOURS (above), or
# after its kind's own hours here.
REVIEW_SLA_HOURS_BY_KIND: dict[str, int] = {
    "dead": 4,
    "card_data": 4,
    "agent_journal": 4,
}
# The dashboard warns when the money waiting in review, or in dead letters, passes this
# share of the period's approved cash.
DASHBOARD_REVIEW_SHARE_WARN = env.float("DASHBOARD_REVIEW_SHARE_WARN", default=0.10)
DASHBOARD_DEAD_SHARE_WARN = env.float("DASHBOARD_DEAD_SHARE_WARN", default=0.02)
# The currency the dashboard and the home total in (the Sage Pro base currency).
DASHBOARD_CURRENCY = env.str("DASHBOARD_CURRENCY", default="USD")

# --- production (issue 16): deployment and retention, observability, configuration
# bundles; each job's settings in its own module, read from the same environment.
from portal.settings_bundles import *  # noqa: E402,F403
from portal.settings_csp import *  # noqa: E402,F403
from portal.settings_deploy import *  # noqa: E402,F403
from portal.settings_observability import *  # noqa: E402,F403
from portal.settings_security import *  # noqa: E402,F403
from portal.settings_signature import *  # noqa: E402,F403
from portal.settings_tokens import *  # noqa: E402,F403
