"""Names as data: the layer names and module attributes each reference library
uses, one table per naming scheme. The templates read them; no name is spelled in a
template.

- Keras layer names are the contract keras.applications' weight files load by
  (legacy `.h5` files by name), so they follow keras.applications per family.
- PyTorch attribute names make the state_dict keys: torchvision's for V2 and V3.
  torchvision has no V1; ours is written in the same style.

Patterns may contain `{block_id}`: the generated helper fills it in with the id the
call passes (keras.applications counts V1 blocks from 1, the others from 0).
"""

from __future__ import annotations

from typing import Any

from ..frontend.conventions import Conventions

# keras.applications, per family.
KERAS: dict[str, dict[str, Any]] = {
    "v1": {
        "stem": ("conv1", "conv1_bn"),
        "head": ("conv_1", "conv_1_bn"),
        "hidden": "fc",
        "logits": "conv_preds",
        "first_block_id": 1,
        "depthwise_separable": {
            "pad": "conv_pad_{block_id}",
            "dw": "conv_dw_{block_id}",
            "dw_bn": "conv_dw_{block_id}_bn",
            "pw": "conv_pw_{block_id}",
            "pw_bn": "conv_pw_{block_id}_bn",
        },
    },
    "v2": {
        "stem": ("Conv1", "bn_Conv1"),
        "head": ("Conv_1", "Conv_1_bn"),
        "hidden": "fc",
        "logits": "predictions",
        "first_block_id": 0,
        # Inverted residuals: "<prefix><part>", the first block's prefix differs.
        "prefix": ("expanded_conv_", "block_{block_id}_"),
        "bn": "BN",
        "dw_pad": "pad",
    },
    "v3": {
        "stem": ("conv", "conv_bn"),
        "head": ("conv_1", "conv_1_bn"),
        "hidden": "conv_2",
        "logits": "logits",
        "first_block_id": 0,
        "prefix": ("expanded_conv_", "expanded_conv_{block_id}_"),
        "bn": "bn",
        "dw_pad": "depthwise_pad",
    },
}
# Names keras.applications has no counterpart for: the same in every family.
KERAS_COMMON: dict[str, Any] = {
    "conv_row": ("block_{block_id}_conv", "block_{block_id}_bn"),
    "fused_prefix": "fused_{block_id}_",
    "depthwise_separable": KERAS["v1"]["depthwise_separable"],
    "prefix": KERAS["v2"]["prefix"],
    "bn": "BN",
    "dw_pad": "pad",
}

# torchvision, per family: the inverted residual's container attribute and how its
# projection is built ("flat": Conv2d and BatchNorm2d in that container, as V2;
# "conv_bn_act": one Conv2dNormActivation, as V3).
TORCH: dict[str, dict[str, Any]] = {
    "v1": {"container": "conv", "project": "flat"},
    "v2": {"container": "conv", "project": "flat"},
    "v3": {"container": "block", "project": "conv_bn_act"},
}


def keras_names(conventions: Conventions, family: str) -> dict[str, Any]:
    return {**KERAS_COMMON, **KERAS[family]}


def torch_names(conventions: Conventions, family: str) -> dict[str, Any]:
    return TORCH[family]


def fstring(pattern: str) -> str:
    """A name pattern as Python source: `"conv_dw_{block_id}"` becomes
    `f"conv_dw_{block_id}"`, a plain name a plain string literal."""
    literal = '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "f" + literal if "{" in pattern else literal


def fill(pattern: str, block_id: int) -> str:
    return pattern.format(block_id=block_id)
