"""`mbcompile export SPEC --weights FILE --format F -o OUT`: a validated deployment
file (the work: mbcompile/export/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import compiler
from ..export.formats import FORMATS  # NumPy, no framework
from ..files import write_stderr, write_stdout
from .options import add_overrides_argument, add_spec_argument, folded_form


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Export a spec's network with trained weights to a deployment format, run "
        "the exported file in its own runtime on fixed inputs against the eager "
        "model, and write it only if the outputs agree: onnx (ONNX Runtime), "
        "tflite (LiteRT), keras (.keras), savedmodel (TensorFlow), pt2 "
        "(torch.export), executorch (.pte, XNNPACK)."
    )
    add_spec_argument(parser)
    parser.add_argument(
        "--weights",
        metavar="PATH",
        help="any file `mbcompile weights` reads (a .pt, .safetensors or .weights.h5 "
        "file, a Hugging Face folder, hf-hub:OWNER/NAME); default: the model's own "
        "initialisation",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=list(FORMATS),
        help="the deployment format (what makes, runs and validates each: "
        "docs/deploying.md#exporting)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the file (a folder for savedmodel) to write; default <spec>[_folded]"
        "[_int8].<suffix> here",
    )
    add_overrides_argument(parser)
    parser.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="a fixed batch size (default: dynamic, except executorch: 1)",
    )
    parser.add_argument(
        "--fold-bn",
        action="store_true",
        help="export the inference form, batch norm folded into the convolutions",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="full-integer post-training quantization (tflite, executorch)",
    )
    parser.add_argument(
        "--calibration",
        metavar="FILE.npy",
        help="--int8's calibration images (N x 3 x H x W or N x H x W x 3), also "
        "the images its top-1 agreement is checked on",
    )
    parser.add_argument(
        "--validate-inputs",
        metavar="FILE.npy",
        help="the images to validate on (default: 4 random ones, seed 0)",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="tolerance, in units of max(1, |output|) (default 1e-4)",
    )
    parser.add_argument(
        "--key", metavar="NAME", help="the state_dict of a training checkpoint"
    )
    parser.add_argument(
        "--memory",
        type=float,
        metavar="GIB",
        help="the memory the export may take (default: what the machine has "
        "available); an export that needs more is refused before it starts",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from ..export import ExportOptions, export

    loaded, graph = compiler.load_and_expand(args.spec, args.overrides)
    folded = folded_form(args, graph) if args.fold_bn else None
    target = args.output or _default_output(args)
    options = ExportOptions(
        batch=args.batch,
        fold_bn=args.fold_bn,
        int8=args.int8,
        calibration=args.calibration,
        validate_inputs=args.validate_inputs,
        atol=args.atol,
        key=args.key,
        memory=args.memory,
    )
    progress = None if args.quiet else (lambda line: write_stderr(f"mbcompile: {line}"))
    report = export(
        graph,
        target,
        args.format,
        weights=args.weights,
        folded=folded,
        options=options,
        inputs=loaded.inputs,
        progress=progress,
    )
    for note in report.notes:
        write_stderr(f"mbcompile: {note}")
    write_stdout("\n".join(report.summary()) + "\n")
    write_stderr(f"mbcompile: wrote {report.target}")
    return 0


def _default_output(args: argparse.Namespace) -> str:
    name = compiler.model_name(Path(args.spec), args.fold_bn)
    suffix = FORMATS[args.format].suffix
    return name + ("_int8" if args.int8 else "") + (suffix or "_saved_model")
