"""`mbcompile schema`: print (or write) the spec JSON Schema, for editors."""

from __future__ import annotations

import argparse

from ..files import write_file, write_stdout
from ..frontend import schema


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="write to PATH instead of standard output ('-')",
    )


def run(args: argparse.Namespace) -> int:
    text = schema.render()
    if args.output and args.output != "-":
        write_file(args.output, text.encode("utf-8"))
    else:
        write_stdout(text)
    return 0
