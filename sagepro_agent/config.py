"""The site mapping: where a site's Sage Pro data is and how the agent runs there.

A TOML file (stdlib `tomllib`), validated as a whole at start: `load(path)` raises one
`ConfigError` listing every mistake with its TOML key and how to fix it. See
`site.example.toml` (shipped next to this module) for every key with a comment.

    [sage]    store ("fixture" | "vfpoledb"), data (folder or .DBC), companies,
              receipt_mode ("direct" only), reprocess (seconds of lock wait)
    [agent]   user (C(4), written in ADDUSER/LCKUSER), journal (SQLite path on the
              agent's own disk), time_zone, scan_interval (s), watchdog_interval (min),
              marker (the journal-deleted guard's marker file; default next to the
              config file)
    [http]    bind ("host:port"), api_key_sha256 (hex) or api_key_env (variable name),
              max_body (bytes)
    [tables.<logical name>]  physical (name template, "{co}" = company id) and
              [tables.<name>.fields] CANONICAL = "SITEFIELD" renames
    [relay]   read by the relay client (sagepro_agent.relay); passed through as is
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sagepro_agent.layouts import TABLES

STORE_KINDS = ("fixture", "vfpoledb")
RECEIPT_MODES = ("direct",)
USER_WIDTH = 4
DEFAULT_MAX_BODY = 1_048_576
HEX64 = re.compile(r"[0-9a-f]{64}")
TOP_LEVEL = ("sage", "agent", "http", "tables", "relay")


class ConfigError(Exception):
    """Every mistake of a site mapping, each with its TOML key and the fix."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{path}: {len(problems)} problem(s) in the site mapping:\n{lines}"
        )


@dataclass(frozen=True)
class TableMapping:
    physical: str  # file name template, "{co}" = company id
    fields: dict[str, str] = field(default_factory=dict)  # canonical -> site field


@dataclass
class SiteMapping:
    store_kind: str = "fixture"
    data_path: str = ""
    companies: list[str] = field(default_factory=lambda: ["01"])
    receipt_mode: str = "direct"
    reprocess: float = 2.0
    agent_user: str = "AGNT"
    journal_path: str = "agent-journal.sqlite3"
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    scan_interval: float = 60.0
    watchdog_interval: float = 15.0  # minutes
    marker_path: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8765
    api_key_sha256: str = ""
    api_key_env: str = ""
    max_body: int = DEFAULT_MAX_BODY
    tables: dict[str, TableMapping] = field(
        default_factory=lambda: {n: TableMapping(t.physical) for n, t in TABLES.items()}
    )
    relay: dict[str, Any] = field(default_factory=dict)
    path: str = ""  # the file it was loaded from

    def api_key_hash(self) -> str:
        """The hex SHA-256 of the API key (from the file or from the environment)."""
        if self.api_key_sha256:
            return self.api_key_sha256
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return hash_api_key(key) if key else ""

    def physical_names(self) -> dict[str, str]:
        return {name: t.physical for name, t in self.tables.items()}

    def field_renames(self) -> dict[str, dict[str, str]]:
        return {name: dict(t.fields) for name, t in self.tables.items() if t.fields}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_matches(token: str, expected_hash: str) -> bool:
    """Constant-time comparison of a presented key with the stored hash."""
    if not expected_hash:
        return False
    return hmac.compare_digest(hash_api_key(token).encode(), expected_hash.encode())


