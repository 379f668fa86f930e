"""timm's models that need the block options of issue 21 reproduce timm: conv-bn-act
rows with a shortcut (timm's `cn_..._skip`), explicit per-row widths (its pruned
models), squeeze-excite in fused rows and space-to-depth (EfficientNet-X/H), the
squeeze activation taken from each block, a conv_head without bias and widths
rounded with another limit than 90% (FBNetV3, EfficientNetV2-B, mobilenetv3_rw).

The comparison is tests/timm_family.py's `compare`: counts, state_dict keys in
timm's order, a strict load, and logits (in PyTorch, and in Keras through `mbcompile
weights`) at a small resolution from timm's random weights and measured batch-norm
statistics. The default run compares one model per feature and shows deliberately
broken specs caught; `pytest -m timm_family` compares every spec in specs/timm/,
these models included (structure only over 60M parameters).
"""

from __future__ import annotations

import pytest

from helpers import TOLERANCE
from timm_family import compare, names

# Every model of timm's these options unlock (and that needs nothing else), with
# what it shows.
BLOCK_SPECS = {
    "test_efficientnet": "a cn row (no shortcut: the width changes), round_limit 0",
    "tf_efficientnetv2_b0": "as B1-B3's base: cn row, round_limit 0, SAME padding",
    "tf_efficientnetv2_b1": "the cn row repeated: its second block adds its input",
    "tf_efficientnetv2_b2": "cn shortcut at width 1.1",
    "tf_efficientnetv2_b3": "cn shortcut; width 1.2 rounds without the 90% rule",
    "efficientnetv2_s": "cn rows with shortcuts, fused rows, SiLU squeeze-excite",
    "efficientnetv2_m": "EfficientNetV2-M: a seventh stage, a fixed head width",
    "efficientnetv2_l": "EfficientNetV2-L (structure only: over 60M parameters)",
    "efficientnetv2_xl": "EfficientNetV2-XL (structure only)",
    "efficientnetv2_rw_t": "efficientnetv2_s at width 0.8, depth 0.9",
    "tf_efficientnetv2_s": "efficientnetv2_s with SAME padding",
    "tf_efficientnetv2_m": "efficientnetv2_m with SAME padding",
    "tf_efficientnetv2_l": "efficientnetv2_l with SAME padding (structure only)",
    "tf_efficientnetv2_xl": "efficientnetv2_xl with SAME padding (structure only)",
    "efficientnet_b1_pruned": "every block's widths given (exp, se_c, c)",
    "efficientnet_b2_pruned": "every block's widths given, odd ones (17, 42)",
    "efficientnet_b3_pruned": "every block's widths given, a 33-wide squeeze",
    "efficientnet_x_b3": "space-to-depth; fused rows with ReLU squeeze-excite",
    "efficientnet_x_b5": "efficientnet_x_b3 scaled: the region's row repeated",
    "efficientnet_h_b5": "EfficientNet-X's second table at width 1.92",
    "fbnetv3_b": "conv_head without bias; squeeze widths rounded at 95%",
    "fbnetv3_d": "FBNetV3-D",
    "fbnetv3_g": "FBNetV3-G",
    "mobilenetv3_rw": "squeeze-excite with each block's activation (ReLU, hard-swish)",
}

# The default run: one model per feature, logits at the comparison's small
# resolution, in Keras too for one (tests/test_variants.py's block_options checks
# every option between the backends).
DEFAULT = {
    "tf_efficientnetv2_b1": False,  # a cn row's shortcut, SAME padding
    "efficientnet_b1_pruned": False,  # explicit widths
    "efficientnet_x_b3": False,  # space-to-depth, fused SE, ReLU and SiLU SE
    "mobilenetv3_rw": True,  # a conv_head without bias, ReLU and hard-swish SE
}
# Widths rounding otherwise than at 90%: their structure (on the meta device).
STRUCTURE = ["tf_efficientnetv2_b3", "fbnetv3_g"]


def test_every_unlocked_model_has_its_spec():
    assert set(BLOCK_SPECS) <= set(names())


@pytest.mark.parametrize("name", list(DEFAULT))
def test_model_equals_timm(name, tmp_path, worst_differences):
    result = compare(name, tmp_path, keras=DEFAULT[name])
    for framework, diff in (("torch", result.torch_diff), ("keras", result.keras_diff)):
        if diff is not None:
            worst_differences.append((f"timm {name} {framework}", diff))
    assert result.exact, result.problems


@pytest.mark.parametrize("name", STRUCTURE)
def test_structure_equals_timm(name, tmp_path):
    result = compare(name, tmp_path, resolution=None)
    assert result.exact, result.problems


# A spec that is wrong must fail the comparison. These keep timm's counts and
# state_dict: only the logits can tell.
WRONG_LOGITS = {
    "the cn row's shortcut dropped": (
        "tf_efficientnetv2_b1",
        "stages.0.residual=false",
    ),
    "one squeeze activation for all blocks (ReLU where timm's uses hard-swish)": (
        "mobilenetv3_rw",
        "squeeze_excite.act=relu",
    ),
}
# These change widths or a bias: the structure already differs.
WRONG_STRUCTURE = {
    "widths rounded with the 90% rule": (
        "tf_efficientnetv2_b3",
        "round_limit=0.9",
        "params ",
    ),
    "squeeze widths rounded at 90%, not FBNetV3's 95%": (
        "fbnetv3_g",
        "round_limit=0.9",
        "3 shapes differ, first blocks.4.0.se.conv_reduce.weight",
    ),
    "a conv_head with a bias": (
        "mobilenetv3_rw",
        "head.hidden.bias=true",
        "state_dict keys differ",
    ),
}


@pytest.mark.parametrize("variant", list(WRONG_LOGITS))
def test_wrong_logits_are_caught(variant, tmp_path):
    name, override = WRONG_LOGITS[variant]
    result = compare(name, tmp_path, resolution=64, keras=False, overrides=(override,))
    assert result.problems == [f"torch logits differ by {result.torch_diff:.3g}"]
    assert result.torch_diff > 100 * TOLERANCE


@pytest.mark.parametrize("variant", list(WRONG_STRUCTURE))
def test_wrong_structure_is_caught(variant, tmp_path):
    name, override, problem = WRONG_STRUCTURE[variant]
    result = compare(name, tmp_path, resolution=None, overrides=(override,))
    assert any(found.startswith(problem) for found in result.problems), result.problems
