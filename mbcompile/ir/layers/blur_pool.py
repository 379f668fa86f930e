"""Anti-aliased downsampling by blurring (`anti_aliasing: blur`; timm's
`aa_layer="blurpc"`, BlurPool2d with constant padding): a strided convolution runs
at stride 1, and after its batch norm and activation each channel is blurred by the
3x3 binomial filter [1, 2, 1] x [1, 2, 1] / 16 at stride 2, zero-padded by 1
(Zhang, 2019, "Making Convolutional Networks Shift-Invariant Again"). The filter is
fixed: no weights. Its 9 multiply-accumulates per output element are MACs (it is a
depthwise convolution)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LayerUnit

if TYPE_CHECKING:
    from ..graph import Graph


def add(graph: Graph, x: str, name: str) -> str:
    return graph.add("blurpool", [x], name, unit=UNIT.name)


UNIT = LayerUnit(
    name="blur_pool",
    helpers=frozenset({"keras_ops"}),
    add=add,
    output_size=lambda size: ((size[0] - 1) // 2 + 1, (size[1] - 1) // 2 + 1),
)
