"""Pages people read show times in the business time zone (settings.BUSINESS_TIME_ZONE).

Only the admin and the dashboard: the webhook API, the sandboxes and the relay keep
UTC, so nothing a machine reads changes with the setting.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from mappings.formatting import business_zone

PEOPLE_PATHS = ("/admin/", "/dashboard/")


class BusinessTimeZoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(PEOPLE_PATHS):
            return self.get_response(request)
        with timezone.override(business_zone()):
            return self.get_response(request)
