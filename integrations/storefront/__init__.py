"""Storefront order-to-cash (issue 14 point 4): `webhook` (the edge), `flow` (orders,
payments, Sage Pro documents), `tasks` (the worker's entry points).

`payment_handoff(txn)` is the pipeline's hook (`processing.choose_receipt`): None
leaves the payment to the receipt path; a callable takes it over (the storefront flow),
and is called by `processing.commit_choice` inside its write transaction, returning
the event's outcome. Importing this package registers the `sales_order` sender.
"""

from collections.abc import Callable
from typing import Any


def payment_handoff(txn: Any) -> Callable[[], str] | None:
    from integrations.storefront import flow

    return flow.payment_handoff_for(txn)


def _register_senders() -> None:
    from integrations import sending
    from integrations.storefront import senders

    sending.register(senders.SALES_ORDER)


_register_senders()
