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


def replay_dead_letters(
    ids: list[int] | None = None, since: str | None = None, user_id: int | None = None
) -> str:
    from datetime import datetime

    from integrations import deadletters

    try:
        counts = deadletters.replay(
            ids=ids,
            since=datetime.fromisoformat(since) if since else None,
            user_id=user_id,
        )
    except deadletters.ReplayInProgressError as exc:
        return f"skipped: {exc}"
    return f"{counts['replayed']} replayed, {counts['posted']} posted, {counts['still_failing']} still failing"


def check_alerts() -> dict[str, int]:
    from integrations import alerts

    return alerts.check_alerts()


def drain() -> str:
    from integrations import batches

    return batches.drain()
