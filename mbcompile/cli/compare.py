"""`mbcompile compare`: side-by-side costs of specs and `--set` variants."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import compiler
from ..analysis import compare
from ..analysis.compare import Column
from ..analysis.cost import report
from ..analysis.latency import estimate
from ..analysis.plots import compare_chart, picture_format
from ..analysis.report import FORMATS
from ..errors import shorten_path
from ..files import Inputs, check_target, write_file, write_stderr, write_stdout
from ..frontend.device import DeviceProfile, load_device
from .options import (
    add_device_argument,
    add_overrides_argument,
    parse_column,
    split_overrides,
)


def columns(
    specs: list[str],
    variants: list[str] = (),
    common: list[str] = (),
    device: DeviceProfile | None = None,
) -> list[Column]:
    return load_columns(specs, variants, common, device)[0]


def load_columns(
    specs: list[str],
    variants: list[str] = (),
    common: list[str] = (),
    device: DeviceProfile | None = None,
) -> tuple[list[Column], Inputs]:
    """The columns (latency estimated on `device`, default the default profile),
    and every file they were read from."""
    device = device or load_device()
    wanted = []
    for text in specs:
        path, own = parse_column(text)
        wanted.append((path, own))
        wanted += [(path, own + split_overrides(v)) for v in variants]
    out, inputs = [], {}
    for path, overrides in wanted:
        loaded, graph = compiler.load_and_expand(path, [*common, *overrides])
        inputs.update(loaded.inputs)
        label = Path(path).stem + ("@" + ",".join(overrides) if overrides else "")
        out.append(
            Column(
                label, path, tuple(overrides), report(graph), estimate(graph, device)
            )
        )
    return out, inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = compare.__doc__.split("\n\n", 1)[1]
    parser.add_argument(
        "specs",
        nargs="+",
        metavar="SPEC[@KEY=VALUE,...]",
        help="spec files, each optionally with overrides after '@'",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE...]",
        help="one more column per spec with these overrides (repeatable)",
    )
    add_overrides_argument(parser, help="override applied to every column (repeatable)")
    add_device_argument(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="output format (default: table)",
    )
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="also draw MACs per stage, grouped by column (.png or .svg; matplotlib)",
    )


def run(args: argparse.Namespace) -> int:
    fmt = picture_format(args.plot) if args.plot else None
    device = load_device(args.device)
    cols, inputs = load_columns(args.specs, args.variant, args.overrides, device)
    if args.plot:
        check_target(args.plot, inputs)  # before printing or drawing anything
    write_stdout(compare.RENDER[args.format](cols))
    if args.plot:
        write_file(args.plot, compare_chart(cols, fmt), inputs)
        write_stderr(f"mbcompile: wrote {shorten_path(args.plot)}")
    return 0
