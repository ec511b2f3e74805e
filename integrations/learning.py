"""Learning from reviewers: proposals an admin accepts, links a reviewer remembers.

When reviewers place payments the same way several times, the portal proposes what
would have placed them by itself, as a `MatchingProposal`:

1. payer → customer: the payer's keys (PayTrace customer id, e-mail, billing name,
   card) placed at the same Sage Pro customer `LEARN_AFTER` times and never at another
   propose a customer mapping (`PayerLink`);
2. reference style → prefix word: a word glued to or standing before the invoice
   number ("REM10045", "Rechnung 10045") that the deciding rule's prefixes did not
   remove, in references reviewers resolved to that number, proposes the word as a
   prefix of the rule.

A proposal counts agreeing and disagreeing decisions; it opens (`open`) once enough
agree and none disagree, and a disagreement sends an open one back to `learning`. An
admin accepts or rejects it; a rejected one never reopens by itself. A reviewer can
also say at once "this payer is this customer" (`remember_payer`).

Learning never breaks a reviewer's decision: `observe` catches and logs its own
errors. The admin's actions (`accept`, `reject`, `remember_payer`) raise
`LearningError` with a message for the person instead.

`rule_stats` and `link_stats` say, per matching rule and per customer mapping, how
many payments it placed without review and how many of those a reviewer later changed.
"""

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import reversion
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from integrations.documents.matching import matching_payment, payer_of
from integrations.models import (
    Connection,
    PaymentTransaction,
    Posting,
    ReviewDecision,
    ReviewItem,
)
from mappings import matching, payers
from mappings.models import MatchingProposal, MatchingRule, PayerLink
from mappings.references import parse_reference, reference_key

logger = logging.getLogger(__name__)

MAX_EVIDENCE = 20
# A reviewer's decision with one of these actions changes where the money went.
CHANGING_ACTIONS = ("apply", "on_account", "correct", "mark_duplicate")
# The payer keys a reviewer's "remember" links unless told otherwise (a card is
# shared within a company and replaced every few years: only when asked).
REMEMBER_KINDS = ("customer_id", "email", "name")
STANDARD_RULE_NAME = "Standard matching"
# A word (2 to 12 letters, standing alone) directly before a number, with at most a
# little punctuation or space between them: "REM10045", "Rechnung 10045", "Fact.#10045".
_WORD_BEFORE_NUMBER = re.compile(
    r"(?<![A-Z0-9])([A-Z]{2,12})[\s.:#/\-]{0,3}([0-9]+)(?![0-9])"
)
_MAX_TEXT = 200

State = MatchingProposal.State


class LearningError(Exception):
    """A learning action refused, with a message for the person who asked."""


# --- observing reviewers' decisions --------------------------------------------------------


def observe(item: ReviewItem, custno: str, invnos: Sequence[str], user: Any) -> None:
    """Learn from a reviewer's decision: `item`'s payment placed at customer `custno`,
    applied to `invnos` (on account when empty).

    Called inside the decision's transaction; runs in a savepoint and logs (never
    raises) its own errors, so the decision stands whatever happens here.
    """
    try:
        with transaction.atomic():
            txn = item.transaction
            if txn is None:
                return
            custno = (custno or "").strip().upper()
            invnos = [str(i).strip() for i in invnos if str(i).strip()]
            entry = _evidence_entry(txn, item, user, custno, invnos)
            if custno:
                _learn_payer(txn, custno, entry)
            if invnos:
                _learn_prefixes(txn, invnos, entry)
    except Exception:
        logger.exception(
            "Learning from review item %s failed; the decision stands.",
            getattr(item, "pk", None),
        )


def _evidence_entry(
    txn: PaymentTransaction,
    item: ReviewItem,
    user: Any,
    custno: str,
    invnos: list[str],
) -> dict[str, Any]:
    return {
        "transaction": txn.transaction_id,
        "item": item.pk,
        "user": _username(user),
        "at": timezone.now().isoformat(timespec="seconds"),
        "custno": custno,
        "invoices": invnos[:5],
    }


