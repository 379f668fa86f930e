"""conv-bn-act: a full convolution, batch norm and activation (stem, head, plain stages)."""

from __future__ import annotations

from ..ir import Graph
from ..spec import ConvBnActRow
from . import options
from .common import Context, conv_bn_act, padding

NAME = "conv_bn_act"


def resolve(
    ctx: Context,
    *,
    out_c: int,
    kernel: int,
    stride: int,
    act: str,
    rule: str,
    size,
    dilation: int = 1,
) -> dict:
    pad = padding(rule, kernel, stride, dilation, size)
    return {
        "in_c": ctx.in_c,
        "out_c": out_c,
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "pad": pad,
        "act": act,
    }


def resolve_row(ctx: Context, row: ConvBnActRow, stride: int, size) -> dict:
    """A `conv_bn_act` stage-table row (the stem and head call `resolve` directly)."""
    stride, dilation = options.atrous(ctx, stride, row.dilation)
    return resolve(
        ctx,
        out_c=ctx.scale(row.c, stage=True),
        kernel=row.k,
        stride=stride,
        act=row.act,
        rule=ctx.conv.stride2_padding,
        size=size,
        dilation=dilation,
    )


def expand(graph: Graph, x: str, p: dict, name: str, ctx: Context) -> str:
    return conv_bn_act(
        graph,
        x,
        name,
        out_c=p["out_c"],
        kernel=p["kernel"],
        stride=p["stride"],
        dilation=p["dilation"],
        pad=p["pad"],
        act=p["act"],
        bn=ctx.bn,
    )
