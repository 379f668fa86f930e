"""Specs named as timm names its models reproduce them: the same parameters, batch-
norm statistics and MACs, timm's state_dict (keys, order, shapes) loading strictly
into the generated PyTorch model, and the same logits from both generated models
(the Keras one given timm's weights through `mbcompile weights`). The comparison is
tests/timm_family.py's `compare`.

The default run checks the structure (counts at the spec's resolution, keys, shapes,
strict load, on PyTorch's meta device) of the models the README has always listed,
and compares logits for one representative model per feature or family; `pytest -m
timm_family` (or benchmarks/timm_family.py, which also writes docs/timm_models.md)
compares every spec in specs/timm/ in full.

timm is imported through tests/reference_models.py (torchvision's __init__ does not
import with the CPU torch); models are built with pretrained=False.
"""

from __future__ import annotations

import pytest

from helpers import TOLERANCE
from reference_models import import_timm
from timm_family import compare, float64_differences, names

# The models the README's table has always listed: their structure is checked in the
# default run.
PROMISED = [
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_lite0",
    "fbnetc_100",
    "lcnet_100",
    "mnasnet_100",
    "mnasnet_small",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "mobilenetv4_conv_large",
    "mobilenetv4_conv_medium",
    "mobilenetv4_conv_small",
    "mobilenetv4_hybrid_large",
    "mobilenetv4_hybrid_medium",
    "tf_mobilenetv3_large_100",
]

# One model per feature or family of timm's, compared in full (logits in PyTorch) in
# the default run. A new feature appends the model that shows it.
REPRESENTATIVES = [
    "efficientnet_b0",  # EfficientNet: squeeze-excite from the block input, SiLU
    "tf_efficientnet_b0",  # TensorFlow's SAME padding and epsilon
    "efficientnet_es",  # fused inverted residuals (EdgeResidual), timm's fc24 width
    "efficientnet_b7",  # over 60M parameters: the meta-device comparison
    "efficientnetv2_rw_s",  # fused t = 1 rows, EfficientNetV2's layout
    "tf_efficientnetv2_b0",  # a conv-bn-act row after the stem, SAME padding
    "tinynet_e",  # a fixed stem at width 0.51, rounded depths written out
    "mobilenetv1_100",  # V1 in timm's layout: no head conv
    "mobilenetv2_050",  # V2 in timm's layout: ratio rows at a width below 1
    "mnasnet_small",  # squeeze-excite rounded without a divisor (4 channels)
    "semnasnet_075",  # MnasNet-A1 at width 0.75: ReLU squeeze-excite, sigmoid gate
    "fbnetc_100",  # t = 1 rows that keep their expansion
    "lcnet_050",  # depthwise-separable rows with squeeze-excite, at width 0.5
    "hardcorenas_a",  # MobileNetV3's class with a 32-channel stem, mixed activations
    "mobilenetv3_small_050",  # MobileNetV3 with a fixed stem below width 0.75
    "tf_mobilenetv3_large_minimal_100",  # minimalistic V3 with SAME padding
    "mobilenetv4_conv_small_050",  # conv-bn-act rows, universal inverted bottlenecks
    "mobilenetv4_hybrid_medium",  # Mobile MQA, layer scale, the head's batch norm
    "gc_efficientnetv2_rw_t",  # Global Context attention in place of squeeze-excite
]

# Representatives whose Keras model is compared too (weights by `mbcompile weights`):
# TensorFlow's padding, attention, and Global Context attention.
KERAS = ["tf_efficientnet_b0", "mobilenetv4_hybrid_medium", "gc_efficientnetv2_rw_t"]


def test_every_timm_spec_is_named_as_timm_names_it():
    timm = import_timm()
    registered = {
        n
        for module in ("mobilenetv3", "efficientnet", "hardcorenas", "mobilenetv5")
        for n in timm.list_models(module=module)
    }
    assert set(PROMISED) <= set(names())
    assert set(names()) <= registered, set(names()) - registered
    assert set(REPRESENTATIVES) <= set(names())


