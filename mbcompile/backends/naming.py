"""Names as data: the layer names and module attributes each reference library
uses, one table per conventions profile. Templates read them and spell no name of
their own.

- Keras layer names are the contract keras.applications' weight files load by
  (legacy `.h5` files by name): its names per family, under the torchvision and
  keras_applications profiles alike. Under timm's profile the Keras names follow
  timm's state_dict keys (`blocks.1.0.conv_pw` -> `blocks_1_0_conv_pw`).
- PyTorch attributes make the state_dict keys: torchvision's `features` /
  `classifier` layout for V2 and V3 (V1, which torchvision lacks, in the same
  style), or timm's `conv_stem` / `blocks.<stage>.<block>` / `conv_head` layout.

A Keras table maps a block type's template to its layers' names, keyed by the IR
op each layer computes (the op's path inside the block: `expand.conv`, `se.fc1`,
`add`). Names are f-string bodies over the generated helper's `{block_id}` and
`{prefix}` (the table's "prefix", "first_prefix" for block 0). The groups of a
mixed conv (`dw.conv.0`, `dw.conv.1`, ...) are the conv's name with `_0`, `_1`, ...
(timm's `conv_dw.0`, `conv_dw.1`). What a table leaves
out is named after the IR, in keras.applications' style: `{prefix}` + the op's path
with dots as underscores and without a final `.conv` (`{prefix}expand`,
`{prefix}expand_bn`), under the prefix `<template>_<block_id>_` — so a block type no
reference library names needs no entry here. Weights move between the frameworks by these names.
"""

from __future__ import annotations

from typing import Any

from ..frontend.conventions import Conventions

# The squeeze-excite inside a block, after the block's "se" name (`{name}`).
_KERAS_SQUEEZE_EXCITE = {
    "pool": "{name}avg_pool",
    "fc1": "{name}conv",
    "relu": "{name}{act}",
    "fc2": "{name}conv_1",
    "gate": "{name}{gate}",
    "mul": "{name}mul",
}
# Inverted residuals, as keras.applications' MobileNetV2 names them; V3 differs in
# the prefix, "bn" for "BN" and the depthwise pad's name.
_KERAS_V2_INVERTED_RESIDUAL = {
    "prefix": "block_{block_id}_",
    "first_prefix": "expanded_conv_",  # block 0
    "expand.conv": "{prefix}expand",
    "expand.bn": "{prefix}expand_BN",
    "dw.pad": "{prefix}pad",
    "dw.conv": "{prefix}depthwise",
    "dw.bn": "{prefix}depthwise_BN",
    "se": "{prefix}squeeze_excite_",
    "project.conv": "{prefix}project",
    "project.bn": "{prefix}project_BN",
}
# Layers keras.applications has no counterpart for, named in its style.
_KERAS_EXTRAS: dict[str, Any] = {
    "block_id_type": "int",
    "squeeze_excite": _KERAS_SQUEEZE_EXCITE,
    "conv_bn_act": {"conv": "block_{block_id}_conv", "bn": "block_{block_id}_bn"},
    "fused_inverted_residual": {"prefix": "fused_{block_id}_"},
    "universal_inverted_residual": {"prefix": "uib_{block_id}_"},
    "mobile_attention": {"prefix": "mqa_{block_id}_"},
    "multi_scale_fusion": {"prefix": "msfa_"},
    "depthwise_separable": {  # MobileNet V1's names
        "prefix": "conv_{block_id}_",
        "dw.pad": "conv_pad_{block_id}",
        "dw.conv": "conv_dw_{block_id}",
        "dw.bn": "conv_dw_{block_id}_bn",
        "se": "{prefix}squeeze_excite_",
        "pw.conv": "conv_pw_{block_id}",
        "pw.bn": "conv_pw_{block_id}_bn",
    },
    "inverted_residual": _KERAS_V2_INVERTED_RESIDUAL,
}

KERAS_APPLICATIONS: dict[str, dict[str, Any]] = {
    "v1": {
        "stem": ("conv1", "conv1_bn"),
        "head": ("conv_1", "conv_1_bn"),
        "hidden": ("fc", "fc_bn"),
        "logits": "conv_preds",
        "first_block_id": 1,
    },
    "v2": {
        "stem": ("Conv1", "bn_Conv1"),
        "head": ("Conv_1", "Conv_1_bn"),
        "hidden": ("fc", "fc_bn"),
        "logits": "predictions",
        "first_block_id": 0,
    },
    "default": {  # V3, and later families in its style
        "stem": ("conv", "conv_bn"),
        "head": ("conv_1", "conv_1_bn"),
        "hidden": ("conv_2", "conv_2_bn"),
        "logits": "logits",
        "first_block_id": 0,
        "inverted_residual": {
            **_KERAS_V2_INVERTED_RESIDUAL,
            "prefix": "expanded_conv_{block_id}_",
            "expand.bn": "{prefix}expand_bn",
            "dw.pad": "{prefix}depthwise_pad",
            "dw.bn": "{prefix}depthwise_bn",
            "project.bn": "{prefix}project_bn",
        },
    },
}

