"""limits plugin (being built)."""
