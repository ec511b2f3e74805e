"""Status maps: which PayTrace state means what in Sage Pro, and what the pipeline does.

Pure functions over plain values; `mappings.models.StatusMap` rows are loaded into
`StatusRule`s by the caller.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase


class Action:
    POST_RECEIPT = "post_receipt"
    RECORD_ONLY = "record_only"
    REVERSE = "reverse"
    REVIEW = "review"


@dataclass(frozen=True)
class StatusFacts:
    """What a PayTrace event says about a transaction's state."""

    event_type: str = ""
    transaction_type: str = ""
    status_code: str = ""
    status_message: str = ""
    response_code: int | None = None


@dataclass(frozen=True)
class StatusRule:
    gateway_status: str
    payment_status: str
    action: str
    event_type: str = ""
    transaction_type: str = ""
    status_code_pattern: str = ""
    status_message_pattern: str = ""
    response_code: int | None = None
    priority: int = 100
    id: int | None = None

    def matches(self, facts: StatusFacts) -> bool:
        """Blank conditions match anything; patterns are case-insensitive globs."""
        if self.event_type and self.event_type != facts.event_type:
            return False
        if (
            self.transaction_type
            and self.transaction_type.upper() != facts.transaction_type.upper()
        ):
            return False
        if self.status_code_pattern and not _glob(
            facts.status_code, self.status_code_pattern
        ):
            return False
        if self.status_message_pattern and not _glob(
            facts.status_message, self.status_message_pattern
        ):
            return False
        return self.response_code is None or self.response_code == facts.response_code

    def describe(self) -> str:
        parts = [
            f"event {self.event_type}" if self.event_type else "",
            f"type {self.transaction_type}" if self.transaction_type else "",
            f"status_code {self.status_code_pattern}"
            if self.status_code_pattern
            else "",
            f"message {self.status_message_pattern}"
            if self.status_message_pattern
            else "",
            f"response {self.response_code}" if self.response_code is not None else "",
        ]
        when = ", ".join(p for p in parts if p) or "anything"
        return f"#{self.id or '-'} {when} → {self.payment_status}/{self.action}"


def _glob(value: str, pattern: str) -> bool:
    return fnmatchcase(value.strip().upper(), pattern.strip().upper())


def map_status(facts: StatusFacts, rules: Sequence[StatusRule]) -> StatusRule | None:
    """Return the first rule (by priority, then id) that matches, or None."""
    for rule in sorted(rules, key=lambda r: (r.priority, r.id or 0)):
        if rule.matches(facts):
            return rule
    return None


# The defaults every new PayTrace connection starts with: the seed documents' three
# (Approved → Paid, Declined → Failed, Refunded → Refunded) by event type, then the
# meanings PayTrace documents for the export's `status_code` (GB* settled, Y pending
# settlement, N with a message saying void, decline or authorisation) for polled or
# confirmed records. Refund transactions never post a receipt: like voids, they reverse
# the sale's (a credit memo for a refund, a receipt reversal for a void).
DEFAULT_RULES: tuple[StatusRule, ...] = (
    StatusRule(
        "refunded",
        "Refunded",
        Action.REVERSE,
        transaction_type="REFUND",
        priority=5,
    ),
    StatusRule(
        "declined",
        "Failed",
        Action.RECORD_ONLY,
        event_type="transaction.declined",
        priority=10,
    ),
    StatusRule(
        "voided",
        "Voided",
        Action.REVERSE,
        event_type="transaction.voided",
        priority=20,
    ),
    StatusRule(
        "refunded",
        "Refunded",
        Action.RECORD_ONLY,
        event_type="transaction.refunded",
        priority=30,
    ),
    StatusRule(
        "settled",
        "Paid",
        Action.POST_RECEIPT,
        event_type="transaction.settled",
        priority=40,
    ),
    StatusRule(
        "approved",
        "Paid",
        Action.POST_RECEIPT,
        event_type="transaction.approved",
        priority=50,
    ),
    StatusRule(
        "settled", "Paid", Action.POST_RECEIPT, status_code_pattern="GB*", priority=60
    ),
    StatusRule(
        "settled",
        "Paid",
        Action.POST_RECEIPT,
        status_message_pattern="*SETTLED*",
        priority=61,
    ),
    StatusRule(
        "pending_settlement",
        "Paid",
        Action.POST_RECEIPT,
        status_code_pattern="Y",
        priority=70,
    ),
    StatusRule(
        "voided",
        "Voided",
        Action.REVERSE,
        status_code_pattern="N",
        status_message_pattern="*VOID*",
        priority=80,
    ),
    StatusRule(
        "declined",
        "Failed",
        Action.RECORD_ONLY,
        status_code_pattern="N",
        status_message_pattern="*DECL*",
        priority=81,
    ),
    StatusRule(
        "authorized",
        "Authorized",
        Action.RECORD_ONLY,
        status_code_pattern="N",
        status_message_pattern="*AUTH*",
        priority=82,
    ),
)
