"""MixConv (Tan & Le, 2019, "MixConv: Mixed Depthwise Convolutional Kernels"; timm's
MixedConv2d): one convolution split into channel groups, each convolved with its
own kernel, the outputs concatenated. MixNet mixes kernel sizes in its depthwise
convs (`k: [3, 5, 7]`) and splits its 1x1 expansions and projections into groups
(`expand_k: [1, 1]`, `project_k: [1, 1]`; timm's `a1.1`, `p1.1`).

Input and output channels split by timm's rule (`split_channels`). In the IR a mixed
conv is a `slice` per group, that group's ordinary conv (or depthwise conv, padded
for its own kernel) and one `concat`, so every group's weights are an ordinary op's:
costs, weight layouts and porting need nothing new. Its batch norm, after the
concat, folds into the groups' convs, each taking its channels' share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import LayerUnit, Spatial

if TYPE_CHECKING:
    from ..graph import Graph


def split_channels(channels: int, groups: int) -> tuple[int, ...]:
    """timm's `_split_channels`: equal shares, the first group taking the remainder
    (64 over 3 groups: 22, 21, 21)."""
    split = [channels // groups] * groups
    split[0] += channels - sum(split)
    return tuple(split)


@dataclass(frozen=True)
class Mixed:
    """A mixed convolution: one `Spatial` per channel group (its kernel and the
    padding it needs; all groups share stride and dilation), and the
    anti-aliasing pooling after it, if any (as `Spatial.pool`)."""

    convs: tuple[Spatial, ...]
    pool: str | None = None

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(conv.kernel for conv in self.convs)

    @property
    def stride(self) -> int:
        return self.convs[0].stride

    @property
    def dilation(self) -> int:
        return self.convs[0].dilation


def add(
    graph: Graph,
    x: str,
    name: str,
    conv: Mixed,
    *,
    out_c: int,
    depthwise: bool,
    single: Callable[..., str],
) -> str:
    """The ops of a mixed conv on `x`: slices, one conv per group (`single` adds a
    padded conv, as blocks.base does), a concat. Returns the concat."""
    count = len(conv.convs)
    ins = split_channels(graph.shape(x)[0], count)
    outs = split_channels(out_c, count)
    parts, start = [], 0
    for i, (group, in_c, group_out) in enumerate(
        zip(conv.convs, ins, outs, strict=True)
    ):
        part = graph.add(
            "slice", [x], f"{name}.split.{i}", start=start, size=in_c, unit=UNIT.name
        )
        start += in_c
        mark = {"unit": UNIT.name, "part": (i, count)}
        parts.append(
            single(graph, part, name, group_out, group, depthwise, f".{i}", mark)
        )
    return graph.add("concat", parts, f"{name}.concat", unit=UNIT.name)


UNIT = LayerUnit(name="mixed_conv", helpers=frozenset({"timm_layers", "keras_ops"}))
