"""Cards on file: enrol, replace and remove a card in PayTrace's vault (issue 15).

The card number and the security code never reach this module. A page hands it the
`hpf_token`/`enc_key` pair PayTrace's hosted fields (Protect.js) produced in the
browser; the portal turns the pair into a vault profile under an id it picks, reads
the profile back for what may be shown (brand, last four, expiry) and keeps only that,
with the Sage Pro customer the card pays for.

Every refusal a person should read is a `CardError` whose message names the fix; any
other exception is a bug.

A crash between PayTrace creating a profile and the portal storing the card leaves a
profile under an id the portal never recorded: harmless (nothing charges it), and
visible in PayTrace's vault export.
"""

import hashlib
import re
import secrets
from datetime import date, timedelta
from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from integrations.cardnumbers import might_hold_card_number
from integrations.connectors.base import ConnectorError, NotFoundError
from integrations.mirror import mirror_key
from integrations.models import Connection
from integrations.models.cards import CardOnFile, EnrolmentLink
from mappings.models import PayerLink, normalise_payer_key

# PayTrace error codes the vault answers with.
CUSTOMER_NOT_FOUND = "30"
CUSTOMER_ID_IN_USE = "171"

VAULT_ID_MAX = 50
# What Protect.js hands the page: opaque printable tokens. Anything else is not one.
_TOKEN = re.compile(r"[A-Za-z0-9+/=_:.\-]{8,2000}", re.ASCII)
_ZIP = re.compile(r"[A-Za-z0-9 \-]{0,10}", re.ASCII)
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}")
BILLING_NAME_MAX = 100
EXPIRING_WITHIN_DAYS = 60
LINK_HOURS_MAX = 24 * 14
LINK_PATH = "/pay/cards/{secret}/"
# Brands PayTrace's export may name (`card_type`), kept as the portal spells them.
_BRANDS = {
    "VISA": "Visa",
    "MASTERCARD": "MasterCard",
    "MC": "MasterCard",
    "AMEX": "American Express",
    "AMERICAN EXPRESS": "American Express",
    "DISCOVER": "Discover",
    "DINERS": "Diners Club",
    "DINERS CLUB": "Diners Club",
    "JCB": "JCB",
}
# Brand from the first digit of a masked number that shows it.
_BRAND_PREFIXES = (
    ("34", "American Express"),
    ("37", "American Express"),
    ("4", "Visa"),
    ("5", "MasterCard"),
    ("2", "MasterCard"),
    ("6", "Discover"),
)


