"""Moving trained weights between frameworks (`mbcompile weights SPEC --from A --to B`).

A PyTorch state_dict file (`.pt`, `.pth`) becomes a Keras weights file
(`.weights.h5`) that the spec's generated Keras model loads with `load_weights`, and
back (a Keras 3 `.weights.h5` or a legacy, keras.applications-style `.h5`). PyTorch
tensors are matched by position in the IR's parametric order, Keras layers by name
(`backends.keras.layer_names`), and converted with the layout rules of
`backends.weights`; a file that does not fit the spec is refused (exit 2) naming the
first tensor that does not fit.

Weights files are untrusted input. They are opened through the one input path
(regular files of at most MAX_WEIGHTS_BYTES), and
- a PyTorch file is unpickled with `weights_only=True`, so no code in it runs; it
  must map string keys to dense floating-point tensors with finite values
  (float16, bfloat16 and float64 are converted to float32);
- a Keras file is walked through plain (hard) links only — soft and external links
  and data stored in other files are refused — and every dataset's type and shape
  is checked against the spec before its data is read, so a small file declaring a
  huge dataset costs nothing.
The result goes through the one output path (`mbcompile.files`), which never
replaces the `--from` file or the spec, with the same bytes for the same input.

This is the one command that runs frameworks: torch and keras are imported here,
lazily, only when the command runs, and TensorFlow's native logging is kept off
standard error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError, shorten, shorten_path
from ..files import (
    NO_INPUTS,
    Inputs,
    check_target,
    open_input,
    quiet_stderr,
    write_file,
)
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
# 10^9 float32 parameters; MobileNets take 5-25 MB.
MAX_WEIGHTS_BYTES = 4 * 1024**3


def convert(
    graph: Graph,
    source: str | Path,
    target: str | Path,
    folded: Graph | None = None,
    inputs: Inputs = NO_INPUTS,
) -> None:
    """Read `source` (weights of `graph`'s network), check them, and write `target`
    in the other framework's layout — or, given the `folded` inference form of the
    same spec, write the weights of that form (batch norm folded in). `inputs` are
    the spec's files, which `target` may not replace."""
    source_name, target_name = Path(source).name, Path(target).name
    direction = (_kind(source, "--from"), _kind(target, "--to"))
    if folded is not None and direction[0] != "torch":
        raise SpecError(
            f"--fold-bn reads a PyTorch state_dict, got {shorten(source_name)}; "
            "convert a Keras file to .pt first (mbcompile weights SPEC --from "
            "it.weights.h5 --to it.pt)"
        )
    if folded is None and direction not in (("torch", "keras"), ("keras", "torch")):
        raise SpecError(
            "--from and --to must be one PyTorch file (.pt, .pth) and one Keras "
            f"file, got {shorten(source_name)} and {shorten(target_name)}"
        )
    if direction[1] == "keras" and not target_name.endswith(KERAS_OUTPUT_SUFFIX):
        raise SpecError(
            f"--to {shorten_path(target)}: Keras weights are written as *.weights.h5"
        )
    display = str(source)
    handle, source_id = open_input(source, display, MAX_WEIGHTS_BYTES, "weights")
    with handle:
        inputs = {**inputs, source_id: "the --from weights file"}
        check_target(target, inputs)  # before any work
        _require({"torch", *direction})
        data = _convert(graph, handle, display, direction, folded)
    write_file(target, data, inputs)


def _convert(graph, handle, display: str, direction, folded) -> bytes:
    """The target file's bytes."""
    torch = _import_torch()
    ops = param_ops(graph)
    quiet = quiet_stderr() if "keras" in direction else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="mbcompile-weights-") as tmp, quiet:
        scratch = Path(tmp)
        if direction[0] == "torch":
            groups = _torch_groups(ops, _read_torch(torch, handle, display), display)
        else:
            model = _build(graph, "keras", scratch)
            arrays = _read_keras(model, handle, display, scratch)
            # Keras orders its layers otherwise than the IR around parallel branches
            # (attention's queries, keys, values): layers are matched by name.
            weighted = _keras_weighted_layers(model)
            by_name = {layer.name: a for layer, a in zip(weighted, arrays, strict=True)}
            arrays = [by_name[name] for name in layer_names(graph)]
            groups = [keras_to_torch(op, a) for op, a in zip(ops, arrays, strict=True)]
        if folded is not None:  # the same weights in the spec's folded inference form
            trained_ops, graph = ops, folded
            ops = param_ops(graph)
            groups = fold_batch_norm(trained_ops, ops, groups)
            if not all(np.isfinite(a).all() for group in groups for a in group):
                raise SpecError(
                    f"{shorten_path(display)}: folding batch norm gives NaN or "
                    "infinite weights (a negative running_var?)"
                )
        if direction[1] == "torch":
            state = _torch_state(torch, _build(graph, "torch", scratch), groups)
            buffer = io.BytesIO()  # in memory: the archive is not named after a file
            torch.save(state, buffer)
            return buffer.getvalue()
        model = _build(graph, "keras", scratch)
        for op, name, tensors in zip(ops, layer_names(graph), groups, strict=True):
            model.get_layer(name).set_weights(torch_to_keras(op, tensors))
        written = scratch / f"out{KERAS_OUTPUT_SUFFIX}"  # Keras insists on the suffix
        model.save_weights(str(written))
        return written.read_bytes()


