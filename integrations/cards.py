"""Cards on file (issue 15). Being written: see the brief."""
