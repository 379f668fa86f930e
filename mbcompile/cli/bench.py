"""`mbcompile bench SPEC --runtime tflite`: a spec's model with random weights,
exported and timed in its runtime; `--calibrate` fits a device profile to such
measurements."""

from __future__ import annotations

import argparse
import json

from .. import compiler
from ..analysis import calibrate
from ..analysis.latency import estimate
from ..bench.run import Item, bench
from ..bench.runtimes import RUNTIMES
from ..bench.timing import Budget
from ..errors import EXIT_BAD_INPUT, EXIT_OK, SpecError, shorten_path
from ..files import write_file, write_stderr, write_stdout
from ..frontend.device import DeviceProfile, dump_device, load_device
from .options import (
    add_batch_argument,
    add_overrides_argument,
    parse_column,
    positive_int,
)

EXIT_INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "specs",
        nargs="*",
        metavar="SPEC[@KEY=VALUE,...]",
        help="specs to time (several are timed round-robin); with --calibrate, "
        "the calibration set (default: a set of shipped specs)",
    )
    add_overrides_argument(parser, help="override applied to every spec (repeatable)")
    parser.add_argument(
        "--runtime", choices=tuple(RUNTIMES), default="tflite", help="default tflite"
    )
    add_batch_argument(parser)
    parser.add_argument(
        "--threads", type=positive_int, default=2, metavar="N", help="default 2"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--device",
        metavar="PROFILE",
        help="also show the estimate on this profile; with --calibrate, the "
        "profile to start the fit from (default desktop_avx2)",
    )
    parser.add_argument(
        "--precision",
        type=float,
        default=0.01,
        help="stop when the median's 95%% interval is within this fraction of it "
        "(default 0.01)",
    )
    parser.add_argument(
        "--max-time",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="time spent timing at most, whatever the precision (default 20)",
    )
    parser.add_argument(
        "--min-runs",
        type=positive_int,
        default=20,
        metavar="N",
        help="timed calls at least, each model (default 20)",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="fit a device profile for this machine and runtime to the measurements",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="--calibrate: write the fitted profile here (default: standard output)",
    )
    parser.add_argument(
        "--name",
        default="this_machine",
        help="--calibrate: the fitted profile's name (default this_machine)",
    )


EPILOG = """\
Each runtime runs in a child process of its own (torch is never timed in a process
that imported tensorflow). The model gets random weights and batch-norm statistics
measured on a random batch, is exported as for deployment (tflite: Keras ->
TFLite, run by LiteRT with XNNPACK; onnxruntime: PyTorch -> ONNX, dynamo exporter),
checked against the eager model (1e-4 x max(1, |output|)), warmed up, then timed
call by call until the median's 95% interval is within --precision of it.

examples:
  mbcompile bench specs/v2.yaml --runtime tflite --threads 2
  mbcompile bench specs/v3_large.yaml@width_multiplier=0.75 specs/v3_large.yaml
  mbcompile bench --calibrate --runtime tflite -o devices/this_machine.yaml
"""


def items_for(
    specs: list[str], common: list[str], backend: str
) -> tuple[list[Item], dict]:
    """The models to time (their source for `backend`), and each one's graph."""
    items, graphs = [], {}
    for text in specs:
        path, own = parse_column(text)  # a path, or a bundled spec's name
        _, graph = compiler.load_and_expand(path, [*common, *own])
        name = text if not common else f"{text} --set {' --set '.join(common)}"
        graphs[name] = graph
        items.append(
            Item(name, compiler.generate(graph, backend), graph.shape("input"))
        )
    return items, graphs


