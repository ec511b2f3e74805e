"""Send attacks, drain the queue like a worker, and check what an operator would notice.

Shared by the pytest fuzzers (`tests/security/`) and `bench/fuzz.py`. Each check
records a `Failure` naming the request that caused it; `raise_first()` turns the
failures into one exception per kind, so hypothesis minimises each kind separately.
"""

import json
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Max
from django.test import Client
from django.utils import timezone

from tests.support.attack import Attack
from tests.support.pansweep import (
    Finding,
    LogCapture,
    find_in_text,
    sweep_database,
    sweep_sqlite_files,
    sweep_task_payloads,
)

LIST_PAGES = (
    "/admin/integrations/reviewitem/",
    "/admin/integrations/paymenttransaction/",
    "/admin/integrations/event/",
    "/admin/integrations/inbounddelivery/",
    "/api/transactions/",
    "/api/review-items/",
)


class FuzzFailure(AssertionError):
    """Base: one kind of failure, so hypothesis shrinks each kind on its own."""


class ServerError(FuzzFailure):
    pass


class DeliveryNotRecorded(FuzzFailure):
    pass


class FalseDuplicate(FuzzFailure):
    pass


class WorkerCrash(FuzzFailure):
    pass


class ListPageBroken(FuzzFailure):
    pass


class CardNumberFound(FuzzFailure):
    pass


KINDS = {
    "server_error": ServerError,
    "delivery_rows": DeliveryNotRecorded,
    "false_duplicate": FalseDuplicate,
    "worker_crash": WorkerCrash,
    "list_page": ListPageBroken,
    "card_number": CardNumberFound,
}


@dataclass
class Failure:
    kind: str
    detail: str
    attack: Attack | None = None

    def describe(self) -> str:
        text = f"{self.kind}: {self.detail}"
        if self.attack is not None:
            text += "\n  caused by " + self.attack.describe().replace("\n", "\n  ")
        return text


