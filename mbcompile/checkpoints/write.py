"""Writing a spec's weights: a PyTorch state_dict (`.pt`; also `.pth`, `.bin`), a
`.safetensors` file (both with the generated PyTorch model's keys, BatchNorm's
step counters as 0, loading with `load_state_dict(strict=True)`), or a Keras 3
`.weights.h5` (the generated Keras model's `load_weights`). Every file goes through
the one output path (`mbcompile.files`); the same weights give the same bytes."""

from __future__ import annotations

from pathlib import Path

from ..backends.weights import torch_to_keras
from ..errors import SpecError, shorten_path
from ..files import Inputs, write_file, write_stream
from . import keras_h5
from .layout import OpLayout

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"


def kind(target: str | Path) -> str:
    """ "torch", "safetensors" or "keras", from the target's name."""
    name = Path(target).name.lower()
    if name.endswith(TORCH_SUFFIXES):
        return "torch"
    if name.endswith(SAFETENSORS_SUFFIX):
        return "safetensors"
    if name.endswith(keras_h5.OUTPUT_SUFFIX):
        return "keras"
    if name.endswith(keras_h5.SUFFIXES):
        raise SpecError(
            f"--to {shorten_path(target)}: Keras weights are written as *.weights.h5"
        )
    raise SpecError(
        f"--to {shorten_path(target)}: unknown file type; expected .pt/.pth/.bin "
        "(PyTorch), .safetensors or .weights.h5 (Keras)"
    )


def modules(target: str | Path) -> list[str]:
    """What writing `target` imports."""
    return {
        "torch": ["numpy", "torch"],
        "safetensors": ["numpy", "safetensors"],
        "keras": ["numpy", "h5py"],
    }[kind(target)]


def write(target, layouts: list[OpLayout], groups, inputs: Inputs) -> Path:
    """`groups` yields each op's PyTorch-layout arrays in turn."""
    format_ = kind(target)
    if format_ == "keras":
        arrays = (torch_to_keras(e.op, g) for e, g in zip(layouts, groups, strict=True))
        return write_stream(
            target, lambda h: keras_h5.write(h, layouts, arrays), inputs
        )
    state = _state(layouts, groups)
    if format_ == "safetensors":
        from safetensors.numpy import save

        return write_file(target, save(state, metadata={"format": "pt"}), inputs)
    import torch

    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    # to a file object: the archive's folder is "archive", not the file's name
    return write_stream(target, lambda handle: torch.save(tensors, handle), inputs)


def _state(layouts: list[OpLayout], groups) -> dict:
    """The state_dict as NumPy arrays, in the generated model's key order."""
    import numpy as np

    state = {}
    for entry, arrays in zip(layouts, groups, strict=True):
        for key, array in zip(entry.torch_keys, arrays, strict=True):
            state[key] = np.ascontiguousarray(array, dtype=np.float32)
        if entry.counter_key:
            state[entry.counter_key] = np.zeros((), np.int64)
    return state
