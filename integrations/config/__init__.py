"""The portal's configuration as a whole: bundles between environments, and history.

`bundle` exports and reads bundles, `plan` checks one against this database and lists
what an import changes, `apply` makes the change; `sections` says what a bundle holds.
`versioning` adds connections to the configuration history kept by `mappings`.
`signing` seals an export with its origin and Ed25519 signature and checks them on
import; `history` applies a checked bundle and records the version this environment
runs (`ConfigBundleApplied`). See docs/config-promotion.md.
"""

from integrations.config.apply import apply_bundle
from integrations.config.bundle import (
    MAX_DEPTH,
    dump_bundle,
    duplicate_keys,
    export_bundle,
    load_bundle,
    read_bundle,
)
from integrations.config.plan import Change, ImportPlan, plan_import
from integrations.config.sections import (
    CONNECTIONS,
    CURRENCY_RATES,
    FORMAT,
    FORMAT_VERSION,
    NOT_EXPORTED,
    SECTIONS,
    BundleError,
    Section,
)

__all__ = [
    "CONNECTIONS",
    "CURRENCY_RATES",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "NOT_EXPORTED",
    "SECTIONS",
    "BundleError",
    "Change",
    "ImportPlan",
    "Section",
    "apply_bundle",
    "dump_bundle",
    "duplicate_keys",
    "export_bundle",
    "load_bundle",
    "plan_import",
    "read_bundle",
]
