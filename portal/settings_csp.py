"""The site-wide Content-Security-Policy (issue 16), sent by django-csp's middleware.

Every page the portal serves may run scripts only from its own origin: no inline
scripts, no `eval`, no event-handler attributes, so an injected `<script>` or
`onerror=` in a payer's name or a memo shown on a review page does nothing. Pages
that need more set their own header, which the middleware leaves alone: the card
pages (`integrations/enrolment`) allow PayTrace's hosted-fields origin, and the
PayTrace sandbox's stand-in for it does the same.

Styles may be inline (`style=` attributes, `<style>` blocks): Django's admin widgets
and several portal pages use them, and a style cannot run code. Images may be
`data:` URIs (the admin's icons and the two-factor QR code). Nothing may frame the
portal, and forms post only back to it.
"""

from csp.constants import NONE, SELF, UNSAFE_INLINE

__all__ = ["CONTENT_SECURITY_POLICY"]

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
