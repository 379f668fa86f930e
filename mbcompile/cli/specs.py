"""`mbcompile specs`: the bundled specs, which every command takes by name."""

from __future__ import annotations

import argparse

from .. import compiler
from ..analysis.catalog import FORMATS, entry, render
from ..files import write_stdout
from ..frontend.bundled import bundled_specs, display


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the specs that ship with mbcompile, with family, conventions, "
        "resolution, parameters and MACs; every command takes them by name "
        "(mbcompile weights mobilenetv4_conv_small ...)."
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="a table (default), JSON or a Markdown table",
    )


def run(args: argparse.Namespace) -> int:
    entries = []
    for name, path in bundled_specs().items():
        _, graph = compiler.load_and_expand(path, display=display(path))
        entries.append(entry(name, graph, display(path)))
    write_stdout(render(entries, args.format))
    return 0
