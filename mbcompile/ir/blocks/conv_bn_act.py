"""conv-bn-act: a full convolution, batch norm and activation (stem, head, plain
stage-table rows), the input added where a row asks for it (timm's ConvBnAct, its
`cn` rows; with `skip`: EfficientNetV2's first stage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...frontend.fields import (
    Activation,
    Channels,
    Dilation,
    GroupSize,
    Kernel,
    Repeats,
    RowModel,
)
from ...frontend.fields import Stride as StrideField
from ..graph import Graph
from . import base
from .base import BlockType, Context, Spatial


class ConvBnActRow(RowModel):
    """A plain stage: k x k conv (no bias), batch norm, activation; n times. With
    `residual: true` each block adds its input where stride 1 and widths allow."""

    block: Literal["conv_bn_act"]
    """The row's block type; default: the spec's top-level `block`."""
    c: Channels
    """Output channels (before width_multiplier)."""
    n: Repeats = 1
    """How many blocks the row stands for; the first one strides, the others keep the
    size."""
    s: StrideField = 1
    """Stride of the row's first block: 1 or 2."""
    k: Kernel = 3
    """Kernel size (odd, 1–11)."""
    act: Activation = "relu6"
    """Activation after batch norm."""
    dilation: Dilation = 1
    """Dilation of the spatial convolution (1–16; needs `s: 1`)."""
    group_size: GroupSize | None = None
    """Channels per group of the convolution, counted on its input (timm's
    ConvBnAct); none: one group."""
    residual: bool = False
    """`true`: each block adds its input where stride 1 and widths allow (timm's
    `cn` rows with `skip`: EfficientNetV2's first stage)."""


@dataclass(frozen=True)
class Params:
    in_c: int
    out_c: int
    conv: Spatial
    act: str | None
    groups: int = 1  # of the conv: in_c / group_size, as timm's ConvBnAct counts
    residual: bool = False
    drop_path: float = 0.0  # stochastic depth of the residual branch
    bias: bool = False  # the conv's own bias, before the norm (MobileNetV5's stem)


def params(
    ctx: Context,
    *,
    out_c: int,
    conv: Spatial,
    act: str | None,
    groups: int = 1,
    bias: bool = False,
) -> Params:
    """The stem and the head's 1x1 convolution are built from these directly."""
    return Params(
        in_c=ctx.in_c, out_c=out_c, conv=conv, act=act, groups=groups, bias=bias
    )


def resolve(ctx: Context, row: ConvBnActRow, stride: int, size) -> Params:
    conv = base.spatial(ctx, row.k, stride, row.dilation, size)
    groups = base.groups(ctx.in_c, base.group_size(ctx, row, None), ctx.block_name)
    out_c = ctx.stage_width(row.c)
    residual, drop_path = base.shortcut(ctx, row, stride, out_c)
    return Params(ctx.in_c, out_c, conv, row.act, groups, residual, drop_path)


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    shortcut = x
    x = base.conv_bn_act(
        graph,
        x,
        name,
        out_c=p.out_c,
        conv=p.conv,
        act=p.act,
        bn=ctx.bn(),
        groups=p.groups,
        bias=True if p.bias else None,  # else: as the norm decides (folded: one)
    )
    if p.residual:
        x = base.residual_add(graph, shortcut, x, name, p.drop_path)
    return x


BLOCK = BlockType(
    name="conv_bn_act",
    row=ConvBnActRow,
    resolve=resolve,
    expand=expand,
    template="conv_bn_act",
    class_name="ConvBNAct",
    colour="#d9d9d9",
    folded_class_name="ConvAct",
    named_by_call=True,
)
