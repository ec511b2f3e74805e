"""The Protect.js stand-in's pages: the script, the hosted-fields iframe, tokenize.

`GET protect/js/protect.min.js` is the page's script (`window.PTPayment`);
`GET protect/hpf?clientKey=…` is the iframe it renders, with its own script and style
files (no inline script or style, so both work under `script-src 'self'`);
`POST protect/tokenize` (form or JSON: `clientKey`, `number`, `expiration_month`,
`expiration_year`, `csc`) answers `{"hpf_token", "enc_key"}` or 400 `{"errors":
[{"field", "message"}]}`. The number and CSC are checked and dropped; no answer, log
line or error repeats them.
"""

import json
from pathlib import Path
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from integrations.sandbox.logfilters import mark_expected_refusal
from integrations.sandbox.paytrace.models import ClientKey
from integrations.sandbox.paytrace.protect import (
    CardRefused,
    FieldError,
    issue_hosted_token,
)

ASSETS = Path(__file__).resolve().parent / "assets"
# Served name → (file, content type).
ASSET_FILES = {
    "protect.min.js": ("protect.js", "text/javascript; charset=utf-8"),
    "hpf.js": ("hpf.js", "text/javascript; charset=utf-8"),
    "hpf.css": ("hpf.css", "text/css; charset=utf-8"),
    "try.js": ("try.js", "text/javascript; charset=utf-8"),
}
# The iframe's policy: its own script, style and tokenize call, framed by this origin.
HPF_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
# What an enrolment page needs: its own scripts and the hosted fields' frame.
TRY_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "frame-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
MAX_BODY = 4096


@require_GET
def protect_asset(request: HttpRequest, name: str) -> HttpResponse:
    """Serve the stand-in's script files (and the iframe's style)."""
    if name not in ASSET_FILES:
        raise Http404("No such hosted-fields file.")
    filename, content_type = ASSET_FILES[name]
    response = HttpResponse((ASSETS / filename).read_bytes(), content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@never_cache
@xframe_options_sameorigin
@require_GET
def hosted_fields(request: HttpRequest) -> HttpResponse:
    """The iframe: four inputs, the hosted fields' script and style."""
    client_key = request.GET.get("clientKey", "")
    if not client_key or ClientKey.find_valid(client_key[:200]) is None:
        response = HttpResponse(
            "The hosted fields need a valid clientKey: ask PayTrace for a new one "
            "(payment_fields/token/create).",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    else:
        response = render(request, "sandbox_paytrace/hpf.html")
    response["Content-Security-Policy"] = HPF_CSP
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@require_GET
def try_hosted_fields(request: HttpRequest) -> HttpResponse:
    """A page that uses the hosted fields as an enrolment page does (demo and tests):
    a fresh client key, the Protect.js stand-in, a strict policy."""
    client_key, _row = ClientKey.issue("sandbox try page")
    response = render(request, "sandbox_paytrace/try.html", {"client_key": client_key})
    response["Content-Security-Policy"] = TRY_CSP
    return response


def refused(*errors: FieldError, status: int = 400) -> JsonResponse:
    return JsonResponse(
        {"errors": [error.as_dict() for error in errors]}, status=status
    )


def read_fields(request: HttpRequest) -> dict[str, Any] | None:
    """The posted fields (JSON object or form), or None when unreadable."""
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None
    return {key: request.POST.get(key) for key in request.POST}


@csrf_exempt  # authenticated by the client key; the page's cookies are not used
@never_cache
@require_POST
def tokenize(request: HttpRequest) -> HttpResponse:
    """Check a typed card and answer a single-use `hpf_token`/`enc_key` pair."""
    mark_expected_refusal(request)  # a refusal here is the card's, not the sandbox's
    if len(request.body) > MAX_BODY:
        return refused(FieldError("body", "The request is too large."), status=413)
    fields = read_fields(request)
    if fields is None:
        return refused(
            FieldError("body", "Send a JSON object or a form with the card fields.")
        )
    client_key = fields.get("clientKey")
    if not isinstance(client_key, str) or ClientKey.find_valid(client_key) is None:
        return refused(
            FieldError(
                "clientKey",
                "The clientKey is missing, unknown or expired: reload the page.",
            )
        )
    try:
        hpf_token, enc_key = issue_hosted_token(
            fields.get("number"),
            fields.get("expiration_month"),
            fields.get("expiration_year"),
            fields.get("csc"),
        )
    except CardRefused as exc:
        return refused(*exc.errors)
    return JsonResponse({"hpf_token": hpf_token, "enc_key": enc_key})
