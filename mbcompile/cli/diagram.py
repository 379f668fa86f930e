"""`mbcompile diagram SPEC`: the block graph as Mermaid, dot or SVG."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import compiler
from ..analysis.cost import report
from ..analysis.diagram import FORMATS, SUFFIXES, dot, mermaid, render_svg
from ..errors import shorten_path
from ..files import check_target, write_stderr
from .options import add_overrides_argument, add_spec_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    add_overrides_argument(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="mermaid, dot, or svg (rendered with Graphviz `dot`); default from the "
        "-o suffix (.mmd, .dot/.gv, .svg), else mermaid",
    )
    parser.add_argument(
        "-o", "--output", metavar="PATH", help="write here (default: standard output)"
    )


def run(args: argparse.Namespace) -> int:
    output = args.output or "-"
    fmt = args.format
    if fmt is None and output != "-":
        fmt = SUFFIXES.get(Path(output).suffix.lower())
    fmt = fmt or "mermaid"
    loaded, graph = compiler.load_and_expand(args.spec, args.overrides)
    if output != "-":
        check_target(output, loaded.inputs)  # before running Graphviz
    rep = report(graph)
    text = mermaid(graph, rep) if fmt == "mermaid" else dot(graph, rep)
    if fmt == "svg":
        text = render_svg(text)
    target = compiler.write_output(text, output, "", args.spec, inputs=loaded.inputs)
    if target is not None:
        write_stderr(f"mbcompile: wrote {shorten_path(target)}")
    return 0
