"""`mbcompile costs SPEC`: the cost report, with `--explain` and `--layers`."""

from __future__ import annotations

import argparse

from .. import compiler
from ..analysis.report import FORMATS, render
from ..files import write_stdout
from ..frontend.device import load_device
from .options import add_device_argument, add_overrides_argument, add_spec_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    add_overrides_argument(parser)
    add_device_argument(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="report format (default: table)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="(table) each depthwise-separable part against a standard convolution",
    )
    parser.add_argument(
        "--layers", action="store_true", help="(table) one row per op as well"
    )


def run(args: argparse.Namespace) -> int:
    device = load_device(args.device)
    _, graph = compiler.load_and_expand(args.spec, args.overrides)
    text = render(
        graph, args.format, explain=args.explain, layers=args.layers, device=device
    )
    write_stdout(text)
    return 0
