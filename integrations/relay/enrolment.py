"""Enrolment: a one-time code, created by an admin, traded by an agent for its
credentials.

The code carries 128 random bits, lives ENROLMENT_CODE_MINUTES (default 15), is shown
once and stored only as a SHA-256 hash, and is used at most once (a conditional
update, so two agents racing with one code cannot both win). Trading it issues a new
bearer token (the portal keeps its hash) and a new signing key (kept encrypted); the
agent's previous credentials stop working at that moment. Rotating is creating a new
code: the current credentials keep working until the new code is traded.
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.models import Agent, EnrolmentCode
from integrations.models.agents import digest
from integrations.relay import signing


class EnrolmentError(Exception):
    """A code that cannot be traded: unknown, expired, used, or its agent revoked.
    One message for all of them, so a guess learns nothing."""


@dataclass(frozen=True)
class Credentials:
    agent_id: int
    token: str  # "<agent id>.<secret>", sent as a bearer token
    signing_key: str


def code_minutes() -> int:
    return getattr(settings, "ENROLMENT_CODE_MINUTES", 15)


def create_code(agent: Agent, minutes: int | None = None) -> str:
    """A new one-time code for `agent`: returned once, stored hashed."""
    if agent.is_revoked:
        raise EnrolmentError(
            f"Agent {agent} is revoked; add a new agent instead of re-enrolling it."
        )
    # 128 bits, in hex so it can never start with "-" and pass for a command option.
    code = secrets.token_hex(16)
    now = timezone.now()
    EnrolmentCode.objects.create(
        agent=agent,
        code_hash=digest(code),
        created_at=now,
        expires_at=now + timedelta(minutes=minutes or code_minutes()),
    )
    return code


def enrol(code: str, version: str = "") -> Credentials:
    """Trade `code` for new credentials, or raise EnrolmentError."""
    now = timezone.now()
    with transaction.atomic():
        found = (
            EnrolmentCode.objects.select_related("agent")
            .filter(code_hash=digest(code))
            .first()
        )
        if (
            found is None
            or found.agent.is_revoked
            or not EnrolmentCode.objects.filter(
                pk=found.pk, used_at=None, expires_at__gt=now
            ).update(used_at=now)
        ):
            raise EnrolmentError(
                "This enrolment code is not valid: it is unknown, expired or already "
                "used. Ask an administrator for a new one (Agents page, 'Create "
                "enrolment code')."
            )
        agent = found.agent
        secret = secrets.token_urlsafe(32)
        key = signing.new_key()
        agent.token_hash = digest(secret)
        agent.signing_key = key
        agent.enrolled_at = now
        if version:
            agent.version = version[:40]
        agent.save(
            update_fields=["token_hash", "signing_key", "enrolled_at", "version"]
        )
    return Credentials(agent.pk, f"{agent.pk}.{secret}", key)


def authenticate(header: str) -> Agent | None:
    """The agent a `Bearer <agent id>.<secret>` header belongs to, or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    agent_id, _, secret = token.strip().partition(".")
    if not agent_id.isdigit() or not secret or len(agent_id) > 18:
        return None
    agent = Agent.objects.filter(pk=int(agent_id)).first()
    if agent is None or not agent.token_matches(secret):
        return None
    return agent
