"""`mbcompile plot SPEC`: a bar chart of MACs, estimated latency and parameters per
block."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import compiler
from ..analysis.cost import report
from ..analysis.latency import estimate
from ..analysis.plots import block_chart, picture_format
from ..errors import shorten_path
from ..files import check_target, write_file, write_stderr
from ..frontend.device import load_device
from .options import add_device_argument, add_overrides_argument, add_spec_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    add_overrides_argument(parser)
    add_device_argument(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="picture to write (.png, .svg or .pdf; default <spec>_costs.png)",
    )


def run(args: argparse.Namespace) -> int:
    target = args.output or f"{Path(args.spec).stem}_costs.png"
    fmt = picture_format(target)
    device = load_device(args.device)
    loaded, graph = compiler.load_and_expand(args.spec, args.overrides)
    check_target(target, loaded.inputs)  # before drawing
    chart = block_chart(report(graph), estimate(graph, device), fmt)
    write_file(target, chart, loaded.inputs)
    write_stderr(f"mbcompile: wrote {shorten_path(target)}")
    return 0
