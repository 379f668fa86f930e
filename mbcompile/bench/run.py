"""The parent side of `mbcompile bench`: what to run, in a child process per
runtime, and its results (no framework is imported here)."""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import SpecError, shorten
from ..files import write_stderr
from .machine import load_average, machine
from .runtimes import RUNTIMES
from .timing import Budget


@dataclass(frozen=True)
class Item:
    """One model to time: a name, its generated source and its input (C, H, W)."""

    name: str
    source: str
    input_shape: tuple[int, int, int]


def require(runtime: str) -> None:
    """Exit 2 naming the extras to install when the runtime's modules are missing."""
    wanted = RUNTIMES[runtime]
    missing = [m for m in wanted.modules if importlib.util.find_spec(m) is None]
    if missing:
        extras = ",".join(wanted.extras)
        raise SpecError(
            f"--runtime {runtime} needs {', '.join(missing)}, not installed; install "
            f"the extra: pip install 'mbcompile[{extras}]'"
        )


def child_env(runtime: str) -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if RUNTIMES[runtime].backend == "keras":
        env["KERAS_BACKEND"] = "tensorflow"
    return env


def bench(
    items: list[Item], runtime: str, batch: int, threads: int, budget: Budget
) -> dict:
    """Each item timed in one child process for the runtime: per item its timing
    (or error), export difference and one-off costs; the machine and versions."""
    require(runtime)
    before = load_average()
    with tempfile.TemporaryDirectory(prefix="mbcompile-bench-") as folder:
        out = Path(folder) / "result.json"
        job = {
            "runtime": runtime,
            "items": [asdict(i) for i in items],
            "batch": batch,
            "threads": threads,
            "budget": asdict(budget),
            "workdir": folder,
            "out": str(out),
        }
        code, tail = _run_child(job, child_env(runtime))
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError):
            last = tail[-1] if tail else "no output"
            raise SpecError(
                f"the {runtime} child process failed (exit code {code}): "
                f"{shorten(last, 300)}"
            ) from None
    if "error" in result:
        raise SpecError(f"--runtime {runtime}: {shorten(result['error'], 300)}")
    info = machine(threads)
    info["load_average"] = {"before": before, "after": info["load_average"]}
    result.update(runtime=runtime, batch=batch, threads=threads, machine=info)
    result["label"] = RUNTIMES[runtime].label
    return result


def _run_child(job: dict, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run the child, passing its progress lines through; (exit code, its last
    lines of standard error). Ctrl-C reaches the child too, which stops timing and
    writes what it has; we wait for that."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mbcompile.bench.child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        errors="replace",
    )
    tail: collections.deque[str] = collections.deque(maxlen=20)
    try:
        process.stdin.write(json.dumps(job))
        process.stdin.close()
        for line in process.stderr:
            line = line.rstrip("\n")
            if line.startswith("mbcompile bench:"):
                write_stderr(line)
            elif line.strip():
                tail.append(line)
    except KeyboardInterrupt:
        with contextlib.suppress(KeyboardInterrupt):
            process.wait()
    return process.wait(), list(tail)
