"""`mbcompile SPEC`: compile a spec to source, and/or print its cost report."""

from __future__ import annotations

import argparse
import sys

from .. import compiler
from ..analysis.report import render
from ..errors import EXIT_OK, SpecError


def run(args: argparse.Namespace) -> int:
    overrides = [*args.overrides, *(["fold_batch_norm=true"] if args.fold_bn else [])]
    loaded, graph = compiler.load_and_expand(args.spec, overrides)
    backend = args.backend or (None if args.report else "all")
    if backend == "all" and args.output:
        raise SpecError("-o/--output needs a single --backend (keras or torch)")
    if args.report:
        sys.stdout.write(render(graph, args.format))
    if backend is None:
        return EXIT_OK
    names = ("keras", "torch") if backend == "all" else (backend,)
    # Generate everything before writing anything: a failure writes nothing.
    texts = {name: compiler.generate(graph, name) for name in names}
    for name, text in texts.items():
        target = compiler.write_output(
            text, args.output, name, args.spec, folded=loaded.spec.fold_batch_norm
        )
        if target is not None:
            print(f"mbcompile: wrote {target}", file=sys.stderr)
    return EXIT_OK
