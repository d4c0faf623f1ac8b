"""The metric set of one app: which mode it runs in, what it declares, and how it renders.

Two modes, chosen when the app is built (``taskman_configure``):

* **multiprocess**: ``$PROMETHEUS_MULTIPROC_DIR`` is set (``taskman serve``
  sets it for its workers).  Values live in memory-mapped files shared by
  all workers; a scrape merges them (:mod:`.multiprocess`).
* **single process**: anything else (tests, ``uvicorn taskman.asgi:app``
  without the variable).  Values live in a registry of this app's own.

Plugins declare metrics through :class:`MetricsRegistry` (the
``taskman_metrics`` hook hands it over) and never see the difference.
Plain Python: nothing here knows Falcon.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from .multiprocess import ENV_VAR, FilesCollector, WorkerProcessCollector

#: prometheus-client's gauge aggregation modes across worker processes.
GAUGE_MODES = frozenset(
    {"all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent"}
)


# prometheus-client's value classes are unannotated: reach them through ``Any``.
_values: Any = values


class Collector(Protocol):
    """A scrape-time collector, as prometheus-client defines it."""

    def collect(self) -> Iterable[Metric]: ...


def multiprocess_directory(environ: Mapping[str, str] | None = None) -> Path | None:
    """The multiprocess folder this process writes to, or ``None`` for the single-process mode."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return Path(value) if value else None


def use_multiprocess_values(enabled: bool) -> None:
    """Make prometheus-client create file-backed (or in-memory) values from now on, in this process.

    prometheus-client picks its value class once, when it is first
    imported; a gunicorn worker forks from a parent that imported it before
    ``taskman serve`` exported ``$PROMETHEUS_MULTIPROC_DIR``.  A file-backed
    class already in place is kept: it follows forks by itself, and two of
    them in one process would write the same files.
    """
    multiprocess = bool(getattr(_values.ValueClass, "_multiprocess", False))
    if enabled and not multiprocess:
        _values.ValueClass = _values.MultiProcessValue()
    elif not enabled and multiprocess:
        _values.ValueClass = _values.MutexValue


def renew_multiprocess_values() -> None:
    """Replace a file-backed value class in place by a new one, which opens new files.

    Its open files may have been deleted (the folder emptied at start, or
    this process's files merged at shut-down): values created from now on
    must not go on writing to them.  A process using in-memory values is
    left alone.
    """
    if getattr(_values.ValueClass, "_multiprocess", False):
        _values.ValueClass = _values.MultiProcessValue()


class MetricsRegistry:
    """Declare metrics and scrape-time collectors; ``/metrics`` renders them all.

    Metrics declared here are process-wide counters, gauges and histograms
    of prometheus-client; use their ``labels(...)``, ``inc()``,
    ``observe()``, ``set()`` as usual.  In multiprocess mode they are not
    registered anywhere: their values reach the scrape through the files.
    A collector added with :meth:`collector` runs in the process that
    serves the scrape, once per scrape (for a count read from the database,
    say), in both modes.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        #: What ``/metrics`` renders.
        self.registry = CollectorRegistry()
        self._names: set[str] = set()
        if directory is not None:
            self.registry.register(FilesCollector(directory))

    @property
    def multiprocess(self) -> bool:
        return self.directory is not None

    def _claim(self, name: str) -> None:
        if name in self._names:
            raise ValueError(f"metric {name!r} is already declared")
        self._names.add(name)

    @property
    def _target(self) -> CollectorRegistry | None:
        return None if self.multiprocess else self.registry

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        """A counter; its name ends in ``_total`` (added if missing)."""
        self._claim(name.removesuffix("_total"))
        return Counter(name, documentation, labelnames, registry=self._target)

    def gauge(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        multiprocess_mode: str = "mostrecent",
    ) -> Gauge:
        """A gauge; ``multiprocess_mode`` says how the workers' values combine (``livesum``, ``mostrecent``...)."""
        if multiprocess_mode not in GAUGE_MODES:
            raise ValueError(f"multiprocess_mode must be one of {', '.join(sorted(GAUGE_MODES))}")
        self._claim(name)
        return Gauge(
            name,
            documentation,
            labelnames,
            registry=self._target,
            multiprocess_mode=multiprocess_mode,  # type: ignore[arg-type]
        )

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        """A histogram with these bucket upper bounds (``+Inf`` is added)."""
        self._claim(name)
        return Histogram(name, documentation, labelnames, registry=self._target, buckets=buckets)

    def collector(self, collector: Collector) -> None:
        """Run ``collector.collect()`` on every scrape, in the process serving it.

        Give it a ``describe()`` returning its metric families (without
        values) if collecting is costly: otherwise nothing checks its names.
        """
        self.registry.register(collector)  # type: ignore[arg-type]

    def add_process_collectors(self) -> None:
        """``process_*`` metrics: this process, or every worker labelled by ``pid`` (multiprocess)."""
        if self.directory is None:
            ProcessCollector(registry=self.registry)
        else:
            self.registry.register(WorkerProcessCollector(self.directory))
        PlatformCollector(registry=self.registry)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type (Prometheus text, or OpenMetrics when ``accept`` asks for it)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's value as a scrape would show it (``None`` if absent): handy in tests and checks."""
        value: Any = self.registry.get_sample_value(name, dict(labels or {}))
        return None if value is None else float(value)
