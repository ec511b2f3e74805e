"""Where the agent reads and writes Sage Pro tables: `base` is the interface; `fixture`
(tests and the demo only) and `vfpoledb` (production, Windows) implement it."""
