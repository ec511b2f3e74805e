"""Mapping suggestions: which source path most likely fills each Sage Pro field.

Pure functions over plain values (no database, no Django). Given a sample source
record and a target document, `suggest_mappings` scores every source path against
every target field and proposes one path per field, with a confidence in [0, 1] and
the reasons behind it. The steps:

1. Flatten the sample into dot paths: nested objects become `created.at`; a list
   contributes its first element only (`line_items.0.sku`), because a header field is
   never filled from the tenth line of a list.
2. Tokenise each path across naming styles (camelCase, snake_case, dots, digits) and
   expand terse names (`invno` → invoice number, `INVDTE` → invoice date), splitting
   run-together words (`ordernumber`) against a small vocabulary.
3. Score each (field, path) pair: the best match of the path's words against the
   field's phrases, where words in one synonym group count almost as equal and near
   spellings count through rapidfuzz; plus how well the sample value's shape (date,
   amount, identifier, email…) fits the field; plus a little context (billing vs
   shipping, inside a list, names that say tax or shipping rather than a total).
4. Add what admins decided before: `Feedback` about the same target field and the
   same source *key* (the normalised last path segment, so a verdict about
   `invoice_id` also applies to `data.invoice_id` in a similar source). An accepted
   pair adds 0.6, a rejected one takes 0.6 away (net count, capped at two), which is
   enough for one verdict to change the next top-1 answer.
5. Assign greedily by score so that one source path fills at most one field.

Everything is deterministic: ties break on the path name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from rapidfuzz import fuzz

from mappings.suggest_targets import TARGETS, TargetField
from mappings.suggest_words import (
    GENERIC,
    GENERIC_WORDS,
    GROUP_OF,
    SHAPE_NAMES,
    SYNONYM,
    VOCABULARY,
    flatten,
    source_key,
    tokenize,
    value_shape,
)

# Below this a field gets no suggestion: better an empty row than a bad guess.
MIN_CONFIDENCE = 0.45
ALTERNATIVES = 3


# A sample is one source record: a few dozen fields, a few levels deep. These bound the
# work a request can ask for (the scoring is fields × keys).
MAX_SAMPLE_KEYS = 500
MAX_SAMPLE_DEPTH = 20


class UnknownTargetError(ValueError):
    pass


class SampleTooLargeError(ValueError):
    """The sample is deeper or has more keys than one source record would."""


def check_sample_size(
    sample: object, max_keys: int = MAX_SAMPLE_KEYS, max_depth: int = MAX_SAMPLE_DEPTH
) -> None:
    """Raise SampleTooLargeError if `sample` nests or holds more than the limits allow.

    Walks without recursion, and stops at the first limit passed, so even a hostile
    value costs at most `max_keys` steps.
    """
    keys = 0
    stack: list[tuple[object, int]] = [(sample, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children = list(value.values())
            keys += len(children)
        elif isinstance(value, list):
            children = value[:1]  # Only the first element is read (see `flatten`).
        else:
            continue
        if depth > max_depth:
            raise SampleTooLargeError(
                f"The sample nests more than {max_depth} levels deep; send one "
                "source record."
            )
        if keys > max_keys:
            raise SampleTooLargeError(
                f"The sample has more than {max_keys} keys; send one source record."
            )
        stack += [(child, depth + 1) for child in children]


# -- Results --------------------------------------------------------------------------


@dataclass(frozen=True)
class Feedback:
    """An admin's verdict on `target_field ← (a path whose key is) source_key`."""

    target_field: str
    source_key: str
    accepted: bool


@dataclass(frozen=True)
class Candidate:
    source_path: str
    confidence: float
    reasons: tuple[str, ...]
    score: float = 0.0  # unclamped, for ranking


@dataclass(frozen=True)
class Suggestion:
    target_field: str
    source_path: str | None
    confidence: float
    reasons: tuple[str, ...]
    alternatives: tuple[Candidate, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_field": self.target_field,
            "source_path": self.source_path,
            "confidence": self.confidence,
            "reasons": list(self.reasons),
            "alternatives": [
                {"source_path": c.source_path, "confidence": c.confidence}
                for c in self.alternatives
            ],
        }


# -- Scoring --------------------------------------------------------------------------

_NAME_WEIGHT = 0.72
_SHAPE_WEIGHT = 0.25
_PARENT_WEIGHT = 0.5
_FEEDBACK_STEP = 0.6
_FEEDBACK_CAP = 2
_MIN_NAME = 0.45


@dataclass(frozen=True)
class _Source:
    path: str
    value: Any
    words: tuple[tuple[str, float], ...]  # (word, weight): the leaf counts more
    leaf: str
    key: str
    shape: str
    in_list: bool


def _describe_source(path: str, value: Any) -> _Source:
    segments = path.split(".")
    in_list = any(s.isdigit() for s in segments)
    named = [s for s in segments if not s.isdigit()]
    leaf = named[-1] if named else path
    words: list[tuple[str, float]] = []
    for segment in named[:-1]:
        words += [(w, _PARENT_WEIGHT) for w in tokenize(segment)]
    words += [(w, 1.0) for w in tokenize(leaf)]
    return _Source(
        path=path,
        value=value,
        words=tuple(words),
        leaf=leaf,
        key=source_key(path),
        shape=value_shape(value),
        in_list=in_list,
    )


