"""`mbcompile schema`: print (or write) the spec JSON Schema, for editors."""

from __future__ import annotations

import argparse

from ..frontend import schema


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="write to PATH instead of standard output",
    )


def run(args: argparse.Namespace) -> int:
    text = schema.render()
    if args.output:
        from ..compiler import write_output

        write_output(text, args.output, "", "")
    else:
        print(text, end="")
    return 0
