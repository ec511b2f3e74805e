"""Storefront order-to-cash (issue 14 point 4). Placeholder, filled by its owner.

`payment_handoff(txn)` is the pipeline's hook (`processing.choose_receipt`): None leaves
the payment to the receipt path; a callable takes it over (the storefront flow), and is
called by `processing.commit_choice` inside its write transaction, returning the
event's outcome.
"""

from collections.abc import Callable
from typing import Any


def payment_handoff(txn: Any) -> Callable[[], str] | None:
    return None