def _word_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    group = GROUP_OF.get(a)
    if group is not None and b in group:
        return SYNONYM
    if min(len(a), len(b)) >= 5:
        ratio = fuzz.ratio(a, b)
        if ratio >= 85:
            return 0.9 * ratio / 100
    return 0.0


@cache
def _phrase_words(phrase: str) -> tuple[str, ...]:
    return tuple(tokenize(phrase))


@dataclass(frozen=True)
class _NameMatch:
    score: float
    phrase: str
    via: tuple[str, ...]  # "id≈number" for synonym or near-spelling matches


def _match_phrase(phrase: str, weight: float, source: _Source) -> _NameMatch:
    wanted = _phrase_words(phrase)
    if not wanted or not source.words:
        return _NameMatch(0.0, phrase, ())
    via: list[str] = []
    recall = 0.0
    for w in wanted:
        best, best_word = 0.0, ""
        for word, _ in source.words:
            sim = _word_similarity(w, word)
            if sim > best:
                best, best_word = sim, word
        recall += _informative(w) * best
        if 0 < best < 1:
            via.append(f"{best_word}≈{w}")
    recall /= sum(_informative(w) for w in wanted)
    # Precision: how much of the name the phrase explains. Parent words only count
    # when they match (`billing_address.company` is as much a company as `company`).
    matched = total = 0.0
    for word, weight_ in source.words:
        sim = max(_word_similarity(w, word) for w in wanted)
        if weight_ < 1.0 and sim == 0:
            continue
        matched += weight_ * _informative(word) * sim
        total += weight_ * _informative(word)
    precision = matched / total if total else 0.0
    if recall + precision == 0:
        return _NameMatch(0.0, phrase, ())
    f_score = 2 * recall * precision / (recall + precision)
    return _NameMatch(f_score * weight, phrase, tuple(via))


def _informative(word: str) -> float:
    return GENERIC if word in GENERIC_WORDS else 1.0


def _match_name(target: TargetField, source: _Source) -> _NameMatch:
    best = _NameMatch(0.0, "", ())
    phrases = ((target.name, 1.0), *target.phrases)
    for phrase, weight in phrases:
        match = _match_phrase(phrase, weight, source)
        if match.score > best.score:
            best = match
    # A run-together or misspelt leaf the tokeniser could not split ("invoicenmbr").
    leaf_words = tokenize(source.leaf)
    if len(leaf_words) != 1 or leaf_words[0] in VOCABULARY:
        return best
    leaf = leaf_words[0]
    for phrase, weight in phrases:
        ratio = fuzz.ratio(leaf, phrase.replace(" ", ""))
        score = 0.9 * ratio / 100 * weight
        if ratio >= 80 and score > best.score:
            best = _NameMatch(score, phrase, (f"{source.leaf}≈{phrase}",))
    return best


def _name_reason(match: _NameMatch, source: _Source) -> str:
    words = " ".join(_phrase_words(match.phrase))
    phrase = match.phrase if words == match.phrase else f"{match.phrase} = {words}"
    expanded = " ".join(w for w, weight in source.words if weight == 1.0)
    leaf = source.leaf
    terse = leaf.lower().replace("_", "") not in (
        expanded.replace(" ", ""),
        expanded.replace(" ", "") + "s",
    )
    read_as = f", read as '{expanded}'" if terse and expanded else ""
    if match.via:
        return (
            f"name matches synonym '{phrase}' ({source.path}{read_as}; "
            f"{', '.join(match.via)}): {match.score:.2f}"
        )
    return f"name matches '{phrase}' ({source.path}{read_as}): {match.score:.2f}"


def _shape_fit(target: TargetField, source: _Source) -> tuple[float, str]:
    fit = target.shapes.get(source.shape, target.other_shapes)
    shown = _shown(source.value)
    noun = SHAPE_NAMES.get(source.shape, source.shape)
    if source.shape == "empty":
        return fit, "value is empty in the sample, so its shape says nothing"
    if source.shape == "masked_card" and fit >= 0.5:
        return fit, f"value looks like {noun}: {shown} (the brand needs a transform)"
    if fit >= 0.85:
        return fit, f"value looks like {noun}: {shown}"
    if fit <= 0.2:
        return fit, f"value looks like {noun}, which does not fit: {shown}"
    return fit, f"value looks like {noun}: {shown} (possible)"


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _context(
    target: TargetField, source: _Source, document: str
) -> tuple[float, list[str]]:
    adjust, reasons = 0.0, []
    words = {w for w, _ in source.words}
    if target.avoid_words & words:
        adjust -= 0.2
        said = ", ".join(sorted(target.avoid_words & words))
        reasons.append(f"name says '{said}': usually not the {target.label.lower()}")
    if source.in_list:
        adjust -= 0.08
        reasons.append("inside a list (first element only)")
    if document == "customer":
        if words & {"shipping", "delivery"}:
            adjust -= 0.05
            reasons.append("a shipping address, the customer record wants billing")
        elif words & {"billing", "customer"}:
            adjust += 0.03
    return adjust, reasons


