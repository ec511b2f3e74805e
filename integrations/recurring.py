"""Recurring billing (issue 15). Being written: see the brief."""


def sync_all() -> dict[str, str]:
    return {}
