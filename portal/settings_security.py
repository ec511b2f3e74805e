"""Sign-in security (issue 16): two-factor sign-in and login throttling and lockout.

Read from the same environment as `portal/settings.py`; docs/security.md explains each
variable and the sign-in flow.
"""

from datetime import timedelta

import environ
from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "AXES_CLIENT_IP_CALLABLE",
    "AXES_COOLOFF_TIME",
    "AXES_ENABLED",
    "AXES_FAILURE_LIMIT",
    "AXES_LOCKOUT_PARAMETERS",
    "AXES_LOCKOUT_TEMPLATE",
    "AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT",
    "AXES_RESET_ON_SUCCESS",
    "AXES_USERNAME_CALLABLE",
    "AXES_VERBOSE",
    "CLIENT_IP_PROXY_COUNT",
    "OTP_STATIC_THROTTLE_FACTOR",
    "OTP_TOTP_ISSUER",
    "OTP_TOTP_THROTTLE_FACTOR",
    "TWO_FACTOR_RECOVERY_CODES",
    "TWO_FACTOR_REQUIRED",
    "TWO_FACTOR_REQUIRED_ROLES",
]

env = environ.Env()

# --- two-factor sign-in (django-otp) ---------------------------------------------------
# On: after the password, anyone with a confirmed device enters a code from it, and
# superusers and the TWO_FACTOR_REQUIRED_ROLES must set one up before any page. Off
# (the default with DEMO_MODE=1 or DEBUG=1, so `make demo` never asks): nobody is asked
# for a code; the enrolment pages still work.
TWO_FACTOR_REQUIRED = env.bool(
    "TWO_FACTOR_REQUIRED",
    default=not (
        env.bool("DEMO_MODE", default=False) or env.bool("DEBUG", default=False)
    ),
)
# The roles (integrations/roles.py) whose members must use two-factor sign-in, besides
# superusers: the people who change connections, rules and money policy. Every other
# staff user may enrol, and once enrolled must use it.
TWO_FACTOR_REQUIRED_ROLES = env.list(
    "TWO_FACTOR_REQUIRED_ROLES", default=["Integration admin", "Finance manager"]
)
# The name authenticator apps show next to the account.
OTP_TOTP_ISSUER = env.str("TWO_FACTOR_ISSUER", default="Payments portal")
# Recovery codes made at enrolment (and by "make new recovery codes"); each works once.
TWO_FACTOR_RECOVERY_CODES = 10
# After n wrong codes in a row a device refuses the next try for factor × 2^(n-1)
# seconds (1, 2, 4, … with the default 1): ten wrong guesses cost over eight minutes,
# so guessing a six-digit code is hopeless; a right code resets the count.
OTP_TOTP_THROTTLE_FACTOR = env.int("TWO_FACTOR_THROTTLE_FACTOR", default=1)
OTP_STATIC_THROTTLE_FACTOR = OTP_TOTP_THROTTLE_FACTOR
if OTP_TOTP_THROTTLE_FACTOR < 1:
    raise ImproperlyConfigured(
        "TWO_FACTOR_THROTTLE_FACTOR must be 1 or more (seconds before the try after "
        "the first wrong code); 0 would let codes be guessed without a pause."
    )

# --- login throttling and lockout (django-axes) ----------------------------------------
# Off only in the test settings (Django's test client signs in without a request).
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
# Five wrong passwords for one name from one address lock that pair for 15 minutes.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
_lockout_minutes = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
if AXES_FAILURE_LIMIT < 1 or _lockout_minutes < 1:
    raise ImproperlyConfigured(
        "LOGIN_FAILURE_LIMIT and LOGIN_LOCKOUT_MINUTES must be 1 or more "
        "(defaults: 5 wrong passwords lock the name for 15 minutes)."
    )
AXES_COOLOFF_TIME = timedelta(minutes=_lockout_minutes)
# Lock the name *and* address together. Locking a name alone lets anyone who knows a
# colleague's user name keep them out (say, the finance manager at month-end); locking
# an address alone locks a whole office behind one NAT address. The pair stops
# guessing one account's password from one place and leaves the real person free to
# sign in from their own machine; two-factor sign-in covers the accounts that matter.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# A right password forgets the earlier wrong ones.
AXES_RESET_ON_SUCCESS = True
# Tries during a lockout do not restart the cool-off, so "try again in 15 minutes" on
# the lockout page stays true for the person who keeps trying.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# 429 with the portal's page: locked, for how long, who to ask (never whether the name
# exists).
AXES_LOCKOUT_TEMPLATE = "portal/two_factor/locked_out.html"
AXES_VERBOSE = False
# The client's address is the one the access audit log records (portal.audit.client_ip):
# REMOTE_ADDR, or, behind CLIENT_IP_PROXY_COUNT reverse proxies that each append to
# X-Forwarded-For, the address the outermost of them saw.
AXES_CLIENT_IP_CALLABLE = "portal.audit.client_ip"
# The typed name as axes stores and locks it: a card number typed there is masked.
AXES_USERNAME_CALLABLE = "portal.audit.typed_username"
CLIENT_IP_PROXY_COUNT = env.int("CLIENT_IP_PROXY_COUNT", default=0)
if CLIENT_IP_PROXY_COUNT < 0:
    raise ImproperlyConfigured(
        "CLIENT_IP_PROXY_COUNT is the number of reverse proxies in front of the web "
        "process (0 when clients reach it directly; 1 behind the Caddy proxy)."
    )
