"""PyTorch lowering: module classes whose state_dict keys follow torchvision."""

from __future__ import annotations

from typing import Any

from ..ir.blocks import BLOCK_TYPES
from ..ir.blocks.base import Spatial
from ..ir.graph import Graph
from . import naming
from .render import options, spell_padding

# Activation modules as torchvision builds them: in place where PyTorch can (it
# saves a copy of every activation map, ~15% of V2's eager latency), except
# squeeze-excite's own ReLU and Hardsigmoid, which torchvision leaves out of place.
ACTIVATIONS = {
    "relu": "nn.ReLU(inplace=True)",
    "relu6": "nn.ReLU6(inplace=True)",
    "hardswish": "nn.Hardswish(inplace=True)",
    "hardsigmoid": "nn.Hardsigmoid(inplace=True)",
    "swish": "nn.SiLU(inplace=True)",
    "sigmoid": "nn.Sigmoid()",
    "identity": "nn.Identity()",
}


def torch_pad(conv: Spatial) -> tuple[int, int, int, int] | None:
    """nn.ZeroPad2d's (left, right, top, bottom), or None for Conv2d's own padding."""
    if conv.centred:
        return None
    top, bottom, left, right = conv.pad
    return (left, right, top, bottom)


def shape_comment(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def lower(graph: Graph, ctx: dict[str, Any]) -> dict[str, Any]:
    net = graph.network
    spell_padding(ctx["blocks"], torch_pad)
    for b in ctx["blocks"]:
        b.x["shape"] = shape_comment(b.shape)
    fold_bn = net.fold_batch_norm
    class_names = {name: t.class_name for name, t in BLOCK_TYPES.items()}
    class_names["conv_bn_act"] = "ConvAct" if fold_bn else "ConvBNAct"
    return {
        "m": {
            **options(ctx["blocks"]),
            "fold_bn": fold_bn,
            "conv_class": class_names["conv_bn_act"],
            "names": naming.torch_names(net.conventions, net.family),
        },
        "class_names": {b.template: class_names[b.type] for b in ctx["blocks"]},
        "torch_activations": ACTIVATIONS,
        "bn_eps": repr(net.conventions.bn_epsilon),
        "bn_momentum": repr(net.conventions.bn_momentum),
        "input_comment": shape_comment(graph.shape("input")),
    }
