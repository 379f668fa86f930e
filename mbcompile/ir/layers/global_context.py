"""Global Context attention (Cao et al., 2019, "GCNet: Non-local Networks Meet
Squeeze-Excitation Networks and Beyond"; timm's GlobalContext with its defaults:
attention pooling, a scaling MLP, no additive one), built where rows say `se` when
the spec's `squeeze_excite.type` is `global_context` (timm's `se_layer="gc"`:
gc_efficientnetv2_rw_t).

On a map x of C channels it computes
- `conv_attn`: a 1x1 conv with bias to one channel, the attention logits;
- `attn_pool`: their softmax over the H x W positions weighting x, summed: the
  context (C, 1, 1) (an `attention_pool` op: C x H x W MACs, the softmax H x W
  activation operations);
- `mlp_scale`: fc1 (1x1 conv with bias, C -> squeeze width: the row's `se_ratio`
  of the width `squeeze_excite.width_from` names, rounded half up to a whole
  channel as timm's GlobalContext does, whatever `se_rounding` says), a layer norm over
  those channels (epsilon 1e-6, timm's LayerNorm2d), the activation, fc2 (1x1 conv
  with bias, back to C);
- x * gate(mlp_scale(context)).

Its ops are named as timm's module attributes (`se.conv_attn`,
`se.mlp_scale.fc1`, `se.mlp_scale.norm`, `se.mlp_scale.fc2`), which both backends'
names follow. Its layer norm is not a batch norm: `--fold-bn` keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import FC, LayerUnit, SqueezeExcite

if TYPE_CHECKING:
    from ..graph import Graph

# timm's LayerNorm2d default, which GlobalContext's ConvMlp uses.
EPSILON = 1e-6


def excite(graph: Graph, x: str, name: str, se: SqueezeExcite) -> str:
    """x * gate(fc2(act(norm(fc1(context))))), the context x pooled by the softmax
    of conv_attn(x) over its positions."""
    channels, width = graph.shape(x)[0], se.squeeze_c
    unit = {"unit": UNIT.name}
    logits = graph.add(
        "conv", [x], f"{name}.conv_attn", in_c=channels, out_c=1, **FC, **unit
    )
    s = graph.add("attention_pool", [x, logits], f"{name}.attn_pool", **unit)
    mlp = f"{name}.mlp_scale"
    s = graph.add("conv", [s], f"{mlp}.fc1", in_c=channels, out_c=width, **FC, **unit)
    s = graph.add("layer_norm", [s], f"{mlp}.norm", channels=width, eps=EPSILON, **unit)
    s = graph.add("act", [s], f"{mlp}.act", fn=se.act, **unit)
    s = graph.add("conv", [s], f"{mlp}.fc2", in_c=width, out_c=channels, **FC, **unit)
    s = graph.add("act", [s], f"{name}.gate", fn=se.gate, **unit)
    return graph.add("mul", [x, s], f"{name}.mul")


def width(value: float) -> int:
    """Its squeeze width from se_ratio times a width: rounded half up to a whole
    channel, whatever the conventions' `se_rounding` (timm's GlobalContext:
    make_divisible(value, 1, round_limit=0))."""
    return max(1, int(value + 0.5))


UNIT = LayerUnit(
    name="global_context",
    helpers=frozenset({"keras_ops"}),
    excite=excite,
    width=width,
)
