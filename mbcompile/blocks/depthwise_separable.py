"""depthwise-separable (MobileNet V1): depthwise k x k + BN + act, pointwise 1x1 + BN + act."""

from __future__ import annotations

from ..ir import Graph
from ..spec import DepthwiseSeparableRow
from .common import Context, conv_bn_act, padding

NAME = "depthwise_separable"


def resolve(ctx: Context, row: DepthwiseSeparableRow, stride: int, size) -> dict:
    return {
        "in_c": ctx.in_c,
        "out_c": ctx.scale(row.c),
        "kernel": row.k,
        "stride": stride,
        "dilation": 1,
        "pad": padding(ctx.conv.stride2_padding, row.k, stride, 1, size),
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
    return conv_bn_act(
        graph,
        x,
        f"{name}.pw",
        out_c=p["out_c"],
        kernel=1,
        stride=1,
        dilation=1,
        pad=(0, 0, 0, 0),
        act=p["act"],
        bn=ctx.bn,
    )
