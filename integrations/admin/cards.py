"""Cards on file: the list (with the expiring ones a filter away), a card's page
(autopay is the only thing edited there), and the pages that act on a card: put one
on file, replace it, send the customer an enrolment link, remove it.

The enrolment pages themselves live in `integrations.enrolment.views`; this module
routes them under the card admin so they share its login and look.
"""

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from integrations import cards
from integrations.admin.base import (
    PortalMedia,
    ReadOnlyAdmin,
    change_link,
    short_time,
    staff_user,
)
from integrations.enrolment import views as enrolment
from integrations.enrolment.forms import LinkForm, scrub
from integrations.models import MirroredCustomer
from integrations.models.cards import CardOnFile, EnrolmentLink

TEMPLATES = "admin/integrations/cardonfile"


class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("soon", f"Expires within {cards.EXPIRING_WITHIN_DAYS} days, or expired"),
            ("expired", "Expired"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "soon":
            return queryset.filter(cards.expiring_filter())
        if self.value() == "expired":
            return queryset.filter(cards.expired_filter())
        return queryset


class CardList(ChangeList):
    """The page's rows with their customers' names, read once for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        names = {
            (c.connection_id, c.custno): c.name
            for c in MirroredCustomer.objects.filter(
                connection_id__in={r.sagepro_id for r in rows},
                custno__in={r.custno for r in rows},
            ).only("connection_id", "custno", "name")
        }
        for row in rows:
            row.customer_name_now = names.get((row.sagepro_id, row.custno), "")
        self.result_list = rows


class CardForm(forms.ModelForm):
    class Meta:
        model = CardOnFile
        fields = ["autopay"]

    def clean_autopay(self) -> bool:
        on = self.cleaned_data["autopay"]
        card = self.instance
        if not on or card.autopay:
            return on
        if card.state != CardOnFile.State.ACTIVE:
            raise forms.ValidationError("This card was removed; autopay cannot use it.")
        if card.is_expired():
            raise forms.ValidationError(
                f"This card expired ({card.expiry}); replace it before turning "
                "autopay on."
            )
        other = (
            CardOnFile.objects.filter(
                sagepro_id=card.sagepro_id,
                custno=card.custno,
                autopay=True,
                state=CardOnFile.State.ACTIVE,
            )
            .exclude(pk=card.pk)
            .first()
        )
        if other is not None:
            raise forms.ValidationError(
                f"{other} already pays {card.custno}'s invoices by autopay; turn "
                "autopay off on that card first."
            )
        return on


@admin.register(CardOnFile)
class CardOnFileAdmin(admin.ModelAdmin):
    """Cards kept in PayTrace's vault: only their vault id, brand, last four and
    expiry are here. Added through the enrolment page, never typed in."""

    form = CardForm
    list_display = (
        "custno",
        "customer",
        "brand",
        "last4",
        "expiry_shown",
        "autopay",
        "state",
    )
    list_filter = ("state", "autopay", ExpiryFilter, "paytrace")
    search_fields = ("custno", "vault_customer_id", "last4")
    list_select_related = ("paytrace",)
    change_list_template = f"{TEMPLATES}/change_list.html"
    change_form_template = f"{TEMPLATES}/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "card_shown",
                    "custno",
                    "customer",
                    "vault_customer_id",
                    "paytrace",
                    "sagepro",
                    "billing_name",
                    "email",
                    "state",
                )
            },
        ),
        ("Autopay", {"fields": ("autopay", "autopay_stopped")}),
        (
            "History",
            {"fields": ("created_at", "created_by", "updated_at", "removed")},
        ),
    )

    class Media:
        css = {"all": ["portal/admin.css", "integrations/enrolment.css"]}

    readonly_fields = (
        "card_shown",
        "custno",
        "customer",
        "vault_customer_id",
        "paytrace",
        "sagepro",
        "billing_name",
        "email",
        "state",
        "autopay_stopped",
        "created_at",
        "created_by",
        "updated_at",
        "removed",
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CardList

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # A card leaves through "Remove card", which deletes it in PayTrace too.
        return False

    def get_readonly_fields(
        self, request: HttpRequest, obj: CardOnFile | None = None
    ) -> Any:
        if obj is not None and obj.state != CardOnFile.State.ACTIVE:
            return (*self.readonly_fields, "autopay")
        return self.readonly_fields

    def add_view(
        self,
        request: HttpRequest,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # "Add card on file" is the enrolment page: no card is ever typed in here.
        url = reverse("admin:integrations_cardonfile_enrol")
        if request.GET.get("custno"):
            url += "?" + request.GET.urlencode()
        return HttpResponseRedirect(url)

    def save_model(
        self, request: HttpRequest, obj: CardOnFile, form: Any, change: bool
    ) -> None:
        if "autopay" in form.changed_data:
            if obj.autopay:
                obj.autopay_stopped_at, obj.autopay_stopped_reason = None, ""
            else:
                obj.autopay_stopped_at = timezone.now()
                obj.autopay_stopped_reason = (
                    f"Turned off by {staff_user(request).get_username()}."
                )
        super().save_model(request, obj, form, change)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "enrol/",
                view(enrolment.staff_enrol),
                name="integrations_cardonfile_enrol",
            ),
            path(
                "enrol/customer/",
                view(enrolment.customer_lookup),
                name="integrations_cardonfile_customer",
            ),
            path(
                "<int:card_id>/enrolled/",
                view(enrolment.enrolled),
                name="integrations_cardonfile_enrolled",
            ),
            path(
                "<int:card_id>/replace/",
                view(enrolment.staff_enrol),
                name="integrations_cardonfile_replace",
            ),
            path(
                "<int:card_id>/remove/",
                view(self.remove_view),
                name="integrations_cardonfile_remove",
            ),
            path(
                "send-link/",
                view(self.send_link_view),
                name="integrations_cardonfile_send_link",
            ),
            path(
                "<int:card_id>/send-link/",
                view(self.send_link_view),
                name="integrations_cardonfile_card_link",
            ),
            *super().get_urls(),
        ]

    # Columns and read-only fields -----------------------------------------------

    @admin.display(description="Customer name")
    def customer(self, obj: CardOnFile) -> str:
        name = getattr(obj, "customer_name_now", None)
        if name is None:
            row = (
                MirroredCustomer.objects.filter(
                    connection_id=obj.sagepro_id, custno=obj.custno
                )
                .only("name")
                .first()
            )
            name = row.name if row else ""
        return name or "-"

    @admin.display(description="Expiry", ordering="exp_year")
    def expiry_shown(self, obj: CardOnFile) -> SafeString:
        if obj.is_expired():
            return format_html(
                '<span class="enrol-expired">{} (expired)</span>', obj.expiry
            )
        if obj.expires_on <= timezone.localdate() + timedelta(
            days=cards.EXPIRING_WITHIN_DAYS
        ):
            return format_html("{} (soon)", obj.expiry)
        return format_html("{}", obj.expiry)

    @admin.display(description="Card")
    def card_shown(self, obj: CardOnFile) -> str:
        return f"{obj.brand or 'Card'} ending {obj.last4}, expires {obj.expiry}"

    @admin.display(description="Autopay stopped")
    def autopay_stopped(self, obj: CardOnFile) -> str:
        if obj.autopay_stopped_at is None:
            return "-"
        return f"{short_time(obj.autopay_stopped_at)}: {obj.autopay_stopped_reason}"

    @admin.display(description="Removed")
    def removed(self, obj: CardOnFile) -> str:
        if obj.removed_at is None:
            return "-"
        who = obj.removed_by.get_username() if obj.removed_by else "someone"
        return f"{short_time(obj.removed_at)} by {who}"

    # Acting on a card -----------------------------------------------------------

    def remove_view(self, request: HttpRequest, card_id: int) -> HttpResponse:
        """Confirm, then delete the card in PayTrace and mark it removed."""
        card = get_object_or_404(CardOnFile, pk=card_id)
        if not self.has_change_permission(request, card):
            raise PermissionDenied
        change_url = reverse("admin:integrations_cardonfile_change", args=[card.pk])
        if card.state != CardOnFile.State.ACTIVE:
            messages.info(request, f"{card} was removed already.")
            return redirect(change_url)
        if request.method == "POST" and request.POST.get("confirm") == str(card.pk):
            try:
                cards.remove_card(card, staff_user(request))
            except cards.CardError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(
                    request, f"{card} is removed, and deleted from PayTrace's vault."
                )
                return redirect(change_url)
        schedules = list(
            card.recurring_schedules.filter(state__in=["active", "creating"])
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Remove {card}?",
            "opts": self.opts,
            "card": card,
            "schedules": schedules,
        }
        return TemplateResponse(request, f"{TEMPLATES}/remove_confirm.html", context)

    def send_link_view(
        self, request: HttpRequest, card_id: int | None = None
    ) -> HttpResponse:
        """Make a link the customer opens to put a card on file (or replace one);
        show it once, and e-mail it when an address is given."""
        if not request.user.has_perm("integrations.add_enrolmentlink"):
            raise PermissionDenied
        card = get_object_or_404(CardOnFile, pk=card_id) if card_id else None
        initial = {"custno": enrolment.prefill(request.GET.get("custno", ""))}
        form = LinkForm(
            request.POST if request.method == "POST" else None,
            card=card,
            initial=initial,
        )
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Send a card enrolment link",
            "opts": self.opts,
            "card": card,
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                link, link_path = cards.create_enrolment_link(
                    paytrace=data["paytrace"],
                    sagepro=data["paytrace"].sagepro,
                    custno=data["custno"],
                    email=data["email"],
                    card=card,
                    user=staff_user(request),
                    hours=data["hours"],
                )
            except cards.CardError as exc:
                form.add_error(
                    exc.field if exc.field in form.fields else None, exc.message
                )
            else:
                url = request.build_absolute_uri(link_path)
                context.update(
                    {"link": link, "url": url, "mailed": _mail_link(link, url)}
                )
                response = TemplateResponse(
                    request, f"{TEMPLATES}/link_sent.html", context
                )
                response["Cache-Control"] = "no-store"
                return response
        if form.is_bound:
            form.data = scrub(request.POST)  # shown again: no card-number-like value
        return TemplateResponse(request, f"{TEMPLATES}/link_form.html", context)


def _mail_link(link: EnrolmentLink, url: str) -> str:
    """E-mail the link; return "" when there was no address, else what happened."""
    if not link.email:
        return ""
    try:
        send_mail(
            "Put a card on file for your account",
            "Please use this link to put a card on file for paying your invoices. "
            f"It works once, until {short_time(link.expires_at)}:\n\n{url}\n",
            None,
            [link.email],
        )
    except Exception as exc:  # noqa: BLE001 - a mail failure is shown, the link stays
        return f"not sent ({type(exc).__name__}); copy the link instead"
    return f"sent to {link.email}"


@admin.register(EnrolmentLink)
class EnrolmentLinkAdmin(ReadOnlyAdmin):
    """Links customers were sent to put a card on file: who made them, for whom,
    until when, and whether they were used. The secret itself is never kept."""

    list_display = (
        "custno",
        "email",
        "created_by",
        "created_at",
        "expires_at",
        "status",
        "result_card",
    )
    list_filter = ("paytrace",)
    search_fields = ("custno", "email")
    fields = (
        "custno",
        "email",
        "paytrace",
        "sagepro",
        "card",
        "created_by",
        "created_at",
        "expires_at",
        "used_at",
        "result_card",
    )
    readonly_fields = fields
    ordering = ("-created_at",)
    Media = PortalMedia

    @admin.display(description="Status")
    def status(self, obj: EnrolmentLink) -> str:
        if obj.used_at is not None:
            return "used" if obj.result_id else "in use"
        return "open" if obj.is_usable() else "expired"

    @admin.display(description="Card put on file")
    def result_card(self, obj: EnrolmentLink) -> SafeString | str:
        if obj.result is None:
            return "-"
        return change_link(obj.result, str(obj.result))
