"""gunicorn settings every deployment shares (`--config python:portal.gunicorn_conf`).

With PROMETHEUS_MULTIPROC_DIR set (several processes on a host: gunicorn workers and
qcluster), each process writes its counters to files there and `/metrics` sums them; a
worker that exits must say so, or its gauges linger (docs/observability.md).
"""

import os
from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
