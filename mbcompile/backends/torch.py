"""PyTorch lowering: module classes whose state_dict keys follow torchvision."""

from __future__ import annotations

from typing import Any

from ..ir import Graph
from . import uses

CLASS_NAMES = {
    "conv_bn_act": "ConvBNAct",
    "depthwise_separable": "DepthwiseSeparable",
    "inverted_residual": "InvertedResidual",
    "bneck": "Bneck",
    "fused_inverted_residual": "FusedInvertedResidual",
}
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


def torch_pad(p: dict) -> tuple[int, int, int, int] | None:
    """nn.ZeroPad2d's (left, right, top, bottom), or None for Conv2d's own padding."""
    top, bottom, left, right = p["pad"]
    same = p["dilation"] * (p["kernel"] - 1) // 2
    if top == bottom == left == right == same:
        return None
    return (left, right, top, bottom)


def shape_comment(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def lower(graph: Graph, ctx: dict[str, Any]) -> dict[str, Any]:
    for b in ctx["blocks"]:
        b.x["pad"] = torch_pad(b.p) if "pad" in b.p else None
        b.x["shape"] = shape_comment(b.shape)
    conv = ctx["conventions"]
    fold_bn = ctx["spec"].fold_batch_norm
    conv_class = "ConvAct" if fold_bn else CLASS_NAMES["conv_bn_act"]
    return {
        "m": {
            **uses(ctx["blocks"]),
            "uses_pad": any(b.x["pad"] for b in ctx["blocks"]),
            "fold_bn": fold_bn,
            "conv_class": conv_class,
        },
        "class_names": {**CLASS_NAMES, "conv_bn_act": conv_class},
        "torch_activations": ACTIVATIONS,
        "bn_eps": repr(conv.bn_epsilon),
        "bn_momentum": repr(conv.bn_momentum),
        "features": [b for b in ctx["blocks"] if b.type != "classifier"],
        "classifier": next((b for b in ctx["blocks"] if b.type == "classifier"), None),
        "input_comment": shape_comment(graph.shape("input")),
    }
