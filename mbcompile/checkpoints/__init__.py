"""Checkpoints are data about the IR: reading and writing a spec's trained weights.

The IR knows every tensor's name, shape and layout in each format (`layout`), so a
checkpoint is read and written with NumPy, `safetensors` and `h5py` alone — torch
only to unpickle a `.pt` or write one — and no model is built:

- `open_checkpoint` reads any of the files people have: `.safetensors` (memory
  mapped), pickled state_dicts under any name (`pytorch_model.bin`), training
  checkpoints (`state_dict` / `state_dict_ema` / `model`, `--key`, DDP's
  `module.` prefixes removed), Hugging Face model folders and `hf-hub:` references
  (their `config.json` checked against the spec), Keras 3 `.weights.h5` and legacy
  `.h5` files;
- `match` fits its tensors to the spec by name (`checkpoints.match`);
- `write` writes `.pt`, `.safetensors` or `.weights.h5`;
- `convert` does all three for `mbcompile weights`.

Weights files are untrusted input: opened through the one input path (regular
files of at most MAX_WEIGHTS_BYTES), pickles unpickled with `weights_only=True`,
HDF5 walked through plain links only, safetensors headers checked before the
library reads them, and every tensor's type and shape checked before its values are
read.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError, shorten_path
from ..extras import require
from ..files import NO_INPUTS, FileId, Inputs, check_target, open_input
from ..ir.graph import Graph

# 10^9 float32 parameters; MobileNets take 5-150 MB.
MAX_WEIGHTS_BYTES = 4 * 1024**3


@dataclass
class Source:
    """A checkpoint as opened: the file holding its tensors, and what came with it."""

    checkpoint: Any  # tensors.Checkpoint
    file_id: FileId
    preprocessing: dict[str, Any] = field(default_factory=dict)
    label_names: list[str] | None = None


def open_checkpoint(source: str | Path, graph: Graph, key: str | None = None) -> Source:
    """The tensors of a weights file, a Hugging Face folder or an `hf-hub:`
    reference, with its config checked against `graph`'s spec. Close with
    `source.checkpoint.close()` (or use it in a `with`)."""
    from . import hub

    text = str(source)
    config_path, weights, display = None, Path(text), text
    if hub.is_reference(text) or _is_folder(text):
        located = hub.locate(text)
        weights, config_path, display = located.weights, located.config, located.display
    handle, file_id = open_input(weights, display, MAX_WEIGHTS_BYTES, "weights")
    try:
        checkpoint = _read(handle, str(weights), display, graph, key)
    except BaseException:
        handle.close()
        raise
    checkpoint.files.append(handle)
    _other_layouts(checkpoint)
    opened = Source(checkpoint, file_id)
    if config_path is not None:
        shown = str(Path(display).with_name(hub.CONFIG))
        check = hub.check_config(hub.read_config(config_path, shown), graph, shown)
        checkpoint.notes += check.notes
        opened.preprocessing, opened.label_names = (
            check.preprocessing,
            check.label_names,
        )
    return opened


def _other_layouts(checkpoint) -> None:
    """Renames the tensors of a checkpoint in a key layout other than the spec's
    own (`key_layouts`): a Gemma 3n checkpoint's image encoder, under timm's names
    (its other towers' tensors dropped)."""
    from dataclasses import replace

    from .key_layouts import GEMMA3N_VISION_PREFIX, gemma3n_vision

    if checkpoint.layout != "torch":
        return
    renamed = gemma3n_vision(checkpoint.tensors)
    if renamed is None:
        return
    checkpoint.tensors = {
        new: replace(checkpoint.tensors[old], name=new) for old, new in renamed.items()
    }
    checkpoint.notes.append(
        f"read a Gemma 3n checkpoint's image encoder: {len(renamed)} tensors under "
        f"{GEMMA3N_VISION_PREFIX}, the prefix removed (timm's checkpoint_filter_fn)"
    )


def _is_folder(text: str) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return Path(text).is_dir()
    return False


def _read(handle, path: str, display: str, graph: Graph, key: str | None):
    """Read by content (the file's first bytes), whatever its name."""
    import os

    head = os.pread(handle.fileno(), 16, 0)
    kind = _sniff(head, path)
    if key is not None and kind != "torch":
        raise SpecError(
            f"--key chooses a state_dict in a PyTorch training checkpoint; "
            f"{shorten_path(display)} is a {kind} file"
        )
    if kind == "keras":
        require(["numpy", "h5py"], "reading Keras weights")
        from . import keras_h5
        from .layout import layout

        return keras_h5.read(handle, display, layout(graph))
    if kind == "safetensors":
        require(["numpy", "safetensors"], "reading .safetensors")
        from . import safe

        return safe.read(handle, path, display)
    require(["numpy", "torch"], "reading a PyTorch file")
    from . import pickled

    return pickled.read(handle, display, key)


def _sniff(head: bytes, path: str) -> str:
    """ "keras" (HDF5), "safetensors" or "torch" (a zip archive or a pickle), by the
    file's signature; by its name when the content says nothing clear."""
    from .keras_h5 import SIGNATURE, SUFFIXES

    if head.startswith(SIGNATURE):
        return "keras"
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return "torch"
    if len(head) > 8 and head[8:9] == b"{":
        return "safetensors"
    name = Path(path).name.lower()
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(SUFFIXES):
        return "keras"
    return "torch"


@dataclass
class Converted:
    """What `convert` did, for the user."""

    target: Path
    notes: list[str]
    initialised: list[str]


def convert(
    graph: Graph,
    source: str | Path,
    target: str | Path,
    folded: Graph | None = None,
    inputs: Inputs = NO_INPUTS,
    key: str | None = None,
) -> Converted:
    """Read `source` (weights of `graph`'s network), check and match them, and write
    `target` in the format its name says — or, given the `folded` inference form of
    the same spec, the weights of that form (batch norm folded in). `inputs` are
    the spec's files, which `target` may not replace (nor the weights file)."""
    from . import write
    from .match import match

    write.kind(target)  # a bad target before any work
    check_target(target, inputs)
    require(write.modules(target), f"writing {Path(target).name}")
    opened = open_checkpoint(source, graph, key)
    with opened.checkpoint as checkpoint:
        inputs = {**inputs, opened.file_id: "the --from weights file"}
        check_target(target, inputs)
        matched = match(graph, checkpoint)
        # a .weights.h5 is written op by op: each op's tensors given back after it
        streamed = folded is None and write.kind(target) == "keras"
        layouts, groups = matched.layouts, matched.groups(release=streamed)
        if folded is not None:
            layouts, groups = folded_groups(
                graph, folded, list(groups), checkpoint.source
            )
        written = write.write(target, layouts, groups, inputs)
    return Converted(written, matched.notes, matched.initialised)


def folded_groups(graph: Graph, folded: Graph, groups: list, display: str):
    """The folded form's layout and arrays, from the training form's arrays (all at
    once: folding pairs each convolution with the batch norm after it)."""
    import numpy as np

    from ..backends.weights import fold_batch_norm, param_ops
    from .layout import layout

    groups = fold_batch_norm(param_ops(graph), param_ops(folded), groups)
    if not all(np.isfinite(a).all() for group in groups for a in group):
        raise SpecError(
            f"{shorten_path(display)}: folding batch norm gives NaN or infinite "
            "weights (a negative running_var?)"
        )
    return layout(folded), groups
