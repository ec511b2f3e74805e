"""Issue 14 (unapplied): placeholder, filled by its owner."""
