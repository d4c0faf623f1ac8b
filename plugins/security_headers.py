"""security_headers plugin (being built)."""
