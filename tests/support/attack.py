"""Hypothesis strategies for hostile webhook deliveries, as an outside attacker sends them.

A strategy draws one `Attack`: the exact bytes, headers and path of a request plus the
card numbers planted in it. Bodies start from a valid PayTrace record
(`tests.webhooks.paytrace_record`) and are mutated with adversarial JSON written as
text, so literals Python's `json` would never produce (`NaN`, `1e309`, `-0`, lone
surrogate escapes, 3,000-deep nesting, duplicate keys) reach the server as sent.
"""

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st

from tests.support.pansweep import new_pan
from tests.webhooks import paytrace_record, sign

EVENT_TYPES = (
    "transaction.approved",
    "transaction.declined",
    "transaction.settled",
    "transaction.voided",
    "transaction.refunded",
)
BODY_LIMIT = 256 * 1024


class Raw(str):
    """A JSON fragment written into the body verbatim."""


@dataclass
class Attack:
    """One request to send and what it carries."""

    label: str
    method: str
    path: str
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    pans: list[str] = field(default_factory=list)
    plants: list[str] = field(default_factory=list)  # how each PAN was disguised
    webhook_id: str | None = None

    def __repr__(self) -> str:
        return self.describe(limit=300)

    def describe(self, limit: int = 600) -> str:
        body = self.body[:limit].decode("utf-8", errors="backslashreplace")
        more = f"… (+{len(self.body) - limit} bytes)" if len(self.body) > limit else ""
        headers = {
            k: (v[:120] + "…" if len(v) > 120 else v) for k, v in self.headers.items()
        }
        return (
            f"[{self.label}] {self.method} {self.path[:200]}\n"
            f"  content-type: {self.content_type}\n  headers: {headers}\n"
            f"  plants: {self.plants}\n  body: {body}{more}"
        )


# --- JSON written by hand -------------------------------------------------------------


def render(value: Any, ascii_only: bool = True) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        parts = [
            f"{_key(k, ascii_only)}:{render(v, ascii_only)}" for k, v in value.items()
        ]
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def _key(key: Any, ascii_only: bool) -> str:
    return (
        str(key)
        if isinstance(key, Raw)
        else json.dumps(str(key), ensure_ascii=ascii_only)
    )


def nested(depth: int, kind: str = "list") -> Raw:
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


# --- card numbers in disguise ------------------------------------------------------------

FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _groups(pan: str) -> list[str]:
    return [pan[i : i + 4] for i in range(0, len(pan), 4)]


def disguise(pan: str, form: str) -> Any:
    """The PAN as a JSON value (str, or Raw for a literal / structure)."""
    groups = _groups(pan)
    match form:
        case "plain":
            return pan
        case "spaces":
            return " ".join(groups)
        case "dashes":
            return "-".join(groups)
        case "dots":
            return ".".join(groups)
        case "double_spaces":
            return "  ".join(groups)
        case "slashes":
            return "/".join(groups)
        case "newlines":
            return "\n".join(groups)
        case "tabs_mixed":
            return groups[0] + "\t" + "-".join(groups[1:-1]) + " " + groups[-1]
        case "underscores":
            return "_".join(groups)
        case "in_sentence":
            return f"card {' '.join(groups)} exp 09/28 cvv 123"
        case "unicode_escapes":
            return Raw('"' + "".join(f"\\u{ord(c):04x}" for c in pan) + '"')
        case "fullwidth":
            return pan.translate(FULLWIDTH)
        case "arabic_indic":
            return pan.translate(ARABIC_INDIC)
        case "superscript_tail":
            return pan + "²"
        case "group_array":
            return groups
        case "int_group_array":
            return Raw(
                "["
                + ",".join(str(int(g)) if g[0] != "0" else f'"{g}"' for g in groups)
                + "]"
            )
        case "int_literal":
            return Raw(pan)
        case "float_literal":
            return Raw(pan + ".0")
        case "exponent_literal":
            return Raw(f"{pan[0]}.{pan[1:]}e{len(pan) - 1}")
        case _:
            raise ValueError(form)


PAN_FORMS = (
    "plain", "spaces", "dashes", "dots", "double_spaces", "slashes", "newlines",
    "tabs_mixed", "underscores", "in_sentence", "unicode_escapes", "fullwidth",
    "arabic_indic", "superscript_tail", "group_array", "int_group_array",
    "int_literal", "float_literal", "exponent_literal",
)  # fmt: skip
HEADER_SAFE_FORMS = ("plain", "spaces", "dashes", "dots", "slashes", "underscores")


# --- hostile values ----------------------------------------------------------------------

