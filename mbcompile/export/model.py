"""The live model an export starts from: the spec's generated source run in memory,
with the checkpoint's weights loaded (matched by name, as `mbcompile weights` does)
or its own initialisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import generate
from ..backends.live import run_source
from ..backends.weights import torch_to_keras
from ..errors import SpecError, shorten_path
from ..files import FileId
from ..ir.graph import Graph
from .formats import SINGLE, named


@dataclass
class Built:
    graph: Graph  # the network exported (the folded form with --fold-bn)
    backend: str
    model: Any  # torch.nn.Module in eval mode, or keras.Model
    weights: str  # where they came from, for the metadata
    pixels: bool  # the network rescales pixels in [0, 255] itself
    outputs: list[str]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    label_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    inputs: dict[FileId, str] = field(default_factory=dict)

    def eager(self, images_nchw: np.ndarray) -> dict[str, np.ndarray]:
        """The model's outputs in its framework's eager mode, for a batch in the
        framework's layout from NCHW images."""
        if self.backend == "torch":
            import torch

            with torch.no_grad():
                return named(self.model(torch.from_numpy(images_nchw)))
        return named(self.model(images_nchw.transpose(0, 2, 3, 1), training=False))


def live_model(
    graph: Graph,
    backend: str,
    weights: str | Path | None,
    folded: Graph | None,
    key: str | None,
) -> Built:
    exported = folded or graph
    notes: list[str] = []
    built = Built(
        exported,
        backend,
        None,
        "none: the model's own initialisation",
        any(exported.node(n)["kind"] == "rescale" for n in exported.order),
        list(exported.outputs) or [SINGLE],
        notes=notes,
    )
    layouts = groups = None
    if weights is not None:
        from ..checkpoints import folded_groups, open_checkpoint
        from ..checkpoints.match import match

        opened = open_checkpoint(weights, graph, key)
        with opened.checkpoint as checkpoint:
            matched = match(graph, checkpoint)
            layouts, groups = matched.layouts, list(matched.groups())
            if folded is not None:
                layouts, groups = folded_groups(
                    graph, folded, groups, checkpoint.source
                )
        notes += matched.notes
        built.weights = shorten_path(str(weights))
        built.preprocessing = opened.preprocessing
        built.label_names = opened.label_names
        built.inputs = {opened.file_id: "the --weights file"}
    elif folded is not None:
        raise SpecError("--fold-bn folds trained weights: give them with --weights")
    module = run_source(generate(exported, backend), backend)
    model = module.build_model()
    if backend == "torch":
        model.eval()
    if layouts is not None:
        _load(backend, model, layouts, groups)
    built.model = model
    return built


def _load(backend: str, model, layouts, groups) -> None:
    if backend == "keras":
        for entry, arrays in zip(layouts, groups, strict=True):
            model.get_layer(entry.keras_name).set_weights(
                torch_to_keras(entry.op, arrays)
            )
        return
    import torch

    state = {}
    for entry, arrays in zip(layouts, groups, strict=True):
        for name, array in zip(entry.torch_keys, arrays, strict=True):
            state[name] = torch.from_numpy(np.ascontiguousarray(array, np.float32))
        if entry.counter_key:
            state[entry.counter_key] = torch.tensor(0)
    model.load_state_dict(state, strict=True)
