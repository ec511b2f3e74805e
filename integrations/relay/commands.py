"""Commands relayed to an agent: queue, lease, answer, cancel.

Every state change is one conditional UPDATE, so the races settle in the database:
a lease and a cancel both change a command only `WHERE state='queued'`, and only one
of them can win; an answer changes only a leased command (a late answer to an
abandoned one is stored but changes nothing).

The command row must be visible to the agent's poll (another process) while the
portal waits for the answer, so it has to be committed before the wait. The
pipeline calls Sage Pro outside any transaction (it is built that way: see
`processing.choose_receipt`, `posting.send_posting`); `command_db()` checks it on each
call. Should a caller hold a transaction anyway, on PostgreSQL the command is written
through a second connection of its own (the `relay` alias, made on first use) so it
commits at once; on SQLite that second connection would wait for the caller's write
lock until it timed out, so the call is refused with an error that says why.
"""

import base64
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from integrations.models import Agent, Connection, RelayCommand
from integrations.relay import signing

RELAY_ALIAS = "relay"
# Headers a relayed command carries; the API key and anything the transport adds
# (Authorization, Content-Length, ...) stay behind: the signature is the credential.
FORWARDED_HEADERS = ("accept", "content-type", "idempotency-key", "sage-company")

log = logging.getLogger(__name__)


class RelayInTransactionError(RuntimeError):
    """The relay transport was called inside a database transaction on SQLite."""


def in_transaction(alias: str = "default") -> bool:
    """Whether the caller holds a real transaction (a test case's wrapping atomic
    blocks do not count: they are rolled back, never committed)."""
    connection = connections[alias]
    return connection.in_atomic_block and any(
        not getattr(block, "_from_testcase", False)
        for block in connection.atomic_blocks
    )


def command_db() -> str:
    """The database alias to write and read commands through: see the module doc."""
    if not in_transaction():
        return "default"
    if connections["default"].vendor == "sqlite":
        raise RelayInTransactionError(
            "A Sage Pro call through the agent relay was made inside a database "
            "transaction. On SQLite the agent could not see the command until that "
            "transaction commits; make the call outside transaction.atomic()."
        )
    return relay_connection_alias()


def relay_connection_alias() -> str:
    """A second connection to the default database, this thread's own, under the
    alias `relay`. It is made from the default alias's settings when first needed
    (so no settings change is needed) and lives like a persistent connection."""
    local = connections._connections  # type: ignore[attr-defined]
    try:
        relay = getattr(local, RELAY_ALIAS)
    except AttributeError:
        relay = connections.create_connection("default")
        relay.alias = RELAY_ALIAS
        connections[RELAY_ALIAS] = relay
    relay.close_if_unusable_or_obsolete()
    return RELAY_ALIAS


def close_relay_connection() -> None:
    """Close this thread's relay connection, if it has one."""
    local = connections._connections  # type: ignore[attr-defined]
    relay = getattr(local, RELAY_ALIAS, None)
    if relay is not None:
        relay.close()


def enqueue(
    connection: Connection,
    *,
    method: str,
    path: str,
    query: list[list[str]],
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    lease_seconds: float | None = None,
    using: str = "default",
) -> RelayCommand:
    """Store one command for the agent serving `connection` (committed at once)."""
    now = timezone.now()
    kept = {k: v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS}
    lease = lease_seconds if lease_seconds is not None else timeout / 2
    key = next((v for k, v in kept.items() if k.lower() == "idempotency-key"), "")
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
        if "\x00" in text:  # no database text column takes NUL
            raise UnicodeError
    except UnicodeError:  # carried exactly, so the agent answers what was sent
        text, encoding = base64.b64encode(body).decode(), "base64"
    with transaction.atomic(using=using):
        return RelayCommand.objects.using(using).create(
            connection_id=connection.pk,
            company=(connection.company_id or "01")[:2],
            method=method.upper(),
            path=path,
            query=query,
            headers=kept,
            body=text,
            body_encoding=encoding,
            idempotency_key=key[:200],
            created_at=now,
            lease_deadline=now + timedelta(seconds=lease),
            expires_at=now + timedelta(seconds=timeout),
        )


