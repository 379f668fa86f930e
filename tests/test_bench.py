"""`mbcompile bench`: the timing loop's statistics and stopping rule (a simulated
clock), the child process's plumbing on one tiny model, a missing runtime, and
`--calibrate`'s fit (against profiles it must recover). Nothing here asserts on
how fast anything runs."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest

from helpers import SPECS, run_cli
from mbcompile import compiler
from mbcompile.analysis import calibrate
from mbcompile.analysis.latency import estimate
from mbcompile.api import bundled_specs
from mbcompile.bench import run as bench_run
from mbcompile.bench.timing import Budget, Timing, measure, median_interval
from mbcompile.cli import bench as bench_command
from mbcompile.frontend.device import dump_device, load_device, parse_device

# ----------------------------------------------------------------- timing loop


class FakeClock:
    """A clock that moves only when a fake call runs, by the call's duration."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def call(self, durations):
        def run():
            self.now += next(durations)

        return run


def test_statistics_are_numpys_percentiles():
    rng = random.Random(3)
    samples = [rng.lognormvariate(0, 0.3) for _ in range(101)]
    t = Timing.of(samples, precision=0.01)
    assert t.median == pytest.approx(np.percentile(samples, 50))
    assert t.p10 == pytest.approx(np.percentile(samples, 10))
    assert t.p90 == pytest.approx(np.percentile(samples, 90))
    assert (t.runs, t.low) == (101, min(samples))


def test_median_interval_uses_the_order_statistics_around_the_median():
    # n = 100: ranks 50 -/+ 0.98 * 10 -> 40 and 60 of 0..99; values = ranks + 1.
    ordered = [float(i + 1) for i in range(100)]
    assert median_interval(ordered) == pytest.approx((61 - 41) / (2 * 50.5))
    assert median_interval([1.0] * 5) == float("inf")  # too few to say


def test_a_steady_call_stops_at_the_least_runs_and_a_noisy_one_runs_longer():
    clock = FakeClock()
    steady = clock.call(itertools.repeat(0.001))
    rng = random.Random(5)
    noisy = clock.call(iter(lambda: rng.uniform(0.0005, 0.0015), None))
    budget = Budget(warmup_s=0.01, min_runs=20, max_runs=5000, precision=0.05)
    (timing,) = measure({"steady": steady}, budget, clock).values()
    assert timing.runs == 20 and timing.stable and timing.median == pytest.approx(1e-3)
    # Uniform on 0.5-1.5 ms: the median's interval is about 0.98 / sqrt(n) of it,
    # within 5% from about 400 runs on.
    (timing,) = measure({"noisy": noisy}, budget, clock).values()
    assert 300 < timing.runs < 700 and timing.stable
    assert timing.ci_half_width <= 0.05
    short = Budget(warmup_s=0.01, min_runs=20, precision=0.0001, max_s=0.1)
    (timing,) = measure({"noisy": noisy}, short, clock).values()
    assert not timing.stable  # the time budget ran out first


def test_interrupting_the_timing_keeps_what_was_timed():
    clock = FakeClock()
    calls = 0

    def flaky():
        nonlocal calls
        calls += 1
        clock.now += 0.001
        if calls == 40:
            raise KeyboardInterrupt

    budget = Budget(warmup_s=0.0, min_runs=100, precision=0.0)
    (timing,) = measure({"a": flaky}, budget, clock).values()
    assert timing.runs == 36  # 3 warm-up calls, then 36 timed before the 40th


# ------------------------------------------------------------------- the child


def test_bench_times_a_tiny_model_in_a_child_process():
    argv = ["bench", SPECS / "v3_small.yaml", "--runtime", "torch", "--format", "json"]
    argv += ["--set", "resolution=32", "--set", "width_multiplier=0.35"]
    argv += ["--min-runs", "2", "--max-time", "0.01", "--precision", "0.5"]
    code, out, err = run_cli([*argv, "--device", "desktop_avx2"])
    assert code == 0, err
    data = json.loads(out)
    (entry,) = data["items"].values()
    assert entry["timing"]["runs"] >= 2
    assert entry["timing"]["p10_ms"] <= entry["timing"]["median_ms"]
    assert entry["difference"] <= 1e-4  # the timed model is the spec's
    assert entry["estimate_ms"] > 0 and data["device"] == "desktop_avx2"
    assert data["machine"]["threads"] == 2 and data["machine"]["cpu"]
    assert data["versions"]["torch"]
    assert not data["tensorflow_imported"]  # torch timed apart from tensorflow
    assert "mbcompile bench:" in err  # progress


