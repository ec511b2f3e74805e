"""One contract request and its answer, independent of how they travelled.

The direct HTTP binding (`sagepro_agent.http`) and the relay client
(`sagepro_agent.relay`) both turn what they received into a `Request`, hand it to the
gateway core's `handle(request) -> Response`, and send the `Response` back. The
transport authenticates the caller (bearer key or signed relay command) before the
core sees anything; the core trusts nothing in the request itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str  # "GET", "POST", ...
    path: str  # relative to /api/v1, with a leading slash: "/invoices/10001"
    query: tuple[tuple[str, str], ...] = ()  # decoded pairs, in order, repeats kept
    headers: Mapping[str, str] = field(default_factory=dict)  # any case; see header()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def params(self) -> dict[str, str]:
        """Query parameters, the last value winning (as Django's QueryDict.get does)."""
        return dict(self.query)


@dataclass
class Response:
    status: int
    # JSON-able: dicts, lists, str, int, bool, None (money is already a string).
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        return json.dumps(self.body, default=_default, separators=(",", ":")).encode()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


Handler = Callable[[Request], Response]
