"""The metrics plugin (work in progress)."""