def run(args: argparse.Namespace) -> int:
    if not 0 < args.precision < 1 or not 0 < args.max_time <= 3600:
        raise SpecError("--precision must be in (0, 1) and --max-time in (0, 3600]")
    specs = args.specs
    if args.calibrate:
        specs = specs or calibrate.default_set()
    elif not specs:
        raise SpecError("name a spec to time (or --calibrate)")
    device = load_device(args.device or ("desktop_avx2" if args.calibrate else None))
    backend = RUNTIMES[args.runtime].backend
    items, graphs = items_for(specs, args.overrides, backend)
    budget = Budget(
        precision=args.precision, max_s=args.max_time, min_runs=args.min_runs
    )
    result = bench(items, args.runtime, args.batch, args.threads, budget)
    for name, entry in result["items"].items():
        entry["estimate_ms"] = estimate(graphs[name], device, args.batch).total_ms
    result["device"] = device.name
    if args.calibrate:
        return _calibrate(args, result, graphs, device)
    if args.format == "json":
        write_stdout(json.dumps(result, indent=2) + "\n")
    else:
        write_stdout(table(result, show_estimate=args.device is not None))
    failed = [n for n, e in result["items"].items() if "error" in e]
    if result.get("interrupted"):
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT if failed else EXIT_OK


def table(result: dict, show_estimate: bool) -> str:
    out = [
        f"{result['label']}; batch {result['batch']}, {result['threads']} threads",
    ]
    for name, entry in result["items"].items():
        out.append(f"{name}:")
        if "error" in entry:
            out.append(f"  FAILED {entry['error']}")
            continue
        t = entry.get("timing")
        if t is None:
            out.append("  not timed (interrupted)")
            continue
        stable = "" if t["stable"] else " (not stable: more --max-time?)"
        out.append(
            f"  median {t['median_ms']:.3f} ms, p10-p90 {t['p10_ms']:.3f}-"
            f"{t['p90_ms']:.3f} ms, {t['runs']} runs, median ±"
            f"{100 * t['ci_half_width']:.1f}% (95%){stable}"
        )
        if show_estimate:
            ratio = t["median_ms"] / entry["estimate_ms"]
            out.append(
                f"  estimated on {result['device']}: {entry['estimate_ms']:.3f} ms "
                f"(measured / estimated {ratio:.2f})"
            )
        seconds = ", ".join(f"{k} {v:.1f} s" for k, v in entry["seconds"].items())
        notes = "".join(
            f"; {k.replace('_', ' ')} {v}" for k, v in entry["notes"].items()
        )
        out.append(
            f"  one-off: {seconds}; exported vs eager {entry['difference']:.1e}{notes}"
        )
    out.append(machine_line(result))
    out.append(
        "versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    )
    return "\n".join(out) + "\n"


def machine_line(result: dict) -> str:
    m = result["machine"]
    caches = " ".join(f"{k} {v // 1024}K" for k, v in m["caches"].items())
    load = m["load_average"]
    text = (
        f"machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({' '.join(m['flags'])}"
        f"{'; ' + caches if caches else ''}), load average {load['before']} -> "
        f"{load['after']}"
    )
    busiest = max((load["before"] or [0])[0], (load["after"] or [0])[0])
    if busiest > 0.5 * m["usable_cpus"]:
        text += " — the machine was busy: the figures are noisy"
    return text


def _calibrate(
    args: argparse.Namespace, result: dict, graphs: dict, start: DeviceProfile
) -> int:
    samples = [
        calibrate.Sample(name, graphs[name], e["timing"]["median_ms"] / 1e3, args.batch)
        for name, e in result["items"].items()
        if "timing" in e
    ]
    if len(samples) < 4:
        raise SpecError(f"--calibrate needs at least 4 timed specs, got {len(samples)}")
    fitted = calibrate.fit(samples, start)
    fitted = calibrate.described(fitted, args.name, result, start)
    text = dump_device(fitted)
    rows = calibrate.residuals(samples, start, fitted)
    report = "\n".join(rows) + "\n"
    if args.output:
        write_file(args.output, text.encode("utf-8"))
        write_stdout(report)
        write_stderr(f"mbcompile: wrote {shorten_path(args.output)}")
    else:
        write_stderr(report.rstrip("\n"))
        write_stdout(text)
    return EXIT_INTERRUPTED if result.get("interrupted") else EXIT_OK
