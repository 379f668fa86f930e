"""Stochastic depth (`drop_path_rate`): timm's rates, block by block, in both
backends; whole samples of a residual branch dropped in training only."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import (
    SPECS,
    TOLERANCE,
    build,
    difference,
    port_torch_to_keras,
    random_images,
    randomize_torch,
    run_keras,
    run_torch,
)
from timm_models import create

EFFICIENTNET = SPECS / "timm" / "efficientnet_b0.yaml"
RATE = ["drop_path_rate=0.2", "resolution=64"]


def test_rates_rise_over_the_blocks_as_timm_sets_them(tmp_path):
    """Every residual block drops at drop_path_rate * index / blocks, as timm's
    efficientnet_b0(drop_path_rate=0.2); blocks without a shortcut never do."""
    reference = create("efficientnet_b0", drop_path_rate=0.2)
    theirs = {  # timm gives every block a DropPath, used only with a shortcut
        name.removesuffix(".drop_path"): module.drop_prob
        for name, module in reference.named_modules()
        if type(module).__name__ == "DropPath"
        and reference.get_submodule(name.removesuffix(".drop_path")).has_skip
    }
    _, _, model = build(EFFICIENTNET, "torch", tmp_path, RATE)
    ours = {
        name.removesuffix(".drop_path"): module.rate
        for name, module in model.named_modules()
        if type(module).__name__ == "DropPath"
    }
    assert ours == theirs
    # Of its 16 blocks, the 9 with a shortcut drop; the last of them is block 14.
    assert len(ours) == 9 and max(ours.values()) == pytest.approx(0.2 * 14 / 16)

    _, _, keras_model = build(EFFICIENTNET, "keras", tmp_path, RATE)
    keras_rates = {
        layer.name.removesuffix("_drop_path"): layer.rate
        for layer in keras_model.layers
        if layer.name.endswith("drop_path")
    }
    assert keras_rates == {name.replace(".", "_"): r for name, r in theirs.items()}


def test_torch_drops_whole_samples_in_training_only(tmp_path):
    import torch

    _, _, model = build(EFFICIENTNET, "torch", tmp_path, RATE)
    drop = next(m for m in model.modules() if type(m).__name__ == "DropPath")
    x = torch.ones(400, 4, 3, 3)
    drop.eval()
    assert torch.equal(drop(x), x)
    drop.train()
    torch.manual_seed(0)
    out = drop(x)
    kept = out.flatten(1).amax(1) > 0
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - drop.rate)))
    assert torch.equal(out[~kept], torch.zeros_like(out[~kept]))
    dropped = 1 - kept.float().mean().item()  # binomial(400, rate): 4 sigma bounds
    sigma = (drop.rate * (1 - drop.rate) / 400) ** 0.5
    assert abs(dropped - drop.rate) < 4 * sigma


def test_keras_drops_whole_samples_in_training_only(tmp_path):
    _, _, model = build(EFFICIENTNET, "keras", tmp_path, RATE)
    drop = next(layer for layer in model.layers if layer.name.endswith("drop_path"))
    x = np.ones((400, 3, 3, 4), np.float32)
    assert np.array_equal(np.asarray(drop(x, training=False)), x)
    out = np.asarray(drop(x, training=True))
    kept = out.reshape(400, -1).max(1) > 0
    assert np.allclose(out[kept], 1 / (1 - drop.rate))
    assert not out[~kept].any()
    sigma = (drop.rate * (1 - drop.rate) / 400) ** 0.5
    assert abs((1 - kept.mean()) - drop.rate) < 4 * sigma


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_inference_is_unchanged(backend, tmp_path):
    """With the same weights, a network with stochastic depth computes at inference
    exactly what it computes without."""
    _, graph, plain = build(EFFICIENTNET, "torch", tmp_path, RATE[1:])
    randomize_torch(plain, random_images(graph, seed=3), seed=3)
    _, _, dropping = build(EFFICIENTNET, backend, tmp_path, RATE)
    images = random_images(graph, seed=4)
    if backend == "torch":
        dropping.load_state_dict(plain.state_dict())
        got = run_torch(dropping, images)
    else:
        port_torch_to_keras(graph, plain, dropping)
        got = run_keras(dropping, images)
    reference = run_torch(plain, images)
    assert np.abs(reference).max() > 1e-2
    # The same framework computes the same; across frameworks, within TOLERANCE.
    assert difference(reference, got) <= (0 if backend == "torch" else TOLERANCE)