NUMBER_LITERALS = (
    "1e20", "1E+20", "1e309", "-1e309", "1e-400", "NaN", "-NaN", "Infinity",
    "-Infinity", "-0", "-0.0", "0.001", "-5.00", "123456789012345678901234567890",
    "99999999999999.99", "100000000000000", "1.5e3", "0.1e1", "12.345", "1e2",
)  # fmt: skip
NUMBER_STRINGS = (
    "1e20", "1e309", "NaN", "Infinity", "-Infinity", "-5.00", "0.001", "12.345",
    "١٢٣.٤٥", "１２３.45", "²³", "12 ", " 12", "0x1F", "1_000", "9" * 40, "+5",
    "5.", ".5", "1,000.00", "$5.00", "", " ",
)  # fmt: skip
DATE_STRINGS = (
    "3/4/2026 0:07:09 AM", "13/45/2026 9:99:99 PM", "2/30/2026 1:00:00 PM",
    "3/4/2026 12:07:09", "3/4/10000 1:00:00 AM", "2026-03-04T14:07:09",
    "2026-03-04T14:07:09Z", "0/0/0 0:0:0 XM", "", "now", "9" * 30,
)  # fmt: skip
OCCURRED_AT = (
    "2026-03-04T14:07:09", "2026-13-45T99:99:99Z", "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+14:00", "2026-03-04T14:07:09+99:00", "", "yesterday",
    "2026-03-04", "1e20",
)  # fmt: skip
LONE_SURROGATES = (
    Raw('"\\ud800"'), Raw('"a\\udfffb"'), Raw('"\\udc00\\ud800"'), Raw('"x\\ud83d"'),
)  # fmt: skip


def hostile_values() -> st.SearchStrategy[Any]:
    small_json = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=6,
    )
    return st.one_of(
        st.sampled_from([None, True, False, [], {}, 0, -1, "", "abc", "x", "null"]),
        st.sampled_from(NUMBER_LITERALS).map(Raw),
        st.sampled_from(NUMBER_STRINGS),
        st.sampled_from(DATE_STRINGS),
        st.sampled_from(LONE_SURROGATES),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.text(max_size=40),
        st.integers(min_value=200, max_value=BODY_LIMIT + 2000).map(lambda n: "A" * n),
        st.integers(min_value=2, max_value=3000).flatmap(
            lambda n: st.sampled_from([nested(n, "list"), nested(n, "dict")])
        ),
        small_json,
    )


# --- the request kinds ---------------------------------------------------------------------


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a body (dict keys only; lists are leaves)."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    return out


def _parent(body: dict, path: tuple) -> dict:
    node = body
    for k in path[:-1]:
        node = node[k]
    return node


@st.composite
def event_bodies(
    draw: st.DrawFn, invoice_ids: tuple[str, ...]
) -> tuple[dict, list[str], list[str]]:
    """A valid event, then 0–4 mutations: hostile values, removed keys, planted PANs."""
    record = paytrace_record(
        invoice_id=draw(st.sampled_from(invoice_ids)),
        amount=draw(
            st.sampled_from([Decimal("25.00"), Decimal("125.50"), Decimal("0.01")])
        ),
    )
    body: dict[str, Any] = {
        "type": draw(st.sampled_from(EVENT_TYPES)),
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": record,
    }
    pans: list[str] = []
    plants: list[str] = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        paths = _paths(body)
        path = draw(st.sampled_from(paths))
        parent = _parent(body, path)
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        what = draw(
            st.sampled_from(
                [
                    "value",
                    "value",
                    "value",
                    "delete",
                    "add",
                    "pan",
                    "pan_key",
                    "pan_embed",
                ]
            )
        )
        if what == "value":
            if path == ("occurred_at",):
                parent[path[-1]] = draw(st.sampled_from(OCCURRED_AT) | hostile_values())
            elif path[-1] == "at":
                parent[path[-1]] = draw(
                    st.sampled_from(DATE_STRINGS) | hostile_values()
                )
            else:
                parent[path[-1]] = draw(hostile_values())
        elif what == "delete":
            del parent[path[-1]]
        elif what == "add":
            parent[draw(st.text(min_size=1, max_size=10))] = draw(hostile_values())
        else:
            pan, form = new_pan(), draw(st.sampled_from(PAN_FORMS))
            pans.append(pan)
            plants.append(f"{form}@{'.'.join(map(str, path))}:{what}")
            if what == "pan":
                parent[path[-1]] = disguise(pan, form)
            elif what == "pan_key":
                key_form = draw(
                    st.sampled_from(
                        HEADER_SAFE_FORMS + ("fullwidth", "unicode_escapes")
                    )
                )
                key = disguise(pan, key_form)
                plants[-1] = f"{key_form}@{'.'.join(map(str, path))}:key"
                parent[key] = draw(st.sampled_from(["x", 1, None]))
            else:
                value = parent[path[-1]]
                text = disguise(
                    pan, form if isinstance(disguise(pan, form), str) else "spaces"
                )
                parent[path[-1]] = f"{value} {text}" if isinstance(value, str) else text
    return body, pans, plants


