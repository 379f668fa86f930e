"""The pipeline as one API: spec file -> Spec -> graph IR -> costs / source text.

Used by the CLI and by tests; every stage returns a new object and nothing reaches
back to an earlier stage.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .backends import BACKENDS, generate
from .blocks import build_graph
from .cost import Report, format_table, report
from .errors import SpecError
from .ir import Graph
from .spec import LoadedSpec, load

__all__ = [
    "BACKENDS",
    "compile_spec",
    "cost_report",
    "format_table",
    "generate",
    "load_and_expand",
    "write_output",
]


def load_and_expand(path: str | Path, overrides=()) -> tuple[LoadedSpec, Graph]:
    loaded = load(path, overrides)
    return loaded, build_graph(loaded.spec, loaded.source)


def cost_report(loaded: LoadedSpec, graph: Graph) -> Report:
    return report(graph, loaded.spec.name, loaded.spec.resolution)


def compile_spec(path: str | Path, backend: str, overrides=()) -> str:
    """Source text for one backend (the library equivalent of the CLI)."""
    loaded, graph = load_and_expand(path, overrides)
    return generate(loaded, graph, backend)


def default_output(spec_path: str | Path, backend: str) -> Path:
    return Path("generated") / backend / f"{Path(spec_path).stem}.py"


def write_output(text: str, output: str | None, backend: str, spec_path) -> Path | None:
    """Write atomically (temp file + rename): a reader never sees half a file and a
    failure leaves any existing file untouched. '-' writes to standard output."""
    if output == "-":
        sys.stdout.write(text)
        return None
    target = Path(output) if output else default_output(spec_path, backend)
    if target.is_dir():
        raise SpecError(f"output path {target} is a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise SpecError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
