"""Command line: argument parsing and exit codes only. Each subcommand is a module
here with `add_arguments(parser)` and `run(args) -> int`; the work is in the
pipeline (`mbcompile.compiler`) and the stages it calls."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from ..errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    MESSAGE_LIMIT,
    SpecError,
    shorten,
)
from ..files import flush_stdout, write_stderr
from ..version import __version__
from .options import add_device_argument, add_overrides_argument, add_spec_argument

DESCRIPTION = """\
Compile a MobileNet spec (YAML) to standalone Keras 3 or PyTorch source, or report
its costs.

examples:
  mbcompile specs/v2.yaml --backend keras          -> generated/keras/v2.py
  mbcompile specs/v2.yaml --backend torch -o m.py
  mbcompile mobilenetv4_conv_small --backend keras   (a bundled spec by name: mbcompile specs)
  mbcompile specs/v3_large.yaml --set width_multiplier=0.75 --report
  mbcompile specs/v3_small.yaml --report --format json
"""

EPILOG = """\
exit codes:
  0  success
  1  `mbcompile check`: a generated file is out of date (each is listed);
     any command: an internal error (a bug in mbcompile; the message says where
     to report it)
  2  bad input (the spec, an override, an argument, a weights file) or a failure
     of the environment (an unwritable output, a full disk, a failing `dot`):
     one line per problem, naming file:line and field; no output file is
     written or changed
"""


def compile_parser() -> argparse.ArgumentParser:
    """`mbcompile SPEC`: compiling, the command without a subcommand name."""
    commands = "\n".join(
        f"  {name:<9} {help}" for name, (_, help) in SUBCOMMANDS.items()
    )
    parser = argparse.ArgumentParser(
        prog="mbcompile",
        description=DESCRIPTION,
        epilog=f"other commands (mbcompile COMMAND --help):\n{commands}\n\n{EPILOG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_spec_argument(parser)
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
    add_device_argument(parser)
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
    "generate": (".generate", "write every file the project config lists"),
    "check": (
        ".check",
        "exit 1 if a generated file is stale, edited or missing (with diffs)",
    ),
    "costs": (".costs", "cost report of a spec (table, json, csv, markdown)"),
    "compare": (".compare", "compare the costs of specs and --set variants"),
    "sweep": (".sweep", "the Pareto set of a grid of variants within a budget"),
    "plot": (
        ".plot",
        "bar chart of MACs, est. latency and parameters per block (PNG/SVG)",
    ),
    "diagram": (".diagram", "block-graph diagram as Mermaid, dot or SVG"),
    "specs": (".specs", "list the bundled specs (any command takes them by name)"),
    "weights": (".weights", "convert trained weights (any checkpoint) for a spec"),
    "export": (
        ".export",
        "a validated ONNX, TFLite, .keras, SavedModel, .pt2 or .pte file",
    ),
    "bench": (".bench", "time a spec's model in a runtime; --calibrate a device"),
    "schema": (".schema", "print the spec JSON Schema (for editors)"),
}


def subcommand_parser(name: str) -> tuple[argparse.ArgumentParser, ModuleType]:
    """The parser of `mbcompile NAME` and the module that runs it."""
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name, __package__)
    sub = argparse.ArgumentParser(prog=f"mbcompile {name}", description=help_text)
    module.add_arguments(sub)
    return sub, module


def main(argv: list[str] | None = None) -> int:
    code = _run(argv)
    try:
        flush_stdout()  # a full or closed standard output shows itself here
    except SpecError as exc:
        _report(exc)
        return EXIT_BAD_INPUT if code == EXIT_OK else code
    return code


def _run(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            sub, module = subcommand_parser(argv[0])
            return module.run(sub.parse_args(argv[1:]))
        args = compile_parser().parse_args(argv)
        from .compile import run

        return run(args)
    except SystemExit as exc:  # argparse: --help, --version, usage errors (code 2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except SpecError as exc:
        _report(exc)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        write_stderr("mbcompile: interrupted")
        return 130
    except MemoryError:  # the machine's limit, not a bug: inputs are bounded
        write_stderr("mbcompile: error: out of memory")
        return EXIT_BAD_INPUT
    except Exception as exc:
        where = ""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
        problem = shorten(f"{type(exc).__name__}: {exc}", MESSAGE_LIMIT)  # one line
        write_stderr(
            f"mbcompile: internal error: {problem}{where} "
            "(this is a bug in mbcompile; please report it with the spec that caused it)"
        )
        return EXIT_INTERNAL


def _report(exc: SpecError) -> None:
    for line in str(exc).splitlines():
        write_stderr(f"mbcompile: error: {line}")
