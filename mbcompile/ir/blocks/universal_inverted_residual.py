"""universal inverted bottleneck (MobileNetV4's UIB): [k x k depthwise `start`] ->
1x1 expansion -> [k x k depthwise `k`] -> 1x1 linear projection -> [k x k depthwise
`end`] [x layer scale] [+ input].

Its forms are rows of this one block type, by which depthwise convs exist (the
MobileNetV4 paper's table gives "DW K1, DW K2"; timm's arch strings `a`, `k`, `p`):

| form                  | start | k   |
|-----------------------|-------|-----|
| ExtraDW               | k1    | k2  |
| inverted bottleneck   | 0     | k2  |
| ConvNext-like         | k1    | 0   |
| FFN                   | 0     | 0   |

The start and end depthwise convs have batch norm but no activation; the expansion
and the middle depthwise have both (timm's UniversalInvertedResidual).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, model_validator

from ...frontend.fields import (
    Activation,
    Channels,
    GroupSize,
    Positive,
    Repeats,
    RowModel,
    check,
    one_expansion,
)
from ...frontend.fields import Stride as StrideField
from ..graph import Graph
from . import base
from .base import BlockType, Context, Spatial


def _dw_kernel(v: int) -> int:
    check(
        v == 0 or (v % 2 == 1 and 1 <= v <= 11), "kernel must be 0 (none) or odd 1-11"
    )
    return v


DwKernel = Annotated[int, AfterValidator(_dw_kernel)]
PARTS = ("start", "mid", "end")


class UniversalInvertedResidualRow(RowModel):
    """MobileNetV4 row: depthwise kernels `start`, `k` (middle) and `end` (0 = none),
    expansion `t` (or `exp` channels), out channels, repeats, stride."""

    block: Literal["universal_inverted_residual"]
    """The row's block type; default: the spec's top-level `block`."""
    start: DwKernel = 0
    """Kernel of the depthwise convolution before the expansion (DW K1); 0: none.
    Batch norm, no activation."""
    k: DwKernel
    """Kernel of the middle depthwise convolution, after the expansion (DW K2); 0:
    none. Batch norm and activation."""
    end: DwKernel = 0
    """Kernel of the depthwise convolution after the projection; 0: none. Batch norm,
    no activation."""
    t: Positive | None = None
    """Expansion ratio: the expanded width is t × the input width, rounded by the
    conventions' `expansion_rounding`. Give `t` or `exp`."""
    exp: Channels | None = None
    """Expanded width in channels instead of a ratio, scaled by width as the
    conventions' `expanded_size` says. Give `t` or `exp`."""
    c: Channels
    """Output channels (before width_multiplier)."""
    n: Repeats = 1
    """How many blocks the row stands for; the first one strides, the others keep the
    size."""
    s: StrideField = 1
    """Stride of the row's first block: 1 or 2."""
    act: Activation = "relu"
    """Activation after the expansion and the middle depthwise convolution."""
    stride_on: Literal["start", "mid", "end"] | None = None
    """Which depthwise convolution strides: `start`, `mid` or `end`; none: the middle
    one, else the start, else the end one (timm's rule)."""
    layer_scale: Positive | None = None
    """Initial per-channel scale of the block's output (MobileNetV4 hybrids: 1e-5);
    none: no layer scale."""
    residual: bool = True
    """The shortcut (add the input) where stride 1 and widths allow; `false` drops
    it."""
    group_size: GroupSize | None = None
    """Channels per group of its depthwise convolutions; none: 1 (depthwise)."""

    @model_validator(mode="after")
    def _parts(self) -> UniversalInvertedResidualRow:
        one_expansion(self)
        kernels = {"start": self.start, "mid": self.k, "end": self.end}
        if self.stride_on is not None:
            check(
                kernels[self.stride_on] != 0,
                f"stride_on: {self.stride_on} names a depthwise conv the row does "
                "not have (its kernel is 0)",
            )
        check(
            self.s == 1 or any(kernels.values()),
            "a stride-2 row needs a depthwise conv (start, k or end)",
        )
        return self


@dataclass(frozen=True)
class Params:
    in_c: int
    exp_c: int
    out_c: int
    start: Spatial | None  # the depthwise convs that exist
    mid: Spatial | None
    end: Spatial | None
    group_size: int  # channels per group of the k x k convs: 1 is depthwise
    act: str
    layer_scale: float | None
    residual: bool
    drop_path: float  # stochastic depth of the residual branch


def resolve(
    ctx: Context, row: UniversalInvertedResidualRow, stride: int, size
) -> Params:
    kernels = {"start": row.start, "mid": row.k, "end": row.end}
    strided = row.stride_on or next(
        (part for part in ("mid", "start", "end") if kernels[part]), None
    )
    convs: dict[str, Spatial | None] = {}
    for part in PARTS:  # in order, each padded for the size it sees
        if not kernels[part]:
            convs[part] = None
            continue
        conv = base.spatial(
            ctx, kernels[part], stride if part == strided else 1, 1, size
        )
        convs[part] = conv
        size = base.output_size(conv, size)
    out_c = ctx.stage_width(row.c)
    residual, drop_path = base.shortcut(ctx, row, stride, out_c)
    return Params(
        in_c=ctx.in_c,
        exp_c=base.expanded(ctx, row.t, row.exp),
        out_c=out_c,
        **convs,
        group_size=base.group_size(ctx, row, 1),
        act=row.act,
        layer_scale=row.layer_scale,
        residual=residual,
        drop_path=drop_path,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    shortcut = x

    def depthwise(x: str, part: str, conv: Spatial, act: str | None) -> str:
        return base.depthwise(
            graph,
            x,
            f"{name}.dw_{part}",
            conv=conv,
            act=act,
            bn=ctx.bn(),
            group_size=p.group_size,
        )

    if p.start is not None:
        x = depthwise(x, "start", p.start, None)
    x = base.pointwise(graph, x, f"{name}.expand", p.exp_c, p.act, ctx.bn())
    if p.mid is not None:
        x = depthwise(x, "mid", p.mid, p.act)
    x = base.pointwise(graph, x, f"{name}.project", p.out_c, None, ctx.bn())
    if p.end is not None:
        x = depthwise(x, "end", p.end, None)
    if p.layer_scale is not None:
        x = base.layer_scale(graph, x, name, p.layer_scale)
    if p.residual:
        x = base.residual_add(graph, shortcut, x, name, p.drop_path)
    return x


BLOCK = BlockType(
    name="universal_inverted_residual",
    row=UniversalInvertedResidualRow,
    resolve=resolve,
    expand=expand,
    template="universal_inverted_residual",
    class_name="UniversalInvertedResidual",
    colour="#c9b3e6",
    helpers=frozenset({"conv_norm_act"}),
)
