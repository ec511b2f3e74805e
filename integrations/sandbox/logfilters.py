"""Keep the sandboxes' expected refusals out of the demo's log.

Django logs every 4xx answer on `django.request` as a WARNING ("Not Found: …",
"Bad Request: …"). In the demo most of those are the sandboxes doing their job: the
portal asks Sage Pro for a customer or an invoice that is meant not to exist, and the
PayTrace sandbox declines the cards it is told to decline. Those lines drown the real
ones, so `QuietSandboxRefusals` drops exactly them:

- a 404 answering a GET of one Sage Pro sandbox record (a customer, invoice, cash
  receipt or GL account lookup that missed);
- a 400 from the PayTrace sandbox that the view marked a decline
  (`mark_expected_refusal`).

Everything else still prints: a 404 on a write, a malformed request to either
sandbox, any 4xx outside the sandboxes, and every 5xx.
"""

import logging
import re

from django.http import HttpRequest

# One record of the Sage Pro sandbox's API: /sandbox/sagepro/api/v1/<kind>/<key>.
SAGEPRO_LOOKUP = re.compile(
    r"^/sandbox/sagepro/api/v1/(customers|invoices|cash-receipts|gl-accounts)/[^/]+$"
)
EXPECTED_ATTRIBUTE = "sandbox_expected_refusal"


def mark_expected_refusal(request: HttpRequest) -> None:
    """Say that this request's 4xx answer is the sandbox working as designed."""
    setattr(request, EXPECTED_ATTRIBUTE, True)


def is_expected_refusal(request: object, status_code: object) -> bool:
    if request is None or not isinstance(status_code, int):
        return False
    if getattr(request, EXPECTED_ATTRIBUTE, False):
        return True
    path = str(getattr(request, "path", ""))
    method = str(getattr(request, "method", ""))
    return status_code == 404 and method == "GET" and bool(SAGEPRO_LOOKUP.match(path))


class QuietSandboxRefusals(logging.Filter):
    """A `django.request` filter: drop the sandboxes' expected 404s and declines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_expected_refusal(
            getattr(record, "request", None), getattr(record, "status_code", None)
        )
