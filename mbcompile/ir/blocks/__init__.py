"""The registry of block types: one module per block type, each with a `BLOCK`
descriptor (row model, typed parameters, resolve, expand, template, class name,
colour).

This is the one list of block types. The spec's union of row types, the JSON
schema, `all_rows`, reports, diagrams and both backends read it.
"""

from __future__ import annotations

from . import (
    bneck,
    classifier,
    cond_conv_residual,
    conv_bn_act,
    depthwise_separable,
    fused_inverted_residual,
    inverted_residual,
    mobile_attention,
    multi_scale_fusion,
    universal_inverted_residual,
)
from .base import BlockType

# Stage-table row types in the papers' order (V1, V2, V3, then later families);
# error messages list them in this order.
BLOCK_TYPES: dict[str, BlockType] = {
    module.BLOCK.name: module.BLOCK
    for module in (
        depthwise_separable,
        inverted_residual,
        bneck,
        fused_inverted_residual,
        universal_inverted_residual,
        mobile_attention,
        conv_bn_act,
        cond_conv_residual,
        multi_scale_fusion,
        classifier,
    )
}
# Block type -> the model of its stage-table rows.
ROW_MODELS = {name: t.row for name, t in BLOCK_TYPES.items() if t.row is not None}
ROW_TYPES = tuple(ROW_MODELS)
