"""The card enrolment pages: a finance user taking a card by phone (in the admin), and
the link a customer opens (`/pay/cards/<secret>/`, no login).

Both pages put PayTrace's hosted fields (Protect.js) in `#pt_hpf_form`; their script
(`static/integrations/enrolment.js`) asks the fields for an `hpf_token`/`enc_key` pair
and posts only that pair with the form. Both answer with a Content-Security-Policy
that lets scripts and frames come only from the portal and the one PayTrace origin of
the connection's environment, no referrer to other sites, and no caching.
"""

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from integrations import cards
from integrations.admin.base import staff_user
from integrations.cardnumbers import might_hold_card_number
from integrations.enrolment.forms import (
    CardDetailsForm,
    ReplaceForm,
    StaffEnrolForm,
    enrolment_connections,
    scrub,
)
from integrations.models import Connection
from integrations.models.cards import CardOnFile

TEMPLATES = "integrations/enrolment"
REFERRER_POLICY = "same-origin"


def secure(response: HttpResponse, script_url: str) -> HttpResponse:
    """The headers of a page that holds the hosted fields."""
    origin = cards.script_origin(script_url)
    sources = "'self'" if not origin else f"'self' {origin}"
    response["Content-Security-Policy"] = "; ".join(
        [
            "default-src 'self'",
            f"script-src {sources}",
            f"frame-src {sources}",
            f"connect-src {sources}",
            # Inline styles only (the admin's header and the hosted fields' sizing);
            # never inline script.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    # Not `no-referrer`: under it a browser sends `Origin: null` with the form's POST,
    # which Django's CSRF check (rightly) refuses. `same-origin` gives the same
    # protection where it matters: no other site (PayTrace's script and iframe
    # included) ever sees the page's address, the link's secret in it.
    response["Referrer-Policy"] = REFERRER_POLICY
    response["Cache-Control"] = "no-store"
    return response


# The finance user's page (routed by integrations.admin.cards) -----------------------


@permission_required("integrations.add_cardonfile", raise_exception=True)
def staff_enrol(request: HttpRequest, card_id: int | None = None) -> HttpResponse:
    """Put a card on file for a customer (or, with `card_id`, replace that card)."""
    card = None
    if card_id is not None:
        if not request.user.has_perm("integrations.change_cardonfile"):
            raise PermissionDenied
        card = get_object_or_404(
            CardOnFile.objects.select_related("paytrace", "sagepro"), pk=card_id
        )
        if card.state != CardOnFile.State.ACTIVE:
            messages.error(request, f"{card} was removed; it cannot be replaced.")
            return redirect("admin:integrations_cardonfile_change", card.pk)
    connections = list(enrolment_connections())
    if card is not None:
        connections = [card.paytrace]
    if not connections:
        return _staff_page(request, {"no_connection": True}, None)
    form: StaffEnrolForm
    if request.method == "POST":
        form = _staff_form(request.POST, card)
        if form.is_valid():
            data = form.cleaned_data
            paytrace = data["paytrace"]
            try:
                saved = cards.enrol_card(
                    paytrace=paytrace,
                    sagepro=card.sagepro if card else paytrace.sagepro,
                    custno=data["custno"],
                    hpf_token=data["hpf_token"],
                    enc_key=data["enc_key"],
                    billing_name=data["billing_name"],
                    email=data["email"],
                    billing_zip=data["billing_zip"],
                    user=staff_user(request),
                    replaces=card,
                )
            except cards.CardError as exc:
                form.add_card_error(exc)
            else:
                verb = "replaced" if card else "put on file"
                messages.success(
                    request,
                    f"{saved.brand or 'Card'} ending {saved.last4}, expiring "
                    f"{saved.expiry}, {verb} for {saved.custno}.",
                )
                return redirect("admin:integrations_cardonfile_enrolled", saved.pk)
        # Re-shown: without any card-number-like value, and without the used tokens.
        form.data = scrub(request.POST)
        paytrace = _chosen(connections, request.POST.get("paytrace"), card)
    else:
        paytrace = _chosen(connections, request.GET.get("paytrace"), card)
        custno = card.custno if card else prefill(request.GET.get("custno", ""))
        form = _staff_form(
            None,
            card,
            initial={
                "paytrace": paytrace.pk,
                "custno": custno,
                "billing_name": card.billing_name if card else "",
                "email": card.email if card else "",
            },
        )
    custno = str(form["custno"].value() or "")
    sagepro = card.sagepro if card else paytrace.sagepro
    company = _company(sagepro, custno) if custno and sagepro else ""
    return _staff_page(
        request,
        {"form": form, "card": card, "company": company, "paytrace": paytrace},
        paytrace,
    )


def prefill(value: str) -> str:
    """A customer number from the address, unless it looks like a card number."""
    value = value.strip()[:20]
    return "" if might_hold_card_number(value) else value


def _staff_form(data: Any, card: CardOnFile | None, **kwargs: Any) -> StaffEnrolForm:
    if card is not None:
        return ReplaceForm(data, card=card, **kwargs)
    return StaffEnrolForm(data, **kwargs)


def _chosen(
    connections: list[Connection], wanted: str | None, card: CardOnFile | None
) -> Connection:
    if card is not None:
        return card.paytrace
    for connection in connections:
        if str(connection.pk) == str(wanted or ""):
            return connection
    return connections[0]


def _staff_page(
    request: HttpRequest, context: dict[str, Any], paytrace: Connection | None
) -> HttpResponse:
    card = context.get("card")
    title = f"Replace {card}" if card else "Put a card on file"
    page = {**admin.site.each_context(request), "title": title, **context}
    script_url = ""
    if paytrace is not None:
        script_url = cards.protect_script_url(paytrace)
        try:
            page["client_key"] = cards.client_key(paytrace)
        except cards.CardError as exc:
            page["fields_error"] = exc.message
        page["protect_url"] = script_url
        page["lookup_url"] = reverse("admin:integrations_cardonfile_customer")
    response = TemplateResponse(request, f"{TEMPLATES}/staff.html", page)
    return secure(response, script_url)


@require_GET
@permission_required("integrations.add_cardonfile", raise_exception=True)
def customer_lookup(request: HttpRequest) -> JsonResponse:
    """`?paytrace=<id>&custno=<custno>` → the Sage Pro customer's name, for the page."""
    connection = (
        enrolment_connections().filter(pk=request.GET.get("paytrace") or 0).first()
        if (request.GET.get("paytrace") or "").isdigit()
        else None
    )
    if connection is None:
        return JsonResponse(
            {"error": "Choose an active PayTrace account first."}, status=400
        )
    try:
        customer = cards.customer_name(
            connection.sagepro, request.GET.get("custno", "")
        )
    except cards.CardError as exc:
        return JsonResponse({"error": exc.message}, status=404)
    response = JsonResponse(
        {"custno": customer.get("custno"), "company": customer.get("company") or ""}
    )
    response["Cache-Control"] = "no-store"
    return response


@permission_required("integrations.view_cardonfile", raise_exception=True)
def enrolled(request: HttpRequest, card_id: int) -> HttpResponse:
    """The card just put on file: what it is, and where to go next."""
    card = get_object_or_404(CardOnFile.objects.select_related("sagepro"), pk=card_id)
    company = _company(card.sagepro, card.custno)
    context = {
        **admin.site.each_context(request),
        "title": "Card on file",
        "card": card,
        "company": company,
    }
    response = TemplateResponse(request, f"{TEMPLATES}/enrolled.html", context)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = REFERRER_POLICY
    return response


# The customer's link ----------------------------------------------------------------


def link_page(request: HttpRequest, secret: str) -> HttpResponse:
    """`GET/POST /pay/cards/<secret>/`: a customer puts a card on file, once."""
    link = cards.find_link(secret)
    if link is None:
        return _plain(
            request,
            404,
            "Link not found",
            "This card link is not known. Check that the whole link was copied, or "
            "ask whoever sent it for a new one.",
        )
    if not link.is_usable():
        return _plain(
            request,
            410,
            "Link no longer works",
            "This card link was used already or has expired. Ask whoever sent it "
            "for a new one.",
        )
    company = _company(link.sagepro, link.custno)
    form = CardDetailsForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            card = cards.enrol_by_link(
                link,
                hpf_token=data["hpf_token"],
                enc_key=data["enc_key"],
                billing_name=data["billing_name"],
                email=data["email"],
                billing_zip=data["billing_zip"],
            )
        except cards.CardError as exc:
            form.add_card_error(exc)
        else:
            done = TemplateResponse(
                request,
                f"{TEMPLATES}/link_done.html",
                {"card": card, "company": company},
            )
            return secure(done, "")
    if request.method == "POST":
        form.data = scrub(request.POST)
    elif request.method != "GET":
        raise Http404
    script_url = cards.protect_script_url(link.paytrace)
    context: dict[str, Any] = {
        "form": form,
        "company": company,
        "replacing": link.card_id is not None,
        "expires_at": link.expires_at,
        "protect_url": script_url,
    }
    try:
        context["client_key"] = cards.client_key(link.paytrace)
    except cards.CardError:
        # The customer gets no PayTrace detail; the connection page shows it to staff.
        context["fields_error"] = (
            "Card entry is not available right now. Please try again later."
        )
    response = TemplateResponse(request, f"{TEMPLATES}/link.html", context)
    return secure(response, script_url)


def _company(sagepro: Connection, custno: str) -> str:
    try:
        return str(cards.customer_name(sagepro, custno).get("company") or "")
    except cards.CardError:
        return ""


def _plain(request: HttpRequest, status: int, title: str, text: str) -> HttpResponse:
    response = TemplateResponse(
        request, f"{TEMPLATES}/link_gone.html", {"title": title, "text": text}
    )
    response.status_code = status
    return secure(response, "")
