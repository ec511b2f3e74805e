"""Sandbox emulators, mounted under /sandbox/ only when SANDBOX_ENABLED is on."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def bare_accept(request: HttpRequest) -> JsonResponse:
    """Answer 202 and do nothing: the baseline `bench/ingest.py` compares the webhook with."""
    return JsonResponse({"status": "queued"}, status=202)


@csrf_exempt
def bare_store(request: HttpRequest) -> JsonResponse:
    """Store the body as one delivery row and answer 202: the least any webhook that
    loses nothing must do, as a second baseline for `bench/ingest.py`."""
    from integrations.models import InboundDelivery

    InboundDelivery.objects.create(
        connection_slug="bench-baseline",
        body=request.body.decode("utf-8", errors="replace"),
        body_size=len(request.body),
        signature_result=InboundDelivery.SignatureResult.UNSIGNED,
        response_status=202,
    )
    return JsonResponse({"status": "queued"}, status=202)


urlpatterns = [
    path("sagepro/api/v1/", include("integrations.sandbox.sagepro.urls")),
    path("paytrace/", include("integrations.sandbox.paytrace.urls")),
    path("bare-202/", bare_accept, name="sandbox-bare-202"),
    path("bare-store/", bare_store, name="sandbox-bare-store"),
]
