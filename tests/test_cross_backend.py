"""Same weights, same input: Keras and PyTorch logits agree (float32)."""

from __future__ import annotations

import numpy as np
import pytest

from crosscheck import outputs
from helpers import CANONICAL, SPECS, TOLERANCE, difference

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
    graph, got_torch, got_keras = outputs(SPECS / f"{name}.yaml", tmp_path, overrides)
    torch_logits, keras_logits = got_torch["output"], got_keras["output"]

    assert torch_logits.shape == keras_logits.shape == (2, graph.shape(graph.output)[0])
    assert np.isfinite(torch_logits).all()
    # Logits that are all ~0 would make the comparison meaningless.
    assert np.abs(torch_logits).max() > 1e-2
    diff = difference(torch_logits, keras_logits)
    worst_differences.append(
        (f"{name} w{width} r{resolution} {conventions or ''}", diff)
    )
    assert diff <= TOLERANCE, f"logit difference {diff:.3g}"
