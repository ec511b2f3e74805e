"""OpenAPI: document the error answers every API operation can give.

drf-spectacular documents the success answer of each view; the refusals come from DRF
itself (authentication, permissions, validation, filters, pagination) and from the HTTP
server (an over-long URL), the same for every view, so one hook adds them.
"""

from typing import Any

ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
FIELD_ERRORS = {
    "type": "object",
    "description": "Each field that was refused, with the reasons (or `detail`, "
    "`non_field_errors`).",
    "additionalProperties": {
        "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]
    },
}

AUTHENTICATED = {
    "401": (
        "Not signed in: no session and no `Authorization: Token <key>` header, an "
        "unknown key, or a key that expired, was revoked or was rotated (the message "
        "says which). The answer carries `WWW-Authenticate: Token`."
    ),
    "403": (
        "Signed in, but without the permission this endpoint needs (the model's "
        "`view_` permission for the read API; add or change field mappings for the "
        "mapping API), a token without the scope this endpoint needs (named in the "
        "message), or a session POST without its CSRF token."
    ),
}
BAD_REQUEST = {
    "get": "A filter value that is not one of its choices.",
    "post": "The body was refused; each field is named with the reason.",
}
NOT_FOUND = {
    "list": "A `page` past the last page.",
    "detail": "No record with this id.",
}
URI_TOO_LONG = (
    "The request line (URL and query) is longer than the server accepts "
    "(gunicorn: 4094 bytes)."
)


def _json(description: str, schema_ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": schema_ref}}},
    }


def document_error_responses(
    result: dict[str, Any], generator: object, request: object, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("FieldErrors", FIELD_ERRORS)
    error, field_errors = (
        "#/components/schemas/Error",
        "#/components/schemas/FieldErrors",
    )
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.setdefault("414", {"description": URI_TOO_LONG})
            if not operation.get("security"):
                continue  # Webhooks: they document their own answers.
            for code, description in AUTHENTICATED.items():
                responses.setdefault(code, _json(description, error))
            has_query = any(
                p.get("in") == "query" for p in operation.get("parameters", ())
            )
            if method == "post" or (method == "get" and has_query):
                responses.setdefault("400", _json(BAD_REQUEST[method], field_errors))
            if method == "get":
                kind = "detail" if path.rstrip("/").endswith("}") else "list"
                responses.setdefault("404", _json(NOT_FOUND[kind], error))
    return result
