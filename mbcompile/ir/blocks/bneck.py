"""bneck (MobileNet V3 bottleneck): an inverted residual written as the V3 paper's
table does — kernel, absolute expanded size, out channels, SE, activation, stride.

Only the row differs from inverted_residual.py: the parameters, the ops and the
generated helper are that block type's.
"""

from __future__ import annotations

from typing import Literal

from ...frontend.fields import (
    Activation,
    Channels,
    Dilation,
    GroupSize,
    Kernel,
    Repeats,
    RowModel,
    SeRatio,
)
from ...frontend.fields import Stride as StrideField
from . import base, inverted_residual
from .base import BlockType, Context


class BneckRow(RowModel):
    """MobileNet V3 row: kernel, expanded size, out channels, SE, activation, stride."""

    block: Literal["bneck"]
    """The row's block type; default: the spec's top-level `block`."""
    k: Kernel
    """Kernel size of the depthwise convolution (the paper's table: kernel)."""
    exp: Channels
    """Expanded width in channels (exp size), scaled as the conventions'
    `expanded_size` says."""
    c: Channels
    """Output channels (#out), before width_multiplier."""
    se: bool
    """Squeeze-excite (SE) after the depthwise convolution."""
    act: Activation
    """Activation (NL) after the expansion and the depthwise convolution."""
    s: StrideField
    """Stride of the row's first block: 1 or 2."""
    n: Repeats = 1
    """How many blocks the row stands for; the first one strides, the others keep the
    size."""
    se_ratio: SeRatio = 0.25
    """Squeeze width as this ratio of the width `squeeze_excite.width_from` names
    (0–1)."""
    se_c: Channels | None = None
    """Squeeze width in channels, instead of `se_ratio` (not width-scaled nor rounded:
    timm's pruned models give every block's)."""
    dilation: Dilation = 1
    """Dilation of the spatial convolution (1–16; needs `s: 1`)."""
    residual: bool = True
    """The shortcut (add the input) where stride 1 and widths allow; `false` drops
    it."""
    expand: bool | None = None
    """Whether the 1×1 expansion exists; none: the conventions' `expand_conv`
    decides."""
    group_size: GroupSize | None = None
    """Channels per group of the depthwise convolution; none: 1 (depthwise)."""


def resolve(ctx: Context, row: BneckRow, stride: int, size) -> inverted_residual.Params:
    exp_c = base.expanded(ctx, None, row.exp)
    return inverted_residual.resolve_expanded(
        ctx, row, stride, size, exp_c, exp_c != ctx.in_c
    )


BLOCK = BlockType(
    name="bneck",
    row=BneckRow,
    resolve=resolve,
    expand=inverted_residual.expand,
    template=inverted_residual.BLOCK.template,
    class_name=inverted_residual.BLOCK.class_name,
    colour="#b5e3c9",
)
