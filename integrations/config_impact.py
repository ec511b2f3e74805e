"""What a configuration change would do to recent payments, before it is saved.

An integration admin who saves a status-map row, a GL rule or a field mapping first
sees its effect on the connection's last `SAMPLE_SIZE` transactions: which would now
fail validation, which would go to the suspense account, which would change GL account,
status or a field's value, with examples. The comparison runs the pure functions of
`mappings/` (status map, GL rules, transforms and field specs) over plain values read
from stored transactions, once with the rules as stored and once with the row as it
would be saved. Nothing here calls PayTrace or Sage Pro or writes anything.

`recent_samples` is the only loader; the `*_impact` functions take plain values.
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings

from integrations.documents.sources import source_for
from integrations.models import Connection, Event, PaymentTransaction
from mappings import fields as fm
from mappings import gl
from mappings.status import Action, StatusFacts, StatusRule, map_status

SAMPLE_SIZE = 200
EXAMPLES = 8
# What `invoice.*` in a source path reads: the Sage Pro invoice the payment names,
# looked up when the receipt is built (docs/sagepro-gateway.md §4.2), so stored
# records do not hold it.
INVOICE_FIELDS = (
    "invno",
    "custno",
    "invamt",
    "paidamt",
    "balance",
    "invdte",
    "artype",
    "status",
    "ornum",
    "ponum",
)

ACTION_LABELS = {
    Action.POST_RECEIPT: "post a cash receipt",
    Action.RECORD_ONLY: "record only",
    Action.REVERSE: "reverse the receipt",
    Action.REVIEW: "send to review",
}
SPECS = {spec.name: spec for spec in fm.CASH_RECEIPT_SPECS}


@dataclass(frozen=True)
class Sample:
    """One stored transaction as the rules see it."""

    transaction_id: str
    amount: Decimal
    currency: str
    source: dict[str, Any]
    gl_facts: gl.GlFacts
    status_facts: StatusFacts
    defaults: dict[str, Any]


@dataclass(frozen=True)
class Example:
    transaction_id: str
    amount: Decimal
    currency: str
    change: str


@dataclass
class Group:
    """Payments that the change affects the same way."""

    headline: str
    fails: bool = False
    fix: str = ""
    fix_url: str = ""
    count: int = 0
    examples: list[Example] = field(default_factory=list)

    def add(self, sample: Sample, change: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(
                Example(sample.transaction_id, sample.amount, sample.currency, change)
            )


@dataclass
class Impact:
    """The change's effect on `checked` recent payments, one group per kind of effect."""

    checked: int
    groups: list[Group] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(g.count for g in self.groups)

    @property
    def fails(self) -> int:
        return sum(g.count for g in self.groups if g.fails)


class _Grouper:
    def __init__(self, checked: int) -> None:
        self.impact = Impact(checked)
        self._by_key: dict[Hashable, Group] = {}

    def add(
        self, key: Hashable, sample: Sample, change: str, headline: str, **more: Any
    ) -> None:
        """File `sample` under `key`; a new key opens a group with `headline`."""
        group = self._by_key.get(key)
        if group is None:
            group = self._by_key[key] = Group(headline, **more)
            self.impact.groups.append(group)
        group.add(sample, change)

    def result(self) -> Impact:
        # Failures first, then the biggest groups.
        self.impact.groups.sort(key=lambda g: (not g.fails, -g.count))
        return self.impact


# --- loading ----------------------------------------------------------------------------


def recent_samples(connection: Connection, limit: int = SAMPLE_SIZE) -> list[Sample]:
    """The connection's last `limit` transactions as plain values (newest first)."""
    txns = list(
        PaymentTransaction.objects.filter(connection=connection)
        .select_related("connection")
        .order_by("-first_seen_at", "-pk")[:limit]
    )
    latest_event: dict[str, str] = {}
    for transaction_id, kind in (
        Event.objects.filter(
            connection=connection,
            transaction_id__in=[t.transaction_id for t in txns],
        )
        .order_by("occurred_at", "pk")
        .values_list("transaction_id", "type")
    ):
        latest_event[transaction_id] = kind
    return [_sample(txn, latest_event.get(txn.transaction_id, "")) for txn in txns]


