"""Pure arithmetic over measured rounds: medians, same-round ratios, the summary of a case."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.load import LoadResult

#: One round: the result of every case measured in it, by case name.
Round = Mapping[str, LoadResult]


@dataclass(frozen=True)
class Summary:
    """Medians over the rounds of one case (absolute figures: comparable only within the run)."""

    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of nothing")
    return float(statistics.median(values))


def summarize(results: Sequence[LoadResult]) -> Summary:
    return Summary(
        rounds=len(results),
        rps=median([r.rps for r in results]),
        p50_ms=median([r.p50_ms for r in results]),
        p99_ms=median([r.p99_ms for r in results]),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
    )


def round_ratios(rounds: Sequence[Round], case: str, reference: str) -> list[float]:
    """``case`` rps over ``reference`` rps, one ratio per round that measured both."""
    return [r[case].rps / r[reference].rps for r in rounds if case in r and reference in r and r[reference].rps > 0]


def median_ratio(rounds: Sequence[Round], case: str, reference: str) -> float | None:
    """The median of the same-round ratios; None when no round measured both sides."""
    ratios = round_ratios(rounds, case, reference)
    return median(ratios) if ratios else None


def alternating(names: Sequence[str], round_index: int) -> list[str]:
    """Forward on even rounds, backward on odd ones: each pair is measured in both orders (ABBA)."""
    return list(names) if round_index % 2 == 0 else list(reversed(names))
