"""Records of everything that crosses the boundary, and the state of every payment.

One module per job: `storage` (what every row must hold to be stored), `connections`,
`inbound` (deliveries and events), `payments` (transactions, history, postings),
`review` (review items and decisions), `operations` (leases, runs, batches,
reconciliations, alerts) and `mirror` (the local copy of Sage Pro's reference data).
Import the models from here.
"""

# Issue 14's and 15's records, one module per money movement; import them from their
# module.
from integrations.models import (  # noqa: E402, F401 - importing registers the models
    autopay,
    bundles,
    cards,
    chargebacks,
    charges,
    refunds,
    storefront,
    unapplied,
)
from integrations.models.agents import (
    Agent,
    AgentReviewEntry,
    EnrolmentCode,
    RelayCommand,
)
from integrations.models.connections import Connection, Environment, WebhookSecret
from integrations.models.inbound import Event, InboundDelivery
from integrations.models.mirror import (
    MirroredCustomer,
    MirroredGlAccount,
    MirroredInvoice,
    MirroredPeriod,
    MirrorState,
)
from integrations.models.operations import (
    Alert,
    Lease,
    ReconciliationLine,
    ReconciliationRun,
    SettlementBatch,
    SyncRun,
)
from integrations.models.payments import (
    GATEWAY_STATUS_RANK,
    DeadLetter,
    PaymentTransaction,
    Posting,
    TransactionHistory,
)
from integrations.models.review import OverrideRequest, ReviewDecision, ReviewItem
from integrations.models.storage import (
    CENT,
    MAX_JSON_DEPTH,
    InvalidAmountError,
    StorableValuesMixin,
    TooDeeplyNestedError,
    is_nested_deeper,
    money_in_range,
    money_limit,
    money_problem,
    saved_user,
    storable_text,
    validate_time_zone,
)
from mappings.models import GatewayStatus, PaymentStatus  # noqa: F401 - re-exported

__all__ = [
    "Agent",
    "AgentReviewEntry",
    "EnrolmentCode",
    "RelayCommand",
    "CENT",
    "GATEWAY_STATUS_RANK",
    "MAX_JSON_DEPTH",
    "Alert",
    "Connection",
    "DeadLetter",
    "Environment",
    "Event",
    "GatewayStatus",
    "InboundDelivery",
    "InvalidAmountError",
    "Lease",
    "MirrorState",
    "MirroredCustomer",
    "MirroredGlAccount",
    "MirroredInvoice",
    "MirroredPeriod",
    "PaymentStatus",
    "PaymentTransaction",
    "Posting",
    "ReconciliationLine",
    "ReconciliationRun",
    "OverrideRequest",
    "ReviewDecision",
    "ReviewItem",
    "SettlementBatch",
    "StorableValuesMixin",
    "SyncRun",
    "TooDeeplyNestedError",
    "TransactionHistory",
    "WebhookSecret",
    "is_nested_deeper",
    "money_in_range",
    "money_limit",
    "money_problem",
    "saved_user",
    "storable_text",
    "validate_time_zone",
]
