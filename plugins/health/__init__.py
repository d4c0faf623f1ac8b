"""The health plugin (work in progress)."""
