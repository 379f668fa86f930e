"""Same weights, same input: Keras and PyTorch logits agree (float32)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import (
    CANONICAL,
    LOGIT_TOLERANCE,
    SPECS,
    build,
    port_torch_to_keras,
    random_images,
    randomize_torch,
    run_keras,
    run_torch,
)

# widths 0.5 / 0.75 / 1.0 at 224 for every spec, plus other resolutions (one odd,
# where TensorFlow-style and symmetric stride-2 padding differ) and the other
# convention profile, whose uneven padding and 1x1-conv classifiers differ most.
CASES = [(name, width, 224, None) for name in CANONICAL for width in (0.5, 0.75, 1.0)]
CASES += [(name, 1.0, 160, None) for name in CANONICAL]
CASES += [(name, 0.75, 193, None) for name in CANONICAL]
CASES += [(name, 1.0, 225, "keras_applications") for name in CANONICAL]
CASES += [(name, 0.5, 224, "torchvision") for name in ("v1",)]


@pytest.mark.parametrize(
    "name,width,resolution,conventions",
    CASES,
    ids=[f"{n}-w{w}-r{r}" + (f"-{c}" if c else "") for n, w, r, c in CASES],
)
def test_backends_agree(
    name, width, resolution, conventions, tmp_path, worst_differences
):
    overrides = [f"width_multiplier={width}", f"resolution={resolution}"]
    if conventions:
        overrides.append(f"conventions={conventions}")
    spec = SPECS / f"{name}.yaml"
    _, graph, torch_model = build(spec, "torch", tmp_path, overrides)
    _, _, keras_model = build(spec, "keras", tmp_path, overrides)
    rescaled = graph.node(graph.order[1])["kind"] == "rescale"
    calibration = random_images(graph, seed=resolution, pixels=rescaled)
    randomize_torch(torch_model, calibration, seed=resolution)
    port_torch_to_keras(graph, torch_model, keras_model)

    images = random_images(graph, seed=1, pixels=rescaled)
    torch_logits = run_torch(torch_model, images)
    keras_logits = run_keras(keras_model, images)

    assert torch_logits.shape == keras_logits.shape == (2, graph.shape(graph.output)[0])
    assert np.isfinite(torch_logits).all()
    # Logits that are all ~0 would make the comparison meaningless.
    assert np.abs(torch_logits).max() > 1e-2
    diff = float(np.abs(torch_logits - keras_logits).max())
    worst_differences.append(
        (f"{name} w{width} r{resolution} {conventions or ''}", diff)
    )
    assert diff <= LOGIT_TOLERANCE, f"max abs logit difference {diff:.3g}"
