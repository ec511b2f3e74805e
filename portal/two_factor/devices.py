"""Who must use two-factor sign-in, and what a person's devices do.

A person has at most one AuthenticatorDevice (an authenticator app) and, once it is
confirmed, one RecoveryDevice holding their recovery codes (both in portal.models: the
app's secret is encrypted at rest, recovery codes are kept only as digests). An
unconfirmed AuthenticatorDevice is a set-up in progress: its secret is shown until the
first right code confirms it.
"""

from base64 import b32encode
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone
from django_otp import verify_token

from portal.audit import record
from portal.models import AuthenticatorDevice, RecoveryCode, RecoveryDevice

User = AbstractBaseUser | AnonymousUser
RECOVERY_DEVICE_NAME = "Recovery codes"
TOTP_DEVICE_NAME = "Authenticator app"


@dataclass(frozen=True)
class CodeResult:
    """What checking a code came to: the device that took it, or why not."""

    device: AuthenticatorDevice | RecoveryDevice | None = None
    wait_until: datetime | None = None

    @property
    def accepted(self) -> bool:
        return self.device is not None


def is_required(user: Any) -> bool:
    """Superusers and the TWO_FACTOR_REQUIRED_ROLES must use two-factor sign-in."""
    if not settings.TWO_FACTOR_REQUIRED or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=settings.TWO_FACTOR_REQUIRED_ROLES).exists()


def confirmed_totp(user: Any) -> AuthenticatorDevice | None:
    return AuthenticatorDevice.objects.filter(user=user, confirmed=True).first()


def has_device(user: Any) -> bool:
    return AuthenticatorDevice.objects.filter(user=user, confirmed=True).exists()


def pending_totp(user: Any) -> AuthenticatorDevice:
    """The set-up in progress (the same secret on every reload), or a new one."""
    device = AuthenticatorDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = AuthenticatorDevice.objects.create(
            user=user, name=TOTP_DEVICE_NAME, confirmed=False
        )
    return device


def secret_text(device: AuthenticatorDevice) -> str:
    """The secret as authenticator apps take it typed in: base32, in groups of four."""
    text = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def qr_svg(device: AuthenticatorDevice) -> str:
    """The set-up QR code as inline SVG (no image request, nothing for a CSP to block)."""
    image = qrcode.make(
        device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8
    )
    return str(image.to_string(encoding="unicode"))


def confirm(device: AuthenticatorDevice, code: str) -> list[str] | None:
    """Confirm a set-up with its first right code; return the new recovery codes."""
    if _verify(device, code) is None:
        record(
            "two_factor_failed", device.user.get_username(), "code refused at set-up"
        )
        return None
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        AuthenticatorDevice.objects.filter(user=device.user).exclude(
            pk=device.pk
        ).delete()
        codes = make_recovery_codes(device.user)
    record("two_factor_enrolled", device.user.get_username(), "authenticator app")
    return codes


def make_recovery_codes(user: Any) -> list[str]:
    """Ten new one-time codes; the old ones stop working."""
    with transaction.atomic():
        RecoveryDevice.objects.filter(user=user).delete()
        device = RecoveryDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME)
        codes = device.add_codes(settings.TWO_FACTOR_RECOVERY_CODES)
    record(
        "recovery_codes_made",
        user.get_username(),
        f"{len(codes)} codes; earlier codes no longer work",
    )
    return codes


def recovery_codes_left(user: Any) -> int:
    return RecoveryCode.objects.filter(device__user=user).count()


def check_code(user: Any, code: str) -> CodeResult:
    """Check a code from the app (six digits) or a recovery code (sixteen letters and
    digits), on the one device it can belong to, and record the outcome."""
    code = "".join(code.split()).replace("-", "").lower()
    if len(code) == 6 and code.isdigit():
        devices: list[Any] = [confirmed_totp(user)]
    else:
        devices = list(RecoveryDevice.objects.filter(user=user))
    device = devices[0] if devices else None
    if device is None:
        return CodeResult()
    allowed, data = device.verify_is_allowed()
    if not allowed:
        record(
            "two_factor_failed", user.get_username(), "refused: too many wrong codes"
        )
        return CodeResult(wait_until=(data or {}).get("locked_until"))
    verified = _verify(device, code)
    if verified is None:
        record("two_factor_failed", user.get_username(), "wrong or expired code")
        return CodeResult()
    if isinstance(verified, RecoveryDevice):
        record(
            "recovery_code_used",
            user.get_username(),
            f"{recovery_codes_left(user)} recovery codes left",
        )
    return CodeResult(device=verified)


def remove(user: Any, reason: str) -> None:
    """Remove every two-factor device of `user` (their own choice or a superuser's
    reset); if it is required for them, they set it up again at the next sign-in."""
    with transaction.atomic():
        AuthenticatorDevice.objects.filter(user=user).delete()
        RecoveryDevice.objects.filter(user=user).delete()
    record("two_factor_removed", user.get_username(), reason)


def seconds_until(moment: datetime | None) -> int:
    if moment is None:
        return 0
    return max(1, int((moment - timezone.now()).total_seconds()) + 1)


def _verify(device: AuthenticatorDevice | RecoveryDevice, code: str) -> Any:
    """Through django-otp's own check: in a transaction with the device row locked, so
    two requests cannot both spend one code, and with its throttling."""
    return verify_token(device.user, device.persistent_id, code)


def enrolled_users() -> list[Any]:
    """People with a confirmed device, for the superuser's reset page."""
    return list(
        get_user_model()
        .objects.filter(authenticatordevice__confirmed=True)
        .distinct()
        .order_by("username")
    )
