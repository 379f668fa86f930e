"""Options that several commands share, defined once."""

from __future__ import annotations

import argparse
import os
import re

from .. import compiler
from ..errors import SpecError, shorten
from ..ir.graph import Graph


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
    parser.add_argument(
        "spec",
        help="a spec YAML file, or the name of a bundled spec (`mbcompile specs`)",
    )


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="the project config (pyproject.toml with [tool.mbcompile], or "
        "mbcompile.toml); default: found in this folder or the nearest above",
    )


def folded_form(args: argparse.Namespace, graph: Graph) -> Graph:
    """`--fold-bn` of a command that reads trained weights: the spec's inference
    form (batch norm folded), the weights being those of its training form."""
    if graph.network.fold_batch_norm:
        raise SpecError(
            "--fold-bn folds the weights of the training form, but this spec "
            "already sets fold_batch_norm: true"
        )
    _, folded = compiler.load_and_expand(
        args.spec, [*args.overrides, "fold_batch_norm=true"]
    )
    return folded


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """`--device PROFILE`: the device profile the latency estimate uses."""
    parser.add_argument(
        "--device",
        metavar="PROFILE",
        help="device profile for the latency estimate: a YAML file or a shipped "
        "name (phone_cpu, desktop_avx2, desktop_avx512, edgetpu; default phone_cpu)",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text[:40]}' is not a whole number"
        ) from None
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError("must be from 1 to 4096")
    return value


def add_batch_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=1,
        metavar="N",
        help="images per call (default 1)",
    )


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
