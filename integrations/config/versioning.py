"""Version history of connections, on top of the configuration history in mappings."""

from mappings import versioning

# Left out of a connection's versions: the secret, and timestamps that change on every
# save (they would make every version differ from the last).
CONNECTION_EXCLUDE = ("password", "created_at", "updated_at")


def register_connection() -> None:
    """Version connections; rolling back a deleted one restores its rule rows too.

    Called from the integrations app's `ready()`, which runs before the mappings app's,
    so connections come first in the history's model list.
    """
    from integrations.models import Connection

    versioning.register(
        Connection, exclude=CONNECTION_EXCLUDE, owns_rows_by="connection_id"
    )
