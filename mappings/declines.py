"""Whether a declined charge may be tried again: soft (the card is fine, the moment was
not: insufficient funds, an issuer that did not answer) or hard (the card will not work
again: lost, stolen, closed, expired, invalid). Pure: plain values in, a verdict out.

PayTrace gives no decline category of its own: a decline is `response_code` 102 (or 103,
approved then voided by the AVS/CSC rules) with the issuer's words in `approval_message`
(paytrace-api.md §3, §6.1). The words are matched here; anything not recognised is
**hard**, so an unknown decline is never retried blindly: a person looks at it.
"""

from dataclasses import dataclass

SOFT = "soft"
HARD = "hard"

# Matched as lower-case substrings of the trimmed `approval_message`, hard first (a
# message naming both, "do not honor - lost card", is hard).
HARD_WORDS = (
    "pick up",
    "pickup",
    "lost",
    "stolen",
    "expired",
    "invalid card",
    "invalid account",
    "invalid acct",
    "no such",
    "closed",
    "restricted",
    "fraud",
    "not permitted",
    "revoked",
    "stop payment",
    "cvv",
    "csc",
    "security code",
    "avs",
)
SOFT_WORDS = (
    "insufficient",
    "nsf",
    "do not honor",
    "exceeds",
    "limit",
    "try again",
    "retry",
    "unavailable",
    "timeout",
    "timed out",
    "system error",
    "call issuer",
    "call center",
)


@dataclass(frozen=True)
class DeclineVerdict:
    category: str  # SOFT or HARD
    reason: str  # the issuer's words, trimmed (or what stood in for them)
    why: str  # which rule decided, in words

    @property
    def retryable(self) -> bool:
        return self.category == SOFT


def classify(response_code: int | None, approval_message: str) -> DeclineVerdict:
    """Classify one declined charge's answer."""
    words = " ".join(str(approval_message or "").split())
    low = words.lower()
    reason = words or f"declined (response code {response_code})"
    if response_code == 103:
        return DeclineVerdict(
            HARD,
            reason,
            "approved, then voided by the address or security-code rules: the "
            "card's details need correcting",
        )
    for word in HARD_WORDS:
        if word in low:
            return DeclineVerdict(HARD, reason, f"the issuer said {word!r}")
    for word in SOFT_WORDS:
        if word in low:
            return DeclineVerdict(SOFT, reason, f"the issuer said {word!r}")
    return DeclineVerdict(
        HARD, reason, "not a decline known to be temporary, so it is not retried"
    )


def parse_retry_days(text: str) -> list[int]:
    """ "1, 3, 7" → [1, 3, 7]: days after the previous attempt. Raises ValueError naming
    the bad part (each must be a whole number from 1 to 60, at most 10 of them)."""
    days: list[int] = []
    for part in str(text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 60:
            raise ValueError(f"{part!r} is not a number of days from 1 to 60")
        days.append(int(part))
    if len(days) > 10:
        raise ValueError("at most 10 retries")
    return days
