"""The roles people are put in, as groups: created by a migration (0024_roles) and
kept in step with the models after every migrate. docs/roles.md is the matrix.

- **Finance reviewer** works the queues: review items, dead letters, postings,
  unapplied cash, chargebacks, storefront orders, cards on file and charges; sees,
  starts and downloads reconciliation runs and may open everything a run's page links
  to (its lines, settlement batches, the connection — whose secrets no page shows).
- **Finance manager**: everything a reviewer does, plus month-end and money policy —
  autopay settings, unapplied-cash rules, refund fees, dispute-report mappings — and
  the second signature on a reviewer's override (`SIGN_OVERRIDE`; never their own).
- **Integration admin**: connections, rules, mappings, agents, promotion (bundles).
- **Auditor**: reads everything, changes nothing (only `view_` permissions).
- **Operator**: keeps the pipeline running — dead-letter replay, retries, events,
  agents, the task queue — and nothing about money policy or configuration.

`OPERATE_SYSTEM` is the operator permission: who holds it (and superusers) sees the
System tables in the navigation (the task queue, the sandboxes); integration admins and
operators hold it.
"""

from typing import TYPE_CHECKING

from django.db.models.signals import post_migrate
from django.dispatch import receiver

if TYPE_CHECKING:
    from django.contrib.auth.models import Permission

FINANCE_REVIEWER = "Finance reviewer"
FINANCE_MANAGER = "Finance manager"
INTEGRATION_ADMIN = "Integration admin"
AUDITOR = "Auditor"
OPERATOR = "Operator"
ROLES = (FINANCE_REVIEWER, FINANCE_MANAGER, INTEGRATION_ADMIN, AUDITOR, OPERATOR)
# The apps whose every model an auditor may read.
AUDITED_APPS = ("integrations", "mappings", "portal", "reversion", "django_q", "auth")

_READ = "view"
GROUP_PERMISSIONS = {
    FINANCE_REVIEWER: {
        "integrations": {
            "paymenttransaction": [_READ],
            "transactionhistory": [_READ],
            "posting": [_READ, "change"],
            "reviewitem": [_READ, "change"],
            "reviewdecision": [_READ],
            # Their corrections waiting for a finance manager's signature.
            "overriderequest": [_READ],
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
        # Issue 16: their own API tokens (docs/api-tokens.md); a token never does more
        # than its owner may.
        "portal": {"apitoken": [_READ, "add", "change"]},
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
            "overriderequest": [_READ],
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
        # Issue 16: who signed in, and whose roles and permissions changed; API tokens,
        # everyone's (to revoke a leaver's or a leaked one).
        "portal": {
            "accessauditentry": [_READ],
            "apitoken": [_READ, "add", "change", "manage_all"],
        },
    },
}


def _merged(base: dict, extra: dict) -> dict:
    """`base`'s permissions plus `extra`'s (a new dict; neither is changed)."""
    out = {app: {m: list(a) for m, a in models.items()} for app, models in base.items()}
    for app, models in extra.items():
        for model, actions in models.items():
            have = out.setdefault(app, {}).setdefault(model, [])
            have += [action for action in actions if action not in have]
    return out


# Month-end and money policy on top of the reviewer's queues.
GROUP_PERMISSIONS[FINANCE_MANAGER] = _merged(
    GROUP_PERMISSIONS[FINANCE_REVIEWER],
    {
        "integrations": {
            "autopaysettings": [_READ, "add", "change"],
            "unappliedcashrule": [_READ, "add", "change"],
            "refundfee": [_READ, "add", "change"],
            "disputereportmapping": [_READ, "add", "change"],
            "configbundleapplied": [_READ],
            "syncrun": [_READ],
            "alert": [_READ],
            # The second signature on a reviewer's override (integrations.review).
            "overriderequest": [_READ, "sign"],
        },
        "mappings": {
            "glrule": [_READ],
            "statusmap": [_READ],
            "matchingrule": [_READ],
            "currencyrate": [_READ],
        },
    },
)
# Keeping the pipeline running: replays, retries, events, agents, the task queue.
GROUP_PERMISSIONS[OPERATOR] = {
    "integrations": {
        "event": [_READ, "change"],
        "inbounddelivery": [_READ],
        "paymenttransaction": [_READ],
        "transactionhistory": [_READ],
        "posting": [_READ, "change"],
        "deadletter": [_READ, "change"],
        "reviewitem": [_READ],
        "agent": [_READ, "add", "change"],
        "agentreviewentry": [_READ],
        "relaycommand": [_READ],
        "syncrun": [_READ],
        "alert": [_READ],
        "mirrorstate": [_READ, "change"],
        "connection": [_READ],
        "charge": [_READ],
    },
    "django_q": {
        "ormq": [_READ, "delete"],
        "schedule": [_READ, "change"],
        "task": [_READ],
        "success": [_READ],
        "failure": [_READ, "delete"],
    },
}


def auditor_permissions() -> "list[Permission]":
    """Every `view_` permission of the audited apps: read everything, change nothing."""
    from django.contrib.auth.models import Permission

    return list(
        Permission.objects.filter(
            content_type__app_label__in=AUDITED_APPS, codename__startswith="view_"
        )
    )


# Who may sign (or refuse) another person's override; superusers hold it implicitly.
SIGN_OVERRIDE = "integrations.sign_overriderequest"


# The operator permission, held by the portal app (it has no model of its own for it).
OPERATE_SYSTEM = "portal.operate_system"
_OPERATE_CODENAME = "operate_system"
OPERATOR_GROUPS = (INTEGRATION_ADMIN, OPERATOR)


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
    """Give each role its permissions, once per migrate (or test flush).

    `post_migrate` is sent once per installed app, and each app's permissions are made
    by a handler of its own signal, so the roles are filled in after the last app's,
    when every permission exists (`sender=None`: called directly). The content-type
    cache may hold ids from before a flush: it is cleared first."""
    from django.apps import apps as app_registry
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    with_models = [a for a in app_registry.get_app_configs() if a.models_module]
    if sender is not None and sender is not with_models[-1]:
        return
    ContentType.objects.clear_cache()
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
    Group.objects.get_or_create(name=AUDITOR)[0].permissions.add(*auditor_permissions())


ROLE_PURPOSE = {
    FINANCE_REVIEWER: "Works the review queues, charges invoices, runs month-end",
    FINANCE_MANAGER: "A reviewer's work plus money policy (autopay, unapplied-cash "
    "rules, refund fees, dispute mappings), reading the rules, and the second "
    "signature on reviewers' overrides",
    INTEGRATION_ADMIN: "Connections, rules, mappings, agents, promotion; operates the "
    "system",
    AUDITOR: "Reads everything, changes nothing",
    OPERATOR: "Dead-letter replay, retries, events, agents, the task queue; operates "
    "the system",
}


def matrix_markdown() -> str:
    """The permission matrix as docs/roles.md shows it (a test keeps the two equal)."""
    lines = []
    for role in ROLES:
        lines += ["", f"### {role}", "", f"{ROLE_PURPOSE[role]}.", ""]
        if role == AUDITOR:
            apps = ", ".join(f"`{app}`" for app in AUDITED_APPS)
            lines.append(f"- `view` on every model of {apps}; nothing else.")
            continue
        if role in OPERATOR_GROUPS:
            lines.append(f"- `{OPERATE_SYSTEM}` (the System tables in the navigation)")
        for app, models in sorted(GROUP_PERMISSIONS[role].items()):
            for model, actions in sorted(models.items()):
                lines.append(f"- `{app}.{model}`: {', '.join(actions)}")
    return "\n".join(lines).lstrip("\n") + "\n"