# timm: blocks.<stage>.<block>.<attribute>, its attribute names per block class
# (timm/models/_efficientnet_blocks.py).
_TIMM_BLOCK = {"prefix": "blocks_{block_id}_"}
TIMM_KERAS: dict[str, Any] = {
    "stem": ("conv_stem", "bn1"),
    "head": ("conv_head", "bn2"),  # before pooling (EfficientNet)
    "hidden": ("conv_head", "norm_head"),  # after pooling (MobileNetV3, V4)
    "logits": "classifier",
    "first_block_id": 0,
    "block_id_type": "str",  # "<stage>_<block>"
    "squeeze_excite": {
        "pool": "{name}pool",
        "fc1": "{name}conv_reduce",
        "relu": "{name}act1",
        "fc2": "{name}conv_expand",
        "gate": "{name}gate",
    },
    "conv_bn_act": {"conv": "blocks_{block_id}_conv", "bn": "blocks_{block_id}_bn1"},
    "depthwise_separable": {
        **_TIMM_BLOCK,
        "s2d.pad": "{prefix}conv_s2d_pad",
        "s2d.conv": "{prefix}conv_s2d",
        "s2d.bn": "{prefix}bn_s2d",
        "dw.pad": "{prefix}conv_dw_pad",
        "dw.conv": "{prefix}conv_dw",
        "dw.bn": "{prefix}bn1",
        "se": "{prefix}se_",
        "pw.conv": "{prefix}conv_pw",
        "pw.bn": "{prefix}bn2",
    },
    "inverted_residual": {
        **_TIMM_BLOCK,
        "expand.conv": "{prefix}conv_pw",
        "expand.bn": "{prefix}bn1",
        "dw.pad": "{prefix}conv_dw_pad",
        "dw.conv": "{prefix}conv_dw",
        "dw.bn": "{prefix}bn2",
        "se": "{prefix}se_",
        "project.conv": "{prefix}conv_pwl",
        "project.bn": "{prefix}bn3",
    },
    "fused_inverted_residual": {
        **_TIMM_BLOCK,
        "expand.conv": "{prefix}conv_exp",
        "expand.bn": "{prefix}bn1",
        "conv.conv": "{prefix}conv_exp",
        "conv.bn": "{prefix}bn1",
        "project.conv": "{prefix}conv_pwl",
        "project.bn": "{prefix}bn2",
    },
    "cond_conv_residual": {
        **_TIMM_BLOCK,
        "routing.fc": "{prefix}routing_fn",
        "expand.conv": "{prefix}conv_pw",
        "expand.bn": "{prefix}bn1",
        "dw.pad": "{prefix}conv_dw_pad",
        "dw.conv": "{prefix}conv_dw",
        "dw.bn": "{prefix}bn2",
        "se": "{prefix}se_",
        "project.conv": "{prefix}conv_pwl",
        "project.bn": "{prefix}bn3",
    },
    "universal_inverted_residual": {  # ConvNormAct parts: <part>.conv, <part>.bn
        **_TIMM_BLOCK,
        **{
            f"{dw}.conv": f"{{prefix}}{dw}_conv"
            for dw in ("dw_start", "dw_mid", "dw_end")
        },
        "expand.conv": "{prefix}pw_exp_conv",
        "expand.bn": "{prefix}pw_exp_bn",
        "project.conv": "{prefix}pw_proj_conv",
        "project.bn": "{prefix}pw_proj_bn",
    },
    "mobile_attention": {
        **_TIMM_BLOCK,
        **{
            f"{part}.{layer}": f"{{prefix}}attn_{part}_{name}"
            for part in ("key", "value")
            for layer, name in (("down.conv", "down_conv"), ("down.bn", "norm"))
        },
        "query.pool": "{prefix}attn_query_down_pool",
        "query.norm": "{prefix}attn_query_norm",
        "query.proj": "{prefix}attn_query_proj",
        "key.proj": "{prefix}attn_key_proj",
        "value.proj": "{prefix}attn_value_proj",
        "upsample": "{prefix}attn_output_upsample",
        "output.proj": "{prefix}attn_output_proj",
    },
    "multi_scale_fusion": {  # timm's msfa.ffn (a UniversalInvertedResidual), msfa.norm
        "prefix": "msfa_",
        "ffn.expand.conv": "{prefix}ffn_pw_exp_conv",
        "ffn.expand.bn": "{prefix}ffn_pw_exp_bn",
        "ffn.project.conv": "{prefix}ffn_pw_proj_conv",
        "ffn.project.bn": "{prefix}ffn_pw_proj_bn",
    },
}

