"""The periodic jobs django-q2 runs, kept in step after every migrate."""

from django.db.models.signals import post_migrate
from django.dispatch import receiver

SCHEDULES = {
    # name: (dotted function, every N minutes)
    "portal: sweep due retries and stalled work": ("integrations.tasks.sweep", 1),
}


@receiver(post_migrate)
def ensure_schedules(sender: object, **kwargs: object) -> None:
    from django_q.models import Schedule

    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
        )
