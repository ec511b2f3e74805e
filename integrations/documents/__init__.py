"""The Sage Pro cash receipt: what it is built from, how, what a reviewer may correct,
and what a posting sends.

- `sources`: loaders (field mappings, GL rules, rates, Sage Pro's periods and chart,
  read through the mirror of Sage Pro).
- `build`: `build_cash_receipt`, one function per step, and the preview.
- `overrides`: the fields a reviewer may correct and why others are refused.
- `sending`: the receipt a posting sends now, and how a refusal is described.
- `matching`: the plain values `mappings.matching` decides on, and `place`.

The receipt itself is `integrations.connectors.sagepro.CashReceipt`.
"""

from integrations.connectors.sagepro import Application, CashReceipt
from integrations.documents.build import (
    MappingUse,
    ReceiptDocument,
    amount_problem,
    build_cash_receipt,
    payment_amount,
    preview_cash_receipt,
)
from integrations.documents.matching import Placement, place
from integrations.documents.overrides import (
    CORRECTABLE_FIELDS,
    DATE_CORRECTION_MAX_DAYS,
    PROTECTED_FIELDS,
    SPECS,
    TARGET_FIELDS,
    OverrideError,
    check_overrides,
    override_problems,
)
from integrations.documents.sending import (
    FIELD_FOR_CODE,
    NOT_SENT,
    document_for_send,
    needs_rebuild,
    problem_summary,
    refusal_reason,
    refused_field,
    stored_values,
)
from integrations.documents.sources import (
    SageFacts,
    find_invoice,
    invoice_number_for,
    load_field_mappings,
    load_gl_rules,
    load_rate,
    source_for,
    status_rule_for,
    transaction_from_record,
)

__all__ = [
    "CORRECTABLE_FIELDS",
    "DATE_CORRECTION_MAX_DAYS",
    "FIELD_FOR_CODE",
    "NOT_SENT",
    "PROTECTED_FIELDS",
    "SPECS",
    "TARGET_FIELDS",
    "Application",
    "CashReceipt",
    "MappingUse",
    "OverrideError",
    "Placement",
    "ReceiptDocument",
    "SageFacts",
    "amount_problem",
    "build_cash_receipt",
    "check_overrides",
    "document_for_send",
    "find_invoice",
    "invoice_number_for",
    "load_field_mappings",
    "load_gl_rules",
    "load_rate",
    "needs_rebuild",
    "override_problems",
    "payment_amount",
    "place",
    "preview_cash_receipt",
    "problem_summary",
    "refusal_reason",
    "refused_field",
    "source_for",
    "status_rule_for",
    "stored_values",
    "transaction_from_record",
]
