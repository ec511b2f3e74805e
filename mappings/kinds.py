"""Why a payment waits for a person: the review kinds the matcher and the pipeline open.

`integrations.models.ReviewItem.Kind` is this enum, so a decision's kind and the stored
review item's kind cannot drift apart by spelling.
"""

from django.db.models import TextChoices


class ReviewKind(TextChoices):
    UNMATCHED = "unmatched", "No matching open invoice"
    # Both our own validation (nothing was sent) and Sage Pro's refusal (sent and
    # refused) open this kind; the item's reason says which.
    VALIDATION = "validation", "Needs correcting before posting"
    DEAD = "dead", "Posting gave up after retries"
    UNMAPPED_STATUS = "unmapped_status", "Status not in the status map"
    CARD_DATA = "card_data", "Sender included card data"
    REVERSAL = "reversal", "Voided or refunded after its receipt posted"
    OVERPAYMENT = "overpayment", "Paid more than the invoice balance"
    UNDERPAYMENT = "underpayment", "Paid less than the invoice balance"
    POSSIBLE_DUPLICATE = "possible_duplicate", "Possibly paid twice"
    AGENT_JOURNAL = "agent_journal", "The Sage Pro agent could not finish a write"
    # Issue 14: every kind of money movement.
    REFUND = "refund", "Refund or void needs a decision"
    UNSUPPORTED_DOCUMENT = "unsupported_document", "Not supported at this Sage Pro site"
    CHARGEBACK = "chargeback", "Chargeback needs a decision"
    ORDER = "order", "Storefront order needs a decision"
    # Issue 15: getting paid.
    CHARGE = "charge", "Card charge needs a decision"
