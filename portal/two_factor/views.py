"""The two-factor pages, in the admin's look. Each checks its input, asks `devices`,
and answers; pages that show a secret or recovery codes are never cached."""

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp import login as otp_login

from portal.two_factor import devices
from portal.two_factor.forms import CodeForm, ResetForm

WRONG_CODE = (
    "That code is not right, or it has expired. Enter the code your app shows now "
    "(codes change every 30 seconds), or one of your recovery codes."
)


def _page(
    request: HttpRequest, template: str, title: str, **context: Any
) -> TemplateResponse:
    return TemplateResponse(
        request,
        f"portal/two_factor/{template}",
        {**admin.site.each_context(request), "title": title, **context},
    )


def _next_url(request: HttpRequest) -> str:
    """Where to go once verified: the page the person asked for, if it is ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, {request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("admin:index")


def _is_verified(request: HttpRequest) -> bool:
    return bool(request.user.is_verified())  # type: ignore[union-attr]


@never_cache
@login_required
def verify(request: HttpRequest) -> HttpResponse:
    """Enter your authentication code: from the app, or one recovery code."""
    user = request.user
    if _is_verified(request):
        return HttpResponseRedirect(_next_url(request))
    if not devices.has_device(user):
        return redirect(
            "two_factor:setup" if devices.is_required(user) else "two_factor:manage"
        )
    form = CodeForm(request.POST or None)
    form.fields[
        "code"
    ].help_text = (
        "The six digits your authenticator app shows now, or one recovery code."
    )
    if form.is_valid():
        result = devices.check_code(user, form.cleaned_data["code"])
        if result.accepted:
            _verified(request, result.device)
            return HttpResponseRedirect(_next_url(request))
        form.add_error("code", _refusal(result))
    return _page(
        request,
        "verify.html",
        "Enter your authentication code",
        form=form,
        next=_next_url(request),
    )


def _verified(request: HttpRequest, device: Any) -> None:
    """Mark the session as past its second factor, under a new session key: the
    session is worth more now than the one a password alone opened."""
    otp_login(request, device)
    request.session.cycle_key()


def _refusal(result: devices.CodeResult) -> str:
    if result.wait_until is not None:
        seconds = devices.seconds_until(result.wait_until)
        return (
            f"Too many wrong codes: wait {seconds} seconds, then enter the code your "
            "app shows at that time."
        )
    return WRONG_CODE


@never_cache
@login_required
def setup(request: HttpRequest) -> HttpResponse:
    """Set up two-factor sign-in: scan the QR code (or type the secret), confirm with a
    code, then keep the recovery codes."""
    user = request.user
    if devices.has_device(user):
        # A new device replaces the old one only through "Remove" (which asks a code
        # from it), or an unverified session could enrol its own.
        return redirect("two_factor:manage")
    device = devices.pending_totp(user)
    form = CodeForm(request.POST or None)
    if form.is_valid():
        codes = devices.confirm(device, form.cleaned_data["code"])
        if codes is not None:
            _verified(request, device)
            return _recovery_codes(request, codes, _next_url(request))
        form.add_error("code", WRONG_CODE)
    return _page(
        request,
        "setup.html",
        "Set up two-factor sign-in",
        form=form,
        qr_svg=devices.qr_svg(device),
        secret=devices.secret_text(device),
        required=devices.is_required(user),
        next=_next_url(request),
    )


def _recovery_codes(request: HttpRequest, codes: list[str], then: str) -> HttpResponse:
    return _page(
        request, "recovery_codes.html", "Your recovery codes", codes=codes, then=then
    )


@never_cache
@login_required
def manage(request: HttpRequest) -> HttpResponse:
    """Two-factor sign-in: the person's device, recovery codes left, and what they can
    do about them."""
    user = request.user
    device = devices.confirmed_totp(user)
    if device is not None and not _is_verified(request):
        return redirect(f"{reverse('two_factor:verify')}?next={request.path}")
    return _page(
        request,
        "manage.html",
        "Two-factor sign-in",
        device=device,
        codes_left=devices.recovery_codes_left(user),
        required=devices.is_required(user),
        enforced=_enforced(),
        form=CodeForm(),
    )


def _enforced() -> bool:
    return bool(settings.TWO_FACTOR_REQUIRED)


@never_cache
@require_POST
@login_required
def new_recovery_codes(request: HttpRequest) -> HttpResponse:
    # Only a session that proved it holds the device may make codes for it.
    if not (devices.has_device(request.user) and _is_verified(request)):
        return redirect("two_factor:manage")
    codes = devices.make_recovery_codes(request.user)
    return _recovery_codes(request, codes, reverse("two_factor:manage"))


@require_POST
@login_required
def remove(request: HttpRequest) -> HttpResponse:
    """Remove one's own device: a current code (or a recovery code) proves it is
    theirs to remove."""
    user = request.user
    form = CodeForm(request.POST)
    result = (
        devices.check_code(user, form.cleaned_data["code"]) if form.is_valid() else None
    )
    if result is None or not result.accepted:
        messages.error(
            request,
            "Two-factor sign-in was not removed: "
            + (_refusal(result) if result else "enter a code from your app."),
        )
        return redirect("two_factor:manage")
    devices.remove(user, "removed by the user")
    messages.success(
        request,
        "Two-factor sign-in removed, with its recovery codes. "
        + (
            "Your account needs it: set it up again now."
            if devices.is_required(user)
            else "Set it up again here whenever you like."
        ),
    )
    return redirect(
        "two_factor:setup" if devices.is_required(user) else "two_factor:manage"
    )


@never_cache
@login_required
def reset(request: HttpRequest) -> HttpResponse:
    """A superuser resets another person's two-factor sign-in (a lost phone and no
    recovery codes left): that person sets it up again at their next sign-in."""
    if not request.user.is_superuser:
        raise PermissionDenied(
            "Only a superuser can reset another person's two-factor sign-in."
        )
    form = ResetForm(request.POST or None)
    if form.is_valid():
        model = get_user_model()
        name = form.cleaned_data["username"]
        target = model.objects.get(**{model.USERNAME_FIELD: name})
        devices.remove(target, f"reset by {request.user.get_username()}")
        messages.success(
            request,
            f"Two-factor sign-in for {name} reset: they set it up again at their next "
            "sign-in (if it is required for them).",
        )
        return redirect("two_factor:reset")
    return _page(
        request,
        "reset.html",
        "Reset a person's two-factor sign-in",
        form=form,
        enrolled=devices.enrolled_users(),
    )
