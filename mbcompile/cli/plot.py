"""`mbcompile plot SPEC`: a bar chart of MACs and parameters per block."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import compiler
from ..analysis.cost import report
from ..analysis.plots import block_chart, check_suffix
from .options import add_overrides_argument, add_spec_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    add_overrides_argument(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="picture to write (.png, .svg or .pdf; default <spec>_costs.png)",
    )


def run(args: argparse.Namespace) -> int:
    target = args.output or f"{Path(args.spec).stem}_costs.png"
    check_suffix(target)
    _, graph = compiler.load_and_expand(args.spec, args.overrides)
    block_chart(report(graph), target)
    print(f"mbcompile: wrote {target}", file=sys.stderr)
    return 0
