"""What an agent's heartbeat says, kept on its row; journal entries that need a person
become review items, one per entry, once."""

import json
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.models import Agent, AgentReviewEntry, ReviewItem, storable_text

MAX_ENTRIES = 100


class HeartbeatError(ValueError):
    """A heartbeat body that is not what the agent sends."""


def record_heartbeat(agent: Agent, data: Any) -> int:
    """Store the heartbeat on the agent; returns how many review items it opened."""
    if not isinstance(data, dict):
        raise HeartbeatError("a heartbeat is a JSON object")
    agent.last_heartbeat_at = timezone.now()
    agent.version = _text(data.get("version"), 40)
    reachable = data.get("sage_reachable")
    agent.sage_reachable = reachable if isinstance(reachable, bool) else None
    agent.journal_backlog = _count(data.get("journal_backlog"))
    # The agent reports `needs_review` as a count with the entries in
    # `needs_review_entries`; a list in `needs_review` is read as the entries.
    listed = data.get("needs_review")
    entries = _entries(data.get("needs_review_entries", listed))
    count = _count(data.get("needs_review_count", listed))
    agent.needs_review_count = count if count is not None else len(entries)
    integrity = data.get("last_integrity")
    agent.last_integrity = _small_json(integrity) if isinstance(integrity, dict) else {}
    agent.last_error = _text(data.get("last_error"), 2000)
    agent.save(
        update_fields=[
            "last_heartbeat_at",
            "version",
            "sage_reachable",
            "journal_backlog",
            "needs_review_count",
            "last_integrity",
            "last_error",
        ]
    )
    return sum(_open_once(agent, entry_id, summary) for entry_id, summary in entries)


def _open_once(agent: Agent, entry_id: str, summary: str) -> bool:
    if AgentReviewEntry.objects.filter(agent=agent, entry_id=entry_id).exists():
        return False
    try:
        with transaction.atomic():
            entry = AgentReviewEntry.objects.create(agent=agent, entry_id=entry_id)
            entry.review_item = ReviewItem.open(
                None,
                ReviewItem.Kind.AGENT_JOURNAL,
                storable_text(
                    f"The Sage Pro agent {agent.name} stopped journal entry {entry_id} "
                    f"because Sage Pro changed under it: {summary or 'no detail given'}. "
                    "Nothing was rolled back. Check the receipt in Sage Pro, finish or "
                    "undo it there, then resolve the entry on the agent "
                    "(python -m sagepro_agent recover) and dismiss this item."
                ),
                error_code="NEEDS_REVIEW",
            )
            entry.save(update_fields=["review_item"])
    except IntegrityError:  # a concurrent heartbeat opened it
        return False
    return True


def _entries(value: Any) -> list[tuple[str, str]]:
    """(entry id, summary) pairs from a list of entries: objects naming an `id`, or
    a company and idempotency key (the agent's journal entries), or bare ids."""
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            entry_id = item.get("id")
            if entry_id is None and item.get("idempotency_key"):
                entry_id = f"{item.get('company', '')}:{item['idempotency_key']}"
            summary = _describe(item)
        else:
            entry_id, summary = item, ""
        if isinstance(entry_id, (str, int)) and not isinstance(entry_id, bool):
            out.append((str(entry_id)[:100], _text(summary, 1000)))
        if len(out) >= MAX_ENTRIES:
            break
    return out


def _describe(entry: dict[str, Any]) -> str:
    parts = [
        f"{label} {entry[name]}"
        for name, label in (
            ("company", "company"),
            ("reference", "reference"),
            ("receipt_no", "receipt"),
            ("idempotency_key", "key"),
        )
        if entry.get(name)
    ]
    detail = entry.get("summary") or entry.get("reason") or entry.get("detail") or ""
    return "; ".join([str(detail), *parts] if detail else parts)


def _text(value: Any, limit: int) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return storable_text(text.replace("\x00", ""))[:limit]


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    """A JSON object any database takes (no NUL characters), at most 8 KB of it."""
    text = json.dumps(value, default=str, ensure_ascii=False).replace("\\u0000", "")
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates: "?"
    if len(text) > 8192:
        return {"summary": storable_text(text[:1000]), "truncated": True}
    return json.loads(storable_text(text))


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return max(0, min(value, 2**31 - 1))
