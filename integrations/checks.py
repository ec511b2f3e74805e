from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.compatibility)
def check_queue_timeouts(app_configs: object, **kwargs: object) -> list[Error]:
    """django-q2 hands a task to another worker after `retry` seconds; if `timeout` is
    not below it, a slow task runs twice at once."""
    conf = settings.Q_CLUSTER
    timeout, retry = conf.get("timeout"), conf.get("retry")
    if timeout is None or retry is None or timeout >= retry:
        return [
            Error(
                f"Q_CLUSTER timeout ({timeout}) must be set and below retry ({retry}).",
                hint="Set Q_TIMEOUT lower than Q_RETRY, e.g. Q_TIMEOUT=60 Q_RETRY=90.",
                id="integrations.E001",
            )
        ]
    if timeout >= settings.WORK_LEASE_SECONDS:
        return [
            Error(
                f"WORK_LEASE_SECONDS ({settings.WORK_LEASE_SECONDS}) must exceed the Q_CLUSTER timeout ({timeout}).",
                hint="A claim shorter than a task's run lets a second worker take work that is still running.",
                id="integrations.E002",
            )
        ]
    return []
