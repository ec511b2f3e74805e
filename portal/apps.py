from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"
    default = True

    def ready(self) -> None:
        # The metrics' hooks (task and gateway-call counters) in every process: the
        # qcluster workers never import the URLs that would import them.
        import portal.audit  # noqa: F401 - the access audit log's signal receivers
        import portal.metrics  # noqa: F401


class PortalAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with the portal's site (home, navigation grouped by job)."""

    default = False
    default_site = "portal.admin_site.PortalAdminSite"