@dataclass
class Campaign:
    """One run of attacks against the webhook endpoints, with its findings."""

    admin: Client
    client: Client = field(
        default_factory=lambda: Client(
            raise_request_exception=False, REMOTE_ADDR="203.0.113.50"
        )
    )
    failures: list[Failure] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    page_statuses: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)
    planted: dict[str, Attack] = field(default_factory=dict)
    by_delivery: dict[int, Attack] = field(default_factory=dict)
    accepted_ids: set[str] = field(default_factory=set)
    log: LogCapture = field(default_factory=LogCapture)
    max_failures_per_kind: int = 50

    def __post_init__(self) -> None:
        from integrations.models import Event

        self.first_event = (Event.objects.aggregate(m=Max("pk"))["m"] or 0) + 1

    def __enter__(self) -> "Campaign":
        self.log.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.log.__exit__(*exc)

    def fail(self, kind: str, detail: str, attack: Attack | None = None) -> None:
        self.counts[f"failures.{kind}"] += 1
        if sum(1 for f in self.failures if f.kind == kind) < self.max_failures_per_kind:
            self.failures.append(Failure(kind, detail, attack))

    # --- requests --------------------------------------------------------------------

    def send(self, attack: Attack) -> int:
        """POST one attack; check its answer and that exactly one delivery row was added."""
        from integrations.models import InboundDelivery

        for pan in attack.pans:
            self.planted[pan] = attack
        before = InboundDelivery.objects.aggregate(n=Max("pk"))["n"] or 0
        count_before = InboundDelivery.objects.count()
        response = self.client.generic(
            attack.method,
            attack.path,
            data=attack.body,
            content_type=attack.content_type,
            headers=attack.headers,
        )
        status = response.status_code
        self.counts["requests"] += 1
        self.statuses[status] += 1
        content = response.content.decode("utf-8", errors="replace")
        if status >= 500:
            self.fail("server_error", f"answered {status}: {content[:300]}", attack)
            return status
        new_rows = InboundDelivery.objects.count() - count_before
        self.counts["deliveries"] += new_rows
        if new_rows != 1:
            self.fail(
                "delivery_rows",
                f"{new_rows} InboundDelivery rows for one request (answered {status})",
                attack,
            )
        for row in InboundDelivery.objects.filter(pk__gt=before).values_list(
            "pk", flat=True
        ):
            self.by_delivery[row] = attack
        for finding in find_in_text(content, attack.pans, "response body"):
            self.fail("card_number", f"echoed back: {finding.describe()}", attack)
        reply = _json(content)
        if (
            status == 200
            and reply.get("status") == "duplicate"
            and attack.webhook_id not in self.accepted_ids
        ):
            self.fail(
                "false_duplicate",
                f"answered duplicate for a webhook-id never accepted before (len {len(attack.webhook_id or '')})",
                attack,
            )
        if status in (200, 202) and attack.webhook_id:
            self.accepted_ids.add(attack.webhook_id)
        return status

    # --- the worker ------------------------------------------------------------------

    def drain(self, max_tasks: int = 100_000) -> int:
        """Run every queued task the way a qcluster worker does, results saved."""
        from django.utils.module_loading import import_string
        from django_q.brokers import get_broker
        from django_q.models import OrmQ
        from django_q.monitor import save_task
        from django_q.signing import SignedPackage

        self.sweep_into(sweep_task_payloads(self.planted), "queued task")
        broker = get_broker()
        ran = 0
        while ran < max_tasks:
            row = OrmQ.objects.order_by("id").first()
            if row is None:
                break
            task = SignedPackage.loads(row.payload)
            row.delete()
            func = task["func"]
            task["started"] = timezone.now()
            try:
                callable_ = import_string(func) if isinstance(func, str) else func
                task["result"] = callable_(
                    *task.get("args", ()), **task.get("kwargs", {})
                )
                task["success"] = True
            except Exception as exc:
                task["result"] = f"{exc} : {traceback.format_exc()}"
                task["success"] = False
                self.fail(
                    "worker_crash",
                    f"task {func}{tuple(task.get('args', ()))} raised {type(exc).__name__}: {str(exc)[:300]}",
                    self._attack_for_task(func, task.get("args", ())),
                )
            task["stopped"] = timezone.now()
            task["sync"] = True  # save in this connection, as the monitor's own would
            save_task(task, broker)
            ran += 1
        self.counts["tasks"] += ran
        self.check_events()
        return ran

    def check_events(self) -> None:
        """Every event is processed, or dead with a review item; none left to loop."""
        from integrations.models import Event, ReviewItem

        for event in Event.objects.filter(pk__gte=self.first_event):
            self.counts[f"events.{event.state}"] += 1
            attack = self._attack_for_event(event)
            if event.state in (
                Event.State.FAILED,
                Event.State.QUEUED,
                Event.State.PROCESSING,
            ):
                self.fail(
                    "worker_crash",
                    f"event {event.pk} left {event.state} after {event.attempts} attempt(s): {event.last_error[:300]}",
                    attack,
                )
            elif (
                event.state == Event.State.DEAD
                and not ReviewItem.objects.filter(event=event).exists()
            ):
                self.fail(
                    "worker_crash",
                    f"event {event.pk} dead with no review item: {event.last_error[:300]}",
                    attack,
                )
        self.first_event = max(
            self.first_event, (Event.objects.aggregate(m=Max("pk"))["m"] or 0) + 1
        )

    def _attack_for_event(self, event: Any) -> Attack | None:
        for pk in event.deliveries.values_list("pk", flat=True):
            if pk in self.by_delivery:
                return self.by_delivery[pk]
        return None

    def _attack_for_task(self, func: Any, args: tuple) -> Attack | None:
        from integrations.models import Event, Posting

        name = str(func).rsplit(".", 1)[-1]
        if not args:
            return None
        if name == "confirm_silent_post":
            return self.by_delivery.get(args[0])
        if name == "process_event":
            event = Event.objects.filter(pk=args[0]).first()
            return self._attack_for_event(event) if event else None
        if name == "send_posting":
            posting = (
                Posting.objects.filter(pk=args[0]).select_related("transaction").first()
            )
            if posting is not None:
                event = Event.objects.filter(
                    transaction_id=posting.transaction.transaction_id
                ).first()
                return self._attack_for_event(event) if event else None
        return None

    # --- what people see ---------------------------------------------------------------

    def check_pages(self, all_pages: bool = False, max_pages: int = 1000) -> None:
        """Each list page and API list answers 200 for a superuser (every page if asked)."""
        for url in LIST_PAGES:
            page = 1
            while page <= max_pages:
                sep = "&" if "?" in url else "?"
                param = "p" if url.startswith("/admin/") else "page"
                target = url if page == 1 else f"{url}{sep}{param}={page}"
                response = self.admin.get(target)
                self.page_statuses[(url, response.status_code)] += 1
                self.counts["pages"] += 1
                if response.status_code != 200:
                    if page == 1 or response.status_code >= 500:
                        self.fail(
                            "list_page",
                            f"GET {target} answered {response.status_code}: {response.content[:200]!r}",
                            None,
                        )
                    break
                if not all_pages or not _has_next(url, response, page):
                    break
                page += 1

    # --- card numbers ---------------------------------------------------------------------

    def sweep(self, files: bool = True) -> list[Finding]:
        """Every table and column, the SQLite files, the captured log, task payloads."""
        findings = sweep_database(self.planted)
        if files:
            findings += sweep_sqlite_files(self.planted)
        findings += self.log.sweep(self.planted)
        for f in findings:
            self.fail("card_number", f.describe(), self.planted.get(f.pan))
        return findings

    def sweep_into(self, findings: list[Finding], label: str) -> None:
        for f in findings:
            self.fail(
                "card_number", f"{label}: {f.describe()}", self.planted.get(f.pan)
            )

    # --- reporting ------------------------------------------------------------------------

    def report(self) -> str:
        return "\n\n".join(f.describe() for f in self.failures)

    def raise_first(self) -> None:
        """One exception per kind (the first kind found), with every failure listed."""
        if not self.failures:
            return
        kind = self.failures[0].kind
        raise KINDS[kind](f"{len(self.failures)} failure(s):\n\n{self.report()}")


def _json(content: str) -> dict:
    try:
        value = json.loads(content)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _has_next(url: str, response: Any, page: int) -> bool:
    if url.startswith("/api/"):
        return bool(_json(response.content.decode(errors="replace")).get("next"))
    text = response.content.decode(errors="replace")
    return f"?p={page + 1}" in text or f"&amp;p={page + 1}" in text