# ------------------------------------------------------------------ the frameworks


def _require(frameworks: set[str]) -> None:
    needed = [m for m in ("torch", "keras") if m in frameworks]
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        extras = ",".join(missing)
        raise SpecError(
            f"`mbcompile weights` needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install the "
            f"extra: pip install 'mbcompile[{extras}]'"
        )


def _import_torch():
    import torch

    return torch


def _kind(path: str | Path, flag: str) -> str:
    name = Path(path).name.lower()
    if name.endswith(TORCH_SUFFIXES):
        return "torch"
    if name.endswith(KERAS_INPUT_SUFFIXES):
        return "keras"
    raise SpecError(
        f"{flag} {shorten_path(path)}: unknown file type; expected .pt/.pth "
        "(PyTorch) or .weights.h5 (Keras)"
    )


def _build(graph, backend: str, scratch: Path):
    """A fresh model from the spec's generated source."""
    from . import generate

    if backend == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    text = generate(graph, backend)
    name = f"mbcompile_weights_{backend}"
    path = scratch / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model()


# ------------------------------------------------------------------ PyTorch files


def _read_torch(torch, handle, display: str) -> list[tuple[str, Any]]:
    """(key, tensor) in state_dict order, without BatchNorm step counters; anything
    but a state_dict of dense floating-point tensors is refused. Values are looked
    at only after their shapes are checked (`_torch_groups`): a view can declare
    far more elements than its file holds."""
    try:
        with warnings.catch_warnings():  # torch's deprecation notes: not for users
            warnings.simplefilter("ignore")
            state = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file it cannot read
        raise SpecError(
            f"{shorten_path(display)}: {_torch_load_problem(exc)}"
        ) from None
    if not isinstance(state, dict):
        raise SpecError(
            f"{shorten_path(display)}: expected a state_dict (names -> tensors), "
            f"got a {type(state).__name__}"
        )
    out = []
    for index, (key, value) in enumerate(state.items()):
        label = f"{shorten_path(display)}: tensor {index}"
        if not isinstance(key, str):
            raise SpecError(
                f"{label}: key {shorten(repr(key))} is a {type(key).__name__}; "
                "state_dict keys are strings"
            )
        label += f" '{shorten(key)}'"
        if isinstance(value, dict):
            raise SpecError(
                f"{label} is a mapping, not a tensor (a training checkpoint? save "
                "model.state_dict() itself)"
            )
        if not isinstance(value, torch.Tensor):
            raise SpecError(f"{label} is a {type(value).__name__}, not a tensor")
        if key.endswith(SKIPPED_BUFFER):
            continue
        problem = _tensor_problem(torch, value)
        if problem:
            raise SpecError(f"{label} {problem}")
        out.append((key, value))
    return out


def _torch_load_problem(exc: Exception) -> str:
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


def _torch_groups(ops: list[ParamOp], tensors, display: str) -> list[list]:
    """State_dict tensors grouped per parametric op as float32 arrays, every shape
    checked before any value is read."""
    shown = shorten_path(display)
    groups = []
    position = 0
    for op in ops:
        group = tensors[position : position + len(op.torch_shapes)]
        for offset, expected in enumerate(op.torch_shapes):
            if offset >= len(group):
                raise SpecError(
                    f"{shown}: ends after {len(tensors)} tensors; the spec needs "
                    f"{expected} for {op.name} ({op.kind}) next"
                )
            key, tensor = group[offset]
            if tuple(tensor.shape) != expected:
                raise SpecError(
                    f"{shown}: tensor {position + offset} '{shorten(key)}' has shape "
                    f"{tuple(tensor.shape)}; the spec needs {expected} for "
                    f"{op.name} ({op.kind}) there"
                )
        groups.append(group)
        position += len(group)
    if position < len(tensors):
        key, tensor = tensors[position]
        raise SpecError(
            f"{shown}: tensor {position} '{shorten(key)}' {tuple(tensor.shape)} is "
            f"one more than the spec's {position} tensors"
        )
    return [
        [_float32(tensor, f"{shown}: tensor '{shorten(key)}'") for key, tensor in group]
        for group in groups
    ]


