"""Turning what the VFP OLE DB provider raises into the store's exceptions.

adodbapi raises its own `DatabaseError` (or a subclass) whose text holds the COM
error's arguments, the command and its parameters. The VFP error number is not in that
text: ADO keeps it in the connection's `Errors` collection (`connector.Errors`, each
with `NativeError`, `Description`, `SQLState`). `vfp_error_number` reads it from there
and falls back to matching the description against the VFP message texts below.

UNVERIFIED (no real provider has been run here; a site test must confirm each):
- that VFPOLEDB puts the VFP error number in `NativeError` (if it does not, the text
  match below is what classifies the error);
- the exact message texts VFPOLEDB returns (taken from the VFP 9 error reference);
- which numbers a locked record, a held header lock and a table in exclusive use
  really produce through the provider under `SET REPROCESS TO n SECONDS`.
Every assumption is one of the named tables or functions in this module, so a site
test can correct it in one place.
"""

from __future__ import annotations

import re
from typing import Any

from sagepro_agent.store.base import Locked, StoreError, TableDamaged, Unavailable

# The texts are matched when the provider gives no number; `{name}` stands for the
# quoted file or field name VFP puts into some messages.

# Someone else holds a lock or has the file open exclusively: 423, worth retrying.
# Numbers and texts from the VFP 9 error reference and Microsoft KB Q93348 ("Locking
# error messages in a multiuser environment").
# 1705 is here, not with the "unavailable" errors: KB Q93348 says VFP raises "File
# access is denied" when a table is already open exclusively by another user, which is
# the case a Sage user running a reindex or period close produces. A service account
# without NTFS rights raises it too; that shows as a 423 on every table and the install
# guide says to check the account's rights first.
LOCK_ERRORS: dict[int, str] = {
    3: "File is in use",
    108: "File is in use by another user",
    109: "Record is in use by another user",
    110: "File must be opened exclusively",
    130: "Record is not locked",
    1502: "Record is in use by another",  # text UNVERIFIED
    1503: "File cannot be locked",  # text UNVERIFIED
    1705: "File access is denied",
    1709: "Database object is being used by someone else",
    2024: "A sharing violation occurred",
}

# The table failed the engine's own consistency checks: 503 plus an alert, never
# written again until someone repairs it.
DAMAGE_ERRORS: dict[int, str] = {
    15: "Not a table",
    19: "Index file does not match table",
    41: "Memo file is missing or is invalid",
    114: "Index does not match the table",
    1707: "Structural .CDX file is not found",
    2091: "Table {name} has become corrupted",
}

# The data cannot be reached: share offline, file or folder missing, I/O failure.
UNREACHABLE_ERRORS: dict[int, str] = {
    1: "File {name} does not exist",
    56: "Not enough disk space",
    202: "Invalid path or file name",
    1102: "Cannot create file",
    1104: "Error reading file",
    1105: "Error writing to file",
    1112: "Error closing the file",
    1410: "Unable to create temporary work files",
}

# Texts (lower case) that mean the ADO connection itself is gone or unusable: the
# store drops it and opens a new one on the next call. ADO error 3704 is "Operation is
# not allowed when the object is closed".
CONNECTION_LOST_TEXTS: tuple[str, ...] = (
    "object is closed",
    "connection is closed",
    "connection failure",
    "communication link failure",
    "the network path was not found",
    "the specified network name is no longer available",
    "provider cannot be found",
    "class not registered",
    "not connected",
)


def vfp_error_number(exc: BaseException, connection: Any = None) -> int | None:
    """The VFP error number behind `exc`, or None when there is none to find.

    First the ADO `Errors` collection of the connection (`NativeError`), then the
    description text against the known messages (longest text first, so "File is in
    use by another user" is not taken for "File is in use")."""
    for error in ado_errors(connection):
        native = getattr(error, "NativeError", None)
        try:
            number = int(native) if native is not None else 0
        except (TypeError, ValueError):
            number = 0
        if number > 0:
            return number
    text = error_text(exc, connection)
    known = {**LOCK_ERRORS, **DAMAGE_ERRORS, **UNREACHABLE_ERRORS}
    for number, message in sorted(known.items(), key=lambda item: -len(item[1])):
        if message_pattern(message).search(text):
            return number
    return None


def message_pattern(message: str) -> re.Pattern[str]:
    """A VFP message text as a case-insensitive pattern; `{name} ` matches an
    optional quoted name ("File 'armast01.dbf' does not exist")."""
    parts = [re.escape(part) for part in message.split("{name} ")]
    return re.compile(r"(?:[\"'][^\"']*[\"']\s+)?".join(parts), re.IGNORECASE)


def ado_errors(connection: Any) -> list[Any]:
    """The ADO Errors collection of an adodbapi connection, as a list (empty if none)."""
    connector = getattr(connection, "connector", None)
    errors = getattr(connector, "Errors", None)
    if errors is None:
        return []
    try:
        return list(errors)
    except Exception:  # a dead COM object can fail even to enumerate
        return []


def error_text(exc: BaseException, connection: Any = None) -> str:
    """The provider's own description where ADO has one, else the exception's text."""
    descriptions = [
        str(getattr(error, "Description", "") or "") for error in ado_errors(connection)
    ]
    descriptions = [d for d in descriptions if d]
    if descriptions:
        return "; ".join(descriptions)
    return _first_line(str(exc)) or type(exc).__name__


def is_connection_lost(exc: BaseException, connection: Any = None) -> bool:
    text = (error_text(exc, connection) + " " + str(exc)).lower()
    return any(marker in text for marker in CONNECTION_LOST_TEXTS)


def classify(exc: BaseException, connection: Any, where: str) -> StoreError:
    """The store exception for a provider failure; `where` names the table and the
    operation ("ARMAST01 (invoices, company 01): update of record 12")."""
    number = vfp_error_number(exc, connection)
    text = error_text(exc, connection).rstrip(". ")
    said = f"VFP error {number}: {text}" if number else f"provider error: {text}"
    if number in LOCK_ERRORS:
        return Locked(
            f"{where}: {said}. Another user holds the record or the table (waited for "
            "SET REPROCESS); nothing was written. Retry once they have finished."
        )
    if number in DAMAGE_ERRORS:
        table = where.split(" ", 1)[0]
        return TableDamaged(
            table,
            [
                f"{said} during {where}. Stop and have the table repaired in Sage Pro "
                "(reindex or restore) before the agent writes to it again."
            ],
        )
    if number in UNREACHABLE_ERRORS or is_connection_lost(exc, connection):
        return Unavailable(
            f"{where}: {said}. The Sage data cannot be reached: check that the data "
            "folder or share is online and that the service account can read and "
            "write it; nothing was written by this call."
        )
    return Unavailable(f"{where}: {said}. Nothing was written by this call.")


def _first_line(text: str) -> str:
    # adodbapi appends "Command:\n<sql>\nParameters:\n<values>" to its message; the
    # parameters are Sage data and stay out of our error texts and logs.
    return re.split(r"\n|Command:", text, maxsplit=1)[0].strip()
