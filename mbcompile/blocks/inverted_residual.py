"""inverted residual (MobileNet V2): 1x1 expand, depthwise k x k, 1x1 linear project.

The expansion is a ratio `t` of the input channels. `expand` here is shared with the
V3 bottleneck (bneck), which adds an optional squeeze-excite after the depthwise conv.
"""

from __future__ import annotations

from ..channels import expand_ratio
from ..ir import Graph
from ..spec import InvertedResidualRow
from .common import Context, conv_bn_act, padding, squeeze_excite

NAME = "inverted_residual"


def needs_expand(ctx: Context, exp_c: int) -> bool:
    if ctx.conv.expand_conv == "except_first":
        return not ctx.first_block
    return exp_c != ctx.in_c


def resolve(ctx: Context, row: InvertedResidualRow, stride: int, size) -> dict:
    exp_c = expand_ratio(ctx.in_c, row.t, ctx.conv.expansion_rounding)
    out_c = ctx.scale(row.c)
    return {
        "in_c": ctx.in_c,
        "exp_c": exp_c,
        "out_c": out_c,
        "kernel": row.k,
        "stride": stride,
        "dilation": 1,
        "pad": padding(ctx.conv.stride2_padding, row.k, stride, 1, size),
        "act": row.act,
        "se_c": 0,
        "expand": needs_expand(ctx, exp_c),
        "residual": stride == 1 and ctx.in_c == out_c,
    }


def expand(graph: Graph, x: str, p: dict, name: str, ctx: Context) -> str:
    shortcut = x
    if p["expand"]:
        x = conv_bn_act(
            graph,
            x,
            f"{name}.expand",
            out_c=p["exp_c"],
            kernel=1,
            stride=1,
            dilation=1,
            pad=(0, 0, 0, 0),
            act=p["act"],
            bn=ctx.bn,
        )
    x = conv_bn_act(
        graph,
        x,
        f"{name}.dw",
        out_c=p["exp_c"],
        kernel=p["kernel"],
        stride=p["stride"],
        dilation=p["dilation"],
        pad=p["pad"],
        act=p["act"],
        bn=ctx.bn,
        depthwise=True,
    )
    if p["se_c"]:
        x = squeeze_excite(graph, x, f"{name}.se", p["se_c"])
    x = conv_bn_act(
        graph,
        x,
        f"{name}.project",
        out_c=p["out_c"],
        kernel=1,
        stride=1,
        dilation=1,
        pad=(0, 0, 0, 0),
        act=None,
        bn=ctx.bn,
    )
    if p["residual"]:
        x = graph.add("add", [shortcut, x], f"{name}.add")
    return x
