"""Sandbox emulators, mounted under /sandbox/ only when SANDBOX_ENABLED is on."""

from django.urls import include, path

urlpatterns = [
    path("sagepro/api/v1/", include("integrations.sandbox.sagepro.urls")),
    path("paytrace/", include("integrations.sandbox.paytrace.urls")),
]
