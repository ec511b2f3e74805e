"""Two-factor sign-in for staff (issue 16), on django-otp.

The flow, after the password step of the admin's login page:

1. `middleware.TwoFactorMiddleware` sees a signed-in session that has not passed its
   second factor. If the person has a confirmed device, every page sends them to
   "Enter your authentication code" (`views.verify`); if two-factor is required for
   them (`devices.is_required`) and they have none, to "Set up two-factor sign-in"
   (`views.setup`). API calls from such a session get a JSON 403; token calls are
   not sessions and pass.
2. Setting up shows a QR code and the secret as text; the first right code confirms
   the device, marks the session verified and shows ten recovery codes once.
3. "Two-factor sign-in" (`views.manage`, linked in the admin's user tools) makes new
   recovery codes, removes one's own device, and lets a superuser reset another
   person's.

With TWO_FACTOR_REQUIRED off (demo, development, tests) the middleware asks nobody.
`devices` holds the rules; the views only ask it and answer. The devices themselves are
portal.models' AuthenticatorDevice (its secret encrypted at rest) and RecoveryDevice
(codes kept as digests), not django-otp's stock ones. docs/security.md.
"""
