"""fused inverted residual (EdgeTPU, EfficientNetV2 FusedMBConv): a k x k full
convolution expands (+BN+act) in place of 1x1 expand + depthwise, then a 1x1 linear
projection; when the expansion keeps the width (t = 1) it is a single k x k
conv-bn-act, as torchvision's FusedMBConv."""

from __future__ import annotations

from ..ir import Graph
from ..spec import FusedInvertedResidualRow
from . import options
from .common import Context, conv_bn_act, padding, pointwise

NAME = "fused_inverted_residual"


def resolve(ctx: Context, row: FusedInvertedResidualRow, stride: int, size) -> dict:
    exp_c = options.expanded(ctx, row.t, row.exp)
    out_c = ctx.scale(row.c, stage=True)
    conv_stride, dilation = options.atrous(ctx, stride, row.dilation)
    return {
        "in_c": ctx.in_c,
        "exp_c": exp_c,
        "out_c": out_c,
        "kernel": row.k,
        "stride": conv_stride,
        "dilation": dilation,
        "pad": padding(ctx.conv.stride2_padding, row.k, conv_stride, dilation, size),
        "act": row.act,
        "fused": exp_c != ctx.in_c,  # False: one k x k conv-bn-act to out_c
        "residual": options.residual(row, stride, ctx.in_c, out_c),
    }


def expand(graph: Graph, x: str, p: dict, name: str, ctx: Context) -> str:
    shortcut = x
    x = conv_bn_act(
        graph,
        x,
        f"{name}.expand" if p["fused"] else f"{name}.conv",
        out_c=p["exp_c"] if p["fused"] else p["out_c"],
        kernel=p["kernel"],
        stride=p["stride"],
        dilation=p["dilation"],
        pad=p["pad"],
        act=p["act"],
        bn=ctx.bn,
    )
    if p["fused"]:
        x = pointwise(graph, x, f"{name}.project", p["out_c"], None, ctx.bn)
    if p["residual"]:
        x = graph.add("add", [shortcut, x], f"{name}.add")
    return x
