"""Issue 14 (credit_models): placeholder, filled by its owner."""
