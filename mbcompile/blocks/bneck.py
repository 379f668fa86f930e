"""bneck (MobileNet V3 bottleneck): an inverted residual with an absolute expanded
size, a per-row kernel and activation, and an optional squeeze-excite."""

from __future__ import annotations

from ..spec import BneckRow
from . import inverted_residual, options
from .common import Context

NAME = "bneck"


def resolve(ctx: Context, row: BneckRow, stride: int, size) -> dict:
    exp_c = options.expanded(ctx, None, row.exp)
    return inverted_residual.resolve_expanded(
        ctx, row, stride, size, exp_c, exp_c != ctx.in_c
    )


expand = inverted_residual.expand
