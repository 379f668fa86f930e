"""`mbcompile SPEC`: compile a spec to source, and/or print its cost report."""

from __future__ import annotations

import argparse

from .. import compiler
from ..analysis.report import render
from ..errors import EXIT_OK, SpecError, shorten_path
from ..files import check_target, write_stderr, write_stdout
from ..frontend.device import load_device
from ..frontend.load import fold_bn


def run(args: argparse.Namespace) -> int:
    overrides = [*args.overrides, *([fold_bn("--fold-bn")] if args.fold_bn else [])]
    loaded, graph = compiler.load_and_expand(args.spec, overrides)
    backend = args.backend or (None if args.report else "all")
    if backend == "all" and args.output:
        raise SpecError("-o/--output needs a single --backend (keras or torch)")
    if backend is None:
        names = ()
    else:
        names = ("keras", "torch") if backend == "all" else (backend,)
    folded = loaded.spec.fold_batch_norm
    if args.output != "-":
        for name in names:  # refuse a bad target before writing anything
            target = compiler.output_path(args.output, name, args.spec, folded)
            check_target(target, loaded.inputs)
    if args.report:
        write_stdout(render(graph, args.format, device=load_device(args.device)))
    # Generate everything before writing anything: a failure writes nothing.
    texts = {name: compiler.generate(graph, name) for name in names}
    for name, text in texts.items():
        target = compiler.write_output(
            text, args.output, name, args.spec, folded, loaded.inputs
        )
        if target is not None:
            write_stderr(f"mbcompile: wrote {shorten_path(target)}")
    return EXIT_OK