def _float32(tensor, label: str) -> np.ndarray:
    """float16, bfloat16 and float64 convert; NaN and infinities are refused."""
    import torch

    array = tensor.detach().to(torch.float32).numpy()
    if not np.isfinite(array).all():
        raise SpecError(f"{label} holds NaN or infinite values")
    return array


def _torch_state(torch, module, groups: list[list]) -> dict:
    """`module`'s state_dict filled with PyTorch-layout arrays, one group per op
    in IR order (shapes were checked on reading)."""
    state = module.state_dict()
    values = iter(array for group in groups for array in group)
    for key, current in state.items():
        if key.endswith(SKIPPED_BUFFER):
            state[key] = torch.zeros_like(current)
            continue
        value = torch.from_numpy(np.array(next(values), dtype=np.float32))
        assert value.shape == current.shape, key  # both follow the same IR
        state[key] = value
    return state


# -------------------------------------------------------------------- Keras files


class _Malformed(Exception):
    """A Keras file whose structure is not what Keras writes."""


def _read_keras(keras_model, handle, display: str, scratch: Path) -> list[list]:
    """Float32 arrays per weighted layer of `keras_model`, read from a Keras file.

    Read with h5py rather than `load_weights` so that a file that does not fit is
    reported by its first mismatching tensor (Keras lists every failing layer, with
    values). Both formats are matched the way Keras itself loads them: a Keras 3
    `.weights.h5` addresses layers by class and position (`layers/conv2d_3/vars/0`),
    a legacy `.h5` (keras.applications' format) by the order of weighted layers.
    """
    import h5py

    layers = _keras_weighted_layers(keras_model)
    paths = _keras3_paths(keras_model, scratch)
    shown = shorten_path(display)
    try:
        file = h5py.File(handle, "r")
    except (OSError, ValueError) as exc:
        raise SpecError(
            f"{shown}: not a readable HDF5 file ({shorten(str(exc), 120)})"
        ) from None
    with file:
        try:
            if "layer_names" in file.attrs or _link(file, "model_weights") is not None:
                found = _legacy_datasets(file)
            else:
                found = _keras3_datasets(file, paths)
            _check_datasets(found, layers, shown)
            return [
                [_read_dataset(d, f"{shown}: '{shorten(d.name)}'") for d in datasets]
                for _, datasets in found
            ]
        except _Malformed as exc:
            raise SpecError(f"{shown}: {exc}") from None
        except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
            # h5py's own errors for a damaged file
            raise SpecError(
                f"{shown}: damaged HDF5 file ({shorten(str(exc), 120)})"
            ) from None


def _check_datasets(found, layers, shown: str) -> None:
    """Every layer's datasets are there with the type and shape the spec needs."""
    for index, layer in enumerate(layers):
        expected = [tuple(w.shape) for w in layer.weights]
        label = f"{shown}: layer {index} '{layer.name}'"
        if index >= len(found):
            raise SpecError(
                f"{label}: missing; the file has {len(found)} weighted layers"
            )
        file_name, datasets = found[index]
        file_name = shorten(file_name)
        if len(datasets) != len(expected):
            raise SpecError(
                f"{label}: the file's '{file_name}' has {len(datasets)} tensors, "
                f"the spec needs {len(expected)}"
            )
        for j, (dataset, shape) in enumerate(zip(datasets, expected, strict=True)):
            problem = _dataset_problem(dataset, shape)
            if problem:
                raise SpecError(
                    f"{label}: tensor {j} ({layer.weights[j].name}) of the file's "
                    f"'{file_name}' {problem}"
                )
    if len(found) > len(layers):
        raise SpecError(
            f"{shown}: weighted layer '{shorten(found[len(layers)][0])}' is one more "
            f"than the spec's {len(layers)}"
        )


def _dataset_problem(dataset, shape: tuple) -> str | None:
    """Why a dataset cannot be the tensor of `shape`, judged without reading it."""
    if dataset.dtype.kind != "f":
        return f"holds {dataset.dtype}, not floating-point numbers"
    if dataset.external or dataset.is_virtual:
        return "keeps its data in other files; refused"
    if dataset.shape != shape:
        return f"has shape {dataset.shape}; the spec needs {shape}"
    return None


