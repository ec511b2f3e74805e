"""Deployment settings (issue 16): retention of raw deliveries, and the health probe.

Read from the same environment as `portal/settings.py`; `docs/deploy.md` lists every
production variable.
"""

import environ
from django.core.exceptions import ImproperlyConfigured

__all__ = ["DELIVERY_RETENTION_DAYS", "SECURE_REDIRECT_EXEMPT"]

env = environ.Env()

# Raw webhook requests (`InboundDelivery`: headers and body, card data masked) are kept
# this many days, then `manage.py purge_deliveries` (and its daily schedule) deletes
# them. Events, transactions, history, postings and review decisions stay: they are the
# audit trail. 0 keeps raw deliveries forever.
DELIVERY_RETENTION_DAYS = env.int("DELIVERY_RETENTION_DAYS", default=90)
if DELIVERY_RETENTION_DAYS < 0:
    raise ImproperlyConfigured(
        "DELIVERY_RETENTION_DAYS must be a whole number of days, 0 or more "
        "(0 keeps raw deliveries forever); the default is 90."
    )

# With SECURE_SSL_REDIRECT on, a plain-HTTP request is redirected to HTTPS; the health
# probe is answered as it is, because load balancers and container health checks call
# the process directly over plain HTTP (they show nothing sensitive to anonymous callers;
# /metrics needs its token or an allowed network, docs/observability.md).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
