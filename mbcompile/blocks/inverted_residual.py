"""inverted residual (MobileNet V2): 1x1 expand, depthwise k x k, 1x1 linear project.

The expansion is a ratio `t` of the input channels. `expand` here is shared with the
V3 bottleneck (bneck), which adds an optional squeeze-excite after the depthwise conv.
"""

from __future__ import annotations

from ..ir import Graph
from ..spec import InvertedResidualRow
from . import options
from .common import Context, conv_bn_act, padding, pointwise, squeeze_excite

NAME = "inverted_residual"


def needs_expand(ctx: Context, changes_width: bool) -> bool:
    """Whether the block has a 1x1 expand conv (see `Conventions.expand_conv`)."""
    if ctx.conv.expand_conv == "except_first":
        return not ctx.first_block
    return changes_width


def resolve(ctx: Context, row: InvertedResidualRow, stride: int, size) -> dict:
    exp_c = options.expanded(ctx, row.t, row.exp)
    # torchvision tests the ratio, not the rounded width: `expand_ratio != 1`
    changes_width = row.t != 1 if row.t is not None else exp_c != ctx.in_c
    return resolve_expanded(ctx, row, stride, size, exp_c, changes_width)


def resolve_expanded(
    ctx: Context, row, stride: int, size, exp_c: int, changes_width: bool
) -> dict:
    """Parameters of an inverted residual (or bneck) row whose expansion is known."""
    out_c = ctx.scale(row.c, stage=True)
    conv_stride, dilation = options.atrous(ctx, stride, row.dilation)
    expand_conv = needs_expand(ctx, changes_width)
    if not expand_conv:
        exp_c = ctx.in_c  # no layer changes the width: the depthwise sees the input
    return {
        "in_c": ctx.in_c,
        "exp_c": exp_c,
        "out_c": out_c,
        "kernel": row.k,
        "stride": conv_stride,
        "dilation": dilation,
        "pad": padding(ctx.conv.stride2_padding, row.k, conv_stride, dilation, size),
        "act": row.act,
        "se_c": options.squeeze(ctx, row.se, exp_c, row.se_ratio),
        "expand": expand_conv,
        "residual": options.residual(row, stride, ctx.in_c, out_c),
    }


def expand(graph: Graph, x: str, p: dict, name: str, ctx: Context) -> str:
    shortcut = x
    if p["expand"]:
        x = pointwise(graph, x, f"{name}.expand", p["exp_c"], p["act"], ctx.bn)
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
    x = pointwise(graph, x, f"{name}.project", p["out_c"], None, ctx.bn)
    if p["residual"]:
        x = graph.add("add", [shortcut, x], f"{name}.add")
    return x
