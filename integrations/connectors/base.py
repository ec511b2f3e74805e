"""The shared HTTP base every connector builds on.

One long-lived `requests` session per connector, a default timeout on every call, and
every failure turned into `ConnectorError`, classified as transient (worth retrying
later) or permanent (a person has to look). Secrets never reach the log.
"""

import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
# Error codes a Sage Pro gateway may answer that are worth retrying.
TRANSIENT_CODES = frozenset({"RECORD_LOCKED", "UNAVAILABLE", "TIMEOUT"})
# A Sage Pro site whose agent does not (yet) write a document kind answers this (HTTP
# 501): asking again will not help, a person posts the document by hand.
NOT_SUPPORTED_AT_SITE = "NOT_SUPPORTED_AT_SITE"
PERMANENT_CODES = frozenset({NOT_SUPPORTED_AT_SITE})


class ConnectorError(Exception):
    """A call to an external system failed.

    `transient` says whether the same call may succeed later; `code` is the remote
    system's machine-readable error code when it gave one; `outcome_unknown` is set
    when the request may have been applied remotely (timeout, dropped connection).
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        code: str = "",
        status: int | None = None,
        detail: Any = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code
        self.status = status
        self.detail = detail
        self.outcome_unknown = outcome_unknown

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.code:
            parts.append(f"[{self.code}]")
        if self.status:
            parts.append(f"(HTTP {self.status})")
        return " ".join(parts)


class NotFoundError(ConnectorError):
    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("transient", False)
        kwargs.setdefault("status", 404)
        super().__init__(message, **kwargs)


class _TimeoutAdapter(HTTPAdapter):
    """Fill in a timeout whenever the caller leaves it out."""

    def __init__(self, timeout: float, **kwargs: Any) -> None:
        self.timeout = timeout
        super().__init__(**kwargs)

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def decode_json(response: requests.Response) -> Any:
    """Parse a JSON body with every number that has a fraction read as Decimal."""
    if not response.content:
        return None
    return json.loads(response.content, parse_float=Decimal)


class DecimalEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return str(o)
        return super().default(o)


def encode_json(payload: Any) -> bytes:
    return json.dumps(payload, cls=DecimalEncoder, separators=(",", ":")).encode()


# Called after every request with (connector, method, seconds, status or None, error
# code or ""); the metrics module registers one. An observer must not raise.
CallObserver = Callable[["HttpConnector", str, float, int | None, str], None]
CALL_OBSERVERS: list[CallObserver] = []


def notify_observers(
    connector: "HttpConnector",
    method: str,
    seconds: float,
    status: int | None,
    code: str = "",
) -> None:
    for observer in CALL_OBSERVERS:
        try:
            observer(connector, method, seconds, status, code)
        except Exception:  # monitoring never breaks a payment call
            logger.exception("a call observer failed")


class HttpConnector:
    """Base class: owns the session, the base URL, the timeout and error handling.

    Subclasses know only their own paths and payloads, and override
    `error_from_body` to read their system's error body.
    """

    system = "remote system"
    # The connection's slug, for metrics labels (set by whoever builds the connector).
    label = ""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        adapter = _TimeoutAdapter(timeout)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request; raise ConnectorError for network failures only."""
        url = self.url(path)
        if "json" in kwargs:
            kwargs["data"] = encode_json(kwargs.pop("json"))
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.Timeout as exc:
            notify_observers(self, method, time.monotonic() - started, None, "TIMEOUT")
            raise ConnectorError(
                f"{self.system} did not answer {method} {path} in time",
                transient=True,
                code="TIMEOUT",
                outcome_unknown=method != "GET",
            ) from exc
        except requests.ConnectionError as exc:
            seconds = time.monotonic() - started
            notify_observers(self, method, seconds, None, "UNAVAILABLE")
            raise ConnectorError(
                f"{self.system} could not be reached for {method} {path}",
                transient=True,
                code="UNAVAILABLE",
                # A connection refused before sending is harmless, but requests does
                # not tell a refused connect from a reset after sending.
                outcome_unknown=method != "GET",
            ) from exc
        notify_observers(self, method, time.monotonic() - started, response.status_code)
        return response

    def call(
        self,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] = (200, 201),
        **kwargs: Any,
    ) -> Any:
        """Send a request and return its decoded JSON body, or raise ConnectorError."""
        response = self.request(method, path, **kwargs)
        if response.status_code not in expect:
            raise self.error_from_response(method, path, response)
        try:
            return decode_json(response)
        except ValueError as exc:  # an HTML error page from a proxy, a cut-off body
            raise ConnectorError(
                f"{self.system} answered {method} {path} with a body that is not JSON",
                transient=True,
                code="BAD_RESPONSE",
                status=response.status_code,
                outcome_unknown=method != "GET",
            ) from exc

    def error_from_response(
        self, method: str, path: str, response: requests.Response
    ) -> ConnectorError:
        try:
            body = decode_json(response)
        except ValueError:
            body = None
        return self.error_from_body(method, path, response.status_code, body)

    def error_from_body(
        self, method: str, path: str, status: int, body: Any
    ) -> ConnectorError:
        """The error for an answer `status` with decoded JSON `body` (None if none)."""
        code = ""
        detail: Any = body
        if isinstance(body, dict):
            code = str(body.get("code") or body.get("error") or "")
            detail = body.get("detail") or body.get("error_description") or body
        transient = (
            status >= 500 or status == 429 or code in TRANSIENT_CODES
        ) and code not in PERMANENT_CODES
        message = f"{self.system} refused {method} {path}"
        if detail and not isinstance(detail, (dict, list)):
            message = f"{message}: {detail}"
        cls = NotFoundError if status == 404 else ConnectorError
        return cls(message, transient=transient, code=code, status=status, detail=body)
