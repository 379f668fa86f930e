"""`mbcompile weights SPEC --from A --to B`: move trained weights between frameworks.

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

import argparse
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import compiler
from .errors import SpecError
from .weights import LayoutError, ParamOp, keras_to_torch, param_ops, torch_to_keras

TORCH_SUFFIXES = (".pt", ".pth")
KERAS_OUTPUT_SUFFIX = ".weights.h5"
KERAS_INPUT_SUFFIXES = (".weights.h5", ".h5", ".hdf5")
# BatchNorm2d's step counter has no Keras counterpart (and no effect on outputs
# unless momentum is None); it is skipped when reading and written as 0.
SKIPPED_BUFFER = "num_batches_tracked"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Convert weights between a PyTorch state_dict (.pt/.pth) and a Keras "
        "weights file (.weights.h5; legacy .h5 accepted as input) for a spec."
    )
    parser.add_argument("spec", help="path to the spec YAML file the weights fit")
    parser.add_argument("--from", dest="source", required=True, metavar="PATH")
    parser.add_argument("--to", dest="target", required=True, metavar="PATH")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, exactly as for compiling (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    source, target = Path(args.source), Path(args.target)
    direction = (_kind(source, "--from"), _kind(target, "--to"))
    if direction not in (("torch", "keras"), ("keras", "torch")):
        raise SpecError(
            "--from and --to must be one PyTorch file (.pt, .pth) and one Keras "
            f"file, got {source.name} and {target.name}"
        )
    if direction[1] == "keras" and not target.name.endswith(KERAS_OUTPUT_SUFFIX):
        raise SpecError(f"--to {target}: Keras weights are written as *.weights.h5")
    if not source.is_file():
        raise SpecError(f"--from {source}: no such file")
    loaded, graph = compiler.load_and_expand(args.spec, args.overrides)
    torch, keras = _frameworks()
    ops = param_ops(graph)
    with tempfile.TemporaryDirectory(prefix="mbcompile-weights-") as scratch:
        build = _builder(loaded, graph, Path(scratch))
        if direction[0] == "torch":
            tensors = _read_torch(torch, source)
            model = build("keras")
            _fill_keras(model, ops, tensors, source)
            _atomic(target, lambda tmp: model.save_weights(tmp))
        else:
            model = build("keras")
            _load_keras(model, source)
            state = _torch_state(torch, build("torch"), ops, model)
            _atomic(target, lambda tmp: torch.save(state, tmp))
    del keras  # imported only to check that it is installed
    print(f"mbcompile: wrote {target}", file=sys.stderr)
    return 0


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


def _builder(loaded, graph, scratch: Path) -> Callable[[str], Any]:
    """build(backend) -> a fresh model from the spec's generated source."""

    def build(backend: str):
        text = compiler.generate(loaded, graph, backend)
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


# --------------------------------------------------------------- PyTorch -> Keras


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


def _fill_keras(model, ops: list[ParamOp], tensors, source: Path) -> None:
    layers = _keras_weighted_layers(model)
    assert len(layers) == len(ops), "generated Keras model out of IR order"
    position = 0
    for op, layer in zip(ops, layers, strict=True):
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
        layer.set_weights(torch_to_keras(op, [array for _, array in group]))
        position += len(group)
    if position < len(tensors):
        key, array = tensors[position]
        raise SpecError(
            f"{source}: tensor {position} '{key}' {tuple(array.shape)} is one more "
            f"than the spec's {position} tensors"
        )


# --------------------------------------------------------------- Keras -> PyTorch


def _load_keras(model, source: Path) -> None:
    """Keras' own loader: `.weights.h5` by layer class and position, legacy `.h5`
    by the order of weighted layers (as keras.applications loads its files)."""
    try:
        model.load_weights(str(source))
    except Exception as exc:
        detail = " ".join(str(exc).split())
        raise SpecError(f"{source}: does not fit the spec: {detail}") from None


def _torch_state(torch, module, ops: list[ParamOp], keras_model) -> dict:
    layers = _keras_weighted_layers(keras_model)
    tensors = []
    for op, layer in zip(ops, layers, strict=True):
        arrays = [w.numpy() if hasattr(w, "numpy") else w for w in layer.get_weights()]
        try:
            tensors += keras_to_torch(op, arrays)
        except LayoutError as exc:
            raise SpecError(f"Keras layer '{layer.name}': {exc}") from None
    state = module.state_dict()
    values = iter(tensors)
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
