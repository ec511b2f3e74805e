"""Run what django-q2 has queued, in this process, the way a worker would."""

from django.utils.module_loading import import_string
from django_q.models import OrmQ
from django_q.signing import SignedPackage


def queued_count() -> int:
    return OrmQ.objects.count()


def run_queued_tasks(max_tasks: int = 1000) -> int:
    """Take tasks off the ORM broker's table in order and run them until it is empty.

    Reads the table directly rather than through `broker.dequeue()`, whose
    `lock < now()` filter never matches under a frozen clock. Tasks queued by the
    tasks themselves are run too. Returns how many ran.
    """
    ran = 0
    while ran < max_tasks:
        row = OrmQ.objects.order_by("id").first()
        if row is None:
            return ran
        task = SignedPackage.loads(row.payload)
        row.delete()
        func = task["func"]
        if isinstance(func, str):
            func = import_string(func)
        func(*task.get("args", ()), **task.get("kwargs", {}))
        ran += 1
    raise AssertionError(
        f"more than {max_tasks} tasks ran: a task is re-queueing itself"
    )
