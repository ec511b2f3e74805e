"""Admin for field mappings, with the "Suggest" helper (issue 4 §5)."""
