"""The relay: how the portal reaches an on-site Sage Pro agent without a firewall opening.

The agent opens only outbound HTTPS connections to the portal:

- `POST /api/agent/enrol` trades a one-time enrolment code for the agent's
  credentials (`enrolment`);
- `POST /api/agent/poll` long-polls for commands, each leased to the agent, signed by
  the portal and carrying an expiry (`commands`, `signing`);
- `POST /api/agent/commands/<id>/result` brings one command's answer back;
- `POST /api/agent/heartbeat` reports the agent's health (`heartbeat`).

The portal side of a command is `integrations.connectors.relay.RelaySageProConnector`:
it stores the command and waits for its answer.
"""
