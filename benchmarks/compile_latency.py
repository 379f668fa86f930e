"""Compile latency of the canonical specs, through the CLI and in-process.

CLI: the median wall time of `mbcompile SPEC --backend torch -o FILE` as a fresh
process (interpreter start-up and imports included, which is what a user waits
for), and a check that this path imports neither torch nor tensorflow.
In-process: `compiler.load_and_expand` + `compiler.generate` once the modules are
imported (the first call, which also loads templates, is shown separately).

Target: CLI compile of v3_large ≤ 0.5 s median wall.

    python benchmarks/compile_latency.py [--runs 10] [--specs v3_large v2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CANONICAL, NOISE_NOTE, SPECS, Stats, header, time_once, verdict

CLI_TARGET_S = 0.5
HEAVY = ("torch", "tensorflow", "keras", "jax", "numpy")


def cli_command() -> list[str]:
    """The installed `mbcompile` script next to this interpreter, else `-m`."""
    script = Path(sys.executable).with_name("mbcompile")
    if script.exists():
        return [str(script)]
    found = shutil.which("mbcompile")
    return [found] if found else [sys.executable, "-m", "mbcompile"]


def cli_env(bytecode_cache: Path | None) -> dict[str, str]:
    """The environment for CLI runs. With a cache directory, compiled bytecode is
    written there on the warm-up run and reused (as after a normal `pip install`);
    without one, every run compiles mbcompile's sources again."""
    env = dict(os.environ)
    if bytecode_cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(bytecode_cache)
    return env


def cli_latency(
    spec: Path, runs: int, out: Path, env: dict[str, str]
) -> tuple[Stats, Stats]:
    """(wall, CPU) time of whole `mbcompile` processes. CPU time (user + system of
    the child) is less disturbed by other load on the machine than wall time."""
    command = [*cli_command(), str(spec), "--backend", "torch", "-o", str(out)]
    subprocess.run(command, check=True, capture_output=True, env=env)  # warm-up
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return Stats.of(wall), Stats.of(cpu)


# Runs the CLI's own entry point in a fresh interpreter, then lists what it imported.
_PROBE = """
import json, sys
from mbcompile.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(HEAVY)))
print(json.dumps({"exit": code, "heavy": heavy}))
"""


def heavy_imports(spec: Path, out: Path) -> dict:
    probe = _PROBE.replace("HEAVY", repr(json.dumps(HEAVY)))
    args = [str(spec), "--backend", "torch", "-o", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def slowest_imports(
    spec: Path, out: Path, env: dict[str, str], top: int
) -> list[tuple[int, str]]:
    """The top-level imports that cost most (cumulative µs), from -X importtime."""
    args = [str(spec), "--backend", "torch", "-o", str(out)]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mbcompile", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[12:].split("|"))
        if not name.startswith(" "):  # top level only (nested ones are indented)
            rows.append((int(cumulative), name))
    return sorted(rows, reverse=True)[:top]


def in_process(spec: Path, runs: int) -> tuple[float, Stats]:
    from mbcompile import compiler

    def once():
        _, graph = compiler.load_and_expand(spec)
        return compiler.generate(graph, "torch")

    first = time_once(once)
    return first, Stats.of([time_once(once) for _ in range(runs)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="timed runs per spec")
    parser.add_argument(
        "--specs", nargs="+", default=list(CANONICAL), choices=CANONICAL
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile mbcompile's sources in every CLI run (cold, no .pyc reuse)",
    )
    args = parser.parse_args(argv)
    print(NOISE_NOTE)
    print(f"CLI: {' '.join(cli_command())}; python {sys.version.split()[0]}")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.py"
        cache = None if args.no_bytecode_cache else Path(tmp) / "pycache"
        env = cli_env(cache)
        header(
            f"CLI compile, --backend torch, median of {args.runs} processes "
            f"(bytecode cache {'off' if cache is None else 'on'})"
        )
        cli = {}
        for name in args.specs:
            wall, cpu = cli_latency(SPECS / f"{name}.yaml", args.runs, out, env)
            cli[name] = wall
            print(f"{name:10s} wall {wall.ms()}")
            print(f"{'':10s} cpu  {cpu.ms()}")

        header("what the CLI path imports")
        probe_spec = SPECS / f"{args.specs[0]}.yaml"
        found = heavy_imports(probe_spec, out)
        frameworks = [m for m in found["heavy"] if m in ("torch", "tensorflow")]
        print(
            f"exit {found['exit']}; heavy modules imported: "
            f"{', '.join(found['heavy']) or 'none'} -> "
            + ("torch/tensorflow NOT imported (ok)" if not frameworks else "FAIL")
        )
        print("slowest top-level imports (cumulative):")
        for micros, module in slowest_imports(probe_spec, out, env, top=6):
            print(f"  {micros / 1e3:8.1f} ms  {module}")

    header(f"in-process load_and_expand + generate(torch), median of {args.runs}")
    for name in args.specs:
        first, warm = in_process(SPECS / f"{name}.yaml", args.runs)
        print(f"{name:10s} {warm.ms()}  first call {first * 1e3:.1f} ms")

    header("targets")
    if "v3_large" in cli:
        print(
            f"CLI v3_large median: {verdict(cli['v3_large'].median, CLI_TARGET_S, ' s')}"
        )
    print(
        "CLI path imports torch/tensorflow: "
        + ("no (meets target)" if not frameworks else f"YES: {frameworks} (MISSES)")
    )
    return 1 if frameworks else 0


if __name__ == "__main__":
    sys.exit(main())
