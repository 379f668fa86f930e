"""Keras 3 lowering: functional models whose weighted layers are named like
keras.applications' (names are the contract its weight files load by)."""

from __future__ import annotations

from typing import Any

from ..ir.blocks.base import Spatial
from ..ir.graph import Graph
from . import naming
from .render import options, spell_padding

ACTIVATIONS = {
    "relu": "layers.ReLU(name=name)",
    "relu6": "layers.ReLU(6.0, name=name)",
    "hardswish": 'layers.Activation("hard_swish", name=name)',
    "hardsigmoid": 'layers.Activation("hard_sigmoid", name=name)',
    "swish": 'layers.Activation("swish", name=name)',
    "sigmoid": 'layers.Activation("sigmoid", name=name)',
    "identity": "layers.Identity(name=name)",
}


def keras_pad(conv: Spatial) -> tuple | None:
    """ZeroPadding2D's ((top, bottom), (left, right)), or None where "same" is exact.

    Keras' "same" is symmetric only at stride 1, so every strided conv gets its
    padding spelled out (TensorFlow's SAME rule, or torchvision's symmetric one).
    """
    if conv.stride == 1 and conv.centred:
        return None
    top, bottom, left, right = conv.pad
    return ((top, bottom), (left, right))


def shape_comment(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in (*shape[1:], shape[0]))


def lower(graph: Graph, ctx: dict[str, Any]) -> dict[str, Any]:
    net = graph.network
    names = naming.keras_names(net.conventions, net.family)
    spell_padding(ctx["blocks"], keras_pad)
    for b in ctx["blocks"]:
        b.x["shape"] = shape_comment(b.shape)
        if b.number is not None:  # timm: "<stage>_<block>", else a count
            b.x["block_id"] = (
                f"{b.group}_{b.position}"
                if names["block_id_type"] == "str"
                else b.number + names["first_block_id"]
            )
        if b.role in ("stem", "head"):
            b.x["names"] = names[b.role]
        elif b.type == "conv_bn_act":  # a stage-table row
            patterns = names["conv_bn_act"]
            b.x["names"] = tuple(
                naming.fill(patterns[part], block_id=b.x["block_id"])
                for part in ("conv", "bn")
            )
    conventions = net.conventions
    shared = options(graph, ctx["blocks"])
    se_act = {shared["se"].act} if shared["se"] else set()  # the SE helper's
    return {
        "activations": sorted({*ctx["activations"], *se_act}),
        "bn_eps": repr(conventions.bn_epsilon),
        "bn_momentum": repr(round(1 - conventions.bn_momentum, 12)),
        "torch_momentum": repr(conventions.bn_momentum),
        "keras_activations": ACTIVATIONS,
        "names": names,
        "m": {
            **shared,
            "names": names,
        },
        "input_comment": shape_comment(graph.shape("input")),
    }
