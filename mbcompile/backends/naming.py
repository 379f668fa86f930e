"""Names as data: the layer names and module attributes each reference library
uses, one table per conventions profile. The templates read them; they spell no
name of their own.

- Keras layer names are the contract keras.applications' weight files load by
  (legacy `.h5` files by name): its names per family, under the torchvision and
  keras_applications profiles alike. Under timm's profile the Keras names follow
  timm's state_dict keys (`blocks.1.0.conv_pw` -> `blocks_1_0_conv_pw`).
- PyTorch attributes make the state_dict keys: torchvision's `features` /
  `classifier` layout for V2 and V3 (V1, which torchvision lacks, in the same
  style), or timm's `conv_stem` / `blocks.<stage>.<block>` / `conv_head` layout.

Keras patterns are f-string bodies over the variables the generated helper has:
`{block_id}` (the id the call passes) and `{prefix}` (the helper's prefix, itself a
pattern over `{block_id}`).
"""

from __future__ import annotations

from typing import Any

from ..frontend.conventions import Conventions

# Inverted residuals, as keras.applications' MobileNetV2 names them; V3 differs in
# the prefix, "bn" for "BN" and the depthwise pad's name.
_KERAS_V2_INVERTED_RESIDUAL = {
    "prefix": "block_{block_id}_",
    "first_prefix": "expanded_conv_",  # block 0
    "expand": "{prefix}expand",
    "expand_bn": "{prefix}expand_BN",
    "dw_pad": "{prefix}pad",
    "dw": "{prefix}depthwise",
    "dw_bn": "{prefix}depthwise_BN",
    "se": "{prefix}squeeze_excite_",
    "project": "{prefix}project",
    "project_bn": "{prefix}project_BN",
    "drop_path": "{prefix}drop_path",
    "add": "{prefix}add",
}
# Layers keras.applications has no counterpart for, named in its style.
_KERAS_EXTRAS = {
    "conv_bn_act": {"conv": "block_{block_id}_conv", "bn": "block_{block_id}_bn"},
    "fused_inverted_residual": {
        "prefix": "fused_{block_id}_",
        "first_prefix": "fused_{block_id}_",
        "expand": "{prefix}expand",  # k x k, when it expands
        "expand_bn": "{prefix}expand_bn",
        "conv": "{prefix}conv",  # k x k, when it does not
        "conv_bn": "{prefix}conv_bn",
        "project": "{prefix}project",
        "project_bn": "{prefix}project_bn",
        "drop_path": "{prefix}drop_path",
        "add": "{prefix}add",
    },
    "universal_inverted_residual": {
        "prefix": "uib_{block_id}_",
        "first_prefix": "uib_{block_id}_",
        "dw_start": "{prefix}dw_start",
        "dw_start_bn": "{prefix}dw_start_bn",
        "expand": "{prefix}expand",
        "expand_bn": "{prefix}expand_bn",
        "dw_mid": "{prefix}dw_mid",
        "dw_mid_bn": "{prefix}dw_mid_bn",
        "project": "{prefix}project",
        "project_bn": "{prefix}project_bn",
        "dw_end": "{prefix}dw_end",
        "dw_end_bn": "{prefix}dw_end_bn",
        "layer_scale": "{prefix}layer_scale",
        "drop_path": "{prefix}drop_path",
        "add": "{prefix}add",
    },
    # The squeeze-excite inside a block, after the block's "se" prefix.
    "squeeze_excite": {
        "pool": "{name}avg_pool",
        "reduce": "{name}conv",
        "act": "{name}{act}",
        "expand": "{name}conv_1",
        "gate": "{name}{gate}",
        "mul": "{name}mul",
    },
    "depthwise_separable": {
        "prefix": "conv_{block_id}_",
        "pad": "conv_pad_{block_id}",
        "dw": "conv_dw_{block_id}",
        "dw_bn": "conv_dw_{block_id}_bn",
        "se": "conv_{block_id}_squeeze_excite_",
        "pw": "conv_pw_{block_id}",
        "pw_bn": "conv_pw_{block_id}_bn",
        "drop_path": "conv_{block_id}_drop_path",
        "add": "conv_{block_id}_add",
    },
    "block_id_type": "int",
}

KERAS_APPLICATIONS: dict[str, dict[str, Any]] = {
    "v1": {
        "stem": ("conv1", "conv1_bn"),
        "head": ("conv_1", "conv_1_bn"),
        "hidden": ("fc", "fc_bn"),
        "logits": "conv_preds",
        "first_block_id": 1,
        "inverted_residual": _KERAS_V2_INVERTED_RESIDUAL,
    },
    "v2": {
        "stem": ("Conv1", "bn_Conv1"),
        "head": ("Conv_1", "Conv_1_bn"),
        "hidden": ("fc", "fc_bn"),
        "logits": "predictions",
        "first_block_id": 0,
        "inverted_residual": _KERAS_V2_INVERTED_RESIDUAL,
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
            "expand_bn": "{prefix}expand_bn",
            "dw_pad": "{prefix}depthwise_pad",
            "dw_bn": "{prefix}depthwise_bn",
            "project_bn": "{prefix}project_bn",
        },
    },
}

