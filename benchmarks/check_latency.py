"""How long `mbcompile check` takes on a project of 20 targets.

A temporary project lists 20 specs (the four canonical MobileNets and the first 16
of specs/timm/), one target each, both backends: 40 generated files, generated
once. Then `mbcompile check` runs as a fresh process (interpreter start-up and
imports included, as pre-commit and CI run it), and the same check in-process is
split into its phases: reading the config, computing every file, comparing. The
check must import neither torch nor tensorflow; the script says whether it did.
This repository's own check (its pyproject.toml: 27 specs, 81 files) is timed too.

Target: check over 20 targets ≤ 1 s median wall.

    python benchmarks/check_latency.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import NOISE_NOTE, ROOT, SPECS, Stats, header, verdict
from compile_latency import HEAVY, cli_command, cli_env

TARGET_S = 1.0
TARGETS = 20


def make_project(folder: Path) -> Path:
    """20 specs, one target each; returns the project folder."""
    specs = [SPECS / f"{n}.yaml" for n in ("v1", "v2", "v3_large", "v3_small")]
    specs += sorted((SPECS / "timm").glob("*.yaml"))[: TARGETS - len(specs)]
    (folder / "specs").mkdir(parents=True)
    lines = ["[tool.mbcompile]", ""]
    for spec in specs:
        shutil.copy(spec, folder / "specs" / spec.name)
        lines += ["[[tool.mbcompile.targets]]", f'spec = "specs/{spec.name}"', ""]
    (folder / "pyproject.toml").write_text("\n".join(lines))
    return folder


def wall_times(
    command: list[str], cwd: Path, runs: int, cache: Path
) -> tuple[Stats, Stats]:
    """(wall, CPU) of whole processes, after one warm-up run that writes the
    bytecode cache to `cache` (as after a normal install)."""
    env = cli_env(cache)
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    walls, cpus = [], []
    for _ in range(runs):
        before = os.times()
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
        after = os.times()
        cpus.append(
            after.children_user
            - before.children_user
            + after.children_system
            - before.children_system
        )
    return Stats.of(walls), Stats.of(cpus)


def imports_of_check(cwd: Path) -> list[str]:
    code = (
        "import sys\nfrom mbcompile.cli import main\nmain(['check'])\n"
        "import json\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & "
        f"{set(HEAVY)!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True
    )
    return json.loads(result.stdout.splitlines()[-1])


def phases(cwd: Path, runs: int) -> dict[str, Stats]:
    """The check in this process, by phase (modules already imported)."""
    from mbcompile.project import config, outputs

    samples: dict[str, list[float]] = {"config": [], "expected": [], "compare": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        project = config.read(cwd=cwd)
        t1 = time.perf_counter()
        found = outputs.expected(project, cwd=cwd)
        t2 = time.perf_counter()
        assert not outputs.check(found)
        t3 = time.perf_counter()
        samples["config"].append(t1 - t0)
        samples["expected"].append(t2 - t1)
        samples["compare"].append(t3 - t2)
    return {name: Stats.of(values) for name, values in samples.items()}


def own_size() -> str:
    """This repository's project, counted: "27 specs, 81 files"."""
    from mbcompile.project import config, outputs

    project = config.read(ROOT / "pyproject.toml")
    files = len(outputs.expected(project, cwd=ROOT).outputs)
    return f"{len(project.jobs)} specs, {files} files"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project")
        subprocess.run(
            [*cli_command(), "generate"], cwd=project, check=True, capture_output=True
        )
        files = 2 * TARGETS  # both backends, no reports
        header(f"mbcompile check: {TARGETS} targets, {files} files, fresh process")
        cache = Path(tmp) / "pycache"
        wall, cpu = wall_times([*cli_command(), "check"], project, args.runs, cache)
        print(f"wall {wall.ms()}")
        print(f"CPU  {cpu.ms()}")
        heavy = imports_of_check(project)
        print(f"frameworks imported: {', '.join(heavy) if heavy else 'none'}")
        header("in-process phases (modules imported)")
        for name, stats in phases(project, args.runs).items():
            print(f"{name:<9} {stats.ms()}")
        header(f"this repository's own check ({own_size()})")
        own, own_cpu = wall_times([*cli_command(), "check"], ROOT, args.runs, cache)
        print(f"wall {own.ms()}")
        print(f"CPU  {own_cpu.ms()}")
        print(f"\n20 targets: {verdict(wall.median, TARGET_S, ' s')}")
        print(NOISE_NOTE)


if __name__ == "__main__":
    main()
