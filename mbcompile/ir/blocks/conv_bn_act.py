"""conv-bn-act: a full convolution, batch norm and activation (stem, head, plain
stage-table rows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...frontend.fields import Activation, Channels, Dilation, Kernel, Repeats, RowModel
from ...frontend.fields import Stride as StrideField
from ..graph import Graph
from . import base
from .base import BlockType, Context, Spatial


class ConvBnActRow(RowModel):
    """A plain stage: k x k conv (no bias), batch norm, activation; n times."""

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


@dataclass(frozen=True)
class Params:
    in_c: int
    out_c: int
    conv: Spatial
    act: str | None


def params(ctx: Context, *, out_c: int, conv: Spatial, act: str | None) -> Params:
    """The stem and the head's 1x1 convolution are built from these directly."""
    return Params(in_c=ctx.in_c, out_c=out_c, conv=conv, act=act)


def resolve(ctx: Context, row: ConvBnActRow, stride: int, size) -> Params:
    conv = base.spatial(ctx, row.k, stride, row.dilation, size)
    return params(ctx, out_c=ctx.scale(row.c, stage=True), conv=conv, act=row.act)


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    return base.conv_bn_act(
        graph, x, name, out_c=p.out_c, conv=p.conv, act=p.act, bn=ctx.bn()
    )


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
