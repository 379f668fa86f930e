"""Keras 3 lowering: functional models whose weighted layers are named like
keras.applications' (names are the contract its weight files load by)."""

from __future__ import annotations

from typing import Any

from ..ir import Graph
from . import uses

# Names of the layers outside the stage table, per family, as keras.applications
# spells them: (conv, batch norm) of the stem and of the head conv, the hidden
# classifier layer and the logits layer.
NAMES = {
    "v1": {
        "stem": ("conv1", "conv1_bn"),
        "head": ("conv_1", "conv_1_bn"),
        "hidden": "fc",
        "logits": "conv_preds",
    },
    "v2": {
        "stem": ("Conv1", "bn_Conv1"),
        "head": ("Conv_1", "Conv_1_bn"),
        "hidden": "fc",
        "logits": "predictions",
    },
    "v3": {
        "stem": ("conv", "conv_bn"),
        "head": ("conv_1", "conv_1_bn"),
        "hidden": "conv_2",
        "logits": "logits",
    },
}
ACTIVATIONS = {
    "relu": "layers.ReLU(name=name)",
    "relu6": "layers.ReLU(6.0, name=name)",
    "hardswish": 'layers.Activation("hard_swish", name=name)',
    "hardsigmoid": 'layers.Activation("hard_sigmoid", name=name)',
    "swish": 'layers.Activation("swish", name=name)',
    "sigmoid": 'layers.Activation("sigmoid", name=name)',
    "identity": "layers.Identity(name=name)",
}


def keras_pad(p: dict) -> tuple | None:
    """ZeroPadding2D's ((top, bottom), (left, right)), or None where "same" is exact.

    Keras' "same" is symmetric only at stride 1, so every strided conv gets its
    padding spelled out (TensorFlow's SAME rule, or torchvision's symmetric one).
    """
    top, bottom, left, right = p["pad"]
    same = p["dilation"] * (p["kernel"] - 1) // 2
    if p["stride"] == 1 and top == bottom == left == right == same:
        return None
    return ((top, bottom), (left, right))


def shape_comment(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in (*shape[1:], shape[0]))


def lower(graph: Graph, ctx: dict[str, Any]) -> dict[str, Any]:
    family = ctx["spec"].family
    names = NAMES[family]
    blocks = ctx["blocks"]
    for b in blocks:
        b.x["pad"] = keras_pad(b.p) if "pad" in b.p else None
        b.x["shape"] = shape_comment(b.shape)
    classifier = blocks[-1] if blocks[-1].type == "classifier" else None
    features = blocks[:-1] if classifier else blocks
    stem, head = blocks[0], None
    if (
        len(features) > 1
        and features[-1].type == "conv_bn_act"
        and features[-1].number is None
    ):
        head = features[-1]
    for b in features:
        if b.type == "conv_bn_act" and b.number is not None:  # conv_bn_act rows
            b.x["names"] = (f"block_{b.number}_conv", f"block_{b.number}_bn")
    stem.x["names"] = names["stem"]
    if head is not None:
        head.x["names"] = names["head"]
    conv = ctx["conventions"]
    return {
        "bn_eps": repr(conv.bn_epsilon),
        "bn_momentum": repr(round(1 - conv.bn_momentum, 12)),
        "torch_momentum": repr(conv.bn_momentum),
        "keras_activations": ACTIVATIONS,
        "names": names,
        "m": {**uses(blocks), "fold_bn": ctx["spec"].fold_batch_norm},
        "features": features,
        "classifier": classifier,
        "input_comment": shape_comment(graph.shape("input")),
    }
