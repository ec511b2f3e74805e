"""Issue 14 (storefront): placeholder, filled by its owner."""
