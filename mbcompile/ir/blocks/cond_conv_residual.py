"""CondConv inverted residual (timm's CondConvResidual, its `ir_..._cc4` rows):
an inverted residual whose three convolutions are CondConvs, all routed by one
vector computed from the block's input: r = sigmoid(fc(avgpool(x))); then 1x1
expand -> depthwise k x k -> [squeeze-excite] -> 1x1 linear projection [+ input].

Each CondConv mixes `experts` kernels per sample (see ir/layers/cond_conv.py;
`experts_multiplier` scales every row's experts, as timm's does). The expansion
always exists, as timm builds it. Batch norms after CondConvs are kept under
`fold_batch_norm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ...frontend.fields import (
    Activation,
    Channels,
    Dilation,
    Kernel,
    Positive,
    Repeats,
    RowModel,
    SeRatio,
    one_expansion,
)
from ...frontend.fields import Stride as StrideField
from ..graph import Graph, IRError
from ..layers import cond_conv
from . import base
from .base import POINTWISE, BlockType, Context, Spatial, SqueezeExcite


class CondConvResidualRow(RowModel):
    """An inverted residual row (t or exp, c, n, s, k) whose convolutions mix
    `experts` kernels per sample (timm's `cc<experts>`)."""

    block: Literal["cond_conv_residual"]
    """The row's block type; default: the spec's top-level `block`."""
    experts: Annotated[int, Field(ge=1, le=64)]
    """Kernels each of the block's three convolutions mixes per sample (1–64; times
    the spec's `experts_multiplier`; timm's `cc4` is 4)."""
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
    k: Kernel = 3
    """Kernel size of the depthwise convolution (odd, 1–11)."""
    act: Activation = "relu6"
    """Activation after the expansion and the depthwise convolution; the projection
    is linear."""
    se: bool = False
    """Squeeze-excite after the depthwise convolution; how it is built is the spec's
    `squeeze_excite`."""
    se_ratio: SeRatio = 0.25
    """Squeeze width as this ratio of the width `squeeze_excite.width_from` names
    (0–1)."""
    dilation: Dilation = 1
    """Dilation of the depthwise convolution (1–16; needs `s: 1`)."""
    residual: bool = True
    """The shortcut (add the input) where stride 1 and widths allow; `false` drops
    it."""

    @model_validator(mode="after")
    def _expansion(self) -> CondConvResidualRow:
        one_expansion(self)
        return self


@dataclass(frozen=True)
class Params:
    in_c: int
    exp_c: int
    out_c: int
    experts: int  # the row's, times the spec's experts_multiplier
    dw: Spatial
    act: str
    se: SqueezeExcite | None
    residual: bool
    drop_path: float  # stochastic depth of the residual branch


def resolve(ctx: Context, row: CondConvResidualRow, stride: int, size) -> Params:
    exp_c = base.expanded(ctx, row.t, row.exp)
    out_c = ctx.stage_width(row.c)
    dw = base.spatial(ctx, row.k, stride, row.dilation, size)
    if dw.pool is not None:
        raise IRError(
            "a cond_conv_residual row cannot downsample by anti_aliasing (timm's "
            "CondConvResidual does not run its anti-aliasing layer)"
        )
    residual, drop_path = base.shortcut(ctx, row, stride, out_c)
    return Params(
        in_c=ctx.in_c,
        exp_c=exp_c,
        out_c=out_c,
        experts=row.experts * ctx.spec.experts_multiplier,
        dw=dw,
        act=row.act,
        se=base.squeeze(ctx, row, exp_c, row.t),
        residual=residual,
        drop_path=drop_path,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    shortcut = x
    r = cond_conv.routing(graph, x, f"{name}.routing", p.experts)

    def conv(x: str, part: str, out_c: int, act: str | None, dw: bool = False) -> str:
        x = cond_conv.add(
            graph,
            x,
            r,
            f"{name}.{part}",
            out_c=out_c,
            conv=p.dw if dw else POINTWISE,
            depthwise=dw,
            experts=p.experts,
        )
        bn = ctx.bn(foldable=False)  # see ir/layers/cond_conv.py
        return base.norm_act(graph, x, f"{name}.{part}", bn, act)

    x = conv(x, "expand", p.exp_c, p.act)
    x = conv(x, "dw", p.exp_c, p.act, dw=True)
    if p.se is not None:
        x = base.squeeze_excite(graph, x, f"{name}.se", p.se)
    x = conv(x, "project", p.out_c, None)
    if p.residual:
        x = base.residual_add(graph, shortcut, x, name, p.drop_path)
    return x


BLOCK = BlockType(
    name="cond_conv_residual",
    row=CondConvResidualRow,
    resolve=resolve,
    expand=expand,
    template="cond_conv_residual",
    class_name="CondConvResidual",
    colour="#9fd9d0",
    helpers=frozenset({"timm_layers", "cond_conv_init"}),
)
