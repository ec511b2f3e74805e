"""The contract's refusals: HTTP status, error code, detail and field errors (section 3)."""

from __future__ import annotations

from typing import Any

from sagepro_agent.wire import Response

LOCKED_RETRY_AFTER = "5"
UNAVAILABLE_RETRY_AFTER = "30"


class GatewayError(Exception):
    """A refusal in the contract's terms, turned into `{"code", "detail"}` by the core."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "detail": self.detail}
        if self.errors:
            body["errors"] = self.errors
        return body

    def response(self) -> Response:
        return Response(self.status, self.as_body(), dict(self.headers))


class ValidationError(GatewayError):
    def __init__(self, errors: dict[str, list[str]], detail: str = "") -> None:
        fields = ", ".join(sorted(errors))
        super().__init__(
            400, "VALIDATION_ERROR", detail or f"invalid fields: {fields}", errors
        )


def refuse(code: str, detail: str) -> GatewayError:
    """A Sage Pro business rule refused the document (HTTP 422)."""
    return GatewayError(422, code, detail)


def not_found(code: str, detail: str) -> GatewayError:
    return GatewayError(404, code, detail)


def locked(detail: str) -> GatewayError:
    return GatewayError(
        423, "RECORD_LOCKED", detail, headers={"Retry-After": LOCKED_RETRY_AFTER}
    )


def unavailable(detail: str) -> GatewayError:
    return GatewayError(
        503, "UNAVAILABLE", detail, headers={"Retry-After": UNAVAILABLE_RETRY_AFTER}
    )


NOT_SUPPORTED_AT_SITE = "NOT_SUPPORTED_AT_SITE"


def not_supported(what: str) -> GatewayError:
    """A document kind the site mapping does not cover (yet): HTTP 501, never retried.
    The portal routes the document to a review item that says so."""
    return GatewayError(
        501,
        NOT_SUPPORTED_AT_SITE,
        f"{what} are not supported at this site: the agent's site mapping does not "
        "cover the Sage Pro tables they need yet (docs/agent-install.md, 'Document "
        "kinds'). Post it in Sage Pro by hand.",
    )
