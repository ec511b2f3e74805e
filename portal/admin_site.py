"""The portal's admin site: Django's admin, with a home and navigation grouped by job.

`PortalAdminConfig` (portal/apps.py) makes `PortalAdminSite` the default site, so every
`@admin.register` lands here and `admin.site` is this site.

- The index is the reviewer's home (`portal.home.needs_attention`) above the models,
  grouped by job: Review, Payments, Month-end, Configuration, System (`NAV_GROUPS`;
  a model not named there is in System).
- The System tables nobody but an operator needs (the task queue, the sandboxes:
  `OPERATOR_APPS`) are listed only for superusers and holders of the operator
  permission (`integrations.roles.OPERATE_SYSTEM`), on top of Django's own rule that a
  model is listed only for people with a permission on it.
- Every page's context names the business time zone (the header says "Times in …").
"""

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

OPERATOR_APPS = frozenset({"django_q", "sandbox_sagepro", "sandbox_paytrace"})
SYSTEM = "system"

# (key, title, models as "app_label.model_name") in the order they are shown.
NAV_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "review",
        "Review",
        (
            "integrations.reviewitem",
            "integrations.overriderequest",
            "integrations.unappliedcash",
            "integrations.chargeback",
            "integrations.pendingreversal",
            "integrations.deadletter",
            "mappings.matchingproposal",
        ),
    ),
    (
        "payments",
        "Payments",
        (
            "integrations.paymenttransaction",
            "integrations.storefrontorder",
            "integrations.expectedrefund",
            "integrations.posting",
            "integrations.event",
            "integrations.storefrontevent",
            "integrations.inbounddelivery",
            "integrations.mirroredinvoice",
            "integrations.charge",
            "integrations.cardonfile",
            "integrations.autopayrun",
            "integrations.autopayattempt",
            "integrations.recurringschedule",
            "integrations.enrolmentlink",
        ),
    ),
    (
        "month-end",
        "Month-end",
        (
            "integrations.reconciliationrun",
            "integrations.reconciliationline",
            "integrations.settlementbatch",
            "integrations.disputeimport",
        ),
    ),
    (
        "configuration",
        "Configuration",
        (
            "integrations.connection",
            "mappings.statusmap",
            "mappings.glrule",
            "mappings.fieldmapping",
            "mappings.matchingrule",
            "mappings.payerlink",
            "mappings.currencyrate",
            "integrations.unappliedcashrule",
            "integrations.refundfee",
            "integrations.storefrontsettings",
            "integrations.disputereportmapping",
            "integrations.autopaysettings",
            "integrations.configbundleapplied",
            "portal.accessauditentry",
            "portal.apitoken",
            "integrations.agent",
            "integrations.mirrorstate",
            "reversion.version",
        ),
    ),
    (SYSTEM, "System", ()),
)


def can_operate(request: HttpRequest) -> bool:
    from integrations.roles import OPERATE_SYSTEM

    user = request.user
    return bool(user.is_superuser or user.has_perm(OPERATE_SYSTEM))


class PortalAdminSite(admin.AdminSite):
    site_header = "Payments portal"
    site_title = "Payments portal"
    index_title = "What needs attention"
    index_template = "admin/index.html"

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        context["business_time_zone"] = settings.BUSINESS_TIME_ZONE
        return context

    def get_app_list(
        self, request: HttpRequest, app_label: str | None = None
    ) -> list[dict[str, Any]]:
        """The models grouped by job (one app's page keeps Django's own list)."""
        apps = self._build_app_dict(request, app_label)
        if app_label is not None:
            if app_label in OPERATOR_APPS and not can_operate(request):
                return []
            return super().get_app_list(request, app_label)
        operator = can_operate(request)
        by_key: dict[str, dict[str, Any]] = {}
        for label, app in apps.items():
            if label in OPERATOR_APPS and not operator:
                continue
            for model in app["models"]:
                by_key[f"{label}.{model['object_name'].lower()}"] = {
                    **model,
                    "app_label": label,
                }
        groups = []
        placed: set[str] = set()
        for key, title, names in NAV_GROUPS:
            if key == SYSTEM:
                models = sorted(
                    (m for k, m in by_key.items() if k not in placed),
                    key=lambda m: (m["app_label"] not in OPERATOR_APPS, str(m["name"])),
                )
            else:
                models = [by_key[name] for name in names if name in by_key]
                placed.update(names)
            if models:
                groups.append(
                    {
                        "name": title,
                        "app_label": key,
                        "app_url": "",
                        "has_module_perms": True,
                        "models": models,
                    }
                )
        return groups

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        from portal.home import needs_attention

        context = {
            "attention": needs_attention(request.user, timezone.now()),
            **(extra_context or {}),
        }
        return super().index(request, context)
