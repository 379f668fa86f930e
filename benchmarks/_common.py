"""Shared pieces of the benchmark scripts: paths, timing, statistics, printing.

Benchmarks print figures; they never assert on time. Run each from the repository
root or anywhere else as `python benchmarks/<name>.py`.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
CANONICAL = ("v1", "v2", "v3_large", "v3_small")

# Keep TensorFlow's start-up chatter out of the figures (set before it is imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

NOISE_NOTE = (
    "Timings on a shared or busy machine are noisy: compare ratios from one run, and "
    "re-measure on a quiet machine before quoting absolute figures."
)


@dataclass(frozen=True)
class Stats:
    """Summary of timing samples in seconds."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stats:
        ordered = sorted(samples)
        if len(ordered) >= 4:
            q1, _, q3 = statistics.quantiles(ordered, n=4)
        else:
            q1, q3 = ordered[0], ordered[-1]
        return cls(
            statistics.median(ordered), q1, q3, ordered[0], ordered[-1], len(ordered)
        )

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.q3 - self.q1) / self.median if self.median else 0.0

    def ms(self) -> str:
        return (
            f"{self.median * 1e3:9.2f} ms  (IQR {self.q1 * 1e3:.2f}-{self.q3 * 1e3:.2f}, "
            f"±{self.spread * 50:.1f}%, min {self.low * 1e3:.2f}, n={self.n})"
        )


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    candidates: dict[str, Callable[[], object]], repeats: int, warmup: int
) -> dict[str, Stats]:
    """Time each candidate `repeats` times, round-robin, so that drift in the
    machine's speed (other processes, frequency scaling) hits all of them alike.
    The order within a round rotates so no candidate always runs first."""
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(time_once(candidates[name]))
    return {name: Stats.of(values) for name, values in samples.items()}


def verdict(value: float, target: float, unit: str = "") -> str:
    mark = "meets" if value <= target else "MISSES"
    return f"{value:.3f}{unit} {mark} target ≤ {target}{unit}"


_counter = itertools.count()


def import_source(text: str, directory: Path, stem: str = "bench_model"):
    """Import generated source text as a fresh module (file-backed, so TorchScript
    and tracebacks can read it)."""
    name = f"{stem}_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def header(title: str) -> None:
    print(f"\n== {title} ==")
