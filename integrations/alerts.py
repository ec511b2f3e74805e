"""Telling people when the pipeline needs them.

Each condition has a key. While it holds, one alert is open for it and people are told
once per window (ALERT_WINDOW_MINUTES); when it clears, the alert is resolved and a
recovery notice goes out. Notices go by email (Django's mail backend) to ALERT_EMAILS
and, when set, as a JSON POST to ALERT_WEBHOOK_URL. A failing notice channel is
logged, never raised: alerting must not break the sweeper that runs it.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone

from integrations.models import (
    Alert,
    Connection,
    Event,
    MirrorState,
    Posting,
    ReviewItem,
    SyncRun,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Condition:
    key: str
    firing: bool
    message: str


def current_conditions(now: datetime) -> list[Condition]:
    """Every condition the portal watches, and whether it holds now."""
    conditions = []
    dead = Posting.objects.filter(state=Posting.State.DEAD)
    count = dead.count()
    conditions.append(
        Condition(
            "dead_letters",
            count > 0,
            f"{count} posting(s) gave up after their retries and wait in the dead-letter queue.",
        )
    )
    conditions.extend(event_conditions(now))
    sla = now - timedelta(hours=settings.REVIEW_SLA_HOURS)
    late = ReviewItem.objects.filter(
        state=ReviewItem.State.OPEN, created_at__lt=sla
    ).count()
    conditions.append(
        Condition(
            "review_sla",
            late > 0,
            f"{late} review item(s) have been open longer than {settings.REVIEW_SLA_HOURS} hours.",
        )
    )
    for connection in Connection.objects.filter(
        kind=Connection.Kind.PAYTRACE, is_active=True
    ):
        last = (
            SyncRun.objects.filter(connection=connection, kind=SyncRun.Kind.POLL)
            .exclude(state__in=[SyncRun.State.RUNNING, SyncRun.State.SKIPPED])
            .order_by("-started_at")
            .first()
        )
        failing = last is not None and last.state == SyncRun.State.FAILED
        conditions.append(
            Condition(
                f"poll_failing:{connection.slug}",
                failing,
                f"Polling PayTrace for {connection.slug} failed: {last.error if last else ''}",
            )
        )
    conditions.extend(mirror_conditions(now))
    conditions.extend(agent_conditions(now))
    return conditions


def mirror_conditions(now: datetime) -> list[Condition]:
    """`mirror_stale:<slug>`: an active Sage Pro connection's mirror has not synced
    for MIRROR_MAX_AGE_MINUTES (counted from its creation until its first sync), so
    matching and the document checks read old data."""
    limit = settings.MIRROR_MAX_AGE_MINUTES
    conditions = []
    for state in MirrorState.objects.filter(
        connection__kind=Connection.Kind.SAGEPRO, connection__is_active=True
    ).select_related("connection"):
        since = state.synced_at or state.created_at
        minutes = int((now - since).total_seconds() // 60)
        never = " (it has never synced)" if state.synced_at is None else ""
        error = f" Last error: {state.last_error}" if state.last_error else ""
        conditions.append(
            Condition(
                f"mirror_stale:{state.connection.slug}",
                now - since > timedelta(minutes=limit),
                f"The Sage Pro mirror of {state.connection.name} "
                f"({state.connection.slug}) has not synced for {minutes} minutes"
                f"{never} (limit {limit}).{error} Check the connection, then run "
                f"manage.py sync_sagepro_mirror --connection {state.connection.slug}.",
            )
        )
    return conditions


def agent_conditions(now: datetime) -> list[Condition]:
    """`agent_offline:<id>`: an enrolled, unrevoked Sage Pro agent has sent no heartbeat
    for AGENT_OFFLINE_MINUTES (counted from its enrolment until its first heartbeat),
    so the companies it serves cannot be posted to."""
    from integrations.models import Agent

    limit = getattr(settings, "AGENT_OFFLINE_MINUTES", 5)
    conditions = []
    for agent in Agent.objects.exclude(enrolled_at=None):  # a revoked one resolves
        since = agent.last_heartbeat_at or agent.enrolled_at
        assert since is not None  # enrolled_at is set: excluded above
        minutes = int((now - since).total_seconds() // 60)
        error = f" Last error: {agent.last_error}" if agent.last_error else ""
        conditions.append(
            Condition(
                f"agent_offline:{agent.pk}",
                agent.revoked_at is None and now - since > timedelta(minutes=limit),
                f"The Sage Pro agent {agent.name} has sent no heartbeat for {minutes} "
                f"minutes (limit {limit}); postings to the companies it serves wait.{error} "
                "Check that its service runs on the site's server and can reach the "
                "portal over HTTPS.",
            )
        )
    return conditions


def event_conditions(now: datetime) -> list[Condition]:
    """Events that wait too long, told apart by why they wait.

    `stale_events`: no attempt has failed, yet nothing processed them (are the
    workers running?). `events_failing`: attempts fail and are retried (a system the
    pipeline needs is down). `events_dead`: events that cannot be processed wait in
    review (retrying will not help).
    """
    limit_minutes = settings.ALERT_STALE_EVENT_MINUTES
    too_old = now - timedelta(minutes=limit_minutes)
    waiting = Event.objects.filter(
        state__in=[Event.State.QUEUED, Event.State.PROCESSING, Event.State.FAILED]
    )
    oldest = waiting.filter(last_error="").aggregate(oldest=Min("received_at"))[
        "oldest"
    ]
    age = now - oldest if oldest else timedelta(0)
    failing = waiting.exclude(last_error="").filter(received_at__lt=too_old)
    failing_count = failing.count()
    latest_failure = (
        failing.order_by("-started_at", "-pk")
        .values_list("last_error", flat=True)
        .first()
    )
    dead = Event.objects.filter(
        state=Event.State.DEAD, review_items__state=ReviewItem.State.OPEN
    ).distinct()
    dead_count = dead.count()
    latest_dead = dead.order_by("-pk").values_list("last_error", flat=True).first()
    return [
        Condition(
            "stale_events",
            oldest is not None and age > timedelta(minutes=limit_minutes),
            f"The oldest unprocessed event has waited {int(age.total_seconds() // 60)} minutes (limit {limit_minutes}) and no attempt has failed. Are the workers running?",
        ),
        Condition(
            "events_failing",
            failing_count > 0,
            f"{failing_count} event(s) older than {limit_minutes} minutes keep failing and are retried with backoff. Latest error: {latest_failure}",
        ),
        Condition(
            "events_dead",
            dead_count > 0,
            f"{dead_count} event(s) cannot be processed (no retry will fix them) and wait in the review queue. Latest error: {latest_dead}",
        ),
    ]


def check_alerts(now: datetime | None = None) -> dict[str, int]:
    """Open, repeat or resolve alerts for the current conditions."""
    now = now or timezone.now()
    counts = {"opened": 0, "repeated": 0, "resolved": 0}
    for condition in current_conditions(now):
        outcome = _update(condition, now)
        if outcome:
            counts[outcome] += 1
    return counts


def _update(condition: Condition, now: datetime) -> str:
    """Act on one condition; return what happened ('' for nothing). Every change is a
    conditional write, so two sweepers never send the same notice twice."""
    alert = Alert.objects.filter(key=condition.key, resolved_at__isnull=True).first()
    subject = f"[payments portal] {condition.key}"
    if condition.firing and alert is None:
        try:
            with transaction.atomic():
                Alert.objects.create(
                    key=condition.key,
                    message=condition.message,
                    opened_at=now,
                    last_notified_at=now,
                )
        except IntegrityError:
            return ""  # another sweeper opened it a moment ago
        notify(subject, condition.message, condition.key, "firing")
        return "opened"
    if alert is None:
        return ""
    if condition.firing:
        due = now - alert.last_notified_at >= timedelta(
            minutes=settings.ALERT_WINDOW_MINUTES
        )
        if due and Alert.objects.filter(
            pk=alert.pk, last_notified_at=alert.last_notified_at
        ).update(
            last_notified_at=now,
            message=condition.message,
            notifications=alert.notifications + 1,
        ):
            notify(
                f"[payments portal] still: {condition.key}",
                condition.message,
                condition.key,
                "firing",
            )
            return "repeated"
        return ""
    if Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(
        resolved_at=now
    ):
        notify(
            f"[payments portal] recovered: {condition.key}",
            f"Recovered: {alert.message}",
            condition.key,
            "recovered",
        )
        return "resolved"
    return ""


def notify(subject: str, message: str, key: str, status: str) -> None:
    if settings.ALERT_EMAILS:
        try:
            send_mail(
                subject, message, settings.DEFAULT_FROM_EMAIL, settings.ALERT_EMAILS
            )
        except Exception:
            logger.exception("alert email for %s could not be sent", key)
    if settings.ALERT_WEBHOOK_URL:
        try:
            requests.post(
                settings.ALERT_WEBHOOK_URL,
                json={
                    "key": key,
                    "status": status,
                    "subject": subject,
                    "message": message,
                },
                timeout=5,
            )
        except requests.RequestException:
            logger.exception("alert webhook for %s could not be sent", key)
