"""API token lifetimes (issue 16): how long a key lives, and how long an old key keeps
working after it is rotated.

Imported at the end of portal/settings.py; reads the same environment (docs/api-tokens.md
explains each). A nonsense value stops the portal at startup.
"""

import environ
from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "API_TOKEN_EXPIRING_SOON_DAYS",
    "API_TOKEN_LIFETIME_DAYS",
    "API_TOKEN_MAX_LIFETIME_DAYS",
    "API_TOKEN_ROTATION_OVERLAP_HOURS",
]

env = environ.Env()

# A new key (made or rotated) lives this long unless its maker picks otherwise, and
# never longer than the maximum: a leaked key stops working on its own.
API_TOKEN_LIFETIME_DAYS = env.int("API_TOKEN_LIFETIME_DAYS", default=90)
API_TOKEN_MAX_LIFETIME_DAYS = env.int("API_TOKEN_MAX_LIFETIME_DAYS", default=365)
if not 1 <= API_TOKEN_LIFETIME_DAYS <= API_TOKEN_MAX_LIFETIME_DAYS:
    raise ImproperlyConfigured(
        f"API_TOKEN_LIFETIME_DAYS={API_TOKEN_LIFETIME_DAYS} must be between 1 and "
        f"API_TOKEN_MAX_LIFETIME_DAYS ({API_TOKEN_MAX_LIFETIME_DAYS}) days."
    )
# After "Rotate", the old key keeps working this long, so callers switch without a
# gap; 0 stops it at once. At most a week: an old key is a key someone may have lost.
API_TOKEN_ROTATION_OVERLAP_HOURS = env.int(
    "API_TOKEN_ROTATION_OVERLAP_HOURS", default=24
)
if not 0 <= API_TOKEN_ROTATION_OVERLAP_HOURS <= 168:
    raise ImproperlyConfigured(
        f"API_TOKEN_ROTATION_OVERLAP_HOURS={API_TOKEN_ROTATION_OVERLAP_HOURS} must be "
        "between 0 (the old key stops at once) and 168 (a week)."
    )
# The token list marks a token "expiring soon" this many days before it expires.
API_TOKEN_EXPIRING_SOON_DAYS = env.int("API_TOKEN_EXPIRING_SOON_DAYS", default=14)
if API_TOKEN_EXPIRING_SOON_DAYS < 0:
    raise ImproperlyConfigured("API_TOKEN_EXPIRING_SOON_DAYS must be 0 or more.")
