"""The direct HTTP binding: the contract at `/api/v1` over WSGI.

For the sandbox-like setup and sites on a VPN (the relay needs no inbound port). The
bearer key is compared in constant time (as its SHA-256) and never logged; a missing or
wrong key is `401 UNAUTHORIZED` with `WWW-Authenticate: Bearer`. Bodies over the limit
are refused (400) before they are read. Whatever happens, the answer is never a 5xx
other than 503.

`serve(agent, host, port)` runs `waitress` when it is installed, else the stdlib
`wsgiref` server with a thread per request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sagepro_agent.config import DEFAULT_MAX_BODY, api_key_matches, hash_api_key
from sagepro_agent.wire import Request, Response

log = logging.getLogger("sagepro_agent.http")

PREFIX = "/api/v1"
REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Entity",
    423: "Locked",
    503: "Service Unavailable",
}
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_app(
    agent: Any,
    api_key: str | None = None,
    *,
    api_key_sha256: str | None = None,
    max_body: int | None = None,
) -> WSGIApp:
    """The WSGI app over `agent.gateway.handle`. The key is given in clear (tests,
    `api_key_env`) or as its SHA-256 (the site mapping's `api_key_sha256`)."""
    expected = api_key_sha256 or (hash_api_key(api_key) if api_key else "")
    if not expected:
        mapping = getattr(agent, "mapping", None)
        expected = mapping.api_key_hash() if mapping is not None else ""
    limit: int = DEFAULT_MAX_BODY
    if max_body is not None:
        limit = max_body
    elif getattr(agent, "mapping", None) is not None:
        limit = agent.mapping.max_body
    handle = agent.gateway.handle

    def app(
        environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        try:
            response = answer(environ)
        except Exception:
            log.exception("the HTTP binding failed")
            response = error(
                503,
                "UNAVAILABLE",
                "the agent met an unexpected error",
                {"Retry-After": "30"},
            )
        body = response.encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ]
        headers += list(response.headers.items())
        status = response.status
        start_response(f"{status} {REASONS.get(status, 'Status')}", headers)
        return [body]

    def answer(environ: dict[str, Any]) -> Response:
        # WSGI hands the path over as latin-1 decoded bytes; the contract's keys are UTF-8.
        raw_path = environ.get("PATH_INFO", "") or "/"
        path = raw_path.encode("latin-1", "replace").decode("utf-8", "replace")
        if not authorised(environ.get("HTTP_AUTHORIZATION", ""), expected):
            return error(
                401,
                "UNAUTHORIZED",
                "missing or wrong API key",
                {"WWW-Authenticate": 'Bearer realm="sagepro-agent"'},
            )
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return error(
                404, "NOT_FOUND", f"no resource {path}; the API is under {PREFIX}"
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > limit:
            return Response(
                400,
                {
                    "code": "VALIDATION_ERROR",
                    "detail": "invalid fields: body",
                    "errors": {"body": [f"must be at most {limit} bytes"]},
                },
            )
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        query = tuple(
            parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        )
        request = Request(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=path[len(PREFIX) :] or "/",
            query=query,
            headers=headers,
            body=body,
        )
        response = handle(request)
        # 501 NOT_SUPPORTED_AT_SITE is an answer of the contract; any other 5xx is ours.
        if response.status >= 500 and response.status not in (501, 503):
            return error(
                503, "UNAVAILABLE", "the agent could not answer", {"Retry-After": "30"}
            )
        return response

    return app


def authorised(header: str, expected_hash: str) -> bool:
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and api_key_matches(token.strip(), expected_hash)


def error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(status, {"code": code, "detail": detail}, headers or {})


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Access log without the Authorization header (wsgiref logs only the line).
        log.info("%s %s", self.address_string(), format % args)


def make_server_for(
    agent: Any, host: str, port: int, app: WSGIApp | None = None
) -> WSGIServer:
    """A threaded stdlib server (port 0 = any free port: see `server.server_port`)."""
    return make_server(
        host,
        port,
        app or make_app(agent),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )


def serve(
    agent: Any, host: str, port: int, *, stop_event: threading.Event | None = None
) -> None:
    """Serve until `stop_event` is set (or forever)."""
    app = make_app(agent)
    try:
        from waitress import create_server  # type: ignore[import-untyped]
    except ImportError:
        create_server = None
    if create_server is not None:
        wserver = create_server(app, host=host, port=port, threads=8)
        log.info(
            "serving the gateway contract on http://%s:%s%s (waitress)",
            host,
            port,
            PREFIX,
        )
        if stop_event is None:
            wserver.run()
            return
        thread = threading.Thread(target=wserver.run, daemon=True)
        thread.start()
        stop_event.wait()
        wserver.close()
        thread.join(timeout=5)
        return
    server = make_server_for(agent, host, port, app)
    log.info(
        "serving the gateway contract on http://%s:%s%s",
        host,
        server.server_port,
        PREFIX,
    )
    if stop_event is None:
        server.serve_forever()
        return
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop_event.wait()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
