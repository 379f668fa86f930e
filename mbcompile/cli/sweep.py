"""`mbcompile sweep SPEC --vary KEY=a:b:step ... --budget latency_ms=3`: every
combination compiled in memory, costed and its latency estimated; the Pareto set
within the budget as a table, JSON, CSV or Markdown, and a plot."""

from __future__ import annotations

import argparse

from .. import compiler
from ..analysis import sweep
from ..analysis.cost import report
from ..analysis.latency import estimate
from ..analysis.plots import picture_format, sweep_chart
from ..bench.runtimes import RUNTIMES
from ..errors import EXIT_OK, SpecError, shorten_path
from ..files import Progress, check_target, write_file, write_stderr, write_stdout
from ..frontend.device import DeviceProfile, load_device
from .options import (
    add_batch_argument,
    add_device_argument,
    add_overrides_argument,
    add_spec_argument,
    positive_int,
)

EXIT_INTERRUPTED = 130
# Problems with a --vary key itself, not with one of its values: every point would
# fail alike, so the sweep stops at the first.
_BAD_KEY = ("unknown key", "no such field", "is not a field path", "no row ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = sweep.__doc__.split("\n\n", 1)[1]
    add_spec_argument(parser)
    parser.add_argument(
        "--vary",
        action="append",
        required=True,
        metavar="KEY=a:b:step|v1,v2,...",
        help="a spec value to vary (repeatable; the grid is every combination)",
    )
    add_overrides_argument(parser, help="override applied to every point (repeatable)")
    parser.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an upper bound: latency_ms (estimated), macs or params (repeatable)",
    )
    add_device_argument(parser)
    add_batch_argument(parser)
    parser.add_argument(
        "--objective",
        choices=sweep.OBJECTIVES,
        default="macs",
        help="the capacity the Pareto set trades against latency (default macs)",
    )
    parser.add_argument("--format", choices=tuple(sweep.RENDER), default="table")
    parser.add_argument(
        "--plot", metavar="PATH", help="also draw latency against MACs (.png/.svg)"
    )
    parser.add_argument(
        "--measure",
        choices=tuple(RUNTIMES),
        metavar="RUNTIME",
        help="also time the Pareto set's points in this runtime, as `mbcompile "
        f"bench` does ({', '.join(RUNTIMES)})",
    )
    parser.add_argument(
        "--measure-top",
        type=positive_int,
        default=8,
        metavar="N",
        help="--measure: the N points of the Pareto set with the most capacity "
        "(default 8)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=2,
        metavar="N",
        help="--measure: threads of the runtime (default 2)",
    )


def run(args: argparse.Namespace) -> int:
    axes = [sweep.Axis.parse(text) for text in args.vary]
    budgets = sweep.parse_budgets(args.budget)
    combos = sweep.grid(axes)
    fmt = picture_format(args.plot) if args.plot else None
    device = load_device(args.device)
    loaded, _ = compiler.load_and_expand(args.spec, args.overrides)  # the base
    if args.plot:
        check_target(args.plot, loaded.inputs)
    if args.measure:
        from ..bench.run import require

        require(args.measure)  # before minutes of work
    points, interrupted = evaluate(args, combos, device)
    sweep.select(points, budgets, args.objective)
    if args.measure and not interrupted:
        interrupted = measure(args, [p for p in points if p.pareto])
    result = sweep.Sweep(
        spec=args.spec,
        device=device.name,
        batch=args.batch,
        objective=args.objective,
        axes=axes,
        budgets=budgets,
        common=tuple(args.overrides),
        points=points,
        interrupted=interrupted,
    )
    write_stdout(sweep.RENDER[args.format](result, len(combos)))
    if args.plot:
        write_file(args.plot, sweep_chart(result, fmt), loaded.inputs)
        write_stderr(f"mbcompile: wrote {shorten_path(args.plot)}")
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def evaluate(
    args: argparse.Namespace, combos: list[tuple[str, ...]], device: DeviceProfile
) -> tuple[list[sweep.Point], bool]:
    """Each combination costed and estimated, until done or interrupted (Ctrl-C
    keeps the points done so far). A point the spec refuses is kept with its error;
    a refused --vary key, or a grid the spec refuses everywhere, is an error."""
    points: list[sweep.Point] = []
    progress = Progress("mbcompile sweep", len(combos))
    try:
        for combo in combos:
            points.append(point(args, combo, device))
            progress.step()
    except KeyboardInterrupt:
        progress.close()
        write_stderr(
            f"mbcompile sweep: interrupted; keeping the {len(points)} points done"
        )
        return points, True
    progress.close()
    if points and all(p.error for p in points):
        first = points[0]
        raise SpecError(
            f"every point of the grid is refused, e.g. {' '.join(first.overrides)}: "
            f"{first.error}"
        )
    return points, False


def point(
    args: argparse.Namespace, combo: tuple[str, ...], device: DeviceProfile
) -> sweep.Point:
    try:
        _, graph = compiler.load_and_expand(args.spec, [*args.overrides, *combo])
    except SpecError as exc:
        if any(text in exc.message for text in _BAD_KEY):
            raise
        return sweep.Point(combo, error=exc.one_line())
    rep, lat = report(graph), estimate(graph, device, args.batch)
    bound = "compute" if lat.share("compute") >= lat.share("memory") else "memory"
    return sweep.Point(
        combo,
        macs=rep.macs,
        params=rep.trainable_params,
        est_ms=lat.total_ms,
        bound=bound,
    )


def measure(args: argparse.Namespace, front: list[sweep.Point]) -> bool:
    """Time the Pareto set's `--measure-top` points with the most capacity in the
    runtime (one child process, round-robin); True if interrupted."""
    from ..bench.run import Item, bench
    from ..bench.timing import Budget

    capacity = (lambda p: p.macs) if args.objective == "macs" else (lambda p: p.params)
    chosen = sorted(front, key=capacity, reverse=True)[: args.measure_top]
    backend = RUNTIMES[args.measure].backend
    items = {}
    for p in chosen:
        _, graph = compiler.load_and_expand(args.spec, [*args.overrides, *p.overrides])
        name = " ".join(p.overrides)
        items[name] = (
            p,
            Item(name, compiler.generate(graph, backend), graph.shape("input")),
        )
    write_stderr(f"mbcompile sweep: timing {len(items)} points with {args.measure}")
    result = bench(
        [item for _, item in items.values()],
        args.measure,
        args.batch,
        args.threads,
        Budget(max_s=max(5.0, 2.0 * len(items))),
    )
    for name, entry in result["items"].items():
        point = items[name][0]
        if "timing" in entry:
            point.measured[args.measure] = entry["timing"]
        else:
            point.measured[args.measure] = {"error": entry.get("error", "not timed")}
    return bool(result.get("interrupted"))
