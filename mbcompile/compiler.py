"""The pipeline as one API: spec file -> Spec -> graph IR -> costs / source text.

Used by the CLI and by tests; every stage returns a new object and nothing reaches
back to an earlier stage.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .analysis.cost import Report, report
from .backends import BACKENDS, generate
from .errors import SpecError
from .frontend.load import LoadedSpec, load
from .ir.expand import build_graph
from .ir.graph import Graph

__all__ = [
    "BACKENDS",
    "compile_spec",
    "cost_report",
    "generate",
    "load_and_expand",
    "write_output",
]


# Far beyond any MobileNet (V3-Large: 5.5M) yet still a model one could build; above
# it a spec is a typo or an attack (width 8 x 16384 channels: ~10^10 per layer).
MAX_PARAMS = 2_000_000_000


def load_and_expand(path: str | Path, overrides=()) -> tuple[LoadedSpec, Graph]:
    loaded = load(path, overrides)
    graph = build_graph(loaded)
    check_budget(loaded, graph)
    return loaded, graph


def check_budget(loaded: LoadedSpec, graph: Graph) -> None:
    """Reject networks over MAX_PARAMS, naming the spec field of the largest block."""
    rep = cost_report(graph)
    total = rep.trainable_params + rep.non_trainable_params
    if total <= MAX_PARAMS:
        return
    biggest = max(rep.blocks, key=lambda b: b.params + b.bn_stats)
    raise loaded.error(
        graph.blocks[biggest.index].origin,
        f"the network would have {total:,} parameters, over the limit of "
        f"{MAX_PARAMS:,}; its largest block ({biggest.params + biggest.bn_stats:,}) "
        f"comes from here (width_multiplier {loaded.spec.width_multiplier})",
    )


def cost_report(graph: Graph) -> Report:
    return report(graph)


def compile_spec(path: str | Path, backend: str, overrides=()) -> str:
    """Source text for one backend (the library equivalent of the CLI)."""
    _, graph = load_and_expand(path, overrides)
    return generate(graph, backend)


def default_output(spec_path: str | Path, backend: str, folded: bool = False) -> Path:
    suffix = "_folded" if folded else ""  # never overwrite the training form's file
    return Path("generated") / backend / f"{Path(spec_path).stem}{suffix}.py"


def write_output(
    text: str, output: str | None, backend: str, spec_path, folded: bool = False
) -> Path | None:
    """Write atomically (temp file + rename): a reader never sees half a file and a
    failure leaves any existing file untouched. '-' writes to standard output."""
    if output == "-":
        sys.stdout.write(text)
        return None
    target = Path(output) if output else default_output(spec_path, backend, folded)
    if target.is_dir():
        raise SpecError(f"output path {target} is a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # disk full, read-only, ...: not our bug
            raise _cannot_write(target, exc) from None
        raise
    return target


def _cannot_write(target: Path, exc: OSError) -> SpecError:
    return SpecError(f"cannot write {target}: {exc.strerror or exc}")
