"""Issue 14 (GL batches, customers, sales orders, items, locations): the Sage Pro
client's calls. Placeholder, filled by its owner."""

from integrations.connectors.base import HttpConnector


class OrderCalls(HttpConnector):
    """Mixed into `SageProConnector`."""
