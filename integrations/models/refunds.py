"""Issue 14 (refunds): placeholder, filled by its owner."""
