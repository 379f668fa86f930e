"""The child process of `mbcompile bench`: one runtime, one or more models, timed
round-robin. Reads its job as JSON on standard input and writes its results as
JSON to the job's `out` file; progress lines go to standard error.

    python -m mbcompile.bench.child < job.json

Every model is prepared first (export, check against eager), then all are timed
together, each turn settling the runtime's threads first when there are several.
A KeyboardInterrupt (Ctrl-C reaches the whole process group) ends the timing
early; what was timed is still written.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

from .runtimes import TOLERANCE, prepare
from .timing import Budget, measure


def news(text: str) -> None:
    print(f"mbcompile bench: {text}", file=sys.stderr, flush=True)


def run(job: dict) -> dict:
    result: dict = {"items": {}, "versions": {}, "interrupted": False}
    calls = {}
    workdir = Path(job["workdir"])
    try:
        for item in job["items"]:
            name = item["name"]
            entry = result["items"].setdefault(name, {"seconds": {}})

            def timer(label, fn, entry=entry):
                start = time.perf_counter()
                value = fn()
                entry["seconds"][label] = time.perf_counter() - start
                return value

            try:
                prepared = prepare(
                    job["runtime"],
                    item["source"],
                    tuple(item["input_shape"]),
                    job["batch"],
                    job["threads"],
                    workdir,
                    timer,
                )
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # the runtime refused this model
                entry["error"] = f"{type(exc).__name__}: {first_line(exc)}"
                news(f"{name}: FAILED {entry['error']}")
                continue
            result["versions"].update(prepared.versions)
            entry.update(difference=prepared.difference, notes=prepared.notes)
            if prepared.difference > TOLERANCE:
                entry["error"] = (
                    f"the exported model's outputs differ from the eager model's by "
                    f"{prepared.difference:.2e} (tolerance {TOLERANCE})"
                )
                news(f"{name}: FAILED {entry['error']}")
                continue
            calls[name] = prepared.call
            news(f"{name}: ready ({sum(entry['seconds'].values()):.1f} s)")
        if calls:
            news(f"timing {len(calls)} model{'s' * (len(calls) > 1)}")
            budget = Budget(**job["budget"])
            if len(calls) > 1:
                budget = Budget(
                    **{**job["budget"], "settle_s": budget.settle_s or 0.05}
                )
            for name, timing in measure(calls, budget).items():
                result["items"][name]["timing"] = timing.to_json()
    except KeyboardInterrupt:
        result["interrupted"] = True
    return result


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""


def main() -> int:
    job = json.loads(sys.stdin.read())
    try:
        result = run(job)
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {first_line(exc)}"}
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    result["torch_imported"] = "torch" in sys.modules
    Path(job["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
