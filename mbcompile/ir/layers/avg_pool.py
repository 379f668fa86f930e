"""Anti-aliased downsampling by average pooling (`anti_aliasing: avg`, timm's
`aa_layer="avg"`): a strided convolution runs at stride 1 and a 2x2 average pool of
stride 2 (no padding: odd sizes round down) downsamples after its batch norm and
activation (timm's nn.AvgPool2d(2))."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LayerUnit

if TYPE_CHECKING:
    from ..graph import Graph


def add(graph: Graph, x: str, name: str) -> str:
    return graph.add("avgpool", [x], name, size=2, unit=UNIT.name)


UNIT = LayerUnit(
    name="avg_pool",
    add=add,
    output_size=lambda size: (size[0] // 2, size[1] // 2),
)