def _feedback_prior(
    target: TargetField, source: _Source, feedback: Sequence[Feedback]
) -> tuple[float, list[str]]:
    accepted = sum(
        1
        for f in feedback
        if f.accepted and f.target_field == target.name and f.source_key == source.key
    )
    rejected = sum(
        1
        for f in feedback
        if not f.accepted
        and f.target_field == target.name
        and f.source_key == source.key
    )
    if not (accepted or rejected):
        return 0.0, []
    net = max(-_FEEDBACK_CAP, min(_FEEDBACK_CAP, accepted - rejected))
    said = []
    if accepted:
        said.append(f"accepted {accepted}×")
    if rejected:
        said.append(f"rejected {rejected}×")
    reason = f"admins {' and '.join(said)} '{source.key}' for {target.name} before"
    return net * _FEEDBACK_STEP, [reason]


def score_candidate(
    target: TargetField,
    source: _Source,
    document: str,
    feedback: Sequence[Feedback] = (),
) -> Candidate:
    name = _match_name(target, source)
    fit, shape_reason = _shape_fit(target, source)
    adjust, context_reasons = _context(target, source, document)
    prior, feedback_reasons = _feedback_prior(target, source, feedback)
    score = _NAME_WEIGHT * name.score + _SHAPE_WEIGHT * fit + adjust + prior
    if name.score < _MIN_NAME and not prior:
        # A value's shape alone (any date, any amount) is not a reason to map it.
        score = min(score, MIN_CONFIDENCE - 0.01)
    reasons = []
    if name.score > 0:
        reasons.append(_name_reason(name, source))
    reasons += [shape_reason, *context_reasons, *feedback_reasons]
    confidence = round(min(1.0, max(0.0, score)), 2)
    return Candidate(source.path, confidence, tuple(reasons), score)


# -- The entry point ------------------------------------------------------------------


def target_fields(target: str) -> tuple[TargetField, ...]:
    try:
        return TARGETS[target]
    except KeyError:
        known = ", ".join(TARGETS)
        raise UnknownTargetError(
            f"Unknown target '{target}'; choose one of {known}."
        ) from None


def suggest_mappings(
    target: str,
    sample: Mapping[str, Any],
    feedback: Iterable[Feedback] = (),
) -> list[Suggestion]:
    """Propose a source path for each field of `target`, best first per field.

    `feedback` holds earlier verdicts about this target document (any order).
    Returns one `Suggestion` per target field, in the document's field order; a field
    with no candidate above `MIN_CONFIDENCE` gets `source_path=None`.
    """
    fields = target_fields(target)
    if not isinstance(sample, Mapping):
        raise TypeError("The sample must be a JSON object.")
    check_sample_size(sample)
    # Each candidate sees only the verdicts about its own field and key, so the work
    # stays fields × keys however much feedback has piled up.
    verdicts: dict[tuple[str, str], list[Feedback]] = defaultdict(list)
    for verdict in feedback:
        verdicts[verdict.target_field, verdict.source_key].append(verdict)
    sources = [_describe_source(p, v) for p, v in sorted(flatten(sample).items())]
    ranked: dict[str, list[Candidate]] = {}
    for target_field in fields:
        candidates = [
            score_candidate(
                target_field, s, target, verdicts.get((target_field.name, s.key), ())
            )
            for s in sources
        ]
        candidates.sort(key=lambda c: (-c.score, c.source_path))
        ranked[target_field.name] = candidates
    chosen = _assign(ranked)
    suggestions = []
    for target_field in fields:
        candidates = ranked[target_field.name]
        pick = chosen.get(target_field.name)
        others = tuple(
            c for c in candidates if c is not pick and c.score >= MIN_CONFIDENCE
        )[:ALTERNATIVES]
        if pick is None:
            suggestions.append(
                Suggestion(
                    target_field.name,
                    None,
                    0.0,
                    ("no source field looks like it",),
                    others,
                )
            )
        else:
            suggestions.append(
                Suggestion(
                    target_field.name,
                    pick.source_path,
                    pick.confidence,
                    pick.reasons,
                    others,
                )
            )
    return suggestions


def _assign(ranked: Mapping[str, list[Candidate]]) -> dict[str, Candidate]:
    """Greedy one-to-one assignment: the highest score anywhere is taken first."""
    pairs = [
        (c.score, name, c)
        for name, candidates in ranked.items()
        for c in candidates
        if c.score >= MIN_CONFIDENCE
    ]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2].source_path))
    chosen: dict[str, Candidate] = {}
    used: set[str] = set()
    for _, name, candidate in pairs:
        if name in chosen or candidate.source_path in used:
            continue
        chosen[name] = candidate
        used.add(candidate.source_path)
    return chosen
