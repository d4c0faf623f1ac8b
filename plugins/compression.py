"""compression plugin (being built)."""