def _read_dataset(dataset, label: str) -> np.ndarray:
    array = np.asarray(dataset[()], dtype=np.float32)
    if not np.isfinite(array).all():
        raise SpecError(f"{label} holds NaN or infinite values")
    return array


def _link(group, name: str):
    """The link `name` in `group` (not followed), or None."""
    return group.get(name, getlink=True)


def _walk(group, path: str, want: type):
    """The object at `path` under `group`, reached through hard links only (a soft
    link can loop, an external one opens another file), or None if missing."""
    import h5py

    node = group
    for name in path.split("/"):
        if not name or not isinstance(node, h5py.Group):
            raise _Malformed(f"'{shorten(path)}' is not a path to a group or dataset")
        link = _link(node, name)
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            kind = "soft" if isinstance(link, h5py.SoftLink) else "external"
            raise _Malformed(
                f"'{shorten(path)}' goes through a {kind} link; only plain groups "
                "and datasets are read"
            )
        node = node[name]
    if not isinstance(node, want):
        found = "group" if isinstance(node, h5py.Group) else "dataset or type"
        wanted = "group" if want is h5py.Group else "dataset"
        raise _Malformed(f"'{shorten(path)}' is a {found} where a {wanted} belongs")
    return node


def _names(attrs, key: str) -> list[str]:
    """A list-of-names attribute (legacy files' `layer_names`, `weight_names`)."""
    if key not in attrs:
        return []
    values = np.asarray(attrs[key])
    if values.size == 0:
        return []  # Keras writes an empty float array for a layer without weights
    if values.ndim != 1 or values.dtype.kind not in "SUO":
        raise _Malformed(f"attribute '{key}' is not a list of names")
    names = []
    for raw in values:
        if not isinstance(raw, bytes | str):
            raise _Malformed(f"attribute '{key}' is not a list of names")
        try:
            # h5py hands back undecodable bytes as str with surrogate escapes
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            text.encode("utf-8")
        except UnicodeError:
            raise _Malformed(f"a name in '{key}' is not UTF-8") from None
        names.append(text)
    return names


def _legacy_datasets(file) -> list[tuple[str, list]]:
    """(layer name, datasets) of every weighted layer, in the file's layer order."""
    import h5py

    root = file
    if "layer_names" not in file.attrs:
        root = _walk(file, "model_weights", h5py.Group)
    found = []
    for name in _names(root.attrs, "layer_names"):
        group = _walk(root, name, h5py.Group)
        if group is None:
            raise _Malformed(f"layer '{shorten(name)}' is listed but missing")
        datasets = []
        for weight in _names(group.attrs, "weight_names"):
            dataset = _walk(group, weight, h5py.Dataset)
            if dataset is None:
                raise _Malformed(f"'{shorten(name)}/{shorten(weight)}' is missing")
            datasets.append(dataset)
        if datasets:
            found.append((name, datasets))
    return found


def _keras3_datasets(file, paths: list[str]) -> list[tuple[str, list]]:
    """(group path, datasets) for each path of a weighted layer, in order, up to
    the first that is missing (the caller reports it)."""
    import h5py

    found = []
    for path in paths:
        variables = _walk(file, f"{path}/vars", h5py.Group)
        if variables is None:
            break
        datasets = []
        for j in range(len(variables)):
            dataset = _walk(variables, str(j), h5py.Dataset)
            if dataset is None:
                raise _Malformed(f"'{path}/vars' has no variable {j}")
            datasets.append(dataset)
        found.append((path, datasets))
    return found


def _keras3_paths(keras_model, scratch: Path) -> list[str]:
    """The group path of each weighted layer of `keras_model` in a `.weights.h5`.

    Keras 3 names a layer's group after its class, snake-cased, with a counter per
    class in `model.layers` order. That rule is checked against a file Keras writes
    for this very model, so a Keras release that changes it fails loudly here.
    """
    import h5py

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
    with h5py.File(written, "r") as own:
        for layer in layers:
            group = own.get(paths[id(layer)])
            if group is None or len(group["vars"]) != len(layer.weights):
                raise RuntimeError(
                    "this Keras version lays out .weights.h5 files differently "
                    f"(no {paths[id(layer)]} for layer '{layer.name}')"
                )
    return [paths[id(layer)] for layer in layers]


def _snake_case(name: str) -> str:
    """keras' naming.to_snake_case: "DepthwiseConv2D" -> "depthwise_conv2d"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras_weighted_layers(model) -> list:
    return [layer for layer in model.layers if layer.weights]
