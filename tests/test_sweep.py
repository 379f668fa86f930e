"""`mbcompile sweep`: the grid, budgets, the Pareto set (against a brute-force
check), its formats, refused points, bad arguments and interruption."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import random
import subprocess
import sys

import pytest

from helpers import ROOT, SPECS, run_cli
from mbcompile import compiler
from mbcompile.analysis import sweep
from mbcompile.analysis.cost import report
from mbcompile.analysis.latency import estimate
from mbcompile.cli import sweep as sweep_command
from mbcompile.files import Progress
from mbcompile.frontend.device import load_device

V3_SMALL = SPECS / "v3_small.yaml"
GRID = ["--vary", "width_multiplier=0.5:1:0.25", "--vary", "resolution=96,128,160"]


def dominated(p, others, capacity) -> bool:
    """The definition, checked against every other point (quadratic)."""
    return any(
        q.est_ms <= p.est_ms
        and capacity(q) >= capacity(p)
        and (q.est_ms < p.est_ms or capacity(q) > capacity(p))
        for q in others
    )


def test_the_pareto_set_of_a_small_grid_is_the_brute_force_one():
    # Each point compiled and estimated on its own, through the API's stages.
    device = load_device("desktop_avx2")
    brute = []
    for width, resolution in itertools.product(("0.5", "0.75", "1"), (96, 128, 160)):
        sets = [f"width_multiplier={width}", f"resolution={resolution}"]
        _, graph = compiler.load_and_expand(V3_SMALL, sets)
        brute.append(
            sweep.Point(
                tuple(sets),
                macs=report(graph).macs,
                est_ms=estimate(graph, device).total_ms,
            )
        )
    budget = sorted(p.est_ms for p in brute)[5]  # six of the nine points within
    within = [p for p in brute if p.est_ms <= budget]
    expected = {
        p.overrides for p in within if not dominated(p, within, lambda q: q.macs)
    }
    argv = ["sweep", V3_SMALL, *GRID, "--device", "desktop_avx2", "--format", "json"]
    code, out, _ = run_cli([*argv, "--budget", f"latency_ms={budget!r}"])
    assert code == 0
    data = json.loads(out)
    assert [tuple(p["set"]) for p in data["points"]] == [p.overrides for p in brute]
    assert sum(p["within_budget"] for p in data["points"]) == 6
    assert {tuple(p["set"]) for p in data["points"] if p["pareto"]} == expected


def test_pareto_matches_the_definition_on_random_points_with_ties():
    rng = random.Random(7)
    for _ in range(50):
        points = [
            sweep.Point(
                (f"i={i}",), macs=rng.randint(1, 6), params=0, est_ms=rng.randint(1, 6)
            )
            for i in range(rng.randint(1, 25))
        ]
        front = sweep.pareto(points, lambda p: p.est_ms, "macs")
        expected = [p for p in points if not dominated(p, points, lambda q: q.macs)]
        assert sorted(p.overrides for p in front) == sorted(
            p.overrides for p in expected
        )


def test_table_lists_the_front_with_set_lines_and_csv_every_point(monkeypatch):
    monkeypatch.setattr(Progress, "QUIET_S", 0.0)  # progress lines from the start
    argv = ["sweep", V3_SMALL, *GRID, "--set", "num_classes=10"]
    code, out, err = run_cli(argv)
    assert code == 0
    assert "9 of 9 points done" in out and "on the Pareto front" in out
    assert "--set num_classes=10 --set width_multiplier=0.5 --set resolution=96" in out
    assert "mbcompile sweep: 9/9" in err
    code, out, _ = run_cli([*argv, "--format", "csv", "--objective", "params"])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 9 and {r["resolution"] for r in rows} == {"96", "128", "160"}
    # Parameters do not grow with resolution: the front keeps the fastest of each.
    front = [r for r in rows if r["pareto"] == "1"]
    assert {r["width_multiplier"] for r in front} == {"0.5", "0.75", "1"}
    assert {r["resolution"] for r in front} == {"96"}


def test_points_the_spec_refuses_are_kept_with_their_reason():
    argv = ["sweep", V3_SMALL, "--vary", "resolution=16,64", "--format", "json"]
    code, out, _ = run_cli(argv)
    assert code == 0
    refused, ok = json.loads(out)["points"]
    assert "too small for this network" in refused["error"]
    assert ok["error"] == "" and ok["pareto"]
    code, _, err = run_cli(["sweep", V3_SMALL, "--vary", "resolution=8,16"])
    assert code == 2 and "every point of the grid is refused" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vary", "width_multiplier"], "expected KEY=a:b:step"),
        (["--vary", "width_multiplier=1:0.5:0.1"], "ends (0.5) before it starts"),
        (["--vary", "width_multiplier=0.5:1:0"], "step must be greater than 0"),
        (["--vary", "width_multiplier=a:b:c"], "three numbers"),
        (["--vary", "width_multiplier=0:1000:0.0001"], "at most 10,000"),
        (["--vary", "resolution=96,,128"], "an empty value"),
        (["--vary", "widht_multiplier=0.5,1"], "did you mean 'width_multiplier'"),
        (["--vary", "resolution=96", "--vary", "resolution=128"], "given twice"),
        (["--vary", "resolution=96", "--budget", "latency=3"], "unknown budget"),
        (["--vary", "resolution=96", "--budget", "latency_ms=-1"], "greater than 0"),
        (["--vary", "resolution=96", "--budget", "macs=lots"], "not a number"),
        (["--vary", "resolution=96", "--device", "nosuch"], "no shipped profile"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(args, message):
    code, out, err = run_cli(["sweep", V3_SMALL, *args])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_interrupting_keeps_the_points_done(monkeypatch):
    evaluated = []
    real = sweep_command.point

    def point(args, combo, device):
        if len(evaluated) == 4:
            raise KeyboardInterrupt
        evaluated.append(combo)
        return real(args, combo, device)

    monkeypatch.setattr(sweep_command, "point", point)
    code, out, err = run_cli(["sweep", V3_SMALL, *GRID, "--format", "json"])
    assert code == 130
    data = json.loads(out)
    assert data["interrupted"] and data["points_total"] == 9
    assert [tuple(p["set"]) for p in data["points"]] == evaluated
    assert "keeping the 4 points done" in err


def test_plot_draws_the_sweep(tmp_path):
    target = tmp_path / "sweep.svg"
    code, _, _ = run_cli(["sweep", V3_SMALL, *GRID, "--plot", target])
    assert code == 0
    assert "Pareto set" in target.read_text()


def test_measure_times_the_front_points_with_the_most_capacity(monkeypatch):
    from mbcompile.bench import run as bench_run

    timed = []

    def fake_bench(items, runtime, batch, threads, budget):
        timed.extend(i.name for i in items)
        return {
            "items": {
                i.name: {"timing": {"median_ms": 1.0 + n, "runs": 20}}
                for n, i in enumerate(items)
            }
        }

    monkeypatch.setattr(bench_run, "bench", fake_bench)
    argv = ["sweep", V3_SMALL, *GRID, "--measure", "torch", "--measure-top", "2"]
    code, out, _ = run_cli([*argv, "--format", "json"])
    assert code == 0
    points = json.loads(out)["points"]
    front = sorted((p for p in points if p["pareto"]), key=lambda p: -p["macs"])
    assert timed == [" ".join(p["set"]) for p in front[:2]]
    assert [p["measured"]["torch"]["median_ms"] for p in front[:2]] == [1.0, 2.0]
    assert all(not p["measured"] for p in front[2:])
    code, out, _ = run_cli(argv)
    assert "torch ms" in out.splitlines()[3]


def test_a_closed_standard_output_is_exit_2(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mbcompile",
            "sweep",
            V3_SMALL,
            "--vary",
            "resolution=96",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: os.close(1),
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "mbcompile: error: cannot write to standard output: it is closed"
    )
