"""Issue 14 (orders_models): placeholder, filled by its owner."""
