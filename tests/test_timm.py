"""Specs named as timm names its models reproduce them: the same parameters, batch-
norm statistics and MACs, timm's state_dict (keys, order, shapes) loading strictly
into the generated PyTorch model, and the same logits from both generated models
(the Keras one given timm's weights through `mbcompile weights`).

timm is imported through tests/timm_models.py (torchvision's __init__ does not
import with the CPU torch); models are built with pretrained=False.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import (
    ROOT,
    TOLERANCE,
    build,
    difference,
    random_images,
    randomize_torch,
    run_keras,
    run_torch,
)
from mbcompile import cli, compiler
from timm_models import count_macs, create, parameter_counts

TIMM_SPECS = sorted((ROOT / "specs" / "timm").glob("*.yaml"))
NAMES = [path.stem for path in TIMM_SPECS]


def spec_path(name: str):
    return ROOT / "specs" / "timm" / f"{name}.yaml"


def resolutions(name: str) -> tuple[int, int]:
    """224 and the spec's own resolution (256 where that is 224)."""
    _, graph = compiler.load_and_expand(spec_path(name))
    own = graph.network.resolution
    return 224, own if own != 224 else 256


def test_every_timm_spec_is_here():
    """The models the README's table promises (MobileNetV4's hybrids come with
    attention blocks)."""
    promised = {
        "mobilenetv4_conv_small",
        "mobilenetv4_conv_medium",
        "mobilenetv4_conv_large",
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b2",
        "efficientnet_b3",
        "efficientnet_lite0",
        "mnasnet_100",
        "mnasnet_small",
        "lcnet_100",
        "fbnetc_100",
        "mobilenetv3_large_100",
        "mobilenetv3_small_100",
        "tf_mobilenetv3_large_100",
    }
    assert promised <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_counts_equal_timm(name):
    reference = create(name)
    for resolution in resolutions(name):
        _, graph = compiler.load_and_expand(
            spec_path(name), [f"resolution={resolution}"]
        )
        report = compiler.cost_report(graph)
        ours = (report.trainable_params, report.non_trainable_params, report.macs)
        theirs = (*parameter_counts(reference), count_macs(reference, resolution))
        assert ours == theirs, (resolution, ours, theirs)


@pytest.mark.parametrize("name", NAMES)
def test_timm_weights_give_timm_logits(name, tmp_path, worst_differences):
    """timm's state_dict (random weights, batch-norm statistics measured on data)
    loads strictly; logits agree at 224 and the spec's resolution; the Keras model
    given the same weights by `mbcompile weights` agrees at the latter."""
    import torch

    reference = create(name)
    calibration = np.random.default_rng(7).standard_normal((4, 3, 224, 224))
    randomize_torch(reference, calibration.astype(np.float32), seed=7)
    state = reference.state_dict()
    for resolution in resolutions(name):
        overrides = [f"resolution={resolution}"]
        _, graph, ours = build(spec_path(name), "torch", tmp_path, overrides)
        assert list(ours.state_dict()) == list(state)  # keys in timm's order
        ours.load_state_dict(state, strict=True)
        images = random_images(graph, seed=1)
        want = run_torch(reference, images)
        diff = difference(want, run_torch(ours, images))
        worst_differences.append((f"timm {name} r{resolution} torch", diff))
        assert diff <= TOLERANCE, (resolution, diff)

    weights = tmp_path / "timm.pt"
    torch.save(state, weights)
    keras_weights = tmp_path / "timm.weights.h5"
    argv = ["weights", str(spec_path(name)), "--set", f"resolution={resolution}"]
    assert cli.main([*argv, "--from", str(weights), "--to", str(keras_weights)]) == 0
    _, _, keras_model = build(spec_path(name), "keras", tmp_path, overrides)
    keras_model.load_weights(keras_weights)
    diff = difference(want, run_keras(keras_model, images))
    worst_differences.append((f"timm {name} r{resolution} keras", diff))
    assert diff <= TOLERANCE, diff
