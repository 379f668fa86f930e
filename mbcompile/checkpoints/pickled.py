"""PyTorch's pickled files, under any name (`model.pt`, `pytorch_model.bin`,
timm's `model_best.pth.tar`): a state_dict, or a training checkpoint holding one.

Unpickled with `weights_only=True`, so no code in the file runs: only tensors,
containers and plain values load (and `argparse.Namespace`, the arguments timm's
`train.py` stores beside the weights: a bag of attributes that runs nothing).
"""

from __future__ import annotations

import argparse
import pickle
import re
import warnings
from collections.abc import Mapping

from ..errors import SpecError, shorten, shorten_path
from .tensors import Checkpoint, Tensor

# Where training checkpoints keep the weights, in the order timm's
# `load_checkpoint` prefers them (the EMA weights first: what it validates with).
STATE_DICT_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
# Wrappers whose attribute prefixes the keys (timm's clean_state_dict): DDP's
# `module.`, torch.compile's `_orig_mod.`.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# BatchNorm's step counter: an integer buffer that no weight comes from.
SKIPPED_BUFFER = "num_batches_tracked"


def read(handle, display: str, key: str | None = None) -> Checkpoint:
    torch = import_torch()
    shown = shorten_path(display)
    try:
        with warnings.catch_warnings():  # torch's deprecation notes: not for users
            warnings.simplefilter("ignore")
            with torch.serialization.safe_globals([argparse.Namespace]):
                loaded = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file it cannot read
        raise SpecError(f"{shown}: {_load_problem(exc)}") from None
    if not isinstance(loaded, Mapping):
        raise SpecError(
            f"{shown}: expected a state_dict (names -> tensors), got a "
            f"{type(loaded).__name__}"
        )
    notes: list[str] = []
    state = _state_dict(torch, loaded, shown, key, notes)
    tensors: dict[str, Tensor] = {}
    stripped = 0
    for index, (name, value) in enumerate(state.items()):
        label = f"{shown}: tensor {index}"
        if not isinstance(name, str):
            raise SpecError(
                f"{label}: key {shorten(repr(name))} is a {type(name).__name__}; "
                "state_dict keys are strings"
            )
        label += f" '{shorten(name)}'"
        if isinstance(value, Mapping):
            raise SpecError(f"{label} is a mapping, not a tensor")
        if not isinstance(value, torch.Tensor):
            raise SpecError(f"{label} is a {type(value).__name__}, not a tensor")
        clean = _unwrapped(name)
        stripped += clean != name
        if clean.endswith(SKIPPED_BUFFER):
            continue
        # A tensor that cannot be a weight is refused only if the spec uses it (a
        # Gemma 3n checkpoint's other towers hold integer step counters).
        tensors[clean] = Tensor(
            clean,
            tuple(value.shape),
            str(value.dtype).removeprefix("torch."),
            _reader(torch, value),
            _tensor_problem(torch, value),
        )
    if stripped:
        notes.append(
            f"removed the wrapper prefixes ({', '.join(WRAPPER_PREFIXES)}) of "
            f"{stripped} keys, as timm's clean_state_dict does"
        )
    return Checkpoint(display, "torch", tensors, ordered=True, notes=notes)


def import_torch():
    import torch

    return torch


def _reader(torch, value):
    def read():
        return value.detach().to(torch.float32).numpy()

    return read


def _state_dict(torch, loaded: Mapping, shown: str, key: str | None, notes) -> Mapping:
    """The state_dict itself, or the one a training checkpoint holds."""
    candidates = [
        k
        for k, v in loaded.items()
        if isinstance(k, str)
        and isinstance(v, Mapping)
        and any(isinstance(t, torch.Tensor) for t in v.values())
    ]
    if key is not None:
        if key not in candidates:
            found = ", ".join(repr(shorten(c, 30)) for c in candidates) or "none"
            raise SpecError(
                f"{shown}: --key {shorten(repr(key))} is not a state_dict in this "
                f"checkpoint (its state_dicts: {shorten(found, 200)})"
            )
        chosen = key
    elif any(isinstance(v, torch.Tensor) for v in loaded.values()) or not loaded:
        return loaded  # a state_dict itself (its values are checked one by one)
    else:
        chosen = next((k for k in STATE_DICT_KEYS if k in candidates), None)
        if chosen is None:
            keys = ", ".join(repr(shorten(str(k), 30)) for k in list(loaded)[:12])
            hint = (
                f"; --key chooses one of {', '.join(map(repr, candidates))}"
                if candidates
                else ""
            )
            raise SpecError(
                f"{shown}: a training checkpoint? It holds no "
                f"{'/'.join(STATE_DICT_KEYS)} (its keys: {shorten(keys, 160)}){hint}"
            )
    others = [c for c in candidates if c != chosen]
    choose = f"; also in it: {', '.join(map(repr, others))} (--key)" if others else ""
    notes.append(f"read the training checkpoint's {chosen!r}{choose}")
    return loaded[chosen]


def _unwrapped(name: str) -> str:
    while name.startswith(WRAPPER_PREFIXES):
        for prefix in WRAPPER_PREFIXES:
            name = name.removeprefix(prefix)
    return name


def _load_problem(exc: Exception) -> str:
    """What `torch.load` found wrong, once and briefly: its advice to load with
    `weights_only=False` (running the file's code) is not for untrusted files."""
    text = " ".join(str(exc).split())
    found = re.search(
        r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text
    )
    if found or isinstance(exc, pickle.UnpicklingError):
        reason = found[1] if found else text
        return (
            "holds Python objects other than tensors and containers "
            f"({shorten(reason, 120)}); refused without running them"
        )
    return f"not a readable PyTorch file ({shorten(text, 160)})"


def _tensor_problem(torch, value) -> str | None:
    """Why a tensor cannot be a weight, judged without reading its values."""
    if value.layout != torch.strided or value.is_nested:
        return f"is a sparse or nested tensor ({value.layout}); expected a dense one"
    if value.is_quantized:
        return f"is quantized ({value.dtype}); expected floating-point numbers"
    if value.is_meta:
        return "is a meta tensor, which holds no values"
    if value.is_complex():
        return f"holds complex numbers ({value.dtype}); weights are real"
    if not value.is_floating_point():
        return f"holds {value.dtype}, not floating-point numbers"
    return None