def load(path: str | os.PathLike[str]) -> SiteMapping:
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(
            path, [f"the file does not exist: create it from {example_path()}"]
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from exc
    return parse(raw, path)


def example_path() -> str:
    return str(Path(__file__).with_name("site.example.toml"))


class _Reader:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            self.problems.append(f"[{name}] must be a table")
            return {}
        return value

    def get(
        self,
        section: dict[str, Any],
        prefix: str,
        key: str,
        kind: type | tuple,
        default: Any,
        *,
        required: bool = False,
        hint: str = "",
    ) -> Any:
        if key not in section:
            if required:
                self.problems.append(f"{prefix}.{key} is missing: {hint}".rstrip(": "))
            return default
        value = section[key]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            names = (
                kind.__name__
                if isinstance(kind, type)
                else " or ".join(k.__name__ for k in kind)
            )
            self.problems.append(f"{prefix}.{key} must be a {names}, not {value!r}")
            return default
        return value

    def unknown(
        self, section: dict[str, Any], prefix: str, known: tuple[str, ...]
    ) -> None:
        for key in section:
            if key not in known:
                self.problems.append(
                    f"{prefix}.{key} is not a known setting (known: {', '.join(known)})"
                )


def parse(raw: dict[str, Any], path: str = "<site mapping>") -> SiteMapping:
    """Validate a decoded TOML document; raise ConfigError listing every problem."""
    r = _Reader(raw)
    for key in raw:
        if key not in TOP_LEVEL:
            r.problems.append(
                f"[{key}] is not a known section (known: {', '.join(TOP_LEVEL)})"
            )
    base = (
        os.path.dirname(os.path.abspath(path))
        if path and not path.startswith("<")
        else os.getcwd()
    )

    def resolve(p: str) -> str:
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    sage = r.section("sage")
    r.unknown(sage, "sage", ("store", "data", "companies", "receipt_mode", "reprocess"))
    store_kind = r.get(
        sage,
        "sage",
        "store",
        str,
        "",
        required=True,
        hint='say "vfpoledb" (live data) or "fixture" (tests and the demo)',
    )
    if store_kind and store_kind not in STORE_KINDS:
        r.problems.append(
            f'sage.store = {store_kind!r}: must be "vfpoledb" or "fixture"'
        )
    data = r.get(
        sage,
        "sage",
        "data",
        str,
        "",
        required=True,
        hint="the Sage Pro data folder or the path of its .DBC",
    )
    if data and not os.path.exists(resolve(data)):
        r.problems.append(
            f"sage.data = {data!r}: no such folder or file (as seen by the agent's account)"
        )
    companies = r.get(sage, "sage", "companies", list, ["01"])
    clean_companies = []
    for i, comp in enumerate(companies):
        if not isinstance(comp, str) or len(comp.strip()) != 2:
            r.problems.append(
                f'sage.companies[{i}] = {comp!r}: a company id is 2 characters, e.g. "01"'
            )
        else:
            clean_companies.append(comp.strip().upper())
    if not companies:
        r.problems.append(
            'sage.companies is empty: list at least one company, e.g. ["01"]'
        )
    receipt_mode = r.get(sage, "sage", "receipt_mode", str, "direct")
    if receipt_mode not in RECEIPT_MODES:
        r.problems.append(
            f'sage.receipt_mode = {receipt_mode!r}: only "direct" is implemented (the agent '
            "writes the receipt tables itself); staging for Sage Pro's own posting is not"
        )
    reprocess = r.get(sage, "sage", "reprocess", (int, float), 2.0)
    if not 0 <= reprocess <= 60:
        r.problems.append(
            f"sage.reprocess = {reprocess}: seconds of lock wait, 0 to 60"
        )

    agent = r.section("agent")
    r.unknown(
        agent,
        "agent",
        (
            "user",
            "journal",
            "time_zone",
            "scan_interval",
            "watchdog_interval",
            "marker",
        ),
    )
    user = r.get(
        agent,
        "agent",
        "user",
        str,
        "AGNT",
        required=True,
        hint='the agent\'s Sage user id, 1 to 4 characters, e.g. "AGNT"',
    )
    if user and not 1 <= len(user.strip()) <= USER_WIDTH:
        r.problems.append(
            f"agent.user = {user!r}: 1 to {USER_WIDTH} characters (LCKUSER is C(4))"
        )
    journal = r.get(
        agent,
        "agent",
        "journal",
        str,
        "",
        required=True,
        hint='a path on the agent\'s own local disk, e.g. "C:/ProgramData/SageProAgent/journal.sqlite3"',
    )
    if (
        journal
        and data
        and os.path.abspath(resolve(journal)).startswith(
            os.path.abspath(resolve(data)) + os.sep
        )
    ):
        r.problems.append(
            "agent.journal is inside sage.data: keep it on the agent's own disk"
        )
    tz_name = r.get(agent, "agent", "time_zone", str, "UTC")
    try:
        time_zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        r.problems.append(
            f'agent.time_zone = {tz_name!r}: not an IANA time zone name, e.g. "America/Chicago"'
        )
        time_zone = ZoneInfo("UTC")
    scan_interval = r.get(agent, "agent", "scan_interval", (int, float), 60)
    if not 1 <= scan_interval <= 86_400:
        r.problems.append(f"agent.scan_interval = {scan_interval}: seconds, 1 to 86400")
    watchdog = r.get(agent, "agent", "watchdog_interval", (int, float), 15)
    if not 1 <= watchdog <= 1440:
        r.problems.append(f"agent.watchdog_interval = {watchdog}: minutes, 1 to 1440")
    marker = r.get(agent, "agent", "marker", str, "")

    http = r.section("http")
    r.unknown(http, "http", ("bind", "api_key_sha256", "api_key_env", "max_body"))
    bind = r.get(http, "http", "bind", str, "127.0.0.1:8765")
    host, _, port_text = bind.rpartition(":")
    port = 0
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        r.problems.append(
            f'http.bind = {bind!r}: write it as "host:port", e.g. "127.0.0.1:8765"'
        )
    else:
        port = int(port_text)
    key_hash = r.get(http, "http", "api_key_sha256", str, "").lower()
    key_env = r.get(http, "http", "api_key_env", str, "")
    if key_hash and not HEX64.fullmatch(key_hash):
        r.problems.append(
            "http.api_key_sha256 must be 64 hex digits: run `python -m sagepro_agent "
            "hash-key` and paste its output"
        )
    if key_hash and key_env:
        r.problems.append("http: give api_key_sha256 or api_key_env, not both")
    max_body = r.get(http, "http", "max_body", int, DEFAULT_MAX_BODY)
    if not 1024 <= max_body <= 64 * 1_048_576:
        r.problems.append(f"http.max_body = {max_body}: bytes, 1024 to 67108864")

    tables = {n: TableMapping(t.physical) for n, t in TABLES.items()}
    for name, spec in r.section("tables").items():
        prefix = f"tables.{name}"
        if name not in TABLES:
            r.problems.append(
                f"[{prefix}] is not a logical table (known: {', '.join(TABLES)})"
            )
            continue
        if not isinstance(spec, dict):
            r.problems.append(f"[{prefix}] must be a table")
            continue
        r.unknown(spec, prefix, ("physical", "fields"))
        physical = r.get(spec, prefix, "physical", str, TABLES[name].physical)
        if TABLES[name].per_company and "{co}" not in physical:
            r.problems.append(
                f'{prefix}.physical = {physical!r}: a per-company table needs "{{co}}" '
                f'where the company id goes, e.g. "{TABLES[name].physical}"'
            )
        renames = r.get(spec, prefix, "fields", dict, {})
        canonical = {n for n, _ in TABLES[name].columns}
        clean = {}
        for canon, site in renames.items():
            if canon.upper() not in canonical:
                r.problems.append(
                    f"{prefix}.fields.{canon}: {name} has no field {canon.upper()} "
                    f"(fields: {', '.join(sorted(canonical))})"
                )
            elif not isinstance(site, str) or not re.fullmatch(
                r"[A-Za-z_]\w{0,9}", site
            ):
                r.problems.append(
                    f"{prefix}.fields.{canon} = {site!r}: a FoxPro field name, up to 10 characters"
                )
            else:
                clean[canon.upper()] = site.upper()
        tables[name] = TableMapping(physical, clean)
    if store_kind == "fixture":
        for name, table in tables.items():
            if table.fields or table.physical != TABLES[name].physical:
                r.problems.append(
                    f"[tables.{name}]: the fixture store always uses the canonical layouts "
                    "(sagepro_agent/layouts.py); site names and renames apply to "
                    'store = "vfpoledb" only'
                )
    relay = r.section("relay")

    if r.problems:
        raise ConfigError(path, r.problems)
    return SiteMapping(
        store_kind=store_kind,
        data_path=resolve(data),
        companies=clean_companies,
        receipt_mode=receipt_mode,
        reprocess=float(reprocess),
        agent_user=user.strip(),
        journal_path=resolve(journal),
        time_zone=time_zone,
        scan_interval=float(scan_interval),
        watchdog_interval=float(watchdog),
        marker_path=resolve(marker)
        if marker
        else os.path.join(base, "journal-install-id"),
        http_host=host,
        http_port=port,
        api_key_sha256=key_hash,
        api_key_env=key_env,
        max_body=max_body,
        tables=tables,
        relay=relay,
        path=os.path.abspath(path) if not path.startswith("<") else "",
    )