def lease(agent: Agent, limit: int, now: datetime | None = None) -> list[RelayCommand]:
    """Lease up to `limit` queued commands of the agent's connections, oldest first."""
    now = now or timezone.now()
    waiting = RelayCommand.objects.filter(
        state=RelayCommand.State.QUEUED,
        connection__agent=agent,
        connection__transport=Connection.Transport.AGENT,
        lease_deadline__gt=now,
    )
    ids = list(
        waiting.order_by("created_at", "pk").values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return []
    lease_id = uuid.uuid4().hex
    # Conditional: a command cancelled (or leased by another poll) since the read
    # above is left alone.
    RelayCommand.objects.filter(
        pk__in=ids, state=RelayCommand.State.QUEUED, lease_deadline__gt=now
    ).update(
        state=RelayCommand.State.LEASED, agent=agent, lease_id=lease_id, leased_at=now
    )
    return list(
        RelayCommand.objects.filter(lease_id=lease_id).order_by("created_at", "pk")
    )


def cancel_unleased(command_id: int, using: str = "default") -> bool:
    """Cancel a command nobody leased; False when an agent leased it first."""
    return bool(
        RelayCommand.objects.using(using)
        .filter(pk=command_id, state=RelayCommand.State.QUEUED)
        .update(state=RelayCommand.State.CANCELLED, finished_at=timezone.now())
    )


def abandon(command_id: int, using: str = "default") -> bool:
    """Stop waiting for a leased command; False when its answer arrived first."""
    return bool(
        RelayCommand.objects.using(using)
        .filter(pk=command_id, state=RelayCommand.State.LEASED)
        .update(state=RelayCommand.State.ABANDONED, finished_at=timezone.now())
    )


def for_agent(command: RelayCommand, agent: Agent) -> dict[str, Any]:
    """The command as the agent receives it, signed with the agent's key."""
    data: dict[str, Any] = {
        "id": command.pk,
        "agent": agent.pk,
        "company": command.company,
        "method": command.method,
        "path": command.path,
        "query": [list(pair) for pair in command.query],
        "headers": dict(command.headers),
        "body": command.body,
        "body_encoding": command.body_encoding,
        "idempotency_key": command.idempotency_key,
        "expires_at": command.expires_at.astimezone(UTC).isoformat(),
    }
    data["signature"] = signing.sign(data, agent.signing_key)
    return data


def record_result(
    command: RelayCommand,
    *,
    status: int | None,
    headers: dict[str, str],
    body: str,
    refusal: str = "",
) -> str:
    """Store the agent's answer (or refusal) to a command it leased; returns the
    command's state after. Repeating an answer changes nothing; an answer to an
    abandoned command is kept for the record but the command stays abandoned."""
    if command.answered_at is not None or command.state == RelayCommand.State.REFUSED:
        if refusal:
            # The agent refused a command it had already answered: something served
            # it a second time (a replay). Nothing ran; keep a trace of it.
            log.warning(
                "agent %s refused command %s, which it had answered before: %s",
                command.agent_id,
                command.pk,
                refusal[:200],
            )
        return command.state
    now = timezone.now()
    fields: dict[str, Any] = {
        "answered_at": now,
        "status": status,
        "response_headers": headers,
        "response_body": body,
        "refusal": refusal[:200],
    }
    state = RelayCommand.State.REFUSED if refusal else RelayCommand.State.ANSWERED
    changed = RelayCommand.objects.filter(
        pk=command.pk, state=RelayCommand.State.LEASED, answered_at=None
    ).update(state=state, finished_at=now, **fields)
    if not changed:
        RelayCommand.objects.filter(pk=command.pk, answered_at=None).update(**fields)
    return RelayCommand.objects.filter(pk=command.pk).values_list("state", flat=True)[0]


def prune(days: int = 7) -> int:
    """Delete finished commands older than `days` (their answers live on in the
    pipeline's own records); returns how many went. For the sweeper to call."""
    cutoff = timezone.now() - timedelta(days=days)
    finished = [
        RelayCommand.State.ANSWERED,
        RelayCommand.State.CANCELLED,
        RelayCommand.State.ABANDONED,
        RelayCommand.State.REFUSED,
    ]
    deleted, _ = RelayCommand.objects.filter(
        state__in=finished, created_at__lt=cutoff
    ).delete()
    return deleted
