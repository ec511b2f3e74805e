"""Configuration history: every recorded version of connections, status maps, GL rules,
field mappings and currency rates, what changed, and "Roll back to this version".

Anyone who may view a configuration model sees its versions (or everything, with
`reversion.view_version`); rolling back needs the change permission on the model.
"""

from django.contrib import admin, messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST
from reversion.models import Version

from integrations.admin.base import ReadOnlyAdmin
from integrations.models import Connection
from mappings import versioning
from mappings.formatting import format_when


def _viewable_type_ids(request: HttpRequest) -> list[int]:
    user = request.user
    allowed = []
    for model in versioning.versioned_models():
        opts = model._meta
        if user.has_perm("reversion.view_version") or any(
            user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")
            for action in ("view", "change")
        ):
            allowed.append(ContentType.objects.get_for_model(model).pk)
    return allowed


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> list[tuple[str, str]]:
        allowed = set(_viewable_type_ids(request))
        return [
            (str(ct.pk), str(model._meta.verbose_name_plural).capitalize())
            for model in versioning.versioned_models()
            if (ct := ContentType.objects.get_for_model(model)).pk in allowed
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(content_type_id=self.value())
        return queryset


@admin.register(Version)
class ConfigurationHistoryAdmin(ReadOnlyAdmin):
    list_display = ("number", "model_label", "object_label", "when", "who", "comment")
    list_display_links = ("number", "object_label")
    list_filter = (ModelFilter,)
    list_select_related = ("revision__user", "content_type")
    search_fields = ("object_repr", "revision__comment", "revision__user__username")
    ordering = ("-pk",)
    actions = None

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .filter(content_type_id__in=_viewable_type_ids(request))
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(_viewable_type_ids(request))

    def has_view_permission(
        self, request: HttpRequest, obj: Version | None = None
    ) -> bool:
        allowed = _viewable_type_ids(request)
        return obj.content_type_id in allowed if obj else bool(allowed)

    @admin.display(description="Version", ordering="pk")
    def number(self, obj: Version) -> str:
        return f"Version {obj.pk}"

    @admin.display(description="Model", ordering="content_type")
    def model_label(self, obj: Version) -> str:
        return str(obj.content_type.model_class()._meta.verbose_name).capitalize()

    @admin.display(description="Object", ordering="object_repr")
    def object_label(self, obj: Version) -> str:
        return obj.object_repr

    @admin.display(description="When", ordering="revision__date_created")
    def when(self, obj: Version) -> str:
        return format_when(obj.revision.date_created)

    @admin.display(description="Who", ordering="revision__user")
    def who(self, obj: Version) -> str:
        return str(obj.revision.user) if obj.revision.user else "(system)"

    @admin.display(description="Comment")
    def comment(self, obj: Version) -> str:
        return obj.revision.get_comment()

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:version_id>/rollback/",
                self.admin_site.admin_view(require_POST(self.rollback_view)),
                name="reversion_version_rollback",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        """The detail page: the version against the one before it, and the rollback."""
        if not object_id.isdigit():
            raise Http404
        version = get_object_or_404(
            self.get_queryset(request).select_related("revision__user"),
            pk=object_id,
        )
        previous = versioning.previous_version(version)
        current = versioning.current_object(version)
        changes = versioning.diff_versions(previous, version)
        pending = versioning.diff_current(version)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{version.object_repr}: version {version.pk}",
            "version": version,
            "model_name": version._model._meta.verbose_name,
            "previous": previous,
            "changes": changes,
            "changed_count": sum(1 for c in changes if c.changed),
            "is_deletion": versioning.is_deletion(version),
            "current": current,
            "pending": [c for c in pending if c.changed],
            "can_roll_back": versioning.can_roll_back(request.user, version),
            "is_connection": version._model is Connection,
            "versions": versioning.versions_of(version),
        }
        return TemplateResponse(
            request, "admin/mappings/history/version_detail.html", context
        )

    def rollback_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        version = get_object_or_404(Version, pk=version_id)
        if version._model not in versioning.versioned_models():
            raise Http404
        if not versioning.can_roll_back(request.user, version):
            raise PermissionDenied
        recreated = versioning.current_object(version) is None
        try:
            obj = versioning.roll_back(version, request.user)
        except versioning.RollbackError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(_detail_url(version))
        self.message_user(request, f"{obj} rolled back to version {version.pk}.")
        if recreated and isinstance(obj, Connection):
            self.message_user(
                request,
                f"{obj} was recreated without secrets: enter its password or API key "
                "and webhook secrets again.",
                messages.WARNING,
            )
        newest = Version.objects.get_for_object(obj).order_by("-pk").first()
        return HttpResponseRedirect(_detail_url(newest or version))


def _detail_url(version: Version) -> str:
    return reverse("admin:reversion_version_change", args=[version.pk])
