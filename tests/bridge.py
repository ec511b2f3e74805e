"""Route `requests` calls to in-process Django views.

The sandbox emulators are ordinary Django views. In tests, every outbound HTTP call to
`http://testserver/...` is answered by the Django test client, so the connectors, the
emulators and the portal's own webhook talk to each other exactly as over a socket,
with no network. Any other URL is refused by `responses`.
"""

import re
from urllib.parse import urlsplit

import responses
from django.test import Client

TESTSERVER = "http://testserver"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _forward(request):  # noqa: ANN001, ANN202
    parts = urlsplit(request.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {
        k: v
        for k, v in request.headers.items()
        if k.lower() not in {"content-length", "host", "content-type"}
    }
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    content_type = request.headers.get("Content-Type", "application/octet-stream")
    client = Client(REMOTE_ADDR="127.0.0.1")
    response = client.generic(
        request.method, path, data=body, content_type=content_type, headers=headers
    )
    out_headers = {
        k: v for k, v in response.items() if k.lower() not in {"content-length"}
    }
    return response.status_code, out_headers, response.content


def register(mock: responses.RequestsMock) -> None:
    pattern = re.compile(re.escape(TESTSERVER) + r"/.*")
    for method in _METHODS:
        mock.add_callback(method, pattern, callback=_forward)
