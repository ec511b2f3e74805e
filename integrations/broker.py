"""django-q2's ORM broker, riding out a database restart.

When the broker's query fails, django-q2's pusher (the process that hands tasks to the
workers) logs the error, sleeps ten seconds and exits for the sentinel to start a new
one. A PostgreSQL restart or failover takes about a second, so every qcluster then sat
idle for ten while events waited (the load test measured it: received→posted p95 of
12.6 s around the restart, every worker slot idle). This broker answers "nothing yet"
to a failed dequeue instead, after dropping the broken connection and a short pause,
so the pusher polls again as soon as the database is back.

Only a failure to reach the database is absorbed; anything else still raises, and
django-q2 handles it as before. Settings: `Q_CLUSTER["broker_class"]` (the ORM broker
only; `REDIS_URL` selects django-q2's Redis broker).
"""

import logging
import time

from django.db import InterfaceError, OperationalError, connection
from django_q.brokers.orm import ORM
from django_q.conf import Conf

log = logging.getLogger(__name__)

# How long to wait before polling again after the database did not answer: long
# enough not to flood the log of a database that stays down, short against a restart.
RETRY_SECONDS = 1.0


class ResilientORM(ORM):
    def dequeue(self) -> list[tuple[int, str]] | None:
        try:
            return super().dequeue()
        except (OperationalError, InterfaceError) as exc:
            log.warning("task queue: the database did not answer (%s); retrying", exc)
            connection.close()
            time.sleep(max(RETRY_SECONDS, Conf.POLL))
            return None