class CardError(Exception):
    """A refusal shown to a person: what went wrong and what to do about it."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# PayTrace ---------------------------------------------------------------------------


def client_key(paytrace: Connection) -> str:
    """A Protect.js `clientKey` for one enrolment page."""
    _check_paytrace(paytrace)
    try:
        return paytrace.paytrace().payment_fields_client_key()
    except ConnectorError as exc:
        raise CardError(
            f"PayTrace gave no key for the card fields ({_short(exc)}). "
            "Check the PayTrace connection (Test connection on its page), then reload."
        ) from exc


def protect_script_url(paytrace: Connection) -> str:
    """The Protect.js the enrolment page loads for this connection's environment.

    The portal's own sandbox serves a stand-in; PayTrace's sandbox host has its own
    script; anything else is production."""
    base = paytrace.base_url.rstrip("/")
    if base.endswith("/sandbox/paytrace"):
        return f"{base}/protect/js/protect.min.js"
    if "://api.sandbox.paytrace.com" in base:
        return "https://protect.sandbox.paytrace.com/js/protect.min.js"
    return "https://protect.paytrace.com/js/protect.min.js"


def script_origin(url: str) -> str:
    """`scheme://host[:port]` of a URL ("" for none)."""
    scheme, found, rest = url.partition("://")
    if not found or not rest:
        return ""
    return f"{scheme}://{rest.split('/', 1)[0]}"


def enrol_card(
    *,
    paytrace: Connection,
    sagepro: Connection,
    custno: str,
    hpf_token: str,
    enc_key: str,
    billing_name: str = "",
    email: str = "",
    billing_zip: str = "",
    user: AbstractBaseUser | None = None,
    replaces: CardOnFile | None = None,
) -> CardOnFile:
    """Put the card behind a hosted-fields token on file for a Sage Pro customer.

    1. Check the inputs and that the customer exists (mirror first, then Sage Pro).
    2. New card: create a vault profile under a fresh id. Replacing: update the
       profile of `replaces` (same id, so autopay and recurring schedules keep it).
    3. Read the profile back for brand, last four and expiry; store them.
    4. Link the vault id to the customer (`PayerLink`), so payments PayTrace makes on
       the profile (recurring charges) match the customer.
    """
    _check_paytrace(paytrace)
    if sagepro.kind != Connection.Kind.SAGEPRO:
        raise CardError(
            "Choose a Sage Pro connection for the customer.", field="sagepro"
        )
    billing_name = check_billing_name(billing_name)
    email = check_email(email)
    billing_zip = check_zip(billing_zip)
    hpf_token, enc_key = check_tokens(hpf_token, enc_key)
    custno = mirror_key(custno)
    if replaces is not None:
        _check_replaceable(replaces, paytrace, sagepro, custno)
    customer = customer_name(sagepro, custno, strict=True)
    custno = mirror_key(customer.get("custno") or custno)
    address = {"name": billing_name, "zip": billing_zip}
    address = {k: v for k, v in address.items() if v}
    connector = paytrace.paytrace()
    if replaces is not None:
        vault_id = replaces.vault_customer_id
        _call(
            connector.update_customer_protect,
            customer_id=vault_id,
            hpf_token=hpf_token,
            enc_key=enc_key,
            billing_address=address,
        )
    else:
        vault_id = _create_profile(
            connector, custno, hpf_token, enc_key, address, email
        )
    details = _read_profile(connector, vault_id)
    with transaction.atomic():
        if replaces is not None:
            card = CardOnFile.objects.select_for_update().get(pk=replaces.pk)
            card.brand, card.last4 = details["brand"], details["last4"]
            card.exp_month, card.exp_year = details["exp_month"], details["exp_year"]
            card.billing_name = billing_name or card.billing_name
            card.email = email or card.email
            card.save()
        else:
            card = CardOnFile.objects.create(
                paytrace=paytrace,
                sagepro=sagepro,
                custno=custno,
                vault_customer_id=vault_id,
                billing_name=billing_name,
                email=email,
                created_by=cast(Any, user),
                **details,
            )
        _link_payer(card, user)
    return card


def _check_paytrace(paytrace: Connection) -> None:
    if paytrace.kind != Connection.Kind.PAYTRACE:
        raise CardError("Choose a PayTrace connection.", field="paytrace")
    if not paytrace.is_active:
        raise CardError(
            f"The PayTrace connection {paytrace.name} is switched off; choose an "
            "active one.",
            field="paytrace",
        )


def _check_replaceable(
    card: CardOnFile, paytrace: Connection, sagepro: Connection, custno: str
) -> None:
    if card.state != CardOnFile.State.ACTIVE:
        raise CardError(
            f"{card} was removed; put a new card on file instead of replacing it."
        )
    if card.paytrace_id != paytrace.pk or card.sagepro_id != sagepro.pk:
        raise CardError(
            f"{card} is kept in {card.paytrace.name}; replace it through that "
            "connection.",
            field="paytrace",
        )
    if card.custno != custno:
        raise CardError(
            f"{card} belongs to customer {card.custno}, not {custno}.", field="custno"
        )


def _create_profile(
    connector: Any,
    custno: str,
    hpf_token: str,
    enc_key: str,
    address: dict[str, str],
    email: str,
) -> str:
    """Create the profile under a fresh id; a taken id (171) is drawn again."""
    for _ in range(3):
        vault_id = new_vault_id(custno)
        try:
            connector.create_customer_protect(
                customer_id=vault_id,
                hpf_token=hpf_token,
                enc_key=enc_key,
                billing_address=address,
                email=email,
            )
        except ConnectorError as exc:
            if exc.code == CUSTOMER_ID_IN_USE:
                continue
            raise _card_error(exc) from exc
        return vault_id
    raise CardError("PayTrace refused three fresh vault ids as taken; try again.")


def new_vault_id(custno: str) -> str:
    """`<custno>-<8 random hex>`: the customer for a person reading PayTrace's vault,
    the random part so that a customer may have several cards."""
    stem = re.sub(r"[^A-Z0-9]", "", custno.upper())[: VAULT_ID_MAX - 9] or "CUST"
    return f"{stem}-{secrets.token_hex(4).upper()}"


def _read_profile(connector: Any, vault_id: str) -> dict[str, Any]:
    """Brand, last four and expiry of a vault profile, as its export shows them."""
    profiles = _call(connector.export_customers, vault_id)
    profile = next(
        (
            p
            for p in profiles
            if isinstance(p, dict) and p.get("customer_id") == vault_id
        ),
        None,
    )
    if profile is None:
        raise CardError(
            f"PayTrace stored the card as {vault_id} but does not show it; "
            "try again in a minute, or ask PayTrace support."
        )
    return card_details(profile)


def card_details(profile: dict[str, Any]) -> dict[str, Any]:
    """What the portal keeps of a vault profile: brand, last four and expiry only."""
    card = profile.get("credit_card") if isinstance(profile, dict) else None
    card = card if isinstance(card, dict) else {}
    masked = str(card.get("masked_number") or "")
    digits = re.sub(r"[^0-9]", "", masked)
    try:
        month = int(str(card.get("expiration_month")))
        year = int(str(card.get("expiration_year")))
    except (TypeError, ValueError):
        month = year = 0
    if year and year < 100:
        year += 2000
    if len(digits) < 4 or not 1 <= month <= 12 or not 2000 <= year <= 2999:
        raise CardError(
            "PayTrace's copy of the card shows no last four digits or expiry; "
            "put the card on file again."
        )
    return {
        "brand": brand_of(str(card.get("card_type") or ""), masked),
        "last4": digits[-4:],
        "exp_month": month,
        "exp_year": year,
    }


def brand_of(card_type: str, masked: str) -> str:
    named = _BRANDS.get(" ".join(card_type.upper().split()))
    if named:
        return named
    if masked[:1].isdigit():
        for prefix, brand in _BRAND_PREFIXES:
            if masked.startswith(prefix):
                return brand
    return ""


def _link_payer(card: CardOnFile, user: AbstractBaseUser | None) -> None:
    kind = PayerLink.Kind.CUSTOMER_ID
    key = normalise_payer_key(kind, card.vault_customer_id)
    link, made = PayerLink.objects.get_or_create(
        connection_id=card.paytrace_id,
        kind=kind,
        key=key,
        defaults={
            "custno": card.custno,
            "source": PayerLink.Source.ADMIN,
            "evidence": f"Card on file {card.vault_customer_id} (issue 15).",
            "created_by": user,
        },
    )
    if not made and (link.custno != card.custno or not link.is_active):
        link.custno, link.is_active = card.custno, True
        link.save(update_fields=["custno", "is_active"])


def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return method(*args, **kwargs)
    except ConnectorError as exc:
        raise _card_error(exc) from exc


def _card_error(exc: ConnectorError) -> CardError:
    if exc.transient or exc.status is None or exc.status >= 500:
        return CardError(
            f"PayTrace could not be reached ({_short(exc)}). Nothing was stored; "
            "try again in a minute."
        )
    if exc.code == CUSTOMER_NOT_FOUND:
        return CardError(
            "PayTrace has no vault profile under this card's id any more; remove "
            "the card and put a new one on file."
        )
    return CardError(
        f"PayTrace refused the card ({_short(exc)}). The card fields' token works "
        "once and for a few minutes: enter the card again and submit."
    )


def _short(exc: Exception) -> str:
    # Never echo what came back beyond a line: an error may quote its input.
    text = " ".join(str(exc).split())[:200]
    return "an unreadable answer" if might_hold_card_number(text) else text


# Sage Pro ---------------------------------------------------------------------------


def customer_name(
    sagepro: Connection, custno: str, *, strict: bool = False
) -> dict[str, Any]:
    """The Sage Pro customer (`custno`, `company`, ...) from the mirror, else the
    gateway. With `strict`, an unreachable Sage Pro is a CardError too."""
    key = mirror_key(custno)
    if not key or len(key) > 20 or might_hold_card_number(key):
        raise CardError(
            "Enter the Sage Pro customer number (up to 20 characters).", field="custno"
        )
    try:
        return sagepro.mirror().get_customer(key)
    except NotFoundError as exc:
        raise CardError(
            f"Sage Pro has no customer {key}; check the customer number.",
            field="custno",
        ) from exc
    except ConnectorError as exc:
        if not strict:
            return {"custno": key, "company": ""}
        raise CardError(
            f"Sage Pro could not be asked about customer {key} ({_short(exc)}); "
            "try again in a minute.",
            field="custno",
        ) from exc


# Input checks (the forms call these too) ----------------------------------------------


def check_billing_name(value: str) -> str:
    value = " ".join(str(value or "").split())
    if len(value) > BILLING_NAME_MAX:
        raise CardError(
            f"The billing name is longer than {BILLING_NAME_MAX} characters; shorten it.",
            field="billing_name",
        )
    if might_hold_card_number(value):
        raise CardError(
            "The billing name looks like a card number. Type the card number only "
            "into the card fields; the name is the cardholder's name.",
            field="billing_name",
        )
    return value


def check_email(value: str) -> str:
    value = str(value or "").strip()
    if value and (len(value) > 254 or not _EMAIL.fullmatch(value)):
        raise CardError(
            "Enter an e-mail address like name@example.com, or leave it empty.",
            field="email",
        )
    if might_hold_card_number(value):
        raise CardError("The e-mail looks like a card number.", field="email")
    return value


def check_zip(value: str) -> str:
    value = str(value or "").strip()
    if not _ZIP.fullmatch(value):
        raise CardError(
            "Enter the billing ZIP or postal code: up to 10 letters, digits, "
            "spaces or dashes.",
            field="billing_zip",
        )
    return value


def check_tokens(hpf_token: str, enc_key: str) -> tuple[str, str]:
    hpf_token, enc_key = str(hpf_token or "").strip(), str(enc_key or "").strip()
    if not _TOKEN.fullmatch(hpf_token) or not _TOKEN.fullmatch(enc_key):
        raise CardError(
            "The card fields sent no usable token. Enter the card in the card fields "
            "and submit the page again (its script must be allowed to run).",
            field="hpf_token",
        )
    if might_hold_card_number(hpf_token) or might_hold_card_number(enc_key):
        raise CardError(
            "The card fields' token looks like a card number; enter the card in the "
            "card fields, never elsewhere.",
            field="hpf_token",
        )
    return hpf_token, enc_key


# Removing, expiring -----------------------------------------------------------------


def remove_card(card: CardOnFile, user: AbstractBaseUser | None) -> CardOnFile:
    """Delete the card's vault profile in PayTrace and mark it removed here.

    Refused while a recurring schedule still charges it (cancel that first). A
    profile PayTrace no longer knows (30) is as good as deleted."""
    with transaction.atomic():
        card = CardOnFile.objects.select_for_update().get(pk=card.pk)
        if card.state == CardOnFile.State.REMOVED:
            return card
        schedules = list(
            card.recurring_schedules.filter(state__in=["active", "creating"])
        )
        if schedules:
            names = ", ".join(str(s) for s in schedules[:5])
            raise CardError(
                f"Recurring schedules still charge this card: {names}. Cancel "
                "schedule(s) first, then remove the card."
            )
    try:
        card.paytrace.paytrace().delete_customer(card.vault_customer_id)
    except ConnectorError as exc:
        if exc.code != CUSTOMER_NOT_FOUND:
            raise _card_error(exc) from exc
    now = timezone.now()
    with transaction.atomic():
        card = CardOnFile.objects.select_for_update().get(pk=card.pk)
        card.state = CardOnFile.State.REMOVED
        card.removed_at, card.removed_by = now, cast(Any, user)
        if card.autopay:
            card.autopay = False
            card.autopay_stopped_at = now
            card.autopay_stopped_reason = "The card was removed."
        # The payer link stays: payments already made on the profile (and refunds
        # of them) still belong to the customer.
        card.save()
    return card


def expiring_filter(
    within_days: int = EXPIRING_WITHIN_DAYS, today: date | None = None
) -> Q:
    """Cards whose last day (their expiry month's end) is at most `within_days` after
    `today`, expired ones included."""
    last = (today or timezone.localdate()) + timedelta(days=within_days)
    # The last expiry month wholly inside the window: the window's last day's month
    # if that day is the month's end, else the month before.
    year, month = last.year, last.month
    if (last + timedelta(days=1)).month == month:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return Q(exp_year__lt=year) | Q(exp_year=year, exp_month__lte=month)


def expired_filter(today: date | None = None) -> Q:
    today = today or timezone.localdate()
    return Q(exp_year__lt=today.year) | Q(
        exp_year=today.year, exp_month__lt=today.month
    )


def expiring_cards(
    within_days: int = EXPIRING_WITHIN_DAYS, today: date | None = None
) -> QuerySet[CardOnFile]:
    """Active cards that expire within the window, and those already expired,
    soonest first."""
    return (
        CardOnFile.objects.filter(state=CardOnFile.State.ACTIVE)
        .filter(expiring_filter(within_days, today))
        .order_by("exp_year", "exp_month", "custno")
    )


# Enrolment links --------------------------------------------------------------------


def create_enrolment_link(
    *,
    paytrace: Connection,
    sagepro: Connection,
    custno: str,
    email: str = "",
    card: CardOnFile | None = None,
    user: AbstractBaseUser | None,
    hours: int = 72,
) -> tuple[EnrolmentLink, str]:
    """A link a customer opens to put a card on file; return it and its path.

    The path holds the secret: it is shown once, and only its SHA-256 is stored."""
    _check_paytrace(paytrace)
    email = check_email(email)
    if not 1 <= hours <= LINK_HOURS_MAX:
        raise CardError(
            f"A link lasts from 1 to {LINK_HOURS_MAX} hours.", field="hours"
        )
    customer = customer_name(sagepro, custno, strict=True)
    custno = mirror_key(customer.get("custno") or custno)
    if card is not None:
        _check_replaceable(card, paytrace, sagepro, custno)
    secret, digest = _new_secret()
    link = EnrolmentLink.objects.create(
        digest=digest,
        paytrace=paytrace,
        sagepro=sagepro,
        custno=custno,
        card=card,
        email=email,
        created_by=cast(Any, user),
        expires_at=timezone.now() + timedelta(hours=hours),
    )
    return link, LINK_PATH.format(secret=secret)


def _new_secret() -> tuple[str, str]:
    # The storage-wide card-number net would mask a digest holding a run that looks
    # like a card number (rare in hex, but possible), and the link would never be
    # found again: draw another secret then.
    while True:
        secret = secrets.token_urlsafe(32)
        digest = link_digest(secret)
        if not might_hold_card_number(digest) and not might_hold_card_number(secret):
            return secret, digest


def link_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def find_link(secret: str) -> EnrolmentLink | None:
    """The link a secret opens (used or not), or None."""
    if not secret or len(secret) > 200:
        return None
    return (
        EnrolmentLink.objects.select_related("paytrace", "sagepro", "card")
        .filter(digest=link_digest(secret))
        .first()
    )


def enrol_by_link(
    link: EnrolmentLink,
    *,
    hpf_token: str,
    enc_key: str,
    billing_name: str = "",
    email: str = "",
    billing_zip: str = "",
) -> CardOnFile:
    """Use a link once: claim it, enrol the card, record the result.

    The link is claimed before PayTrace is called, so two submissions of one link
    make one card; a refusal gives the claim back so the customer can try again."""
    now = timezone.now()
    claimed = EnrolmentLink.objects.filter(
        pk=link.pk, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if not claimed:
        raise CardError("This link was used already or has expired.")
    try:
        card = enrol_card(
            paytrace=link.paytrace,
            sagepro=link.sagepro,
            custno=link.custno,
            hpf_token=hpf_token,
            enc_key=enc_key,
            billing_name=billing_name,
            email=email or link.email,
            billing_zip=billing_zip,
            user=None,
            replaces=link.card,
        )
    except BaseException:
        EnrolmentLink.objects.filter(pk=link.pk, used_at=now).update(used_at=None)
        raise
    EnrolmentLink.objects.filter(pk=link.pk).update(result=card)
    return card