def _username(user: Any) -> str:
    if user is None or not getattr(user, "is_authenticated", False):
        return "system"
    return str(user.get_username())


def _learn_payer(txn: PaymentTransaction, custno: str, entry: dict[str, Any]) -> None:
    """Count the decision on the payer → customer proposals of each payer key."""
    keys = payer_of(txn).keys()
    if not keys:
        return
    linked = {
        (link.kind, link.key)
        for link in PayerLink.objects.filter(
            connection=txn.connection_id,
            is_active=True,
            custno=custno,
            kind__in=list(keys),
            key__in=list(keys.values()),
        )
    }
    for kind, key in keys.items():
        if (kind, key) in linked:
            continue  # a mapping already says so: nothing to learn
        _count(
            txn.connection,
            MatchingProposal.Kind.PAYER_LINK,
            kind,
            key,
            custno,
            entry,
        )


def _learn_prefixes(
    txn: PaymentTransaction, invnos: list[str], entry: dict[str, Any]
) -> None:
    """Count the decision on the prefix-word proposals the reference suggests."""
    reference = txn.invoice_reference or ""
    if not reference.strip():
        return
    rule, prefixes = _deciding_rule(txn)
    known = {_word(p) for p in prefixes}
    chosen = {reference_key(invno) for invno in invnos}
    chosen.discard("")
    before = parse_reference(reference, prefixes)
    numbers: dict[str, set[str]] = {}
    for word, number in _words_before_numbers(reference):
        if word not in known:
            numbers.setdefault(word, set()).add(number)
    kind = MatchingProposal.Kind.PREFIX
    for word, named in sorted(numbers.items()):
        if not named & chosen:
            # The reviewer chose another invoice: "<word> <number>" did not mean it.
            _disagree(txn.connection, kind, "prefix", word, "", entry)
        elif any(
            _word_makes_the_difference(reference, prefixes, word, number, before)
            for number in named & chosen
        ):
            _count(txn.connection, kind, "prefix", word, word, entry, rule=rule)


def _word(prefix: str) -> str:
    return prefix.strip().strip(" .:#-").upper()


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKC", str(text)[: _MAX_TEXT * 2])
    return "".join(ch if ch.isprintable() else " " for ch in text)[:_MAX_TEXT].upper()


def _words_before_numbers(reference: str) -> list[tuple[str, str]]:
    """(word, number key) for each word standing directly before a number."""
    return [
        (match.group(1), reference_key(match.group(2)))
        for match in _WORD_BEFORE_NUMBER.finditer(_plain(reference))
    ]


def _word_makes_the_difference(
    reference: str,
    prefixes: Sequence[str],
    word: str,
    number: str,
    before: Any,
) -> bool:
    """Whether removing `word` reads `number` where the rule's prefixes did not: the
    number was not read at all, or only as a number picked out of longer text."""
    if number in before.keys and before.clean:
        return False
    after = parse_reference(reference, (*prefixes, word))
    if number not in after.keys:
        return False
    return number not in before.keys or after.clean


def _deciding_rule(
    txn: PaymentTransaction,
) -> tuple[MatchingRule | None, tuple[str, ...]]:
    """The rule that decided the payment (None: the built-in standard rule) and the
    prefixes it reads references with."""
    explanation = (
        txn.match_explanation if isinstance(txn.match_explanation, dict) else {}
    )
    if "rule_id" in explanation:
        rule_id = explanation.get("rule_id")
    else:  # decided before explanations were kept: the rule that would decide now
        rules = MatchingRule.rules_for(txn.connection)
        rule_id = matching.choose_rule(matching_payment(txn), rules).id
    rule = (
        MatchingRule.objects.filter(pk=rule_id, connection=txn.connection_id).first()
        if isinstance(rule_id, int)
        else None
    )
    if rule is None:
        return None, matching.DEFAULT_RULE.strip_prefixes
    return rule, rule.as_rule().strip_prefixes


