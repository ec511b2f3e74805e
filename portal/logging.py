"""Log context (request, event and posting ids), JSON log lines and Sentry scrubbing.

`LOG_FORMAT=json` switches the console handler to `JsonFormatter`: one JSON object per
line, card numbers masked like the plain format. `ContextFilter` puts the ids of the
work in hand on every record: `request_id` (set by `RequestIdMiddleware`), and
`event_id`/`posting_id` (set by the pipeline through `log_context`).
"""

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse
from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

from integrations.cardnumbers import mask_card_numbers
from integrations.redaction import redact_data

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept if it looks like one (a proxy's or a load balancer's); anything
# else (too long, odd characters that could forge log lines) is replaced.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

request_id: ContextVar[str] = ContextVar("request_id", default="")
event_id: ContextVar[int | None] = ContextVar("event_id", default=None)
posting_id: ContextVar[int | None] = ContextVar("posting_id", default=None)


@contextmanager
def log_context(
    *, event: int | None = None, posting: int | None = None
) -> Iterator[None]:
    """Tag every log record inside the block with an event id and/or a posting id."""
    tokens = []
    if event is not None:
        tokens.append((event_id, event_id.set(event)))
    if posting is not None:
        tokens.append((posting_id, posting_id.set(posting)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Add request_id, event_id and posting_id to a record (when set, unless the log
    call gave them in `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (
            ("request_id", request_id),
            ("event_id", event_id),
            ("posting_id", posting_id),
        ):
            value = var.get()
            if value not in ("", None) and not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(BaseJsonFormatter):
    """One JSON object per line: time, level, logger, message, the context ids and any
    `extra`; card numbers masked in the finished line, tracebacks included."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level"})
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        return mask_card_numbers(super().format(record))[0]


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give each request an id (the caller's X-Request-ID, or a new one), put it on
    every log line written while it runs, echo it in the response, and count the
    request for /metrics."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from portal import metrics

        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if _REQUEST_ID_RE.fullmatch(given) else new_request_id()
        token = request_id.set(rid)
        started = time.monotonic()
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        response[REQUEST_ID_HEADER] = rid
        metrics.record_request(request, response, time.monotonic() - started)
        return response


# --- Sentry ----------------------------------------------------------------------------


def scrub_sentry_event(event: Any, hint: Any = None) -> Any:
    """Sentry's `before_send`: mask card numbers and card fields anywhere in the event
    (messages, exception values, stack locals, breadcrumbs, request data)."""
    masked, _found = redact_data(event)
    return dict(masked) if isinstance(masked, dict) else masked
