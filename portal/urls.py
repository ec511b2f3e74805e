from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from portal import dashboard, views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("dashboard/", dashboard.cash_position, name="dashboard"),
    path("admin/", admin.site.urls),
    path("api/mappings/", include("mappings.api")),
    path("api/", include("integrations.readapi")),
    path("", include("integrations.urls")),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("integrations.sandbox.urls")))
