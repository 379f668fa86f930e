"""`mbcompile weights SPEC --from A --to B`: convert trained weights between a
PyTorch state_dict and a Keras weights file (the work: backends/porting.py)."""

from __future__ import annotations

import argparse

from .. import compiler
from ..errors import SpecError, shorten_path
from ..files import write_stderr
from .options import add_overrides_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Convert weights between a PyTorch state_dict (.pt/.pth) and a Keras "
        "weights file (.weights.h5; legacy .h5 accepted as input) for a spec."
    )
    parser.add_argument("spec", help="path to the spec YAML file the weights fit")
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="PATH",
        help="the weights to read: a PyTorch state_dict (.pt, .pth) or a Keras "
        "weights file (.weights.h5, legacy .h5)",
    )
    parser.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="PATH",
        help="the file to write, in the other framework's format (.pt, .pth or "
        ".weights.h5)",
    )
    add_overrides_argument(
        parser, help="override a spec value, exactly as for compiling (repeatable)"
    )
    parser.add_argument(
        "--fold-bn",
        action="store_true",
        help="the PyTorch --from file holds the spec's training form; write the "
        "inference form with batch norm folded into the convolutions (the network "
        "`--fold-bn` compiles), as a .pt or .weights.h5 file",
    )


def run(args: argparse.Namespace) -> int:
    from ..backends.porting import convert  # imports the frameworks when it runs

    loaded, graph = compiler.load_and_expand(args.spec, args.overrides)
    folded = None
    if args.fold_bn:
        if graph.network.fold_batch_norm:
            raise SpecError(
                "--fold-bn converts the training form, but this spec already sets "
                "fold_batch_norm: true"
            )
        _, folded = compiler.load_and_expand(
            args.spec, [*args.overrides, "fold_batch_norm=true"]
        )
    convert(graph, args.source, args.target, folded, loaded.inputs)
    done = " (batch norm folded)" if args.fold_bn else ""
    write_stderr(f"mbcompile: wrote {shorten_path(args.target)}{done}")
    return 0
