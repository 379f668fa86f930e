"""`mbcompile compare`: side-by-side costs of specs and `--set` variants."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from .. import compiler
from ..analysis import compare
from ..analysis.compare import Column
from ..analysis.cost import report
from ..analysis.plots import compare_chart, picture_format
from ..analysis.report import FORMATS
from ..errors import SpecError, shorten, shorten_path
from ..files import Inputs, check_target, write_file, write_stderr, write_stdout
from .options import add_overrides_argument

# Split "a=1,b.c=2" at commas that start another KEY= (or KEY[i].x=).
_NEXT_OVERRIDE = re.compile(r",(?=\s*[A-Za-z_][\w.\[\]]*\s*=)")


def split_overrides(text: str) -> list[str]:
    return [part.strip() for part in _NEXT_OVERRIDE.split(text) if part.strip()]


def parse_column(text: str) -> tuple[str, list[str]]:
    """`path[@k=v,...]` -> (path, overrides). A path that exists wins over '@'."""
    if "@" not in text or os.path.exists(text):  # False for unusable paths too
        return text, []
    path, _, rest = text.partition("@")
    overrides = split_overrides(rest)
    if not overrides:
        raise SpecError(f"'{shorten(text)}': expected SPEC@KEY=VALUE[,KEY=VALUE...]")
    return path, overrides


def columns(
    specs: list[str], variants: list[str] = (), common: list[str] = ()
) -> list[Column]:
    return load_columns(specs, variants, common)[0]


def load_columns(
    specs: list[str], variants: list[str] = (), common: list[str] = ()
) -> tuple[list[Column], Inputs]:
    """The columns, and every file they were read from."""
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
        out.append(Column(label, path, tuple(overrides), report(graph)))
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
    cols, inputs = load_columns(args.specs, args.variant, args.overrides)
    if args.plot:
        check_target(args.plot, inputs)  # before printing or drawing anything
    write_stdout(compare.RENDER[args.format](cols))
    if args.plot:
        write_file(args.plot, compare_chart(cols, fmt), inputs)
        write_stderr(f"mbcompile: wrote {shorten_path(args.plot)}")
    return 0
