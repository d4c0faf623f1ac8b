"""The tracing plugin (work in progress)."""
