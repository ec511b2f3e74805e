"""How a failure is named, described and retried: shared by the pipeline, the poller
and the rows whose claims and failures the models record."""

import random
from datetime import timedelta

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DataError, InterfaceError, OperationalError

from integrations.connectors.base import ConnectorError
from integrations.models.storage import storable_text

BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
# Failures a later attempt may get past. Any other exception fails the same way on
# every attempt: the record is malformed, a remote system refused it, or a bug.
TRANSIENT_ERRORS = (
    OperationalError,  # database locked, unreachable, deadlock, serialization failure
    InterfaceError,  # the database connection was lost
    TimeoutError,
    ConnectionError,
    requests.Timeout,
    requests.ConnectionError,
)
# Failures caused by the data itself (malformed record, amount out of range, text the
# database cannot store).
DATA_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    ArithmeticError,
    ValidationError,
    DataError,
)


class UnprocessableRecordError(ValueError):
    """The stored record cannot be read as a PayTrace transaction."""


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same work again later may succeed."""
    if isinstance(exc, ConnectorError):
        return exc.transient
    return isinstance(exc, TRANSIENT_ERRORS)


def failure_code(exc: BaseException) -> str:
    """A short machine-readable name for a failure (review items, postings)."""
    if isinstance(exc, ConnectorError):
        return (exc.code or ("unavailable" if exc.transient else "refused"))[:40]
    if isinstance(exc, TRANSIENT_ERRORS):
        return (
            "database_unavailable" if isinstance(exc, OperationalError) else "timeout"
        )
    if isinstance(exc, DATA_ERRORS):
        return "invalid_record"
    return "internal_error"


def describe_failure(exc: BaseException) -> str:
    """The failure in plain words, for a person (card numbers masked)."""
    if isinstance(exc, UnprocessableRecordError) and exc.__cause__ is not None:
        text = f"{exc}: {describe_failure(exc.__cause__)}"
    elif isinstance(exc, ValidationError):
        text = "; ".join(exc.messages)
    elif isinstance(exc, KeyError):
        text = (
            f"the field {exc.args[0]!r} is missing"
            if exc.args
            else "a field is missing"
        )
    elif isinstance(exc, UnicodeError):
        text = "a text field holds characters that cannot be stored (invalid Unicode, e.g. a lone surrogate)"
    elif isinstance(exc, ArithmeticError) and str(exc).startswith("[<class 'decimal."):
        # decimal's own text is only "[<class 'decimal.InvalidOperation'>]"
        text = (
            "an amount is not a number the portal can hold (too large, or not finite)"
        )
    else:
        text = str(exc).strip() or type(exc).__name__
    return storable_text(text)[:1500]


def lease() -> timedelta:
    """How long a claim on an event or posting lasts. A claim older than this was
    abandoned by a worker that died, and may be taken again."""
    return timedelta(seconds=settings.WORK_LEASE_SECONDS)


def backoff_delay(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: base·2^(n−1), capped, then 50–100 % of it."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    factor = (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=ceiling * factor)
