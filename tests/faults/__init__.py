"""Fault tests: real servers under load while things break (signals, database outage, slow database, bad input)."""
