"""The agent's side of the relay: outbound HTTPS only.

`enrol()` trades a one-time code for credentials (kept in the OS secret store when
there is one, else a 0600 file in the state folder: see `credentials`);
`RelayClient` long-polls the portal for signed commands, refuses tampered, expired
or replayed ones, runs the others through the gateway core and posts the answers
back, and sends a heartbeat. `main(argv)` is `python -m sagepro_agent relay ...`.
"""