HEADER_MODES = (
    "ok", "ok", "ok", "ok", "ok", "missing_one", "missing_all", "bad_signature",
    "wrong_secret", "malformed_signature", "stale", "future", "bad_timestamp",
    "long_id", "pan_id", "pan_header_name", "pan_header_value", "pan_slug", "long_slug",
)  # fmt: skip
MALFORMED_SIGNATURES = (
    "garbage", "v1,", "v1,!!!", "v1a,abc", ",", "v1", "v1,AAAA v1,BBBB", "v2,abc",
    "v1," + "A" * 5000, " ", "v1,=" * 50,
)  # fmt: skip


@st.composite
def signed_webhooks(
    draw: st.DrawFn, slug: str, secret: str, invoice_ids: tuple[str, ...] = ("10001",)
) -> Attack:
    body, pans, plants = draw(event_bodies(invoice_ids))
    ascii_only = draw(st.booleans())
    text = render(body, ascii_only)
    raw_form = draw(
        st.sampled_from(
            [
                "as_is",
                "as_is",
                "as_is",
                "bom",
                "invalid_utf8",
                "duplicate_keys",
                "not_object",
                "truncated",
            ]
        )
    )
    if raw_form == "bom":
        text = "\ufeff" + text
    elif raw_form == "duplicate_keys":
        text = text[:-1] + ',"type":"transaction.approved","data":{"transaction_id":1}}'
    elif raw_form == "not_object":
        text = draw(
            st.sampled_from(["[]", "null", "1", '"x"', "[" + text + "]", "NaN"])
        )
    elif raw_form == "truncated":
        # A fraction, not a position: the text's length depends on the random card
        # numbers planted in it, and hypothesis needs each draw's bounds to be fixed.
        cut = draw(st.integers(min_value=0, max_value=999))
        text = text[: cut * max(0, len(text) - 1) // 999]
    data = text.encode("utf-8", errors="surrogatepass")
    if raw_form == "invalid_utf8":
        at = draw(st.integers(min_value=0, max_value=999)) * len(data) // 999
        data = (
            data[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]))
            + data[at:]
        )
    return _with_headers(draw, slug, secret, data, pans, plants, f"webhook/{raw_form}")


WRONG_SECRET = "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA=="


def sign_bytes(data: bytes, secret: str, msg_id: str, when: datetime) -> dict[str, str]:
    """Standard Webhooks headers for these exact bytes.

    `tests.webhooks.sign` when the body is UTF-8 (the sender's own helper); for bytes
    that are not, the same HMAC-SHA256 computed over the bytes, as a sender with a
    broken encoder would.
    """
    try:
        return sign(data.decode("utf-8"), secret, msg_id=msg_id, timestamp=when)
    except UnicodeDecodeError:
        pass
    key = base64.b64decode(secret.removeprefix("whsec_"))
    stamp = str(int(when.timestamp()))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + data, hashlib.sha256)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }


def _with_headers(
    draw: st.DrawFn,
    slug: str,
    secret: str,
    data: bytes,
    pans: list,
    plants: list,
    label: str,
) -> Attack:
    mode = draw(st.sampled_from(HEADER_MODES))
    msg_id = f"msg_{uuid.uuid4().hex}"
    when = datetime.now(UTC)
    path = f"/webhooks/paytrace/{slug}/"
    extra: dict[str, str] = {}
    if mode == "long_id":
        # Two deliveries sharing their first 200+ characters must never be "duplicates".
        msg_id = (
            "msg_"
            + "L" * draw(st.integers(min_value=197, max_value=4000))
            + uuid.uuid4().hex
        )
    elif mode == "pan_id":
        pan, form = new_pan(), draw(st.sampled_from(HEADER_SAFE_FORMS))
        msg_id = str(disguise(pan, form))
        pans, plants = [*pans, pan], [*plants, f"{form}@webhook-id"]
    elif mode == "pan_header_name":
        pan = new_pan()
        extra[f"X-Card-{pan}"] = "1"
        pans, plants = [*pans, pan], [*plants, "plain@header-name"]
    elif mode == "pan_header_value":
        pan, form = new_pan(), draw(st.sampled_from(HEADER_SAFE_FORMS))
        extra[
            draw(
                st.sampled_from(["X-Card", "User-Agent", "X-Forwarded-For", "Referer"])
            )
        ] = str(disguise(pan, form))
        pans, plants = [*pans, pan], [*plants, f"{form}@header-value"]
    elif mode == "pan_slug":
        pan, form = new_pan(), draw(st.sampled_from(("plain", "dashes", "underscores")))
        path = f"/webhooks/paytrace/{disguise(pan, form)}/"
        pans, plants = [*pans, pan], [*plants, f"{form}@url-slug"]
    elif mode == "long_slug":
        path = f"/webhooks/paytrace/{'s' * draw(st.integers(min_value=61, max_value=3000))}/"
    sign_secret = secret if mode != "wrong_secret" else WRONG_SECRET
    headers = sign_bytes(data, sign_secret, msg_id, when)
    if mode == "missing_one":
        del headers[draw(st.sampled_from(sorted(headers)))]
    elif mode == "missing_all":
        headers = {}
    elif mode == "bad_signature":
        headers["webhook-signature"] = sign_bytes(data + b" ", secret, msg_id, when)[
            "webhook-signature"
        ]
    elif mode == "malformed_signature":
        headers["webhook-signature"] = draw(st.sampled_from(MALFORMED_SIGNATURES))
    elif mode in ("stale", "future"):
        shift = timedelta(minutes=draw(st.integers(min_value=6, max_value=10**6)))
        when = when - shift if mode == "stale" else when + shift
        headers = sign_bytes(data, secret, msg_id, when)
    elif mode == "bad_timestamp":
        headers["webhook-timestamp"] = draw(
            st.sampled_from(["abc", "", "-1", "9" * 30, "1e9", "１７００"])
        )
    headers.update(extra)
    return Attack(
        label=f"{label}/{mode}",
        method="POST",
        path=path,
        body=data,
        content_type=draw(
            st.sampled_from(
                ["application/json"] * 4
                + ["text/plain", "application/x-www-form-urlencoded", ""]
            )
        ),
        headers=headers,
        pans=pans,
        plants=plants,
        webhook_id=headers.get("webhook-id"),
    )


