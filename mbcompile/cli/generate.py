"""`mbcompile generate`: write every file the project config lists."""

from __future__ import annotations

import argparse

from ..errors import EXIT_OK
from ..files import write_stderr
from ..project import config, outputs
from .options import add_config_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    found = outputs.expected(config.read(args.config))
    written, unchanged = outputs.write(found)
    for out in written:
        write_stderr(f"mbcompile: wrote {out.shown}")
    for finding in outputs.orphans(found):
        write_stderr(f"mbcompile: {finding.shown}: {finding.detail}")
    write_stderr(
        f"mbcompile: {len(found.outputs)} generated files: {len(written)} written, "
        f"{len(unchanged)} unchanged"
    )
    return EXIT_OK
