"""Read-only tools for Visual FoxPro tables, shared by discovery, the watchdog and tests.

Nothing in this package writes to the folder it reads. `codec` and `cdx` decode records
and walk or SEEK a structural index; `integrity` is the watchdog's check; `schema`,
`snapshot` and `diff` are the installer's discovery tools (`python -m sagepro_agent
schema|snapshot|diff|check <folder>`), each with a `main(argv) -> int`.

`integrity` and `schema` need `dbflib` (the FoxPro key expression compiler); `codec`,
`cdx`, `snapshot` and `diff` need only the standard library.
"""
