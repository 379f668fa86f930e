"""`mbcompile compare`: side-by-side costs of specs and `--set` variants."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .. import compiler
from ..analysis import compare
from ..analysis.compare import Column
from ..analysis.cost import report
from ..analysis.report import FORMATS
from ..errors import SpecError
from .options import add_overrides_argument

# Split "a=1,b.c=2" at commas that start another KEY=.
_NEXT_OVERRIDE = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")


def split_overrides(text: str) -> list[str]:
    return [part.strip() for part in _NEXT_OVERRIDE.split(text) if part.strip()]


def parse_column(text: str) -> tuple[str, list[str]]:
    """`path[@k=v,...]` -> (path, overrides). A path that exists wins over '@'."""
    if "@" not in text or Path(text).exists():
        return text, []
    path, _, rest = text.partition("@")
    overrides = split_overrides(rest)
    if not overrides:
        raise SpecError(f"'{text}': expected SPEC@KEY=VALUE[,KEY=VALUE...]")
    return path, overrides


def columns(
    specs: list[str], variants: list[str] = (), common: list[str] = ()
) -> list[Column]:
    wanted = []
    for text in specs:
        path, own = parse_column(text)
        wanted.append((path, own))
        wanted += [(path, own + split_overrides(v)) for v in variants]
    out = []
    for path, overrides in wanted:
        _, graph = compiler.load_and_expand(path, [*common, *overrides])
        label = Path(path).stem + ("@" + ",".join(overrides) if overrides else "")
        out.append(Column(label, path, tuple(overrides), report(graph)))
    return out


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
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="also draw MACs per stage, grouped by column (.png or .svg; matplotlib)",
    )


def run(args: argparse.Namespace) -> int:
    cols = columns(args.specs, args.variant, args.overrides)
    sys.stdout.write(compare.RENDER[args.format](cols))
    if args.plot:
        from ..analysis.plots import compare_chart

        compare_chart(cols, args.plot)
        print(f"mbcompile: wrote {args.plot}", file=sys.stderr)
    return 0