def _count(
    connection: Connection,
    kind: str,
    subject: str,
    key: str,
    value: str,
    entry: dict[str, Any],
    *,
    rule: MatchingRule | None = None,
) -> None:
    """One agreeing decision on (subject, key) → value; one disagreeing decision on
    every other value of the same (subject, key)."""
    proposal, _ = MatchingProposal.objects.get_or_create(
        connection=connection,
        kind=kind,
        subject=subject,
        key=key[: payers.MAX_KEY],
        value=value[:60],
        defaults={"rule": rule},
    )
    proposal = MatchingProposal.objects.select_for_update().get(pk=proposal.pk)
    proposal.agreeing += 1
    proposal.evidence = _kept(proposal.evidence, {**entry, "agrees": True})
    if (
        proposal.state == State.LEARNING
        and proposal.agreeing >= MatchingProposal.LEARN_AFTER
        and proposal.disagreeing == 0
    ):
        proposal.state = State.OPEN
    proposal.save(update_fields=["agreeing", "evidence", "state", "updated_at"])
    _disagree(connection, kind, subject, key, value, entry)


def _disagree(
    connection: Connection,
    kind: str,
    subject: str,
    key: str,
    value: str,
    entry: dict[str, Any],
) -> None:
    """Count a disagreeing decision on every proposal for (subject, key) whose value
    is not `value`; an open one goes back to learning."""
    others = (
        MatchingProposal.objects.select_for_update()
        .filter(connection=connection, kind=kind, subject=subject, key=key)
        .exclude(value=value)
    )
    for other in others:
        other.disagreeing += 1
        other.evidence = _kept(other.evidence, {**entry, "agrees": False})
        if other.state == State.OPEN:
            other.state = State.LEARNING
        other.save(update_fields=["disagreeing", "evidence", "state", "updated_at"])


