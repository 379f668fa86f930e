"""The registry of layer units: kinds of convolution, of pooling and of attention
that blocks build with, one module each, each with a `UNIT` descriptor (what its IR
ops are, which template piece defines what generated code calls, which shared
helpers it needs).

This is the one list of layer units. Backends read which units a network uses off
the graph (`units_used`) and emit each unit's piece once
(`templates/<backend>/layers/<name>.py.j2`); the spec's `anti_aliasing:` values are
the names of the pooling units that can downsample after a convolution, and
`squeeze_excite.type:` names the attention built in place of squeeze-excite.
"""

from __future__ import annotations

from . import avg_pool, blur_pool, cond_conv, global_context, mixed_conv
from .base import LayerUnit, units_used

LAYER_UNITS: dict[str, LayerUnit] = {
    unit.name: unit
    for unit in (
        mixed_conv.UNIT,
        cond_conv.UNIT,
        avg_pool.UNIT,
        blur_pool.UNIT,
        global_context.UNIT,
    )
}
# The spec's `anti_aliasing:` value -> the pooling that downsamples in place of a
# strided convolution (timm's `aa_layer`: "avg", and "blurpc" under the name "blur").
ANTI_ALIASING: dict[str, LayerUnit] = {"avg": avg_pool.UNIT, "blur": blur_pool.UNIT}

# The spec's `squeeze_excite.type` values besides squeeze-excite itself
# (blocks.base.squeeze_excite) -> the attention unit built in its place.
SQUEEZE_EXCITE_UNITS: dict[str, LayerUnit] = {"global_context": global_context.UNIT}

__all__ = [
    "ANTI_ALIASING",
    "LAYER_UNITS",
    "SQUEEZE_EXCITE_UNITS",
    "LayerUnit",
    "units_used",
]
