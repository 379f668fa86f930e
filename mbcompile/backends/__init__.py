"""Lowering and rendering: graph IR -> backend context -> Jinja -> Python source.

What is common to both backends lives here (header, block views, the template
environment); `keras.py` and `torch.py` add what one framework needs (argument
spelling, padding form, layer names). Block-specific text lives in
`templates/<backend>/blocks/<block type>.py.j2`: a `define()` macro emitted once per
used block type and a `args(b)` macro for each call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .. import __version__
from ..cost import report
from ..ir import Graph
from ..pyformat import call
from ..spec import LoadedSpec

BACKENDS = ("keras", "torch")


def template_dir() -> Path:
    """Templates ship inside the wheel; in a checkout they sit at the repo root."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "mbcompile templates not found; the installation is incomplete"
    )


_ENV: jinja2.Environment | None = None


def environment() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(template_dir())),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        _ENV.filters["call"] = _call_filter
        _ENV.filters["py"] = py_literal
    return _ENV


def _call_filter(
    args: str, indent: int, head: str, tail: str = "", comment: str = ""
) -> str:
    return call(indent, head, " ".join(args.split()), tail, comment)


@dataclass
class BlockView:
    """One block as a template sees it."""

    type: str
    index: int  # position in the model body
    number: int | None  # position among stage-table blocks (keras names count these)
    p: dict[str, Any]  # the block's resolved parameters (see mbcompile/blocks/)
    shape: tuple[int, ...]  # output shape, (C, H, W) or (F,)
    x: dict[str, Any] = field(default_factory=dict)  # backend-specific spellings


def class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def block_views(graph: Graph) -> list[BlockView]:
    views, number = [], 0
    for block in graph.blocks:
        views.append(
            BlockView(
                block.type,
                block.index,
                number if block.stage is not None else None,
                block.params,
                block.out_shape,
            )
        )
        number += block.stage is not None
    return views


def common_context(loaded: LoadedSpec, graph: Graph, backend: str) -> dict[str, Any]:
    spec = loaded.spec
    costs = report(graph, spec.name, spec.resolution)
    conv = spec.resolved_conventions()
    blocks = block_views(graph)
    for b in blocks:  # what the generated helpers do when a call doesn't say
        if "residual" in b.p:
            b.x["residual_default"] = b.p["stride"] == 1 and b.p["in_c"] == b.p["out_c"]
        if "exp_c" in b.p:
            b.x["expand_default"] = b.p["exp_c"] != b.p["in_c"]
    return {
        "version": __version__,
        "backend": backend,
        "spec_file": Path(loaded.source).name,
        "spec_hash": loaded.content_hash,
        "spec": spec,
        "conventions": conv,
        "class_name": class_name(spec.name),
        "costs": costs,
        "blocks": blocks,
        "used_types": list(dict.fromkeys(b.type for b in graph.blocks)),
        "activations": sorted(_activations(graph)),
        "macros": {
            t: environment().get_template(f"{backend}/blocks/{t}.py.j2").module
            for t in dict.fromkeys(b.type for b in graph.blocks)
            if t != "classifier"
        },
        "input_shape": graph.shape("input"),
        "squeeze_excite": environment()
        .get_template(f"{backend}/squeeze_excite.py.j2")
        .module,
        "taps": feature_taps(graph),
        "pool": spec.head.pool,
        "returns": (
            "feature maps by name"
            if graph.outputs
            else ("logits" if spec.include_top else "features")
        ),
    }


def feature_taps(graph: Graph) -> dict[int, tuple[str, ...]]:
    """Block index -> names of the outputs it provides (backbone feature taps)."""
    taps: dict[int, tuple[str, ...]] = {}
    for name, node in graph.outputs.items():
        index = next(b.index for b in graph.blocks if b.output == node)
        taps[index] = (*taps.get(index, ()), name)
    return taps


def uses(blocks: list[BlockView]) -> dict[str, Any]:
    """Which optional helper arguments the blocks need, so that a spec that does not
    use an option gets helpers without it; `se_home` is the block type before whose
    helper the squeeze-excite helper is emitted (the first that uses it)."""
    se_types = [b.type for b in blocks if b.p.get("se_c")]
    return {
        "uses_se": bool(se_types),
        "se_home": se_types[0] if se_types else None,
        "uses_dilation": any(b.p.get("dilation", 1) != 1 for b in blocks),
        "uses_no_residual": any(
            b.p["residual"] != b.x["residual_default"]
            for b in blocks
            if "residual" in b.p
        ),
    }


def _activations(graph: Graph) -> set[str]:
    """Activations chosen by the spec (SE's fixed relu/hardsigmoid are not among them)."""
    used = set()
    for block in graph.blocks:
        used |= {block.params.get("act"), block.params.get("hidden_act")}
    return used - {None}


def py_literal(value: Any) -> str:
    """A Python literal for a value that goes into generated code.

    Strings are always emitted escaped and double-quoted (never pasted raw), so no
    spec content can become code.
    """
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        items = ", ".join(py_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    raise TypeError(f"cannot emit {type(value).__name__} into generated code")


def generate(loaded: LoadedSpec, graph: Graph, backend: str) -> str:
    """Source text of a standalone module defining `build_model()`."""
    if backend == "torch":
        from . import torch as lowering
    elif backend == "keras":
        from . import keras as lowering
    else:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    context = common_context(loaded, graph, backend)
    context.update(lowering.lower(graph, context))
    text = environment().get_template(f"{backend}/model.py.j2").render(**context)
    return _tidy(text)


def _tidy(text: str) -> str:
    # Templates may leave runs of blank lines where optional parts were skipped.
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.rstrip("\n") + "\n"
