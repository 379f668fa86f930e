"""Moving trained weights between frameworks (`mbcompile weights SPEC --from A --to B`).

A PyTorch state_dict file (`.pt`, `.pth`) becomes a Keras weights file
(`.weights.h5`) that the spec's generated Keras model loads with `load_weights`, and
back (a Keras 3 `.weights.h5` or a legacy, keras.applications-style `.h5`). Tensors
are matched by position in the IR's parametric order and converted with the layout
rules of `mbcompile.weights`; a file that does not fit the spec is refused (exit 2)
naming the first tensor that does not fit.

This is the one command that runs frameworks: torch and keras are imported here,
lazily, only when the command runs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..ir.graph import Graph
from .keras import layer_names
from .weights import (
    ParamOp,
    fold_batch_norm,
    keras_to_torch,
    param_ops,
    torch_to_keras,
)

TORCH_SUFFIXES = (".pt", ".pth")
KERAS_OUTPUT_SUFFIX = ".weights.h5"
KERAS_INPUT_SUFFIXES = (".weights.h5", ".h5", ".hdf5")
# BatchNorm2d's step counter has no Keras counterpart (and no effect on outputs
# unless momentum is None); it is skipped when reading and written as 0.
SKIPPED_BUFFER = "num_batches_tracked"


def convert(
    graph: Graph, source: Path, target: Path, folded: Graph | None = None
) -> None:
    """Read `source` (weights of `graph`'s network), check them, and write `target`
    in the other framework's layout — or, given the `folded` inference form of the
    same spec, write the weights of that form (batch norm folded in)."""
    direction = (_kind(source, "--from"), _kind(target, "--to"))
    if folded is not None and direction[0] != "torch":
        raise SpecError(
            f"--fold-bn reads a PyTorch state_dict, got {source.name}; convert a Keras "
            "file to .pt first (mbcompile weights SPEC --from it.weights.h5 --to it.pt)"
        )
    if folded is None and direction not in (("torch", "keras"), ("keras", "torch")):
        raise SpecError(
            "--from and --to must be one PyTorch file (.pt, .pth) and one Keras "
            f"file, got {source.name} and {target.name}"
        )
    if direction[1] == "keras" and not target.name.endswith(KERAS_OUTPUT_SUFFIX):
        raise SpecError(f"--to {target}: Keras weights are written as *.weights.h5")
    if not source.is_file():
        raise SpecError(f"--from {source}: no such file")
    torch, _ = _frameworks()
    ops = param_ops(graph)
    if direction[0] == "torch":
        groups = _torch_groups(ops, _read_torch(torch, source), source)
    if folded is not None:  # the same weights in the spec's folded inference form
        trained_ops, graph = ops, folded
        ops = param_ops(graph)
        groups = fold_batch_norm(trained_ops, ops, groups)
    with tempfile.TemporaryDirectory(prefix="mbcompile-weights-") as scratch:
        build = _builder(graph, Path(scratch))
        # Keras' layer order differs from the IR's around parallel branches:
        # its layers are found by name (layer_names: the IR's order).
        if direction[0] == "keras":
            model = build("keras")
            arrays = _read_keras(model, source, Path(scratch))
            weighted = _keras_weighted_layers(model)
            by_name = {layer.name: a for layer, a in zip(weighted, arrays, strict=True)}
            arrays = [by_name[name] for name in layer_names(graph)]
            groups = [keras_to_torch(op, a) for op, a in zip(ops, arrays, strict=True)]
        if direction[1] == "keras":
            model = build("keras")
            for op, name, tensors in zip(ops, layer_names(graph), groups, strict=True):
                model.get_layer(name).set_weights(torch_to_keras(op, tensors))
            _atomic(target, lambda tmp: model.save_weights(tmp))
        else:
            state = _torch_state(torch, build("torch"), groups)
            _atomic(target, lambda tmp: torch.save(state, tmp))


# ------------------------------------------------------------------ the frameworks


def _frameworks() -> tuple[Any, Any]:
    missing = [m for m in ("torch", "keras") if importlib.util.find_spec(m) is None]
    if missing:
        extras = ",".join(missing)
        raise SpecError(
            f"`mbcompile weights` needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install the "
            f"extra: pip install 'mbcompile[{extras}]'"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import torch

    return torch, keras


def _kind(path: Path, flag: str) -> str:
    name = path.name.lower()
    if name.endswith(TORCH_SUFFIXES):
        return "torch"
    if name.endswith(KERAS_INPUT_SUFFIXES):
        return "keras"
    raise SpecError(
        f"{flag} {path}: unknown file type; expected .pt/.pth (PyTorch) or "
        ".weights.h5 (Keras)"
    )


def _builder(graph, scratch: Path) -> Callable[[str], Any]:
    """build(backend) -> a fresh model from the spec's generated source."""
    from . import generate

    def build(backend: str):
        text = generate(graph, backend)
        name = f"mbcompile_weights_{backend}"
        path = scratch / f"{name}.py"
        path.write_text(text, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.build_model()

    return build


def _atomic(target: Path, write: Callable[[str], None]) -> None:
    """Write a temporary file beside the target, then rename it into place: a failed
    conversion never leaves a half-written or clobbered file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Keras insists on the .weights.h5 ending, so the temporary name keeps it.
    suffix = KERAS_OUTPUT_SUFFIX if target.name.endswith(KERAS_OUTPUT_SUFFIX) else ""
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp{suffix}"
    try:
        write(str(tmp))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------ PyTorch files


def _read_torch(torch, source: Path) -> list[tuple[str, Any]]:
    """(key, numpy array) in state_dict order, without BatchNorm step counters."""
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpecError(f"{source}: not a readable PyTorch file ({exc})") from None
    if not isinstance(state, dict) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise SpecError(f"{source}: expected a state_dict (names -> tensors)")
    return [
        (key, value.detach().cpu().numpy())
        for key, value in state.items()
        if not key.endswith(SKIPPED_BUFFER)
    ]


def _torch_groups(ops: list[ParamOp], tensors, source: Path) -> list[list]:
    """State_dict arrays grouped per parametric op, every shape checked."""
    groups = []
    position = 0
    for op in ops:
        group = tensors[position : position + len(op.torch_shapes)]
        for offset, expected in enumerate(op.torch_shapes):
            if offset >= len(group):
                raise SpecError(
                    f"{source}: ends after {len(tensors)} tensors; the spec needs "
                    f"{expected} for {op.name} ({op.kind}) next"
                )
            key, array = group[offset]
            if tuple(array.shape) != expected:
                raise SpecError(
                    f"{source}: tensor {position + offset} '{key}' has shape "
                    f"{tuple(array.shape)}; the spec needs {expected} for "
                    f"{op.name} ({op.kind}) there"
                )
        groups.append([array for _, array in group])
        position += len(group)
    if position < len(tensors):
        key, array = tensors[position]
        raise SpecError(
            f"{source}: tensor {position} '{key}' {tuple(array.shape)} is one more "
            f"than the spec's {position} tensors"
        )
    return groups


# -------------------------------------------------------------------- Keras files


def _read_keras(keras_model, source: Path, scratch: Path) -> list[list[Any]]:
    """Arrays per weighted layer of `keras_model`, read from a Keras weights file.

    Read with h5py rather than `load_weights` so that a file that does not fit is
    reported by its first mismatching tensor (Keras lists every failing layer, with
    values). Both formats are matched the way Keras itself loads them: a Keras 3
    `.weights.h5` addresses layers by class and position (`layers/conv2d_3/vars/0`),
    a legacy `.h5` (keras.applications' format) by the order of weighted layers.
    """
    import h5py

    layers = _keras_weighted_layers(keras_model)
    try:
        handle = h5py.File(source, "r")
    except OSError as exc:
        raise SpecError(f"{source}: not a readable HDF5 file ({exc})") from None
    with handle:
        if "layer_names" in handle.attrs or "model_weights" in handle:
            found = _legacy_h5_arrays(handle, source)
        else:
            found = _keras3_arrays(handle, keras_model, scratch)
        for index, layer in enumerate(layers):
            expected = [tuple(w.shape) for w in layer.weights]
            label = f"{source}: layer {index} '{layer.name}'"
            if index >= len(found):
                raise SpecError(
                    f"{label}: missing; the file has {len(found)} weighted layers"
                )
            file_name, arrays = found[index]
            if len(arrays) != len(expected):
                raise SpecError(
                    f"{label}: the file's '{file_name}' has {len(arrays)} tensors, "
                    f"the spec needs {len(expected)}"
                )
            for j, (array, shape) in enumerate(zip(arrays, expected, strict=True)):
                if tuple(array.shape) != shape:
                    raise SpecError(
                        f"{label}: tensor {j} ({layer.weights[j].name}) of the "
                        f"file's '{file_name}' has shape {tuple(array.shape)}; the "
                        f"spec needs {shape}"
                    )
        if len(found) > len(layers):
            raise SpecError(
                f"{source}: weighted layer '{found[len(layers)][0]}' is one more "
                f"than the spec's {len(layers)}"
            )
    return [arrays for _, arrays in found]


def _legacy_h5_arrays(handle, source: Path) -> list[tuple[str, list]]:
    """(layer name, arrays) of every weighted layer, in the file's layer order."""
    if "layer_names" not in handle.attrs:
        handle = handle["model_weights"]
    found = []
    for raw in handle.attrs["layer_names"]:
        name = raw.decode("utf8") if isinstance(raw, bytes) else str(raw)
        group = handle[name]
        weight_names = [
            w.decode("utf8") if isinstance(w, bytes) else str(w)
            for w in group.attrs.get("weight_names", [])
        ]
        if weight_names:
            found.append((name, [group[w][()] for w in weight_names]))
    return found


def _keras3_arrays(handle, keras_model, scratch: Path) -> list[tuple[str, list]]:
    """(group path, arrays) for each weighted layer of `keras_model`, in its order.

    Keras 3 names a layer's group after its class, snake-cased, with a counter per
    class in `model.layers` order. That rule is checked against a file Keras writes
    for this very model, so a Keras release that changes it fails loudly here.
    """
    counters: dict[str, int] = {}
    paths = {}
    for layer in keras_model.layers:
        base = _snake_case(type(layer).__name__)
        n = counters.get(base, 0)
        counters[base] = n + 1
        if layer.weights:
            paths[id(layer)] = f"layers/{base}_{n}" if n else f"layers/{base}"
    layers = _keras_weighted_layers(keras_model)
    written = scratch / "layout.weights.h5"
    keras_model.save_weights(str(written))
    import h5py

    with h5py.File(written, "r") as own:
        for layer in layers:
            group = own.get(paths[id(layer)])
            if group is None or len(group["vars"]) != len(layer.weights):
                raise RuntimeError(
                    "this Keras version lays out .weights.h5 files differently "
                    f"(no {paths[id(layer)]} for layer '{layer.name}')"
                )
    found = []
    for layer in layers:
        group = handle.get(f"{paths[id(layer)]}/vars")
        if group is None:
            break  # reported as missing by the caller
        found.append((paths[id(layer)], [group[str(j)][()] for j in range(len(group))]))
    return found


def _snake_case(name: str) -> str:
    """keras' naming.to_snake_case: "DepthwiseConv2D" -> "depthwise_conv2d"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _torch_state(torch, module, groups: list[list]) -> dict:
    """`module`'s state_dict filled with PyTorch-layout arrays, one group per op
    in IR order (shapes were checked on reading)."""
    state = module.state_dict()
    values = iter(array for group in groups for array in group)
    for key, current in state.items():
        if key.endswith(SKIPPED_BUFFER):
            state[key] = torch.zeros_like(current)
            continue
        value = torch.from_numpy(next(values).copy())
        assert value.shape == current.shape, key  # both follow the same IR
        state[key] = value
    return state


def _keras_weighted_layers(model) -> list:
    return [layer for layer in model.layers if layer.weights]
