"""The relay transport of the Sage Pro connector: the gateway is an on-site agent that
the portal cannot call, so each request is stored as a command the agent leases on its
next poll, and its answer is read back from the same row.

Everything above `request()` is `SageProConnector`'s, so the error mapping is the
direct transport's:

- a command no agent leased before its lease deadline (half the timeout) is
  cancelled, atomically against a lease, and raised as `UNAVAILABLE` with
  `outcome_unknown=False`: it never ran, sending it again is safe;
- a command leased but unanswered when the timeout runs out is `TIMEOUT`, with
  `outcome_unknown=True` for a write: the pipeline's look-up by idempotency key
  finds out what happened (a late answer is stored but changes nothing);
- a command the agent refused (bad signature, expired, replayed) never ran:
  `UNAVAILABLE`, transient, with the agent's reason.

Unlike the other connectors this one writes to the database: the command row is the
wire.
"""

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from .base import DEFAULT_TIMEOUT, ConnectorError, encode_json
from .sagepro import SageProConnector

# Test hook: called on every turn of the wait loop, so an in-process test can run one
# agent poll cycle (through tests/bridge.py) while the portal waits.
PUMP: Callable[[], None] | None = None
WAIT_INTERVAL = 0.02
MAX_WAIT_INTERVAL = 0.1
PLACEHOLDER_URL = "https://agent.relay.invalid/api/v1"


class RelaySageProConnector(SageProConnector):
    """`SageProConnector` whose requests travel through the relay to an agent."""

    system = "Sage Pro agent"

    def __init__(
        self,
        connection: Any,  # integrations.models.Connection (no model import here)
        company_id: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lease_seconds: float | None = None,
    ) -> None:
        company = company_id or connection.company_id or "01"
        super().__init__(PLACEHOLDER_URL, "", company, timeout=timeout)
        self.session.headers.pop("Authorization", None)
        self.connection = connection
        self.lease_seconds = lease_seconds

    def __repr__(self) -> str:
        return (
            f"RelaySageProConnector({self.connection.slug!r}, "
            f"company_id={self.company_id!r})"
        )

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Relay one request and return the agent's answer as a `requests.Response`."""
        from integrations.models import Agent
        from integrations.relay import commands

        agent_id = self.connection.agent_id
        if (
            agent_id is None
            or not Agent.objects.filter(pk=agent_id, revoked_at=None).exists()
        ):
            raise self._unavailable(
                method,
                path,
                "no enrolled agent serves this connection; add one (or enrol it "
                "again) on the portal's Agents page",
            )
        if "json" in kwargs:
            kwargs["data"] = encode_json(kwargs.pop("json"))
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        prepared = self.session.prepare_request(
            requests.Request(
                method,
                self.url(path),
                params=kwargs.get("params"),
                headers=kwargs.get("headers"),
                data=kwargs.get("data"),
            )
        )
        url = urlsplit(prepared.url or "")
        base_path = urlsplit(self.base_url).path
        body = prepared.body or b""
        using = commands.command_db()
        command = commands.enqueue(
            self.connection,
            method=method,
            path=url.path[len(base_path) :] or "/",
            query=[list(p) for p in parse_qsl(url.query, keep_blank_values=True)],
            headers={k: str(v) for k, v in prepared.headers.items()},
            body=body if isinstance(body, bytes) else str(body).encode(),
            timeout=self.timeout,
            lease_seconds=self.lease_seconds,
            using=using,
        )
        return self._wait(command.pk, method, path, prepared, using)

    def _wait(
        self,
        command_id: int,
        method: str,
        path: str,
        prepared: requests.PreparedRequest,
        using: str,
    ) -> requests.Response:
        from integrations.models import RelayCommand
        from integrations.relay import commands

        rows = RelayCommand.objects.using(using)
        interval = WAIT_INTERVAL
        while True:
            if PUMP is not None:
                PUMP()
            row = rows.get(pk=command_id)
            now = _now()
            if row.state == RelayCommand.State.QUEUED and now >= row.lease_deadline:
                if commands.cancel_unleased(command_id, using=using):
                    raise self._unavailable(
                        method, path, "no agent took it in time (is the agent online?)"
                    )
                row = rows.get(pk=command_id)  # leased just now
            elif row.state == RelayCommand.State.LEASED and now >= row.expires_at:
                if commands.abandon(command_id, using=using):
                    raise ConnectorError(
                        f"{self.system} did not answer {method} {path} in time",
                        transient=True,
                        code="TIMEOUT",
                        outcome_unknown=method != "GET",
                    )
                row = rows.get(pk=command_id)  # answered just now
            if row.state == RelayCommand.State.ANSWERED:
                return _response(row, prepared)
            if row.state == RelayCommand.State.REFUSED:
                raise self._unavailable(
                    method, path, f"the agent refused it: {row.refusal}"
                )
            if row.state == RelayCommand.State.CANCELLED:
                raise self._unavailable(method, path, "the command was cancelled")
            if row.state == RelayCommand.State.ABANDONED:
                raise ConnectorError(
                    f"{self.system} did not answer {method} {path} in time",
                    transient=True,
                    code="TIMEOUT",
                    outcome_unknown=method != "GET",
                )
            time.sleep(interval)
            interval = min(interval * 2, MAX_WAIT_INTERVAL)

    def _unavailable(self, method: str, path: str, why: str) -> ConnectorError:
        return ConnectorError(
            f"{self.system} for {self.connection.slug} did not run {method} {path}: {why}",
            transient=True,
            code="UNAVAILABLE",
            outcome_unknown=False,
        )


def _now() -> Any:
    from django.utils import timezone

    return timezone.now()


def _response(row: Any, prepared: requests.PreparedRequest) -> requests.Response:
    response = requests.Response()
    response.status_code = int(row.status)
    response.headers = CaseInsensitiveDict(row.response_headers or {})
    if row.response_body and "Content-Type" not in response.headers:
        response.headers["Content-Type"] = "application/json"
    response._content = (row.response_body or "").encode()
    response.encoding = "utf-8"
    response.url = prepared.url or ""
    response.request = prepared
    response.reason = ""
    return response
