"""Issue 14 (chargebacks): placeholder, filled by its owner."""
