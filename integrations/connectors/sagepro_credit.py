"""Issue 14 (credit memos, receipt reversal, applications of unapplied cash): the
Sage Pro client's calls. Placeholder, filled by its owner."""

from integrations.connectors.base import HttpConnector


class CreditCalls(HttpConnector):
    """Mixed into `SageProConnector`."""
