"""Weight layouts between the frameworks, in the IR's parametric order.

The PyTorch backend creates its parametric modules in the IR's execution order, so
the n-th parametric op of the graph holds the n-th group of state_dict tensors. Keras
orders layers otherwise around parallel branches (attention's queries, keys and
values), so its layer for an op is found by name (`backends.keras.layer_names`).
Per op, the tensors are:

| op     | PyTorch                                   | Keras |
|--------|-------------------------------------------|-------|
| conv   | weight (O, I/g, kh, kw) [, bias (O,)]     | kernel (kh, kw, I/g, O) [, bias] |
| dwconv | weight (C*m, 1, kh, kw) [, bias (C*m,)]    | depthwise_kernel (kh, kw, C, m) [, bias] |
| condconv | weight (E, O*I/g*kh*kw): an expert's kernel per row | kernel (E, O*I/g*kh*kw) of the Dense layer mixing them, the same |
| bn     | weight, bias, running_mean, running_var   | gamma, beta, moving_mean, moving_variance |
| other norms | their (C,) vectors (weight, bias[, v]) | the same vectors in the same order |
| dense  | weight (out, in), bias                    | kernel (in, out) or, as a 1x1 conv, (1, 1, in, out); bias |
| scale  | gamma (C,)                                | depthwise_kernel (1, 1, C, 1) of a 1x1 depthwise conv |

Arrays are numpy-like (anything with `.shape`, `.transpose` and `.reshape`); this
module imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir.graph import Graph
from ..ir.norms import NORM_KINDS, NORMS_BY_KIND


@dataclass(frozen=True)
class ParamOp:
    """One parametric op and the tensor shapes each framework stores for it."""

    name: str
    kind: str
    torch_shapes: tuple[tuple[int, ...], ...]
    keras_shapes: tuple[tuple[int, ...], ...]
    attrs: dict[str, Any]


def param_ops(graph: Graph) -> list[ParamOp]:
    ops = []
    for node_id in graph.parametric():
        node = graph.node(node_id)
        kind, a = node["kind"], node["attrs"]
        if kind == "conv":
            k, i, o = a["kernel"], a["in_c"] // a["groups"], a["out_c"]
            torch_s = [(o, i, k, k)]
            keras_s = [(k, k, i, o)]
            if a["bias"]:
                torch_s.append((o,))
                keras_s.append((o,))
        elif kind == "dwconv":
            k, c, m = a["kernel"], a["channels"], a["multiplier"]
            torch_s = [(c * m, 1, k, k)]
            keras_s = [(k, k, c, m)]
            if a["bias"]:  # the folded inference form
                torch_s.append((c * m,))
                keras_s.append((c * m,))
        elif kind == "condconv":  # one flattened (O, I/g, k, k) kernel per expert
            k, i, o = a["kernel"], a["in_c"] // a["groups"], a["out_c"]
            torch_s = keras_s = [(a["experts"], o * i * k * k)]
        elif kind in NORM_KINDS:  # per-channel vectors, learned then statistics
            norm = NORMS_BY_KIND[kind]
            vectors = norm.trainable(a) + norm.statistics
            torch_s = keras_s = [(a["channels"],)] * vectors
        elif kind == "scale":  # gamma; in Keras a 1x1 depthwise conv's kernel
            torch_s, keras_s = [(a["channels"],)], [(1, 1, a["channels"], 1)]
        else:  # dense
            i, o = a["in_f"], a["out_f"]
            torch_s = [(o, i)]
            keras_s = [(1, 1, i, o) if a["form"] == "conv1x1" else (i, o)]
            if a["bias"]:
                torch_s.append((o,))
                keras_s.append((o,))
        ops.append(ParamOp(node_id, kind, tuple(torch_s), tuple(keras_s), a))
    return ops


def torch_to_keras(op: ParamOp, tensors: list) -> list:
    """Convert one op's PyTorch arrays (in state_dict order) to Keras' layout."""
    _check(op, tensors, op.torch_shapes, "PyTorch")
    if op.kind == "conv":
        return [tensors[0].transpose(2, 3, 1, 0), *tensors[1:]]
    if op.kind == "dwconv":
        c, m, k = op.attrs["channels"], op.attrs["multiplier"], op.attrs["kernel"]
        return [tensors[0].reshape(c, m, k, k).transpose(2, 3, 0, 1), *tensors[1:]]
    if op.kind == "scale":
        return [tensors[0].reshape(1, 1, -1, 1)]
    if op.kind == "dense":
        kernel = tensors[0].transpose(1, 0)
        if op.attrs["form"] == "conv1x1":
            kernel = kernel.reshape(1, 1, *kernel.shape)
        return [kernel, *tensors[1:]]
    return list(tensors)  # norms: the same vectors in the same order


def keras_to_torch(op: ParamOp, arrays: list) -> list:
    """Convert one op's Keras arrays (get_weights order) to PyTorch's layout."""
    _check(op, arrays, op.keras_shapes, "Keras")
    if op.kind == "conv":
        return [arrays[0].transpose(3, 2, 0, 1), *arrays[1:]]
    if op.kind == "dwconv":
        c, m, k = op.attrs["channels"], op.attrs["multiplier"], op.attrs["kernel"]
        return [arrays[0].transpose(2, 3, 0, 1).reshape(c * m, 1, k, k), *arrays[1:]]
    if op.kind == "scale":
        return [arrays[0].reshape(-1)]
    if op.kind == "dense":
        kernel = arrays[0].reshape(op.attrs["in_f"], op.attrs["out_f"])
        return [kernel.transpose(1, 0), *arrays[1:]]
    return list(arrays)


def _mixed_groups(op: ParamOp) -> int:
    """How many convs, from `op` on, precede the batch norm of a mixed conv (1 for
    an ordinary conv; see the IR's `part`)."""
    index, count = op.attrs.get("part", (0, 1))
    return count - index


class LayoutError(ValueError):
    """Tensors that do not fit the spec; names the first mismatch."""


def _check(op: ParamOp, tensors: list, shapes: tuple, framework: str) -> None:
    if len(tensors) != len(shapes):
        raise LayoutError(
            f"{op.name} ({op.kind}): expected {len(shapes)} {framework} tensors, "
            f"got {len(tensors)}"
        )
    for i, (tensor, shape) in enumerate(zip(tensors, shapes, strict=True)):
        if tuple(tensor.shape) != shape:
            raise LayoutError(
                f"{op.name} ({op.kind}) tensor {i}: expected {framework} shape "
                f"{shape}, got {tuple(tensor.shape)}"
            )


def fold_batch_norm(
    trained: list[ParamOp], folded: list[ParamOp], tensors: list
) -> list:
    """PyTorch-layout tensors of a spec's training form -> its folded inference form.

    `trained` and `folded` are the parametric ops of the same spec without and with
    `fold_batch_norm`; `tensors` holds one list per trained op, in state_dict order.
    Each foldable batch norm (see the IR's `bn.foldable`) is merged into the
    convolution before it (into a mixed conv's groups, each taking its channels):
    scale = gamma / sqrt(var + eps), W' = W * scale (per output channel),
    b' = (b - mean) * scale + beta.
    """
    if len(tensors) != len(trained):
        raise LayoutError(
            f"expected tensors for {len(trained)} ops, got {len(tensors)}"
        )
    for op, arrays in zip(trained, tensors, strict=True):
        _check(op, arrays, op.torch_shapes, "PyTorch")
    out: list = []
    i = 0
    while i < len(trained):
        op = trained[i]
        # a conv, or a mixed conv's groups, whose outputs a batch norm may follow
        count = _mixed_groups(op) if op.kind in ("conv", "dwconv") else 0
        norm = trained[i + count] if count and i + count < len(trained) else None
        if norm is None or norm.kind != "bn" or not norm.attrs["foldable"]:
            out.append(list(tensors[i]))
            i += 1
            continue
        gamma, beta, mean, var = tensors[i + count]
        scale = gamma / (var + norm.attrs["eps"]) ** 0.5
        start = 0
        for weight, *bias in tensors[i : i + count]:  # each conv its channels' share
            end = start + weight.shape[0]
            s, m = scale[start:end], mean[start:end]
            b = bias[0] if bias else m * 0
            out.append([weight * s.reshape(-1, 1, 1, 1), (b - m) * s + beta[start:end]])
            start = end
        i += count + 1
    if len(out) != len(folded):
        raise LayoutError(
            f"folding gave {len(out)} ops but the folded spec has {len(folded)}"
        )
    for op, arrays in zip(folded, out, strict=True):
        _check(op, arrays, op.torch_shapes, "PyTorch")
    return out


def initial_logits(op: ParamOp, scheme: str, seed: int = 0) -> list:
    """A fresh logits layer in PyTorch's layout, drawn as the generated models
    initialise it under `scheme` (conventions.initialization; see the templates'
    init_weights): torchvision N(0, 0.01), timm U(+-1/sqrt(classes)), keras
    glorot-uniform; the bias zero. Seeded: the same file gives the same bytes."""
    import numpy as np

    out_f, in_f = op.torch_shapes[0]
    rng = np.random.default_rng(seed)
    if scheme == "torchvision":
        weight = rng.normal(0.0, 0.01, (out_f, in_f))
    else:
        bound = out_f**-0.5 if scheme == "timm" else (6 / (in_f + out_f)) ** 0.5
        weight = rng.uniform(-bound, bound, (out_f, in_f))
    return [weight.astype(np.float32), np.zeros(out_f, np.float32)]