def _kept(evidence: object, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The evidence with `entry` added: the latest MAX_EVIDENCE decisions."""
    kept = list(evidence) if isinstance(evidence, list) else []
    return [*kept, entry][-MAX_EVIDENCE:]


# --- an admin decides -------------------------------------------------------------------------


def accept(proposal: MatchingProposal, user: Any) -> PayerLink | MatchingRule:
    """Put an open proposal to work: create (or re-activate) the customer mapping, or
    add the word to the rule's prefixes. Returns the mapping or the rule.

    Accepting an accepted proposal again changes nothing. Raises LearningError for a
    proposal that is not open, or whose mapping would overwrite another customer's.
    """
    with transaction.atomic():
        proposal = MatchingProposal.objects.select_for_update().get(pk=proposal.pk)
        if proposal.state == State.ACCEPTED:
            return _accepted_result(proposal)
        if proposal.state != State.OPEN:
            raise LearningError(
                f"Proposal “{proposal}” is {proposal.get_state_display().lower()}: "
                "only a proposed one (open) can be accepted."
            )
        if proposal.kind == MatchingProposal.Kind.PAYER_LINK:
            result: PayerLink | MatchingRule = _link_from(proposal, user)
        else:
            result = _add_prefix(proposal, user)
        proposal.state = State.ACCEPTED
        proposal.decided_by = _saved(user)
        proposal.decided_at = timezone.now()
        proposal.save()
    return result


def reject(proposal: MatchingProposal, user: Any) -> None:
    """Set a proposal aside for good: reviewers' later decisions still count on it,
    but it never opens again by itself."""
    with transaction.atomic():
        proposal = MatchingProposal.objects.select_for_update().get(pk=proposal.pk)
        if proposal.state == State.REJECTED:
            return
        if proposal.state == State.ACCEPTED:
            raise LearningError(
                f"Proposal “{proposal}” is already accepted. To undo it, deactivate "
                "the customer mapping or edit the matching rule's prefixes."
            )
        proposal.state = State.REJECTED
        proposal.decided_by = _saved(user)
        proposal.decided_at = timezone.now()
        proposal.save()


def _saved(user: Any) -> Any:
    return user if user is not None and getattr(user, "pk", None) else None


def _accepted_result(proposal: MatchingProposal) -> PayerLink | MatchingRule:
    if proposal.kind == MatchingProposal.Kind.PAYER_LINK:
        link = PayerLink.objects.filter(
            connection=proposal.connection_id,
            kind=proposal.subject,
            key=proposal.key,
        ).first()
        if link is not None:
            return link
    elif proposal.rule is not None:
        return proposal.rule
    raise LearningError(
        f"Proposal “{proposal}” was accepted, but its mapping or rule is gone."
    )


def _link_from(proposal: MatchingProposal, user: Any) -> PayerLink:
    link = (
        PayerLink.objects.select_for_update()
        .filter(
            connection=proposal.connection_id,
            kind=proposal.subject,
            key=proposal.key,
        )
        .first()
    )
    if link is not None and link.is_active and link.custno != proposal.value:
        raise LearningError(
            f"The customer mapping “{link}” already names customer {link.custno}. "
            "To map this payer to customer "
            f"{proposal.value} instead, deactivate or edit that mapping under "
            "Customer mappings, then accept again."
        )
    evidence = _summary(proposal, user)
    if link is None:
        link = PayerLink(
            connection_id=proposal.connection_id,
            kind=proposal.subject,
            key=proposal.key,
        )
    elif link.is_active:  # the same customer already: say why it is kept
        link.evidence = f"{link.evidence}\n{evidence}".strip()[:4000]
        link.save()
        return link
    link.custno = proposal.value
    link.is_active = True
    link.source = PayerLink.Source.PROPOSAL
    link.evidence = evidence
    link.created_by = _saved(user)
    link.created_at = timezone.now()
    link.save()
    return link


def _summary(proposal: MatchingProposal, user: Any) -> str:
    entries = [e for e in proposal.evidence or [] if isinstance(e, dict)]
    agreeing = [e for e in entries if e.get("agrees", True)]
    txns = ", ".join(str(e.get("transaction", "?")) for e in agreeing[-10:])
    who = ", ".join(sorted({str(e.get("user", "?")) for e in agreeing}))
    return (
        f"Learned from {proposal.agreeing} reviewer decisions placing this payer at "
        f"customer {proposal.value} ({proposal.disagreeing} against): transactions "
        f"{txns or 'not recorded'}, decided by {who or 'unknown'}. Accepted by "
        f"{_username(user)} on {timezone.localdate():%Y-%m-%d} "
        f"(proposal #{proposal.pk})."
    )


def _add_prefix(proposal: MatchingProposal, user: Any) -> MatchingRule:
    rule = proposal.rule
    if rule is not None:
        rule = MatchingRule.objects.select_for_update().get(pk=rule.pk)
    else:
        rule = _standard_rule(proposal.connection)
        proposal.rule = rule
    word = _word(proposal.value)
    prefixes = [p.strip() for p in rule.strip_prefixes.split(",") if p.strip()]
    if word in {_word(p) for p in prefixes}:
        return rule
    text = ",".join([*prefixes, word])
    limit = MatchingRule._meta.get_field("strip_prefixes").max_length or 0
    if len(text) > limit:
        raise LearningError(
            f"Matching rule “{rule.name}” has no room for another prefix "
            f"({limit} characters): remove one it does not need, then accept again."
        )
    rule.strip_prefixes = text
    with reversion.create_revision():
        if _saved(user) is not None:
            reversion.set_user(user)
        reversion.set_comment(
            f"Added {word!r} to the prefixes: learned proposal #{proposal.pk}, "
            f"accepted by {_username(user)}"
        )
        rule.save()
    return rule


def _standard_rule(connection: Connection) -> MatchingRule:
    """The connection's "Standard matching" rule, created with the model defaults (the
    built-in standard rule's values) after its other rules when there is none."""
    rule = (
        MatchingRule.objects.select_for_update()
        .filter(connection=connection, name=STANDARD_RULE_NAME)
        .first()
    )
    if rule is not None:
        return rule
    last = (
        MatchingRule.objects.filter(connection=connection)
        .order_by("-priority")
        .values_list("priority", flat=True)
        .first()
    )
    rule = MatchingRule(connection=connection, name=STANDARD_RULE_NAME)
    if last is not None and last >= rule.priority:
        rule.priority = last + 10  # other rules keep deciding first
    return rule


# --- a reviewer says it at once ---------------------------------------------------------------


def remember_payer(
    txn: PaymentTransaction,
    custno: str,
    user: Any,
    kinds: Iterable[str] | None = None,
) -> list[PayerLink]:
    """Map the payer of `txn` to customer `custno` from now on: one active link per
    payer key of `kinds` (default: PayTrace customer id, e-mail, billing name).

    An active link of the same key to another customer is never overwritten: raises
    LearningError naming it, before anything is saved.
    """
    custno = (custno or "").strip().upper()
    if not custno:
        raise LearningError("Name the Sage Pro customer this payer is.")
    wanted = tuple(REMEMBER_KINDS if kinds is None else kinds)
    keys = {k: v for k, v in payer_of(txn).keys().items() if k in wanted}
    if not keys:
        labels = ", ".join(payers.KIND_LABELS.get(k, k) for k in wanted)
        raise LearningError(
            f"Transaction {txn.transaction_id} names no {labels} for its payer: "
            "there is nothing to remember it by."
        )
    with transaction.atomic():
        existing = {
            (link.kind, link.key): link
            for link in PayerLink.objects.select_for_update().filter(
                connection=txn.connection_id,
                kind__in=list(keys),
                key__in=list(keys.values()),
            )
        }
        clashes = [
            link
            for kind, key in keys.items()
            if (link := existing.get((kind, key))) is not None
            and link.is_active
            and link.custno != custno
        ]
        if clashes:
            named = "; ".join(f"“{link}”" for link in clashes)
            raise LearningError(
                f"Not remembered: the customer mapping {named} already names another "
                f"customer. To map this payer to {custno}, deactivate or edit it "
                "under Customer mappings first."
            )
        evidence = (
            f"Remembered by {_username(user)} from transaction {txn.transaction_id} "
            f"on {timezone.localdate():%Y-%m-%d}."
        )
        links = []
        for kind, key in keys.items():
            link = existing.get((kind, key))
            if link is not None and link.is_active:
                links.append(link)  # already says so
                continue
            if link is None:
                link = PayerLink(connection_id=txn.connection_id, kind=kind, key=key)
            link.custno = custno
            link.is_active = True
            link.source = PayerLink.Source.REVIEWER
            link.evidence = evidence
            link.created_by = _saved(user)
            link.created_at = timezone.now()
            link.save()
            links.append(link)
    return links


# --- what rules and mappings decided ----------------------------------------------------------


def rule_stats() -> dict[int | None, tuple[int, int]]:
    """Per matching rule (None: the built-in standard rule): the payments it placed
    without review, and how many of those a reviewer later changed."""
    return _decided_and_changed("match_rule")


def link_stats() -> dict[int, tuple[int, int]]:
    """Per customer mapping: the payments placed without review on its word, and how
    many of those a reviewer later changed."""
    stats = _decided_and_changed("payer_link", Q(payer_link__isnull=False))
    return {k: v for k, v in stats.items() if k is not None}


def _decided_and_changed(
    by: str, condition: Q | None = None
) -> dict[Any, tuple[int, int]]:
    """One query: automatic postings grouped by `by`, counted, and counted again when
    a reviewer's decision on their transaction came after them."""
    changed_later = ReviewDecision.objects.filter(
        item__transaction=OuterRef("transaction"),
        action__in=CHANGING_ACTIONS,
        at__gt=OuterRef("created_at"),
    )
    rows = (
        Posting.objects.filter(condition or Q(), decided_automatically=True)
        .values(by)
        .annotate(
            decided=Count("pk"),
            changed=Count("pk", filter=Exists(changed_later)),
        )
        .order_by()
    )
    return {row[by]: (row["decided"], row["changed"]) for row in rows}
