"""`mbcompile weights SPEC --from A --to B`: trained weights from the files people
have into the generated models' files (the work: mbcompile/checkpoints/)."""

from __future__ import annotations

import argparse

from .. import compiler
from ..errors import shorten_path
from ..files import write_stderr
from .options import add_overrides_argument, add_spec_argument, folded_form


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Convert trained weights for a spec: from a PyTorch state_dict under any "
        "name (.pt, .pth, pytorch_model.bin), a training checkpoint (model_best."
        "pth.tar), .safetensors, a Hugging Face model folder or hf-hub:OWNER/NAME, "
        "or a Keras weights file (.weights.h5, legacy .h5); to .pt, .safetensors or "
        ".weights.h5. Tensors are matched by name; no framework model is built."
    )
    add_spec_argument(parser)
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="PATH",
        help="weights file, Hugging Face model folder, or hf-hub:OWNER/NAME[@REV]",
    )
    parser.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="PATH",
        help=".pt/.pth/.bin, .safetensors or .weights.h5",
    )
    add_overrides_argument(
        parser, help="override a spec value, exactly as for compiling (repeatable)"
    )
    parser.add_argument(
        "--key",
        metavar="NAME",
        help="the state_dict of a training checkpoint to read (default: the first "
        "of state_dict_ema, model_ema, state_dict, model, as timm's)",
    )
    parser.add_argument(
        "--fold-bn",
        action="store_true",
        help="the --from weights hold the spec's training form; write the inference "
        "form with batch norm folded into the convolutions (the network `--fold-bn` "
        "compiles)",
    )


def run(args: argparse.Namespace) -> int:
    from ..checkpoints import convert  # NumPy, h5py, safetensors, torch: lazily

    loaded, graph = compiler.load_and_expand(args.spec, args.overrides)
    folded = folded_form(args, graph) if args.fold_bn else None
    done = convert(graph, args.source, args.target, folded, loaded.inputs, args.key)
    for note in done.notes:
        write_stderr(f"mbcompile: {note}")
    folded_note = " (batch norm folded)" if args.fold_bn else ""
    write_stderr(f"mbcompile: wrote {shorten_path(args.target)}{folded_note}")
    return 0
