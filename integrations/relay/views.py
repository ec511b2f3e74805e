"""The agent-facing API: JSON in, JSON out, a bearer token on every call but enrolment.

Bad input answers 400 with a message, a bad token 401, a command of another agent 404;
never a 5xx for anything the agent sent.
"""

import json
import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.models import Agent, RelayCommand
from integrations.relay import commands, enrolment, heartbeat

MAX_BODY = 8 * 1024 * 1024  # a batch of 100 receipts and its answer fit many times
MAX_WAIT = 25.0
MAX_COMMANDS = 20
# How often a waiting long poll looks for new commands: the floor of a relayed call's
# latency (one indexed query per agent per interval).
POLL_INTERVAL = 0.05
# Failed enrolments per address per window before the endpoint answers 429. The codes
# carry 128 bits, so this only keeps guessers from costing anything.
ENROL_FAILURES = 10
ENROL_WINDOW_SECONDS = 600


def _error(status: int, message: str, code: str) -> JsonResponse:
    response = JsonResponse({"code": code, "detail": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="sagepro-agent"'
    return response


def _json_body(request: HttpRequest) -> Any:
    if len(request.body) > MAX_BODY:
        raise ValueError(f"the body is larger than {MAX_BODY} bytes")
    try:
        return json.loads(request.body or b"{}", parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise ValueError("the body is not JSON") from exc


def _agent(request: HttpRequest) -> Agent | None:
    return enrolment.authenticate(request.headers.get("Authorization", ""))


def _unauthorised() -> JsonResponse:
    return _error(
        401,
        "The agent's token is missing, wrong or revoked. Enrol the agent again with a "
        "new code from the portal's Agents page.",
        "UNAUTHORIZED",
    )


@csrf_exempt
@require_POST
def enrol(request: HttpRequest) -> JsonResponse:
    """Trade `{code, name, version}` for `{agent_id, token, signing_key}`."""
    address = request.META.get("REMOTE_ADDR", "")
    throttle_key = f"agent-enrol-failures:{address}"
    if (cache.get(throttle_key) or 0) >= ENROL_FAILURES:
        return _error(
            429, "Too many failed enrolments from this address; wait.", "THROTTLED"
        )
    try:
        data = _json_body(request)
    except ValueError as exc:
        return _error(400, str(exc), "VALIDATION_ERROR")
    code = data.get("code") if isinstance(data, dict) else None
    if not isinstance(code, str) or not 10 <= len(code) <= 100:
        return _error(400, 'Send {"code": "<enrolment code>"}.', "VALIDATION_ERROR")
    version = data.get("version")
    try:
        credentials = enrolment.enrol(
            code.strip(), version if isinstance(version, str) else ""
        )
    except enrolment.EnrolmentError as exc:
        try:
            cache.incr(throttle_key)
        except ValueError:
            cache.set(throttle_key, 1, ENROL_WINDOW_SECONDS)
        return _error(401, str(exc), "INVALID_CODE")
    return JsonResponse(
        {
            "agent_id": credentials.agent_id,
            "token": credentials.token,
            "signing_key": credentials.signing_key,
        },
        status=201,
    )


@csrf_exempt
@require_POST
def poll(request: HttpRequest) -> JsonResponse:
    """Lease up to `max` commands, waiting up to `wait` seconds (at most 25) for one."""
    agent = _agent(request)
    if agent is None:
        return _unauthorised()
    try:
        data = _json_body(request)
        wait = _number(data, "wait", 0, MAX_WAIT, default=MAX_WAIT)
        limit = int(_number(data, "max", 1, MAX_COMMANDS, default=10))
    except ValueError as exc:
        return _error(400, str(exc), "VALIDATION_ERROR")
    deadline = time.monotonic() + wait
    while True:
        leased = commands.lease(agent, limit)
        if leased or time.monotonic() >= deadline:
            break
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        try:
            agent.refresh_from_db(fields=["revoked_at", "token_hash"])
        except type(agent).DoesNotExist:  # deleted while it waited
            return _unauthorised()
        if agent.is_revoked:
            return _unauthorised()
    return JsonResponse(
        {"commands": [commands.for_agent(command, agent) for command in leased]}
    )


@csrf_exempt
@require_POST
def result(request: HttpRequest, command_id: int) -> JsonResponse:
    """Store the answer `{status, headers, body}` or the refusal `{refused: reason}`
    to a command this agent leased."""
    agent = _agent(request)
    if agent is None:
        return _unauthorised()
    command = RelayCommand.objects.filter(pk=command_id, agent=agent).first()
    if command is None:
        return _error(404, f"This agent leased no command {command_id}.", "NOT_FOUND")
    try:
        data = _json_body(request)
        if not isinstance(data, dict):
            raise ValueError("the result is a JSON object")
        refusal = data.get("refused") or ""
        if not isinstance(refusal, str):
            raise ValueError("refused is a string: why the command was not run")
        status, headers, body = None, {}, ""
        if not refusal:
            status = data.get("status")
            if isinstance(status, bool) or not isinstance(status, int):
                raise ValueError("status is the HTTP status the agent answered")
            if not 100 <= status <= 599:
                raise ValueError("status is between 100 and 599")
            headers = _headers(data.get("headers"))
            body = "" if data.get("body") is None else dump_exact(data["body"])
    except RecursionError:
        return _error(400, "the body is nested too deeply", "VALIDATION_ERROR")
    except ValueError as exc:
        return _error(400, str(exc), "VALIDATION_ERROR")
    state = commands.record_result(
        command,
        status=status,
        headers=headers,
        body=body.replace("\x00", ""),
        refusal=refusal.replace("\x00", ""),
    )
    return JsonResponse({"id": command.pk, "state": state})


@csrf_exempt
@require_POST
def heartbeat_view(request: HttpRequest) -> JsonResponse:
    """Keep what the agent reports; open a review item per new needs_review entry."""
    agent = _agent(request)
    if agent is None:
        return _unauthorised()
    try:
        opened = heartbeat.record_heartbeat(agent, _json_body(request))
    except ValueError as exc:
        return _error(400, str(exc), "VALIDATION_ERROR")
    return JsonResponse(
        {
            "ok": True,
            "review_items_opened": opened,
            "heartbeat_seconds": getattr(settings, "AGENT_HEARTBEAT_SECONDS", 30),
        }
    )


def dump_exact(value: Any) -> str:
    """JSON text of a value parsed with `parse_float=Decimal`, every number written
    back exactly as the agent sent it (a number stays a number, 12.30 stays 12.30)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{dump_exact(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump_exact(v) for v in value) + "]"
    return json.dumps(value)


def _number(data: Any, name: str, low: float, high: float, *, default: float) -> float:
    if not isinstance(data, dict):
        raise ValueError("the body is a JSON object")
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"{name} is a number from {low:g} to {high:g}")
    return float(min(max(Decimal(value), Decimal(str(low))), Decimal(str(high))))


def _headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 50:
        raise ValueError("headers is an object of at most 50 names and string values")
    headers = {}
    for name, text in value.items():
        if not isinstance(text, str) or len(name) > 100 or len(text) > 1000:
            raise ValueError(f"header {name[:100]!r} is not a short string")
        headers[name] = text
    return headers
