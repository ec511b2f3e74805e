"""The agent's own journal (SQLite on the agent's disk): every receipt's plan and the
progress of its steps, the facts Sage tables have no column for (idempotency key,
request hash, requested amounts), and the per-company change journal the feeds serve."""

from sagepro_agent.journal.db import Entry, Journal

__all__ = ["Entry", "Journal"]
