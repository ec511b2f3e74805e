"""The two groups people are put in. Kept in step with the models after every migrate."""

from django.db.models.signals import post_migrate
from django.dispatch import receiver

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
            "alert": [_READ],
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


@receiver(post_migrate)
def ensure_groups(sender: object, **kwargs: object) -> None:
    from django.contrib.auth.models import Group, Permission

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
