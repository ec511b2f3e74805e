"""django-q2 entry points. Thin: ids in, one call into `processing`."""

from integrations import polling, processing


def process_event(event_id: int) -> str:
    return processing.process_event(event_id)


def send_posting(posting_id: int) -> str:
    return processing.send_posting(posting_id)


def confirm_silent_post(delivery_id: int) -> str:
    return processing.confirm_silent_post(delivery_id)


def sweep() -> dict[str, int]:
    return processing.sweep()


def poll_paytrace() -> str:
    runs = polling.poll_all()
    return ", ".join(
        f"{r.connection.slug}: {r.state} ({r.new} new, {r.changed} changed)"
        for r in runs
    )


def sweep_settlements() -> str:
    runs = polling.sweep_all_settlements()
    return ", ".join(f"{r.connection.slug}: {r.state}" for r in runs)
