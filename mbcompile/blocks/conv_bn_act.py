"""conv-bn-act: a full convolution, batch norm and activation (stem, head, plain stages)."""

from __future__ import annotations

from ..ir import Graph
from .common import Context, conv_bn_act, padding

NAME = "conv_bn_act"


def resolve(
    ctx: Context, *, out_c: int, kernel: int, stride: int, act: str, rule: str, size
) -> dict:
    pad = padding(rule, kernel, stride, 1, size)
    return {
        "in_c": ctx.in_c,
        "out_c": out_c,
        "kernel": kernel,
        "stride": stride,
        "dilation": 1,
        "pad": pad,
        "act": act,
    }


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
