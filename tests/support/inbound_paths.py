"""Plant card numbers in every way data enters the portal, and say which plant went where.

`tests/support/campaign.py` sends webhook attacks and sweeps; this module adds the
other doors: admin forms (read like a browser reads them: every field's current
value, then one field replaced by a card number, then the preview's "confirm"
followed), API bodies, query strings and headers, file uploads, and the public
enrolment pages. Each plant is a fresh Luhn-valid number (`pansweep.new_pan`)
registered in the campaign under a label naming the path and the field, so a finding
names the plant that put it there.
"""

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from django.test import Client

from tests.support.attack import Attack, disguise
from tests.support.campaign import Campaign
from tests.support.pansweep import find_in_text, mask, new_pan

# Text-like inputs a person types into; a card number can be typed into any of them.
TYPED_INPUTS = {"text", "email", "search", "url", "tel", "number", ""}
# A handful of disguises on the main paths (every disguise everywhere is the
# fuzzers' job; this sweep is about the doors).
MAIN_DISGUISES = ("plain", "spaces", "dashes", "fullwidth", "in_sentence")


# --- forms, read as a browser reads them ---------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    attrs: dict[str, str]
    # (name, kind, value): kind is the input type, "textarea" or "select".
    fields: list[tuple[str, str, str]] = field(default_factory=list)
    # Inputs a person types into (their names, in page order).
    typed: list[str] = field(default_factory=list)

    def values(self) -> dict[str, Any]:
        """What submitting the form unchanged sends (lists for repeated names)."""
        out: dict[str, Any] = {}
        for name, _, value in self.fields:
            if name in out:
                previous = out[name]
                out[name] = (
                    [*previous, value]
                    if isinstance(previous, list)
                    else [
                        previous,
                        value,
                    ]
                )
            else:
                out[name] = value
        return out


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: tuple[str, list[tuple[str, bool]]] | None = None
        self._option: str | None = None
        self._textarea: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("action", ""), a.get("method", "get").lower(), a)
            self.forms.append(self._form)
            return
        form = self._form
        if form is None or "disabled" in a:
            return
        name = a.get("name", "")
        if tag == "input" and name:
            kind = a.get("type", "").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    form.fields.append((name, kind, a.get("value", "on")))
                return
            form.fields.append((name, kind, a.get("value", "")))
            if kind in TYPED_INPUTS and "readonly" not in a:
                form.typed.append(name)
        elif tag == "textarea" and name:
            self._textarea = (name, [])
        elif tag == "select" and name:
            self._select = (name, [])
        elif tag == "option" and self._select is not None:
            self._option = a.get("value")
            self._select[1].append((a.get("value", ""), "selected" in a))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea[1].append(data)
        elif self._select is not None and self._option is None and self._select[1]:
            # <option> without a value attribute: its text is the value.
            value, selected = self._select[1][-1]
            if not value:
                self._select[1][-1] = (data.strip(), selected)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "textarea" and self._textarea is not None and self._form:
            name, parts = self._textarea
            self._form.fields.append((name, "textarea", "".join(parts).lstrip("\n")))
            self._form.typed.append(name)
            self._textarea = None
        elif tag == "select" and self._select is not None and self._form:
            name, options = self._select
            chosen = [v for v, s in options if s] or [v for v, _ in options if v][:1]
            for value in chosen:
                self._form.fields.append((name, "select", value))
            self._select = None
        elif tag == "option":
            self._option = None


