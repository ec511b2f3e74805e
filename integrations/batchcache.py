"""What a batch of events reads once instead of once per event.

A drain processes up to `DRAIN_BATCH_SIZE` events of the same few connections: their
status maps, matching rules, GL rules and field mappings do not change between two
events of one batch. Inside `batch_cache()` each is loaded once per connection; outside
it (one event at a time, the preview, a reviewer's action) every call loads afresh.
"""

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_store: ContextVar[dict[Hashable, Any] | None] = ContextVar("batch_cache", default=None)


@contextmanager
def batch_cache() -> Iterator[None]:
    """Remember what `cached` loads until the block ends."""
    token = _store.set({})
    try:
        yield
    finally:
        _store.reset(token)


def cached(key: Hashable, load: Callable[[], T]) -> T:
    """`load()`, remembered under `key` while a `batch_cache()` block is open."""
    store = _store.get()
    if store is None:
        return load()
    if key not in store:
        store[key] = load()
    return store[key]
