"""Keep a signed-in session that has not passed its second factor out of every page
but the two-factor pages themselves (see the package docstring for the flow)."""

from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse

from portal.two_factor import devices

# Pages an unverified session may still reach: its way through (the two-factor pages,
# signing out or in again), the public and machine endpoints that never use the staff
# session (webhooks, card enrolment links, health probes), and static files.
OPEN_PREFIXES = (
    "/admin/two-factor/",
    "/admin/logout/",
    "/admin/login/",
    "/admin/jsi18n/",
    "/static/",
    "/favicon.ico",
    "/healthz",
    "/readyz",
    "/webhooks/",
    "/pay/",
    "/sandbox/",
)
API_PREFIX = "/api/"


class TwoFactorMiddleware:
    """Send an unverified session to enter its code, or to set up two-factor sign-in
    if it is required and missing; answer its API calls with a JSON 403."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not settings.TWO_FACTOR_REQUIRED or _passes(request):
            return self.get_response(request)
        user = request.user
        if devices.has_device(user):
            page = "two_factor:verify"
        elif devices.is_required(user):
            page = "two_factor:setup"
        else:
            return self.get_response(request)
        if request.path_info.startswith(API_PREFIX):
            return _api_refusal(page)
        query = urlencode({"next": request.get_full_path()})
        return HttpResponseRedirect(f"{reverse(page)}?{query}")


def _passes(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or user.is_verified():
        return True
    if request.path_info.startswith(OPEN_PREFIXES):
        return True
    # DRF tries the token first and, with a bad one, refuses without looking at the
    # session, so a token call never rides on an unverified session.
    keyword = request.headers.get("Authorization", "").split(" ", 1)[0]
    return keyword.lower() == "token"


def _api_refusal(page: str) -> JsonResponse:
    action = (
        "enter your authentication code"
        if page == "two_factor:verify"
        else "set up two-factor sign-in"
    )
    return JsonResponse(
        {
            "detail": (
                "This session has not passed two-factor sign-in: "
                f"{action} at {reverse(page)} first, or call the API with a token "
                "(Authorization: Token <key>)."
            )
        },
        status=403,
    )