def forms_of(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def main_form(html: str) -> Form | None:
    """The page's form that posts (the one with the most typed fields)."""
    posting = [f for f in forms_of(html) if f.method == "post"]
    return max(posting, key=lambda f: (len(f.typed), len(f.fields)), default=None)


# Hidden inputs a preview page carries its fingerprint in.
CONFIRM_NAMES = ("confirm", "confirmed", "fingerprint")


def confirmation(html: str) -> dict[str, str]:
    """The preview's fingerprint field(s), when the page asks to confirm."""
    for form in forms_of(html):
        found = {
            name: value
            for name, kind, value in form.fields
            if name in CONFIRM_NAMES and kind == "hidden" and value
        }
        if found:
            return found
    return {}


def confirm_value(html: str) -> str | None:
    return next(iter(confirmation(html).values()), None)


# --- the sweep's requests --------------------------------------------------------------


def redirected(response: Any) -> bool:
    """An admin form that saved: it redirects."""
    return response.status_code in (301, 302, 303)


@dataclass
class InboundSweep:
    """Plants card numbers through a campaign; every answer must be below 500."""

    campaign: Campaign
    answers: list[tuple[str, int, str]] = field(default_factory=list)

    def plant(self, label: str, form: str = "plain") -> tuple[str, Any]:
        """A fresh number and its disguise, registered under `label`."""
        pan = new_pan()
        self.campaign.planted[pan] = Attack(
            label, "", label, b"", "", {}, [pan], [f"{form}@{label}"]
        )
        return pan, disguise(pan, form)

    def note(self, label: str, response: Any) -> Any:
        """Record an answer; a 5xx is a failure naming the plant's label."""
        status = response.status_code
        self.answers.append((label, status, _gist(response)))
        self.campaign.statuses[status] += 1
        self.campaign.counts["requests"] += 1
        attack = self._attack(label)
        if status >= 500:
            self.campaign.fail(
                "server_error", f"{label}: answered {status}: {_gist(response)}", attack
            )
        if attack is not None:
            text = getattr(response, "content", b"").decode(errors="replace")
            for finding in find_in_text(text, attack.pans, "the answer"):
                self.campaign.fail("echo", f"{label}: {finding.describe()}", attack)
        return response

    def _attack(self, label: str) -> Attack | None:
        """The plant a request carried (its label, or the label it extends)."""
        best = None
        for attack in self.campaign.planted.values():
            if label.startswith(attack.label) and (
                best is None or len(attack.label) > len(best.label)
            ):
                best = attack
        return best

    def send(
        self,
        label: str,
        client: Client,
        method: str,
        path: str,
        *,
        body: bytes | str = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = client.generic(
            method, path, data=body, content_type=content_type, headers=headers or {}
        )
        return self.note(label, response)

    def send_json(
        self,
        label: str,
        client: Client,
        path: str,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return self.send(
            label, client, "POST", path, body=json.dumps(body), headers=headers
        )

    def get(self, label: str, client: Client, path: str, **headers: str) -> Any:
        return self.note(label, client.get(path, headers=headers))

    def post_form(
        self,
        label: str,
        client: Client,
        url: str,
        values: dict[str, Any],
        *,
        confirm: bool = True,
    ) -> Any:
        """POST the form; when the answer is a preview asking to confirm, confirm it
        (so what was typed is really stored, not only previewed)."""
        response = self.note(label, client.post(url, values))
        if confirm and response.status_code == 200:
            fields = confirmation(response.content.decode(errors="replace"))
            if fields:
                response = self.note(
                    f"{label} (confirmed)", client.post(url, {**values, **fields})
                )
        return response

    def plant_form(
        self,
        prefix: str,
        client: Client,
        url: str,
        *,
        fields: Iterable[str] | None = None,
        base: dict[str, Any] | Callable[[int], dict[str, Any]] | None = None,
        post_to: str | None = None,
        form: str = "plain",
        email_fields: Iterable[str] = (),
        confirm: bool = True,
        control: Callable[[Any], bool] | None = redirected,
        pick: Callable[[str], Form | None] = main_form,
    ) -> list[str]:
        """One plant per field of the page's form: read its current values, replace
        one field (every typed field unless `fields` names them) with a card number,
        submit, confirm a preview. Returns the fields planted.

        `base(n)` (or a dict) gives valid values for the n-th submission; with
        `control`, submission 0 plants nothing and must succeed (`control(answer)`),
        or the plants prove nothing about what the path stores: a "control" failure.
        """
        page = self.get(f"{prefix} (form page)", client, url)
        if page.status_code != 200:
            self.campaign.fail(
                "control", f"{prefix}: GET {url} answered {page.status_code}", None
            )
            return []
        parsed = pick(page.content.decode(errors="replace"))
        current = parsed.values() if parsed else {}
        current.pop("csrfmiddlewaretoken", None)
        target = post_to or url

        def values_for(n: int) -> dict[str, Any]:
            extra = base(n) if callable(base) else (base or {})
            return {**current, **extra}

        if control is not None:
            label = f"{prefix}: control (nothing planted)"
            answer = self.post_form(
                label, client, target, values_for(0), confirm=confirm
            )
            if not control(answer):
                self.campaign.fail(
                    "control",
                    f"{label}: valid values were not accepted ({answer.status_code}: "
                    f"{_gist(answer)}); the plants in this form prove little",
                    None,
                )
        names = list(fields) if fields is not None else (parsed.typed if parsed else [])
        emails = set(email_fields)
        for n, name in enumerate(names, start=1):
            label = f"{prefix}: {name}"
            pan, value = self.plant(label, form)
            if name in emails:
                value = f"{pan}@example.com"
            values = {**values_for(n), name: value}
            self.post_form(label, client, target, values, confirm=confirm)
        return names

    def expect(self, label: str, ok: bool, answer: Any) -> None:
        """A control that must have worked (a path the plants rely on)."""
        if not ok:
            self.campaign.fail(
                "control",
                f"{label}: not accepted ({answer.status_code}: {_gist(answer)})",
                None,
            )

    # --- checks beyond the campaign's ----------------------------------------------


def places(campaign: Campaign, kinds: Iterable[str] = ("card_number",)) -> str:
    """Each place something was found, with the plants that put it there."""
    found: dict[str, set[str]] = {}
    wanted = set(kinds)
    for f in campaign.failures:
        if f.kind not in wanted:
            continue
        if f.kind == "card_number":
            where = f.detail.split(" in ", 1)[-1].split(":", 1)[0]
        else:
            where = f.kind
        found.setdefault(where, set()).add(f.attack.label if f.attack else "?")
    return "\n".join(
        f"{where}: {sorted(labels)}" for where, labels in sorted(found.items())
    )


def _gist(response: Any) -> str:
    """A short, card-masked excerpt of an answer (for a failure's report)."""
    text = getattr(response, "content", b"").decode(errors="replace")
    if "<html" in text[:200].lower():
        errors = re.findall(r'class="errorlist[^"]*"[^>]*>(.*?)</ul>', text, re.S)
        errors += re.findall(r'class="[^"]*error[^"]*"[^>]*>(.*?)</', text, re.S)
        text = " ".join(re.sub(r"<[^>]+>", " ", e) for e in errors)
    text = " ".join(text.split())[:240]
    return re.sub(r"[0-9][0-9 -]{11,}[0-9]", lambda m: mask(m.group()), text)
