"""On-site Sage Pro agents: whether each is online, what its last heartbeat said, and
its credentials (create an enrolment code, rotate, revoke).

An enrolment code is shown once, in the message after the action, and never again:
the portal keeps only its hash. Adding an agent names the Sage Pro connections it
serves; they switch to the agent transport.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from integrations.admin.base import PortalMedia, format_age, plural, short, short_time
from integrations.models import Agent, Connection
from integrations.relay import enrolment


class AgentForm(forms.ModelForm):
    serves = forms.ModelMultipleChoiceField(
        queryset=Connection.objects.filter(kind=Connection.Kind.SAGEPRO),
        required=False,
        label="Sage Pro connections it serves",
        help_text="These connections are reached through this agent from now on.",
    )

    class Meta:
        model = Agent
        fields = ["name"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["serves"] = list(self.instance.connections.all())


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = (
        "name",
        "status",
        "heartbeat",
        "version",
        "backlog",
        "needs_review",
        "integrity",
        "error",
        "companies",
    )
    readonly_fields = (
        "status",
        "enrolled_at",
        "revoked_at",
        "last_heartbeat_at",
        "version",
        "sage_reachable",
        "journal_backlog",
        "needs_review_count",
        "last_integrity",
        "last_error",
    )
    actions = ["create_enrolment_code", "rotate_credentials", "revoke"]
    Media = PortalMedia

    def save_related(
        self, request: HttpRequest, form: Any, formsets: Any, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        agent, chosen = form.instance, form.cleaned_data.get("serves") or []
        agent.connections.exclude(pk__in=[c.pk for c in chosen]).update(
            agent=None, transport=Connection.Transport.DIRECT
        )
        Connection.objects.filter(pk__in=[c.pk for c in chosen]).update(
            agent=agent, transport=Connection.Transport.AGENT
        )

    @admin.display(description="Status")
    def status(self, obj: Agent) -> str:
        if obj.is_revoked:
            word, colour = "revoked", "#6b7280"
        elif obj.enrolled_at is None:
            word, colour = "not enrolled", "#6b7280"
        elif obj.is_online():
            word, colour = "online", "#15803d"
        else:
            word, colour = "offline", "#b91c1c"
        return format_html(
            '<strong class="agent-status" style="color:{}">{}</strong>', colour, word
        )

    @admin.display(description="Last heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, obj: Agent) -> str:
        if obj.last_heartbeat_at is None:
            return "never"
        return f"{short_time(obj.last_heartbeat_at)} ({format_age(obj.last_heartbeat_at)} ago)"

    @admin.display(description="Backlog", ordering="journal_backlog")
    def backlog(self, obj: Agent) -> str:
        return "-" if obj.journal_backlog is None else str(obj.journal_backlog)

    @admin.display(description="Needs review", ordering="needs_review_count")
    def needs_review(self, obj: Agent) -> int:
        return obj.needs_review_count

    @admin.display(description="Integrity")
    def integrity(self, obj: Agent) -> str:
        """The last watchdog result: ok, or FAILED and the tables that failed."""
        result = obj.last_integrity or {}
        if not result:
            return "-"
        ok = result.get("ok")
        word = "ok" if ok is True else "FAILED" if ok is False else "?"
        problems = result.get("problems")
        detail = result.get("summary") or result.get("detail") or ""
        if not detail and isinstance(problems, dict):
            detail = ", ".join(str(table) for table in problems)
        return short(f"{word} {detail}".strip(), 60)

    @admin.display(description="Last error")
    def error(self, obj: Agent) -> str:
        return short(obj.last_error, 60) if obj.last_error else "-"

    @admin.display(description="Companies")
    def companies(self, obj: Agent) -> str:
        return ", ".join(c.slug for c in obj.connections.all()) or "-"

    @admin.action(
        description="Create enrolment code (shown once)", permissions=["change"]
    )
    def create_enrolment_code(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._issue_codes(request, queryset, "enrol")

    @admin.action(
        description="Rotate credentials (new enrolment code)", permissions=["change"]
    )
    def rotate_credentials(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._issue_codes(request, queryset, "re-enrol")

    def _issue_codes(self, request: HttpRequest, queryset: QuerySet, verb: str) -> None:
        minutes = enrolment.code_minutes()
        for agent in queryset:
            try:
                code = enrolment.create_code(agent)
            except enrolment.EnrolmentError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(
                request,
                format_html(
                    "Enrolment code for {}: <code class='enrolment-code'>{}</code> "
                    "(valid {} minutes, once; it is not shown again). On the agent's "
                    "server: <code>python -m sagepro_agent relay enrol --portal {} "
                    "--code {} --state STATE_FOLDER</code> to {} it; its current "
                    "credentials work until then.",
                    agent.name,
                    code,
                    minutes,
                    request.build_absolute_uri("/").rstrip("/"),
                    code,
                    verb,
                ),
                messages.WARNING,
            )

    @admin.action(
        description="Revoke (refuse every call from it)", permissions=["change"]
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        cancelled = 0
        agents = [agent for agent in queryset if not agent.is_revoked]
        for agent in agents:
            cancelled += agent.revoke()
        self.message_user(
            request,
            f"Revoked {plural(len(agents), 'agent')} at "
            f"{short_time(timezone.now())}; {plural(cancelled, 'queued command')} "
            "cancelled. Enrolling again needs a new agent.",
        )