def _sample(txn: PaymentTransaction, event_type: str) -> Sample:
    return Sample(
        transaction_id=txn.transaction_id,
        amount=txn.amount,
        currency=txn.currency,
        source=source_for(txn, None),
        gl_facts=gl.GlFacts(
            transaction_type=txn.transaction_type,
            card_brand=txn.card_brand,
            channel=txn.channel,
            amount=txn.amount,
            currency=txn.currency,
            customer=txn.customer_reference,
            invoice=txn.invoice_reference,
        ),
        status_facts=StatusFacts(
            event_type=event_type,
            transaction_type=txn.transaction_type,
            status_code=txn.status_code,
            status_message=txn.status_message,
        ),
        defaults={
            "custno": txn.customer_reference,
            "date": txn.posting_date(),
            "amount": txn.amount,
            "method": txn.connection.payment_method,
            "reference": txn.transaction_id,
            "invno": txn.invoice_reference,
        },
    )


def source_path_problem(connection: Connection, path: str) -> str | None:
    """Why `path` cannot be a field mapping's source for `connection`, or None."""
    head, _, rest = path.strip().partition(".")
    if head == "invoice":
        if rest in INVOICE_FIELDS:
            return None
        return (
            f"{path} is not a field of the Sage Pro invoice; use invoice. followed "
            f"by one of {', '.join(INVOICE_FIELDS)}."
        )
    return fm.path_problem(path, source_records(connection))


def source_records(connection: Connection, limit: int = SAMPLE_SIZE) -> list[dict]:
    """What a field mapping's source path reads, for the last `limit` transactions."""
    txns = PaymentTransaction.objects.filter(connection=connection).order_by(
        "-first_seen_at", "-pk"
    )[:limit]
    return [source_for(txn, None) for txn in txns]


# --- GL rules ---------------------------------------------------------------------------


def _gl_outcome(
    facts: gl.GlFacts, rules: Sequence[gl.GlRuleData], suspense: str
) -> tuple[str, str]:
    """(account, how): how is "rule", "suspense", "default" (no rules, no suspense:
    Sage Pro's default cash account) or "fail"."""
    if not rules and not suspense:
        return "", "default"
    choice = gl.choose_gl_account(facts, rules, suspense)
    if choice.rule is not None:
        return choice.account, "rule"
    if choice.used_suspense:
        return choice.account, "suspense"
    return "", "fail"


def gl_impact(
    samples: Sequence[Sample],
    before: Sequence[gl.GlRuleData],
    after: Sequence[gl.GlRuleData],
    suspense: str,
    suspense_url: str = "",
) -> Impact:
    """How the GL account of each sample changes from `before` to `after`."""
    grouper = _Grouper(len(samples))
    suspense = suspense.strip()
    for sample in samples:
        old, old_how = _gl_outcome(sample.gl_facts, before, suspense)
        new, new_how = _gl_outcome(sample.gl_facts, after, suspense)
        if (old, old_how) == (new, new_how):
            continue
        was = _account_words(old, old_how)
        if new_how == "fail":
            grouper.add(
                "fail",
                sample,
                f"was {was}; now fails: no suspense account",
                "would now fail validation: no GL rule matches them and the "
                "connection has no suspense account",
                fails=True,
                fix="Give the connection a suspense account (the account used "
                "when no rule matches), or add a rule that catches the rest.",
                fix_url=suspense_url,
            )
        elif old_how == "fail":
            grouper.add(
                "fixed",
                sample,
                f"now {_account_words(new, new_how)}",
                "would no longer fail for want of a GL account",
            )
        elif new_how == "suspense":
            grouper.add(
                ("suspense", new),
                sample,
                f"was {was}",
                f"would go to the suspense account {new}",
            )
        else:
            now = _account_words(new, new_how)
            grouper.add(
                ("move", was, now),
                sample,
                f"{was} → {now}",
                f"would change GL account from {was} to {now}",
            )
    return grouper.result()


