"""Command line: argument parsing and exit codes only; the work is in `compiler`."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import SpecError, printable

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2

DESCRIPTION = """\
Compile a MobileNet spec (YAML) to standalone Keras 3 or PyTorch source, or report
its costs.

examples:
  mbcompile specs/v2.yaml --backend keras          -> generated/keras/v2.py
  mbcompile specs/v2.yaml --backend torch -o m.py
  mbcompile specs/v3_large.yaml --set width_multiplier=0.75 --report
  mbcompile specs/v3_small.yaml --report --format json
"""

EPILOG = """\
exit codes:
  0  success
  1  internal error (a bug in mbcompile; the message says where to report it)
  2  bad input: the spec, an override or an argument (one line per problem,
     naming file:line and field); no output file is written or changed
"""


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mbcompile",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="path to a spec YAML file")
    parser.add_argument(
        "--backend",
        choices=("keras", "torch", "all"),
        help="generate source for this framework (default without --report: all)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="output file ('-' for standard output); default generated/<backend>/<spec>.py",
    )
    add_overrides_argument(parser)
    parser.add_argument(
        "--fold-bn",
        action="store_true",
        help="emit the inference form: convolutions with bias instead of conv + batch "
        "norm (--set fold_batch_norm=true; default output <spec>_folded.py; convert "
        "trained weights with `mbcompile weights SPEC --fold-bn`)",
    )
    parser.add_argument("--report", action="store_true", help="print the cost report")
    parser.add_argument(
        "--format",
        choices=("table", "json", "csv", "markdown"),
        default="table",
        help="cost report format (default: table)",
    )
    parser.add_argument(
        "--version", action="version", version=f"mbcompile {__version__}"
    )
    return parser


# Subcommands other than compiling: name -> (module, help). Each module defines
# `add_arguments(parser)` and `run(args) -> int`, raising SpecError for bad input.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "costs": (".report", "cost report of a spec (table, json, csv, markdown)"),
    "compare": (".compare", "compare the costs of specs and --set variants"),
    "plot": (".plots", "bar chart of MACs and parameters per block (PNG/SVG)"),
    "diagram": (".diagram", "block-graph diagram as Mermaid, dot or SVG"),
    "weights": (".porting", "convert weights between PyTorch and Keras files"),
    "schema": (".schema", "print the spec JSON Schema (for editors)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            import importlib

            module_name, help_text = SUBCOMMANDS[argv[0]]
            module = importlib.import_module(module_name, __package__)
            sub = argparse.ArgumentParser(
                prog=f"mbcompile {argv[0]}", description=help_text
            )
            module.add_arguments(sub)
            return module.run(sub.parse_args(argv[1:]))
        args = _parser().parse_args(argv)
        from . import compiler

        return _run(args, compiler)
    except SystemExit as exc:  # argparse: --help, --version, usage errors (code 2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except SpecError as exc:
        for line in str(exc).splitlines():
            print(f"mbcompile: error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("mbcompile: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        where = ""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
        problem = printable(f"{type(exc).__name__}: {exc}{where}")  # one line
        print(
            f"mbcompile: internal error: {problem} "
            "(this is a bug in mbcompile; please report it with the spec that caused it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _run(args: argparse.Namespace, compiler) -> int:
    overrides = [*args.overrides, *(["fold_batch_norm=true"] if args.fold_bn else [])]
    loaded, graph = compiler.load_and_expand(args.spec, overrides)
    backend = args.backend or (None if args.report else "all")
    if backend == "all" and args.output:
        raise SpecError("-o/--output needs a single --backend (keras or torch)")
    if args.report:
        from .report import render

        sys.stdout.write(render(loaded, graph, args.format))
    if backend is None:
        return EXIT_OK
    names = ("keras", "torch") if backend == "all" else (backend,)
    # Generate everything before writing anything: a failure writes nothing.
    texts = {name: compiler.generate(loaded, graph, name) for name in names}
    for name, text in texts.items():
        target = compiler.write_output(
            text, args.output, name, args.spec, folded=loaded.spec.fold_batch_norm
        )
        if target is not None:
            print(f"mbcompile: wrote {target}", file=sys.stderr)
    return EXIT_OK
