"""What happens to a stored event: the pipeline from PayTrace record to Sage Pro receipt."""

from django.contrib.auth.models import AbstractBaseUser

from integrations.models import Posting, ReviewItem


def retry_posting(posting: Posting, user: AbstractBaseUser | None = None) -> bool:
    """Queue a failed, dead or needs-review posting to be sent again now.

    Safe when pressed twice at once: only one caller moves it back to pending.
    Returns False when it was already posted or being sent.
    """
    raise NotImplementedError


def apply_review_item(item: ReviewItem, invno: str, user: AbstractBaseUser | None = None) -> Posting:
    """Resolve an `unmatched` item by applying its payment to the given invoice number.

    Raises ValueError with a message for the reviewer when the invoice is unknown, not
    open, or belongs to another customer.
    """
    raise NotImplementedError


def dismiss_review_item(item: ReviewItem, reason: str, user: AbstractBaseUser | None = None) -> None:
    raise NotImplementedError
