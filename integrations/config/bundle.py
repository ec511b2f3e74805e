"""Configuration bundles: export the configuration to JSON, import it into another portal.

Configuration built in Dev is promoted to QA and Production with one JSON file::

    {"format": "payments-portal-config", "version": 1,
     "connections": [...], "status_maps": [...], "gl_rules": [...],
     "field_mappings": [...], "matching_rules": [...], "currency_rates": [...]}

Rows are named by natural keys, never database ids:

- connections by `slug`; a PayTrace connection's `sagepro` is the Sage Pro connection's
  slug;
- status maps by (connection, priority and the match conditions), GL rules and
  matching rules by (connection, name), field mappings by (connection, document,
  target_field);
- currency rates by (currency, base_currency, valid_on).

Decimals are strings and dates ISO. Connections and field mappings are listed by key;
status maps, GL rules and matching rules in the order they are tried (connection, priority, then
creation order), because rows of equal priority run in creation order and an import
creates them in the bundle's order. Exporting the same configuration twice gives the
same bytes.

What is left out, and what an import leaves alone:

- Secrets (connection passwords and API keys, webhook secrets) are never exported and
  never changed by an import. New connections arrive without them; the import says
  which connections need them entered in this environment.
- A connection's `environment` belongs to the portal it lives in: not exported; new
  connections get the target's environment.
- `base_url`, `username`, `integrator_id` and a Sage Pro connection's `transport`
  (direct or through an on-site agent) differ per environment. They are exported so a
  new connection can be created, but an existing connection keeps its own; the plan
  notes where they differ. The agent itself is never exported: each environment enrols
  its own.
- Connections missing from the bundle are left alone. For each connection in the
  bundle, its status maps, GL rules, field mappings and matching rules become exactly
  the bundle's: rows the bundle doesn't have are deleted (the plan lists them).
- Currency rates are added and updated, never deleted: a target may load its own.
"""

import json
import os
import stat
from collections import Counter
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from django.conf import settings

from integrations.config.sections import (
    CHILD_SECTIONS,
    CONNECTIONS,
    CURRENCY_RATES,
    FORMAT,
    FORMAT_VERSION,
    SECTIONS,
    BundleError,
    export_row,
    sort_key,
)
from integrations.models import Connection
from mappings.models import (
    CurrencyRate,
)

# Export ---------------------------------------------------------------------------------


def export_bundle(slugs: Iterable[str] | None = None) -> dict:
    """The configuration as a bundle: every connection, or only those named."""
    query = Connection.objects.select_related("sagepro")
    if slugs is not None:
        slugs = list(slugs)
        missing = sorted(set(slugs) - set(query.values_list("slug", flat=True)))
        if missing:
            raise BundleError([f"No connection with slug {s!r}." for s in missing])
        query = query.filter(slug__in=slugs)
    connections = list(query)
    bundle: dict = {"format": FORMAT, "version": FORMAT_VERSION}
    bundle["connections"] = sorted(
        (export_row(CONNECTIONS, c) for c in connections),
        key=lambda r: r["slug"],
    )
    for section in CHILD_SECTIONS:
        rows = section.model._default_manager.filter(
            connection__in=connections
        ).select_related("connection")
        if section.ordered:
            rows = rows.order_by("connection__slug", "priority", "id")
            bundle[section.name] = [export_row(section, row) for row in rows]
        else:
            bundle[section.name] = sorted(
                (export_row(section, row) for row in rows),
                key=partial(sort_key, section),
            )
    bundle[CURRENCY_RATES.name] = sorted(
        (export_row(CURRENCY_RATES, r) for r in CurrencyRate.objects.all()),
        key=lambda r: sort_key(CURRENCY_RATES, r),
    )
    return bundle


def dump_bundle(bundle: dict) -> str:
    return json.dumps(bundle, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def read_bundle(path: str | Path) -> dict:
    """Load the bundle in file `path`, refusing files over CONFIG_BUNDLE_MAX_BYTES.

    The size is checked before anything is read, and the bytes are read once and
    parsed once. Raises BundleError, naming the file and the fix.
    """
    limit = settings.CONFIG_BUNDLE_MAX_BYTES
    try:
        with open(path, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise BundleError([f"{path} is not a file: pass the bundle's file."])
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise BundleError([_too_large(path, limit, size)])
            # A file that grew since the check is still never read past the limit.
            data = file.read(limit + 1)
    except OSError as exc:
        raise BundleError(
            [f"Can't read {path}: {exc.strerror}; pass the file export_config wrote."]
        ) from exc
    if len(data) > limit:
        raise BundleError([_too_large(path, limit, len(data))])
    return load_bundle(data, name=str(path))


def _too_large(path: str | Path, limit: int, size: int) -> str:
    return (
        f"{path} is {size:,} bytes, more than CONFIG_BUNDLE_MAX_BYTES "
        f"({limit:,} bytes); a configuration bundle is far smaller. Check it is the "
        "file export_config wrote, or raise the setting."
    )


def load_bundle(text: str | bytes, name: str = "The file") -> dict:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError(
                [
                    f"{name} is not UTF-8 text (byte {exc.start} is invalid): "
                    "export it again with export_config."
                ]
            ) from None
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError([f"{name} is not JSON: {exc}."]) from exc
    except RecursionError:
        raise BundleError(
            [f"{name} nests too deeply to be a configuration bundle."]
        ) from None
    if not isinstance(bundle, dict):
        raise BundleError([f"{name} is not a configuration bundle (not an object)."])
    if _nests_deeper(bundle, MAX_DEPTH):
        raise BundleError(
            [
                f"{name} nests more than {MAX_DEPTH} levels deep; a configuration "
                "bundle is not that deep. Export it again with export_config."
            ]
        )
    return bundle


# A bundle is sections → records → fields → a small JSON value at most.
MAX_DEPTH = 16


def _nests_deeper(value: object, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        children = (
            value.values()
            if isinstance(value, dict)
            else value
            if isinstance(value, list)
            else None
        )
        if children is None:
            continue
        if depth > limit:
            return True
        stack += [(child, depth + 1) for child in children]
    return False


def duplicate_keys(bundle: dict) -> list[str]:
    """Records of a section that share a key (an import couldn't tell them apart)."""
    problems = []
    for section in SECTIONS:
        records = bundle.get(section.name)
        if not isinstance(records, list):
            continue
        seen = Counter(
            section.key_of(r)
            for r in records
            if isinstance(r, dict) and all(k in r for k in section.key)
        )
        for record in records:
            if not isinstance(record, dict) or not all(
                k in record for k in section.key
            ):
                continue
            if seen.pop(section.key_of(record), 0) > 1:
                problems.append(
                    f"Several {section.name} have the key of {section.describe(record)}: "
                    f"keep one, or make their {' / '.join(section.key)} differ."
                )
    return problems
