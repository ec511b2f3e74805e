"""The Sage Pro gateway conformance suite: one set of contract tests
(docs/sagepro-gateway.md sections 1-4, 7, 8) run against every implementation."""