def _account_words(account: str, how: str) -> str:
    if how == "default":
        return "Sage Pro's default cash account"
    if how == "fail":
        return "no account (failing)"
    return account


# --- status maps ------------------------------------------------------------------------


def _status_words(rule: StatusRule | None) -> str:
    if rule is None:
        return "no status-map row (the payment waits in review as an unmapped status)"
    action = ACTION_LABELS.get(rule.action, rule.action)
    return f"{rule.payment_status}, {action}"


def status_impact(
    samples: Sequence[Sample],
    before: Sequence[StatusRule],
    after: Sequence[StatusRule],
) -> Impact:
    """How each sample's mapped status and action change from `before` to `after`."""
    grouper = _Grouper(len(samples))
    for sample in samples:
        old = map_status(sample.status_facts, before)
        new = map_status(sample.status_facts, after)
        old_key = (old.payment_status, old.action) if old else None
        new_key = (new.payment_status, new.action) if new else None
        if old_key == new_key:
            continue
        was, now = _status_words(old), _status_words(new)
        to_review = new is None or new.action == Action.REVIEW
        grouper.add(
            (old_key, new_key),
            sample,
            _facts_words(sample.status_facts),
            f"would change from {was} to {now}",
            fails=to_review,
        )
    return grouper.result()


def _facts_words(facts: StatusFacts) -> str:
    parts = [
        f"event {facts.event_type}" if facts.event_type else "",
        f"type {facts.transaction_type}" if facts.transaction_type else "",
        f"status_code {facts.status_code}" if facts.status_code else "",
        f"message {facts.status_message}" if facts.status_message else "",
    ]
    return ", ".join(p for p in parts if p) or "(no status)"


# --- field mappings ---------------------------------------------------------------------


def _field_value(
    sample: Sample, target: str, rule: fm.FieldRule | None, ctx: fm.TransformContext
) -> tuple[Any, str | None]:
    """The target's value for a sample (the default without a rule), and the problem
    Sage Pro would have with it."""
    if rule is None:
        value = sample.defaults.get(target)
    else:
        try:
            value = rule.value_from(sample.source, ctx)
        except (fm.TransformError, TypeError, ValueError) as exc:
            return None, f"mapping failed: {exc}"
    spec = SPECS.get(target)
    if spec is None:
        return value, None
    problem = fm.value_problem(spec, value)
    if problem is None and target == "amount" and rule and not rule.converts_currency():
        typed = fm.coerce(value, spec)
        if typed != sample.amount:
            problem = f"is not the payment's amount {sample.amount}"
    return value, problem


def field_impact(
    samples: Sequence[Sample],
    target: str,
    before: fm.FieldRule | None,
    after: fm.FieldRule | None,
    time_zone: str,
) -> Impact:
    """How the target field's value of each sample changes from mapping `before` to
    `after` (None: no mapping, the default value)."""
    ctx = fm.TransformContext(
        gateway_zone=time_zone, business_zone=settings.BUSINESS_TIME_ZONE
    )
    grouper = _Grouper(len(samples))
    for sample in samples:
        old, old_problem = _field_value(sample, target, before, ctx)
        new, new_problem = _field_value(sample, target, after, ctx)
        if new_problem and not old_problem:
            grouper.add(
                ("fail", new_problem),
                sample,
                f"{target} {_show(old)} → {_show(new)}",
                f"would now fail validation: {target} {new_problem}",
                fails=True,
            )
        elif old_problem and not new_problem:
            grouper.add(
                "fixed",
                sample,
                f"{target} {_show(old)} → {_show(new)}",
                f"would no longer fail on {target}",
            )
        elif _show(old) != _show(new):
            grouper.add(
                "changed",
                sample,
                f"{_show(old)} → {_show(new)}",
                f"would get another {target}",
            )
    return grouper.result()


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(blank)"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
