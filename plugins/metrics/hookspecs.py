"""The hook the metrics plugin adds: ``taskman_metrics``; documented in docs/metrics.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskman import hookspec

if TYPE_CHECKING:
    from taskman import Config, Runtime

    from .registry import MetricsRegistry


@hookspec
def taskman_metrics(runtime: Runtime, metrics: MetricsRegistry, config: Config) -> None:
    """Declare Prometheus metrics and scrape-time collectors on ``metrics``; ``/metrics`` serves them."""
