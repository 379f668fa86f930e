"""Backends: lowering the graph IR to standalone Keras 3 and PyTorch source.

`generate(graph, backend)` is the entry point. render.py holds what both backends
share (the Jinja environment, block views, the common context), naming.py the
reference libraries' names as data, keras.py and torch.py what one framework needs
(argument spelling, padding form). weights.py holds the weight layouts between the
frameworks and BN folding (mbcompile/checkpoints/ reads and writes weights files).
"""

from __future__ import annotations

from ..ir.graph import Graph
from .render import common_context, render

BACKENDS = ("keras", "torch")


def generate(graph: Graph, backend: str) -> str:
    """Source text of a standalone module defining `build_model()`."""
    if backend == "torch":
        from . import torch as lowering
    elif backend == "keras":
        from . import keras as lowering
    else:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    context = common_context(graph, backend)
    context.update(lowering.lower(graph, context))
    return render(backend, context)
