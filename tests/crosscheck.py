"""Cross-backend check for any spec, including multi-output backbones.

Same pattern as test_cross_backend.py: random PyTorch weights with calibrated batch
norm, ported to Keras by IR position, the same images through both.
"""

from __future__ import annotations

import numpy as np

from helpers import (
    build,
    difference,
    expects_pixels,
    port_torch_to_keras,
    random_images,
    randomize_torch,
)


def _as_dict(value) -> dict[str, np.ndarray]:
    if isinstance(value, dict):
        return {k: np.asarray(v) for k, v in value.items()}
    return {"output": np.asarray(value)}


def outputs(spec, tmp_path, overrides=()):
    """(graph, torch outputs, keras outputs), both by name and in NCHW layout."""
    import torch

    _, graph, torch_model = build(spec, "torch", tmp_path, overrides)
    _, _, keras_model = build(spec, "keras", tmp_path, overrides)
    rescaled = expects_pixels(graph)
    randomize_torch(torch_model, random_images(graph, seed=7, pixels=rescaled), seed=7)
    port_torch_to_keras(graph, torch_model, keras_model)
    images = random_images(graph, seed=1, pixels=rescaled)
    torch_model.eval()
    with torch.no_grad():
        got_torch = torch_model(torch.from_numpy(images))
    if not isinstance(got_torch, dict):
        got_torch = {"output": got_torch}
    got_torch = {k: v.numpy() for k, v in got_torch.items()}
    got_keras = _as_dict(keras_model(images.transpose(0, 2, 3, 1), training=False))
    got_keras = {
        k: v.transpose(0, 3, 1, 2) if v.ndim == 4 else v for k, v in got_keras.items()
    }
    return graph, got_torch, got_keras


def worst_difference(got_torch: dict, got_keras: dict) -> float:
    """Largest `difference` over all outputs, after checking names and shapes."""
    assert got_torch.keys() == got_keras.keys()
    worst = 0.0
    for name, t in got_torch.items():
        k = got_keras[name]
        assert t.shape == k.shape, (name, t.shape, k.shape)
        assert np.isfinite(t).all()
        assert np.abs(t).max() > 1e-2, f"{name}: all ~0, comparison meaningless"
        worst = max(worst, difference(t, k))
    return worst
