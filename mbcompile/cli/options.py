"""Options that several commands share, defined once."""

from __future__ import annotations

import argparse


def add_overrides_argument(
    parser: argparse.ArgumentParser,
    help: str = "override a spec value by dotted path, e.g. width_multiplier=0.75 or "
    "stages.3.c=48 (repeatable; validated like the file)",
) -> None:
    """The `--set KEY=VALUE` option, the same for every command that reads a spec."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=help,
    )


def add_spec_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="path to a spec YAML file")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="the project config (pyproject.toml with [tool.mbcompile], or "
        "mbcompile.toml); default: found in this folder or the nearest above",
    )
