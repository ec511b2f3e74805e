"""Opening a connection to the Visual FoxPro OLE DB provider (Windows, 32-bit Python).

`adodbapi` ships with pywin32 and is imported only here, only when a connection is
opened, so the package imports on any platform and the tests inject a fake `connect`.

The connection runs in autocommit mode: each statement is committed by the engine on
its own, which is what the journal's step design expects (one statement per store
call). adodbapi would otherwise open a transaction on providers that report
transaction support (VFPOLEDB does for DBC tables) and leave it open until commit().

The store opens one connection and uses it from one thread only (its provider
thread, `store.ProviderThread`), which initialises COM before connecting
(`pythoncom.CoInitialize`).
"""

from __future__ import annotations

from typing import Any

PROVIDER = "VFPOLEDB.1"
# MACHINE is the collation Sage Pro's indexes are built with as far as known; a site
# whose tags use another one shows it in `schema` and must say so in its mapping.
COLLATING_SEQUENCE = "MACHINE"
COMMAND_TIMEOUT_SECONDS = 60


def connection_string(source: str, collate: str = COLLATING_SEQUENCE) -> str:
    """`Provider=VFPOLEDB.1;Data Source=<folder or .DBC>;...`; a value containing a
    `;` is quoted as OLE DB connection strings require."""
    return ";".join(
        [
            f"Provider={PROVIDER}",
            f"Data Source={_quoted(source)}",
            f"Collating Sequence={collate}",
            "Exclusive=No",
        ]
    )


def adodbapi_connect(conn_string: str) -> Any:
    """The default `connect`: an adodbapi connection in autocommit mode."""
    try:
        import pythoncom  # type: ignore[import-not-found]
    except ImportError:
        pythoncom = None
    if pythoncom is not None:
        pythoncom.CoInitialize()  # on the provider thread, before any COM object
    import adodbapi  # type: ignore[import-not-found]

    use_provider_parameter_types()
    # adodbapi formats the connection string with `%` against its keyword arguments,
    # so a literal % in a path must be doubled.
    return adodbapi.connect(
        conn_string.replace("%", "%%"),
        timeout=COMMAND_TIMEOUT_SECONDS,
        autocommit=True,
    )


def use_provider_parameter_types() -> None:
    """Bind Python ints as 32-bit integers. adodbapi binds them as adBigInt, a type
    VFP does not have (its integers are 32-bit), and some OLE DB providers refuse it;
    whether VFPOLEDB does is UNVERIFIED, and a 32-bit integer is what VFP's own I
    fields and RECNO() hold anyway.

    Dates are left as adodbapi binds them without provider metadata: an ISO string
    ("2025-05-14") in an adDate parameter, converted by COM. UNVERIFIED as well."""
    from adodbapi import ado_consts, apibase  # type: ignore[import-not-found]

    apibase.typeMap[int] = ado_consts.adInteger


def _quoted(value: str) -> str:
    if ";" in value or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value
