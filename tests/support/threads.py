"""Real threads released together, for the PostgreSQL concurrency tests."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

# The marks of a test module that needs PostgreSQL's row locks and real concurrency:
# committed data (threads see each other's commits), and skipped on SQLite.
POSTGRES_ONLY = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
    ),
]


def run_at_once(n: int, func: Callable[[int], Any], timeout: float = 120) -> list[Any]:
    """Run func(i) in n threads released together (each with its own database
    connection, closed after); return their results in order. An exception in any
    thread fails the caller's test, naming it."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = func(i)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"
    return results
