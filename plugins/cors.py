"""cors plugin (being built)."""
