"""The two groups people are put in. Kept in step with the models after every migrate.

Finance reviewers own month-end: they see, start and download reconciliation runs and
may open everything a run's page links to (its lines, settlement batches, the
connection — whose secrets no page shows). `OPERATE_SYSTEM` is the operator
permission: who holds it (and superusers) sees the System tables in the navigation
(the task queue, the sandboxes); integration admins hold it.
"""

from typing import TYPE_CHECKING

from django.db.models.signals import post_migrate
from django.dispatch import receiver

if TYPE_CHECKING:
    from django.contrib.auth.models import Permission

FINANCE_REVIEWER = "Finance reviewer"
INTEGRATION_ADMIN = "Integration admin"

_READ = "view"
GROUP_PERMISSIONS = {
    FINANCE_REVIEWER: {
        "integrations": {
            "paymenttransaction": [_READ],
            "transactionhistory": [_READ],
            "posting": [_READ, "change"],
            "reviewitem": [_READ, "change"],
            "reviewdecision": [_READ],
            "event": [_READ],
            "inbounddelivery": [_READ],
            "deadletter": [_READ, "change"],
            # Month-end: see, start and download runs, and what their pages link to.
            "reconciliationrun": [_READ, "add"],
            "reconciliationline": [_READ],
            "settlementbatch": [_READ],
            "connection": [_READ],
            # Issue 14: chargebacks and their dispute reports, storefront orders,
            # unapplied cash and refunds.
            "chargeback": [_READ, "add", "change"],
            "chargebackevent": [_READ],
            "disputeimport": [_READ, "add"],
            "disputereportmapping": [_READ],
            "storefrontorder": [_READ, "change"],
            "storefrontorderline": [_READ],
            "storefrontrefund": [_READ],
            "storefrontevent": [_READ],
            "unappliedcash": [_READ],
            "unappliedrefund": [_READ],
            "expectedrefund": [_READ],
            "pendingreversal": [_READ],
            # Issue 15: getting paid. Reviewers take cards by phone, charge invoices,
            # start autopay runs and set up recurring schedules.
            "cardonfile": [_READ, "add", "change"],
            "enrolmentlink": [_READ, "add"],
            "mirroredinvoice": [_READ],
            "charge": [_READ, "add"],
            "autopayrun": [_READ, "add"],
            "autopayattempt": [_READ],
            "autopaysettings": [_READ],
            "recurringschedule": [_READ, "add", "change"],
        },
        "mappings": {
            "payerlink": [_READ],
            "matchingproposal": [_READ],
        },
    },
    INTEGRATION_ADMIN: {
        "integrations": {
            "connection": [_READ, "add", "change", "delete"],
            "mirrorstate": [_READ, "change"],
            "agent": [_READ, "add", "change"],
            "webhooksecret": [_READ, "add", "change", "delete"],
            "paymenttransaction": [_READ],
            "transactionhistory": [_READ],
            "posting": [_READ, "change"],
            "reviewitem": [_READ, "change"],
            "reviewdecision": [_READ],
            "event": [_READ, "change"],
            "inbounddelivery": [_READ],
            "deadletter": [_READ, "change"],
            "syncrun": [_READ],
            "settlementbatch": [_READ],
            "reconciliationrun": [_READ, "add"],
            "reconciliationline": [_READ],
            "alert": [_READ],
            "chargeback": [_READ, "add", "change"],
            "chargebackevent": [_READ],
            "disputeimport": [_READ, "add"],
            "disputereportmapping": [_READ, "add", "change", "delete"],
            "storefrontsettings": [_READ, "add", "change", "delete"],
            "storefrontorder": [_READ, "change"],
            "storefrontorderline": [_READ],
            "storefrontrefund": [_READ],
            "storefrontevent": [_READ],
            "unappliedcashrule": [_READ, "add", "change", "delete"],
            "unappliedcash": [_READ],
            "unappliedrefund": [_READ],
            "expectedrefund": [_READ],
            "pendingreversal": [_READ],
            "refundfee": [_READ, "add", "change", "delete"],
            "cardonfile": [_READ, "add", "change"],
            "enrolmentlink": [_READ, "add"],
            "mirroredinvoice": [_READ],
            "charge": [_READ, "add"],
            "autopayrun": [_READ, "add"],
            "autopayattempt": [_READ],
            "autopaysettings": [_READ, "add", "change", "delete"],
            "recurringschedule": [_READ, "add", "change"],
        },
        "mappings": {
            "statusmap": [_READ, "add", "change", "delete"],
            "glrule": [_READ, "add", "change", "delete"],
            "fieldmapping": [_READ, "add", "change", "delete"],
            "currencyrate": [_READ, "add", "change", "delete"],
            "matchingrule": [_READ, "add", "change", "delete"],
            "suggestionfeedback": [_READ],
            "payerlink": [_READ, "add", "change", "delete"],
            "matchingproposal": [_READ, "add", "change", "delete"],
        },
    },
}


# The operator permission, held by the portal app (it has no model of its own for it).
OPERATE_SYSTEM = "portal.operate_system"
_OPERATE_CODENAME = "operate_system"
OPERATOR_GROUPS = (INTEGRATION_ADMIN,)


def ensure_operator_permission() -> "Permission":
    """The operator permission's row (created on first use)."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    from portal.models import ApiToken

    permission, _ = Permission.objects.get_or_create(
        codename=_OPERATE_CODENAME,
        content_type=ContentType.objects.get_for_model(ApiToken),
        defaults={"name": "Can operate the system (task queue, sandboxes)"},
    )
    return permission


@receiver(post_migrate)
def ensure_groups(sender: object, **kwargs: object) -> None:
    from django.contrib.auth.models import Group, Permission

    operate = ensure_operator_permission()
    for group_name in OPERATOR_GROUPS:
        Group.objects.get_or_create(name=group_name)[0].permissions.add(operate)
    for group_name, apps in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        wanted: list[Permission] = []
        for app_label, models in apps.items():
            for model, actions in models.items():
                codenames = [f"{action}_{model}" for action in actions]
                wanted += Permission.objects.filter(
                    content_type__app_label=app_label, codename__in=codenames
                )
        group.permissions.add(*wanted)
