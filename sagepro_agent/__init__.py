"""The on-site Sage Pro agent: the gateway contract (docs/sagepro-gateway.md) over the
company's own FoxPro tables, reached directly or through the portal's relay.

No Django here: the package installs on its own on a customer's Windows server
(`pip install ./sagepro_agent` with its own pyproject) and runs as
`python -m sagepro_agent ...`.
"""

__version__ = "0.1.0"
