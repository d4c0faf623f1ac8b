"""The business_metrics plugin (work in progress)."""
