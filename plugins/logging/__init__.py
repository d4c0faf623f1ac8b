"""The logging plugin (work in progress)."""
