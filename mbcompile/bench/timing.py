"""Timing loops and their statistics (no framework imported).

Calls are timed one at a time after a warm-up, round-robin over the candidates
when there are several (drift in the machine's speed hits all alike), until each
median is stable: the 95% confidence interval of the median, from order
statistics, within `precision` of it; or until the time budget runs out.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Timing:
    """Summary of one candidate's timed calls, in seconds."""

    median: float
    p10: float
    p90: float
    low: float
    runs: int
    ci_half_width: float  # relative: half the median's 95% interval over the median
    stable: bool  # the interval was within the precision asked

    @classmethod
    def of(cls, samples: list[float], precision: float) -> Timing:
        ordered = sorted(samples)
        width = median_interval(ordered)
        return cls(
            median=statistics.median(ordered),
            p10=quantile(ordered, 0.1),
            p90=quantile(ordered, 0.9),
            low=ordered[0],
            runs=len(ordered),
            ci_half_width=width,
            stable=width <= precision,
        )

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("median", "p10", "p90", "low"):
            data[f"{key}_ms"] = data.pop(key) * 1e3
        return data


def quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks of a sorted list."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median_interval(ordered: list[float]) -> float:
    """Half the width of the median's distribution-free 95% confidence interval,
    relative to the median (ranks n/2 ± 0.98·√n); infinite for few samples."""
    n = len(ordered)
    if n < 6:
        return math.inf
    spread = 0.98 * math.sqrt(n)
    low = max(0, math.floor(n / 2 - spread))
    high = min(n - 1, math.ceil(n / 2 + spread))
    middle = statistics.median(ordered)
    return (ordered[high] - ordered[low]) / (2 * middle) if middle else math.inf


@dataclass(frozen=True)
class Budget:
    """How long to time: warm-up, least and most runs, precision, seconds."""

    warmup_s: float = 0.5
    min_runs: int = 20
    max_runs: int = 2000
    precision: float = 0.01
    max_s: float = 20.0
    settle_s: float = 0.0  # untimed calls before each timed one (several candidates)


def measure(
    calls: dict[str, Callable[[], object]],
    budget: Budget,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time each call round-robin until every median is stable (or the budget is
    spent); a KeyboardInterrupt stops early with what was timed."""
    for call in calls.values():  # warm-up: each at least three calls
        start, count = clock(), 0
        while count < 3 or clock() - start < budget.warmup_s:
            call()
            count += 1
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    start = clock()
    check = budget.min_runs  # stability is checked as the runs grow by a tenth
    try:
        for round_ in range(budget.max_runs):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(_turn(calls[name], budget.settle_s, clock))
            runs = round_ + 1
            if runs < budget.min_runs:
                continue
            if clock() - start > budget.max_s:
                break
            if runs >= check:
                check = max(runs + 1, int(runs * 1.1))
                if all(
                    median_interval(sorted(s)) <= budget.precision
                    for s in samples.values()
                ):
                    break
    except KeyboardInterrupt:
        if not all(len(s) >= 1 for s in samples.values()):
            raise
    return {name: Timing.of(s, budget.precision) for name, s in samples.items() if s}


def _turn(call: Callable[[], object], settle_s: float, clock) -> float:
    if settle_s:
        start = clock()
        while clock() - start < settle_s:
            call()
    start = clock()
    call()
    return clock() - start
