"""Issue 14 (credit_admin): placeholder, filled by its owner."""
