"""depthwise-separable (MobileNet V1): depthwise k x k + BN + act, pointwise 1x1 + BN + act."""

from __future__ import annotations

from ..ir import Graph
from ..spec import DepthwiseSeparableRow
from . import options
from .common import Context, conv_bn_act, padding, pointwise

NAME = "depthwise_separable"


def resolve(ctx: Context, row: DepthwiseSeparableRow, stride: int, size) -> dict:
    stride, dilation = options.atrous(ctx, stride, row.dilation)
    return {
        "in_c": ctx.in_c,
        "out_c": ctx.scale(row.c, stage=True),
        "kernel": row.k,
        "stride": stride,
        "dilation": dilation,
        "pad": padding(ctx.conv.stride2_padding, row.k, stride, dilation, size),
        "multiplier": ctx.spec.depth_multiplier,
        "act": row.act,
    }


def expand(graph: Graph, x: str, p: dict, name: str, ctx: Context) -> str:
    x = conv_bn_act(
        graph,
        x,
        f"{name}.dw",
        out_c=p["in_c"] * p["multiplier"],
        kernel=p["kernel"],
        stride=p["stride"],
        dilation=p["dilation"],
        pad=p["pad"],
        act=p["act"],
        bn=ctx.bn,
        depthwise=True,
        multiplier=p["multiplier"],
    )
    return pointwise(graph, x, f"{name}.pw", p["out_c"], p["act"], ctx.bn)