def test_a_missing_runtime_is_exit_2_naming_the_extra(monkeypatch):
    real = bench_run.importlib.util.find_spec
    monkeypatch.setattr(
        bench_run.importlib.util,
        "find_spec",
        lambda name: None if name == "onnxruntime" else real(name),
    )
    code, out, err = run_cli(["bench", SPECS / "v2.yaml", "--runtime", "onnxruntime"])
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "mbcompile: error: --runtime onnxruntime needs onnxruntime, not installed; "
        "install the extra: pip install 'mbcompile[onnx]'"
    ]


# ------------------------------------------------------------------ calibration


def graphs(names):
    bundled = bundled_specs()
    out = []
    for text in names:
        name, _, sets = text.partition("@")
        _, graph = compiler.load_and_expand(
            bundled[name], sets.split(",") if sets else []
        )
        out.append((text, graph))
    return out


# A machine that is not a shipped profile: other efficiencies, overheads, bandwidth.
TRUTH = """\
name: truth
sources: [made up for the test]
threads: 2
peak_gmacs: 112
bandwidth_gbs: 12
cache: {bytes: 8388608, bandwidth_gbs: 60}
overhead_us: 9
ops:
  pointwise: {efficiency: 0.55}
  conv: {efficiency: 0.35}
  depthwise: {efficiency: 0.09}
  dense: {efficiency: 0.2}
  attention: {efficiency: 0.15}
  hardswish: {efficiency: 0.3}
  swish: {efficiency: 0.02}
  sigmoid: {efficiency: 0.04}
  hardsigmoid: {efficiency: 0.2}
"""


def test_the_fit_recovers_a_machine_the_estimate_can_describe():
    truth = parse_device(TRUTH, "truth.yaml")
    train = graphs(calibrate.CALIBRATION)
    samples = [
        calibrate.Sample(name, g, estimate(g, truth).total_s) for name, g in train
    ]
    start = load_device("desktop_avx2")
    fitted = calibrate.fit(samples, start)
    for s in samples:
        assert estimate(s.graph, fitted).total_s == pytest.approx(s.seconds, rel=0.02)
    # Specs it was not fitted to: predicted as the truth would (within 3%), where
    # the starting profile is off by far more.
    held_out = graphs(
        ["v2", "mnasnet_100", "efficientnet_lite0", "v3_large@width_multiplier=0.75"]
    )
    for _, g in held_out:
        assert estimate(g, fitted).total_s == pytest.approx(
            estimate(g, truth).total_s, rel=0.03
        )
    assert any(
        abs(estimate(g, start).total_s / estimate(g, truth).total_s - 1) > 0.3
        for _, g in held_out
    )
    # The fitted profile is a valid file that reads back as itself.
    assert parse_device(dump_device(fitted), "fitted.yaml") == fitted


def test_nnls_is_the_best_non_negative_subset_solution():
    rng = np.random.default_rng(11)
    for _ in range(30):
        a = rng.standard_normal((8, 4))
        b = rng.standard_normal(8)
        x = calibrate.nnls(a, b)
        assert (x >= 0).all()
        best = np.inf
        for subset in itertools.product((False, True), repeat=4):
            columns = np.array(subset)
            z = np.zeros(4)
            if columns.any():
                z[columns] = np.linalg.lstsq(a[:, columns], b, rcond=None)[0]
            if (z >= -1e-12).all():
                best = min(best, np.linalg.norm(a @ z - b))
        assert np.linalg.norm(a @ x - b) == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_calibrate_writes_a_profile_that_loads(tmp_path, monkeypatch):
    truth = parse_device(TRUTH, "truth.yaml")

    def fake_bench(items, runtime, batch, threads, budget):
        found = dict(graphs([i.name for i in items]))
        return {
            "items": {
                name: {
                    "timing": {"median_ms": estimate(g, truth).total_ms},
                    "seconds": {},
                    "notes": {},
                    "difference": 0.0,
                }
                for name, g in found.items()
            },
            "versions": {"ai_edge_litert": "test"},
            "runtime": runtime,
            "batch": batch,
            "threads": threads,
            "machine": {
                "cpu": "test CPU",
                "usable_cpus": 2,
                "flags": ["avx2"],
                "load_average": {"before": [0.1], "after": [0.1]},
            },
        }

    monkeypatch.setattr(bench_command, "bench", fake_bench)
    target = tmp_path / "this_machine.yaml"
    code, out, err = run_cli(["bench", "--calibrate", "-o", target])
    assert code == 0, err
    fitted = load_device(target)
    assert fitted.name == "this_machine" and "test CPU" in fitted.sources[1]
    assert "median error" in out
    _, v2 = graphs(["v2"])[0]
    assert estimate(v2, fitted).total_s == pytest.approx(
        estimate(v2, truth).total_s, rel=0.03
    )
