"""schemathesis over `/api/schema/`, in-process through the WSGI application.

Every documented operation (webhook endpoints, read API, mapping API) gets generated
cases, positive and negative, sent as a superuser with an API token. `not_a_server_error` must hold for every
case; the conformance checks (status code, content type, response schema) are
collected separately, because the schema does not yet document every 4xx answer.
"""

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import given, settings

SCHEMA_PATH = "/api/schema/"


@dataclass
class ApiFuzzResult:
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    nonconformant: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def connections_kept_open() -> Iterator[None]:
    """What Django's test client does: don't close the test's connection per request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def token_headers(user: object) -> dict[str, str]:
    """An API token for `user`: the WSGI client keeps its own cookie jar and drops a
    `Cookie` header, so a session would leave every call anonymous (401)."""
    from portal.models import ApiToken

    _, key = ApiToken.objects.create_token(user, name="schemathesis")
    return {"Authorization": f"Token {key}"}


def run_api_fuzz(
    user: object, examples_per_operation: int, base: settings | None = None
) -> ApiFuzzResult:
    import schemathesis
    from django.core.wsgi import get_wsgi_application
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    conformance = {
        "status_code_conformance": status_code_conformance,
        "content_type_conformance": content_type_conformance,
        "response_schema_conformance": response_schema_conformance,
    }
    result = ApiFuzzResult()
    headers = token_headers(user)
    with connections_kept_open():
        schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, get_wsgi_application())
        for item in schema.get_all_operations():
            operation = item.ok()
            test = _operation_test(operation, headers, conformance, result)
            settings(parent=base, max_examples=examples_per_operation)(test)()
    return result


def _operation_test(operation, headers, conformance, result):  # noqa: ANN001, ANN202
    from schemathesis.checks import not_a_server_error

    label = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy())
    def check(case):  # noqa: ANN001, ANN202
        response = case.call(headers=headers)
        result.cases += 1
        result.statuses[(label, response.status_code)] += 1
        try:
            case.validate_response(
                response, checks=[not_a_server_error], headers=headers
            )
        except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup
            result.server_errors.append(
                f"{label} -> {response.status_code}\n{case.as_curl_command()}\n{str(exc)[:800]}"
            )
        for name, check_fn in conformance.items():
            try:
                case.validate_response(response, checks=[check_fn], headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup
                key = f"{label} {name} (status {response.status_code})"
                result.nonconformant[key] += 1
                result.examples.setdefault(key, str(exc)[:400])

    return check
