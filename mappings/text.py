"""Reading the admin's comma-separated lists (`"SALE, capture"`) into tuples."""

from collections.abc import Iterable


def split_list(values: str | Iterable[str], *, upper: bool = True) -> tuple[str, ...]:
    """`"SALE, capture"` → `("SALE", "CAPTURE")`; blanks dropped.

    `upper=False` keeps each item's case (matching-rule prefixes and channels, which
    the matcher compares case-insensitively itself).
    """
    items = values.split(",") if isinstance(values, str) else values
    return tuple(
        v.strip().upper() if upper else v.strip() for v in items if v and v.strip()
    )
