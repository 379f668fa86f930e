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
    k: Kernel
    exp: Channels
    c: Channels
    se: bool
    act: Activation
    s: StrideField
    n: Repeats = 1
    se_ratio: SeRatio = 0.25
    dilation: Dilation = 1
    residual: bool = True
    expand: bool | None = None  # the 1x1 expansion exists (default: conventions)


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
