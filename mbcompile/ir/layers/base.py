"""What every layer unit shares: the descriptor a unit module registers, and how a
graph says which units it uses (the `unit` attribute of the ops a unit adds)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..graph import Graph


@dataclass(frozen=True)
class LayerUnit:
    """A kind of convolution, pooling or attention, registered in
    `mbcompile.ir.layers`."""

    name: str  # the `unit` attribute of its ops; templates/<backend>/layers/<name>
    # Shared helpers its template pieces call besides their own (see
    # blocks.base.HELPERS).
    helpers: frozenset[str] = frozenset()
    # Poolings that downsample after a convolution (`anti_aliasing`): the op they
    # add, (graph, x, name) -> output node, and the (height, width) they produce.
    add: Callable[..., str] | None = None
    output_size: Callable[[tuple[int, int]], tuple[int, int]] | None = None
    # Attention built where rows say `se`, in place of squeeze-excite (the spec's
    # `squeeze_excite.type`): (graph, x, name, SqueezeExcite) -> output node.
    excite: Callable[..., str] | None = None
    # Its own rounding of the squeeze width (se_ratio times a width) to channels, in
    # place of the conventions' `se_rounding`.
    width: Callable[[float], int] | None = None


# The attributes of a 1x1 convolution with bias that is not a block's (the fc layers
# of squeeze-excite and Global Context, its attention logits).
FC = {
    "kernel": 1,
    "stride": 1,
    "dilation": 1,
    "padding": (0, 0),
    "groups": 1,
    "bias": True,
}


def units_used(graph: Graph) -> list[str]:
    """The layer units whose ops the graph holds, in the order they first appear."""
    found = (graph.node(n)["attrs"].get("unit") for n in graph.order)
    return list(dict.fromkeys(name for name in found if name))


def padded(
    graph: Graph, x: str, name: str, pad: tuple[int, int, int, int]
) -> tuple[str, tuple[int, int]]:
    """`x` ready for a convolution padded by (top, bottom, left, right) `pad`: an
    explicit `pad` op `name` where the sides differ (TensorFlow's SAME at stride
    2), then the padding the convolution applies itself, (rows, columns)."""
    top, bottom, left, right = pad
    if top == bottom == left == right:
        return x, (top, top)
    return graph.add("pad", [x], name, pad=pad), (0, 0)


# The descriptions the block types and the units share (re-exported by blocks.base).


@dataclass(frozen=True)
class Spatial:
    """One k x k convolution: kernel, the stride it applies, its dilation and its
    explicit (top, bottom, left, right) padding; and the anti-aliasing pooling
    (`anti_aliasing`) that downsamples after it, its batch norm and activation
    where it would have strided (it then runs at stride 1)."""

    kernel: int
    stride: int
    dilation: int
    pad: tuple[int, int, int, int]
    pool: str | None = None

    @property
    def centred(self) -> bool:
        """Padded as the frameworks pad by themselves: (k - 1) // 2 * d each side."""
        same = self.dilation * (self.kernel - 1) // 2
        return self.pad == (same, same, same, same)


@dataclass(frozen=True)
class SqueezeExcite:
    """x * gate(fc2(act(fc1(avgpool(x))))), with `squeeze_c` channels inside; or,
    where `unit` names one, the attention built in its place with that width,
    activation and gate (`global_context`: see `mbcompile.ir.layers`)."""

    squeeze_c: int
    act: str = "relu"
    gate: str = "hardsigmoid"
    unit: str | None = None
