from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from portal import dashboard, views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("dashboard/", dashboard.cash_position, name="dashboard"),
    # Two-factor sign-in (portal/two_factor), under /admin/ so it looks and feels like it.
    path("admin/two-factor/", include("portal.two_factor.urls")),
    path("admin/", admin.site.urls),
    path("api/mappings/", include("mappings.api")),
    path("api/", include("integrations.readapi")),
    path("", include("integrations.urls")),
]

# A 403 in the admin's look, naming the missing permission and who can grant it.
handler403 = "portal.views.permission_denied"
handler500 = "portal.views.server_error"

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("integrations.sandbox.urls")))
