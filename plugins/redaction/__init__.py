"""The redaction plugin (work in progress)."""