SILENT_IDS = (
    "²³", "１２３", "٣٣٣", "-5", "0", "", " ", "12 34", "9" * 50, "1e5", "0x10", "abc",
    "123\n456", "123\x00",
)  # fmt: skip


@st.composite
def silent_posts(draw: st.DrawFn, slug: str) -> Attack:
    """PayTrace's unsigned legacy post with a hostile parmList."""
    pans: list[str] = []
    plants: list[str] = []
    tid_kind = draw(
        st.sampled_from(
            ["digits", "hostile", "pan", "pan_fullwidth", "pan_superscript", "missing"]
        )
    )
    if tid_kind == "digits":
        tid = str(draw(st.integers(min_value=1, max_value=10**12)))
    elif tid_kind == "hostile":
        tid = draw(st.sampled_from(SILENT_IDS) | st.text(max_size=20))
    elif tid_kind == "missing":
        tid = None
    else:
        pan = new_pan()
        pans.append(pan)
        plants.append(f"{tid_kind}@TRANSACTIONID")
        tid = {
            "pan": pan,
            "pan_fullwidth": pan.translate(FULLWIDTH),
            "pan_superscript": pan + "²",
        }[tid_kind]
    fields = []
    if tid is not None:
        fields.append(f"TRANSACTIONID~{tid}")
    fields.append(f"APPMSG~{draw(st.text(max_size=30))}")
    if draw(st.booleans()):
        pan, form = new_pan(), draw(st.sampled_from(PAN_FORMS[:12]))
        value = disguise(pan, form)
        if isinstance(value, str):
            pans.append(pan)
            plants.append(f"{form}@parmList.CARDNUMBER")
            fields.append(f"CARDNUMBER~{value}")
    parm = "|".join(fields) + draw(st.sampled_from(["|", "", "||~|", "|" * 50]))
    encoding = draw(st.sampled_from(["form", "form", "json", "raw_invalid_utf8"]))
    if encoding == "form":
        body, ctype = (
            urlencode({"parmList": parm}).encode(),
            "application/x-www-form-urlencoded",
        )
    elif encoding == "json":
        body, ctype = json.dumps({"parmList": parm}).encode(), "application/json"
    else:
        body, ctype = (
            b"parmList=" + parm.encode("utf-8", "surrogatepass") + b"\xff\xfe",
            "application/x-www-form-urlencoded",
        )
    path = f"/webhooks/paytrace/{slug}/silent-post/"
    if draw(st.integers(0, 9)) == 0:
        pan = new_pan()
        pans.append(pan)
        plants.append("plain@silent-post-slug")
        path = f"/webhooks/paytrace/{pan}/silent-post/"
    return Attack(
        label=f"silent_post/{tid_kind}/{encoding}",
        method="POST",
        path=path,
        body=body,
        content_type=ctype,
        pans=pans,
        plants=plants,
    )


def attacks(
    slug: str, secret: str, invoice_ids: tuple[str, ...] = ("10001",)
) -> st.SearchStrategy[Attack]:
    return st.one_of(
        signed_webhooks(slug, secret, invoice_ids),
        signed_webhooks(slug, secret, invoice_ids),
        signed_webhooks(slug, secret, invoice_ids),
        silent_posts(slug),
    )
