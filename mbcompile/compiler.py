"""The pipeline as one API: spec file -> Spec -> graph IR -> costs / source text.

Used by the CLI and by tests; every stage returns a new object and nothing reaches
back to an earlier stage.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from . import files
from .analysis.cost import Report, report
from .backends import BACKENDS, generate
from .errors import SpecError, shorten
from .frontend.load import LoadedSpec, Overrides, load
from .ir.expand import build_graph
from .ir.graph import Graph

__all__ = [
    "BACKENDS",
    "compile_spec",
    "cost_report",
    "expand",
    "generate",
    "load_and_expand",
    "write_output",
]


# Far beyond any MobileNet (V3-Large: 5.5M) yet still a model one could build; above
# it a spec is a typo or an attack (width 8 x 16384 channels: ~10^10 per layer).
MAX_PARAMS = 2_000_000_000


def load_and_expand(
    path: str | Path, overrides: Overrides = (), display: str | None = None
) -> tuple[LoadedSpec, Graph]:
    """A spec file, validated and expanded (named `display` in messages and
    generated headers; by default as given)."""
    return expand(load(path, overrides, display))


def expand(loaded: LoadedSpec) -> tuple[LoadedSpec, Graph]:
    """The graph IR of a validated spec, within the size budget."""
    graph = build_graph(loaded)
    check_budget(loaded, graph)
    return loaded, graph


def check_budget(loaded: LoadedSpec, graph: Graph) -> None:
    """Reject networks over MAX_PARAMS, naming the spec field of the largest block."""
    rep = cost_report(graph)
    total = rep.total_params
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
    """Source text for one backend of a spec file, in one call (the Python API's
    `mbcompile.generate_source` takes text, data and names too)."""
    _, graph = load_and_expand(path, overrides)
    return generate(graph, backend)


# Where generated source goes unless told otherwise (the CLI's -o, a project's
# `output`): {backend} is keras or torch, {name} the model's name.
DEFAULT_OUTPUT = "generated/{backend}/{name}.py"


def default_output(spec_path: str | Path, backend: str, folded: bool = False) -> Path:
    return Path(
        DEFAULT_OUTPUT.format(backend=backend, name=model_name(spec_path, folded))
    )


def model_name(spec_path: str | Path, folded: bool = False) -> str:
    """The name of a spec's generated module: its file name as a module name, with
    `_folded` for the inference form (never overwriting the training form's file)."""
    return module_name(spec_path) + ("_folded" if folded else "")


def module_name(spec_path: str | Path) -> str:
    """An importable module name from a spec's file name: `my-net.v2.yaml` ->
    `my_net_v2`, `2x.yaml` -> `_2x` (ASCII only: Python imports normalise other
    letters, so `ｖ2.py` would be found as `v2`)."""
    stem = Path(spec_path).stem
    name = re.sub(r"[^0-9A-Za-z_]", "_", stem)
    if not re.search(r"[0-9A-Za-z]", name):
        raise SpecError(
            f"cannot name a Python module after the spec file '{shorten(stem)}'; "
            "give the output file with -o"
        )
    if name[0].isdigit():
        name = f"_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


def write_output(
    text: str,
    output: str | None,
    backend: str,
    spec_path,
    folded: bool = False,
    inputs: files.Inputs = files.NO_INPUTS,
) -> Path | None:
    """Write generated text to `output` (default: generated/<backend>/<module>.py)
    through the one output path (`mbcompile.files`: atomic, never over an input,
    a special file or a read-only file); '-' writes to standard output."""
    if output == "-":
        files.write_stdout(text)
        return None
    target = output_path(output, backend, spec_path, folded)
    return files.write_file(target, text.encode("utf-8"), inputs)


def output_path(
    output: str | None, backend: str, spec_path, folded: bool
) -> str | Path:
    """`output` as given (a trailing slash still shows), or the default."""
    return output if output else default_output(spec_path, backend, folded)
