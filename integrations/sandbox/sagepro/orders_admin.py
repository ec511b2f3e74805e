"""Issue 14 (orders_admin): placeholder, filled by its owner."""