# timm's attribute names per block class (timm/models/_efficientnet_blocks.py).
_TIMM_PARTS = {
    "conv_bn_act": {"conv": "conv", "bn": "bn1"},
    "depthwise_separable": {
        "dw": "conv_dw",
        "dw_bn": "bn1",
        "se": "se",
        "pw": "conv_pw",
        "pw_bn": "bn2",
    },
    "inverted_residual": {
        "expand": "conv_pw",
        "expand_bn": "bn1",
        "dw": "conv_dw",
        "dw_bn": "bn2",
        "se": "se",
        "project": "conv_pwl",
        "project_bn": "bn3",
    },
    "fused_inverted_residual": {
        "expand": "conv_exp",
        "expand_bn": "bn1",
        "project": "conv_pwl",
        "project_bn": "bn2",
    },
    # ConvNormAct parts: <part>.conv and <part>.bn
    "universal_inverted_residual": {
        "dw_start": "dw_start",
        "expand": "pw_exp",
        "dw_mid": "dw_mid",
        "project": "pw_proj",
        "dw_end": "dw_end",
        "layer_scale": "layer_scale",
    },
    "squeeze_excite": {"reduce": "conv_reduce", "expand": "conv_expand"},
}

_TIMM_BLOCK = {  # what every timm block shares: blocks.<stage>.<block>.<part>
    "prefix": "blocks_{block_id}_",
    "first_prefix": "blocks_{block_id}_",
    "drop_path": "{prefix}drop_path",
    "add": "{prefix}add",
}
TIMM_KERAS: dict[str, Any] = {
    "stem": ("conv_stem", "bn1"),
    "head": ("conv_head", "bn2"),  # before pooling (EfficientNet)
    "hidden": ("conv_head", "norm_head"),  # after pooling (MobileNetV3, V4)
    "logits": "classifier",
    "first_block_id": 0,
    "block_id_type": "str",  # "<stage>_<block>"
    "conv_bn_act": {"conv": "blocks_{block_id}_conv", "bn": "blocks_{block_id}_bn1"},
    "depthwise_separable": {
        **_TIMM_BLOCK,
        "pad": "{prefix}conv_dw_pad",
        "dw": "{prefix}conv_dw",
        "dw_bn": "{prefix}bn1",
        "se": "{prefix}se_",
        "pw": "{prefix}conv_pw",
        "pw_bn": "{prefix}bn2",
    },
    "inverted_residual": {
        **_TIMM_BLOCK,
        "expand": "{prefix}conv_pw",
        "expand_bn": "{prefix}bn1",
        "dw_pad": "{prefix}conv_dw_pad",
        "dw": "{prefix}conv_dw",
        "dw_bn": "{prefix}bn2",
        "se": "{prefix}se_",
        "project": "{prefix}conv_pwl",
        "project_bn": "{prefix}bn3",
    },
    "fused_inverted_residual": {
        **_TIMM_BLOCK,
        "expand": "{prefix}conv_exp",
        "expand_bn": "{prefix}bn1",
        "conv": "{prefix}conv_exp",
        "conv_bn": "{prefix}bn1",
        "project": "{prefix}conv_pwl",
        "project_bn": "{prefix}bn2",
    },
    "universal_inverted_residual": {
        **_TIMM_BLOCK,
        "dw_start": "{prefix}dw_start_conv",
        "dw_start_bn": "{prefix}dw_start_bn",
        "expand": "{prefix}pw_exp_conv",
        "expand_bn": "{prefix}pw_exp_bn",
        "dw_mid": "{prefix}dw_mid_conv",
        "dw_mid_bn": "{prefix}dw_mid_bn",
        "project": "{prefix}pw_proj_conv",
        "project_bn": "{prefix}pw_proj_bn",
        "dw_end": "{prefix}dw_end_conv",
        "dw_end_bn": "{prefix}dw_end_bn",
        "layer_scale": "{prefix}layer_scale",
    },
    "squeeze_excite": {
        "pool": "{name}pool",
        "reduce": "{name}conv_reduce",
        "act": "{name}act1",
        "expand": "{name}conv_expand",
        "gate": "{name}gate",
        "mul": "{name}mul",
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
TIMM_TORCH = {"style": "timm", **_TIMM_PARTS}


def _by_family(table: dict[str, dict[str, Any]], family: str) -> dict[str, Any]:
    return table.get(family, table["default"])


def keras_names(conventions: Conventions, family: str) -> dict[str, Any]:
    if conventions.profile == "timm":
        return TIMM_KERAS
    return {**_KERAS_EXTRAS, **_by_family(KERAS_APPLICATIONS, family)}


def torch_names(conventions: Conventions, family: str) -> dict[str, Any]:
    if conventions.profile == "timm":
        return TIMM_TORCH
    return _by_family(TORCHVISION, family)


def fstring(pattern: str) -> str:
    """A name pattern as Python source: `"conv_dw_{block_id}"` becomes
    `f"conv_dw_{block_id}"`, a plain name a plain string literal."""
    literal = '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "f" + literal if "{" in pattern else literal


def fill(pattern: str, **values: Any) -> str:
    return pattern.format(**values)