# torchvision's layouts per family: the inverted residual's container attribute and
# how its projection is built ("flat": Conv2d and BatchNorm2d in that container, as
# V2; "conv_bn_act": one Conv2dNormActivation, as V3).
TORCHVISION: dict[str, dict[str, Any]] = {
    "v1": {"style": "torchvision", "container": "conv", "project": "flat"},
    "v2": {"style": "torchvision", "container": "conv", "project": "flat"},
    "default": {"style": "torchvision", "container": "block", "project": "conv_bn_act"},
}
# timm's model classes per family: how the stem is built ("conv_bn": attributes
# conv_stem and bn1, its MobileNetV3 and EfficientNet classes; "conv_norm_act": one
# ConvNormAct conv_stem holding conv and bn, its MobileNetV5 class).
TIMM_TORCH: dict[str, dict[str, Any]] = {
    "v5": {"style": "timm", "stem": "conv_norm_act"},
    "default": {"style": "timm", "stem": "conv_bn"},
}
# The same differences in Keras names, over TIMM_KERAS.
TIMM_KERAS_FAMILIES: dict[str, dict[str, Any]] = {
    "v5": {"stem": ("conv_stem_conv", "conv_stem_bn")},
    "default": {},
}


def _by_family(table: dict[str, dict[str, Any]], family: str) -> dict[str, Any]:
    return table.get(family, table["default"])


def keras_names(conventions: Conventions, family: str) -> dict[str, Any]:
    if conventions.profile == "timm":
        return {**TIMM_KERAS, **_by_family(TIMM_KERAS_FAMILIES, family)}
    return {**_KERAS_EXTRAS, **_by_family(KERAS_APPLICATIONS, family)}


def torch_names(conventions: Conventions, family: str) -> dict[str, Any]:
    if conventions.profile == "timm":
        return _by_family(TIMM_TORCH, family)
    return _by_family(TORCHVISION, family)


def keras_name(names: dict[str, Any], template: str, part: str) -> str:
    """The name pattern of the layer computing IR op `part` of a `template` block
    (for `se.*` ops: the squeeze-excite table's, over `{name}`; ops of an attention
    unit built in its place, which the table does not name, after their paths)."""
    if part.startswith("se.") and part != "se":
        inner = part.removeprefix("se.")
        # an attention unit in its place: its op paths (`se.mlp_scale.fc1`)
        own = _KERAS_SQUEEZE_EXCITE.get(inner, "{name}" + inner.replace(".", "_"))
        return names["squeeze_excite"].get(inner, own)
    head, _, group = part.rpartition(".")
    if group.isdigit():  # a mixed conv's group
        return keras_name(names, template, head) + "_" + group
    table = names.get(template, {})
    # keras.applications' style: a conv named after its part, "<part>_bn" its BN;
    # "se" names the squeeze-excite's prefix, hence its trailing "_"
    default = part.removesuffix(".conv").replace(".", "_")
    return table.get(part, "{prefix}" + default + ("_" if part == "se" else ""))


def keras_prefixes(names: dict[str, Any], template: str) -> tuple[str, str]:
    """(block 0's, other blocks') `{prefix}` pattern of a `template` block."""
    table = names.get(template, {})
    prefix = table.get("prefix", template + "_{block_id}_")
    return table.get("first_prefix", prefix), prefix


def keras_layer_name(
    names: dict[str, Any], template: str, part: str, block_id: Any
) -> str:
    """The Keras name of the layer computing IR op `part` of a block."""
    first, rest = keras_prefixes(names, template)
    values = {"block_id": block_id}
    values["prefix"] = fill(rest if block_id else first, **values)
    if part.startswith("se."):
        se_name = fill(keras_name(names, template, "se"), **values)
        return fill(keras_name(names, template, part), name=se_name)
    return fill(keras_name(names, template, part), **values)


class KerasNames:
    """A template's view of a Keras naming table: `n["expand.conv"]` is the name
    pattern of the layer computing that IR op; `first_prefix` and `prefix` those of
    `{prefix}`."""

    def __init__(self, names: dict[str, Any], template: str) -> None:
        self.names, self.template = names, template
        self.first_prefix, self.prefix = keras_prefixes(names, template)

    def __getitem__(self, part: str) -> str:
        if self.template == "squeeze_excite":
            return keras_name(self.names, "", "se." + part)
        return keras_name(self.names, self.template, part)


def fstring(pattern: str) -> str:
    """A name pattern as Python source: `"conv_dw_{block_id}"` becomes
    `f"conv_dw_{block_id}"`, a plain name a plain string literal."""
    literal = '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "f" + literal if "{" in pattern else literal


def fill(pattern: str, **values: Any) -> str:
    return pattern.format(**values)
