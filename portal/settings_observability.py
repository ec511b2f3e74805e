"""Issue 16 settings (observability): /metrics access, readiness, JSON logs, Sentry.

Imported at the end of portal/settings.py; reads the same environment (`.env.example`
documents every variable, docs/observability.md what they do).
"""

import ipaddress

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

# --- /metrics --------------------------------------------------------------------------
# A scraper sends `Authorization: Bearer <METRICS_TOKEN>`; or its address is in one of
# METRICS_ALLOWED_NETWORKS (CIDR, comma-separated; REMOTE_ADDR as the web process sees
# it, so never list the address of a proxy that forwards /metrics from outside).
# Signed-in staff may always read it. Nobody else: 403.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_NETWORKS: {_network!r} is not a network. Give addresses "
            "or CIDR blocks, comma-separated, e.g. 10.0.0.0/8,192.0.2.10."
        ) from None
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured(
        "METRICS_TOKEN is too short to guess-proof: use at least 16 random characters, "
        'e.g. python -c "import secrets; print(secrets.token_urlsafe(32))".'
    )
# The received→posted histogram covers the postings of this many recent minutes.
METRICS_LATENCY_WINDOW_MINUTES = env.int("METRICS_LATENCY_WINDOW_MINUTES", default=60)
if METRICS_LATENCY_WINDOW_MINUTES < 1:
    raise ImproperlyConfigured(
        "METRICS_LATENCY_WINDOW_MINUTES must be a whole number of minutes, 1 or more."
    )

# --- /readyz ---------------------------------------------------------------------------
# The workers count as down when django-q2's scheduler (part of every qcluster) has let
# the one-minute sweep fall this many seconds behind.
READINESS_WORKER_MAX_SECONDS = env.int("READINESS_WORKER_MAX_SECONDS", default=180)
if READINESS_WORKER_MAX_SECONDS < 60:
    raise ImproperlyConfigured(
        "READINESS_WORKER_MAX_SECONDS must be 60 or more (the sweep runs every minute)."
    )

# --- logs ------------------------------------------------------------------------------
# plain (default, for people) or json (one object per line, for a log pipeline); the
# LOGGING block in settings.py picks the formatter.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(
        f"LOG_FORMAT={LOG_FORMAT!r}: use plain (the default) or json."
    )

# --- Sentry (optional) -----------------------------------------------------------------
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
if not 0.0 <= SENTRY_TRACES_SAMPLE_RATE <= 1.0:
    raise ImproperlyConfigured(
        "SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1 (0 sends no traces)."
    )
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.utils import BadDsn

    from portal.logging import scrub_sentry_event

    try:
        sentry_sdk.init(
            dsn=SENTRY_DSN,
            environment=SENTRY_ENVIRONMENT,
            integrations=[DjangoIntegration()],
            # No user names, emails, IPs, cookies or request bodies.
            send_default_pii=False,
            max_request_body_size="never",
            include_local_variables=False,
            traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
            before_send=scrub_sentry_event,
            before_send_transaction=scrub_sentry_event,
        )
    except BadDsn:
        # The DSN's text holds its key: name the setting, never the value.
        raise ImproperlyConfigured(
            "SENTRY_DSN is not a Sentry DSN: copy it from the project's Client Keys "
            "page (https://<key>@<host>/<project id>), or unset it."
        ) from None
