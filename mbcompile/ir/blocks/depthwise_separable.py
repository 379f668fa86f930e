"""depthwise-separable (MobileNet V1): depthwise k x k + BN + act, pointwise 1x1 +
BN + act."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...frontend.fields import Activation, Channels, Dilation, Kernel, Repeats, RowModel
from ...frontend.fields import Stride as StrideField
from ..graph import Graph
from . import base
from .base import BlockType, Context, Spatial


class DepthwiseSeparableRow(RowModel):
    """MobileNet V1 row: depthwise k x k (+BN+act), then pointwise 1x1 to c (+BN+act)."""

    block: Literal["depthwise_separable"]
    c: Channels
    n: Repeats = 1
    s: StrideField = 1
    k: Kernel = 3
    act: Activation = "relu6"
    dilation: Dilation = 1


@dataclass(frozen=True)
class Params:
    in_c: int
    out_c: int
    dw: Spatial
    multiplier: int  # depthwise channel multiplier (V1's depth_multiplier)
    act: str


def resolve(ctx: Context, row: DepthwiseSeparableRow, stride: int, size) -> Params:
    return Params(
        in_c=ctx.in_c,
        out_c=ctx.scale(row.c, stage=True),
        dw=base.spatial(ctx, row.k, stride, row.dilation, size),
        multiplier=ctx.spec.depth_multiplier,
        act=row.act,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    x = base.conv_bn_act(
        graph,
        x,
        f"{name}.dw",
        out_c=p.in_c * p.multiplier,
        conv=p.dw,
        act=p.act,
        bn=ctx.bn(),
        depthwise=True,
        multiplier=p.multiplier,
    )
    return base.pointwise(graph, x, f"{name}.pw", p.out_c, p.act, ctx.bn())


BLOCK = BlockType(
    name="depthwise_separable",
    row=DepthwiseSeparableRow,
    resolve=resolve,
    expand=expand,
    template="depthwise_separable",
    class_name="DepthwiseSeparable",
    colour="#a6d4f2",
)