@pytest.mark.parametrize("name", PROMISED)
def test_structure_equals_timm(name, tmp_path):
    """Counts at the spec's resolution, state_dict keys (in order), shapes and a
    strict load, on the meta device."""
    result = compare(name, tmp_path, resolution=None)
    assert result.exact, result.problems


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_representative_equals_timm(name, tmp_path, worst_differences):
    """The structure, and logits at a small resolution from timm's random weights
    and measured batch-norm statistics (in Keras too for some)."""
    result = compare(name, tmp_path, keras=name in KERAS)
    for framework, diff in (("torch", result.torch_diff), ("keras", result.keras_diff)):
        if diff is not None:
            worst_differences.append((f"timm {name} {framework}", diff))
    assert result.exact, result.problems


def test_tf_padding_at_the_spec_resolution(tmp_path, worst_differences):
    """SAME padding depends on the input size: compiled at 224 (the spec's) the
    tf_ model agrees with timm there too, not only at the small resolution."""
    result = compare("tf_mobilenetv3_large_100", tmp_path, resolution=224, keras=False)
    worst_differences.append(("timm tf_mobilenetv3_large_100 r224", result.torch_diff))
    assert result.exact, result.problems


# A spec that is wrong must fail the comparison. Each of these leaves the counts and
# the state_dict as timm's: only the logits can tell.
BROKEN = {
    "symmetric padding for TensorFlow's SAME": (
        "tf_efficientnet_b0",
        "conventions.stride2_padding=symmetric",
    ),
    "hard-sigmoid squeeze-excite gate for sigmoid": (
        "efficientnet_b0",
        "squeeze_excite.gate=hardsigmoid",
    ),
    "a dropped shortcut on one row": ("efficientnet_b0", "stages.1.residual=false"),
}


@pytest.mark.parametrize("variant", list(BROKEN))
def test_a_wrong_spec_is_caught(variant, tmp_path):
    name, override = BROKEN[variant]
    result = compare(name, tmp_path, keras=False, overrides=(override,))
    assert result.problems == [f"torch logits differ by {result.torch_diff:.3g}"]
    assert result.torch_diff > 100 * TOLERANCE


@pytest.mark.timm_family
@pytest.mark.parametrize("name", names())
def test_family_member_equals_timm(name, tmp_path, worst_differences):
    """Every spec in specs/timm/, in full (on demand: pytest -m timm_family)."""
    result = compare(name, tmp_path)
    for framework, diff in (("torch", result.torch_diff), ("keras", result.keras_diff)):
        if diff is not None:
            worst_differences.append((f"timm {name} {framework}", diff))
    assert result.exact, result.problems


# `float64_differences` is what benchmarks/timm_family.py runs when a model's float32
# logits differ: the same weights in float64, to tell rounding from a wrong function.
# Checked on the CondConv B1 models, which needed it while CondConv's routing was
# randomised at full scale (their logits reached |1605|, timm's own float32 logits
# 1.1e-4 from its float64 ones; see helpers.randomize_torch).
FLOAT64_CHECKED = ["efficientnet_cc_b1_8e", "tf_efficientnet_cc_b1_8e"]


@pytest.mark.timm_family
@pytest.mark.parametrize("name", FLOAT64_CHECKED)
def test_float64_tells_rounding_from_a_wrong_function(name, tmp_path, figures):
    """In float64 the generated models equal timm's within 1e-9 (relative, as
    TOLERANCE); the float32 figures are printed beside timm's own."""
    found = float64_differences(name, tmp_path)
    figures.append(
        f"{name}, difference from timm's float64 logits: "
        + ", ".join(f"{label} {value:.2g}" for label, value in found.items())
    )
    assert found["torch float64"] <= 1e-9, found
    assert found["keras float64"] <= 1e-9, found
