"""`mbcompile check`: exit 1 when a committed generated file is not what its spec
produces now (stale, edited by hand or missing), listing each with a short diff."""

from __future__ import annotations

import argparse
from collections import Counter

from ..errors import EXIT_OK, EXIT_OUT_OF_DATE
from ..files import write_stdout
from ..project import config, outputs
from .options import add_config_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--no-diff", action="store_true", help="list the files without their diffs"
    )


def run(args: argparse.Namespace) -> int:
    found = outputs.expected(config.read(args.config))
    findings = outputs.check(found)
    total = len(found.outputs)
    if not findings:
        write_stdout(f"mbcompile check: {total} generated files are up to date\n")
        return EXIT_OK
    for finding in findings:
        lines = finding.lines()
        write_stdout("\n".join(lines[:1] if args.no_diff else lines) + "\n")
    counts = Counter(f.status for f in findings)
    kinds = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    write_stdout(
        f"mbcompile check: {len(findings)} of {total} generated files are not what "
        f"their specs produce now ({kinds}); `mbcompile generate` rewrites them\n"
    )
    return EXIT_OUT_OF_DATE
