"""The generated Keras code computes the same logits on every Keras 3 backend.

Keras fixes its backend when it is imported, so the test's process runs the models
under its own backend (TensorFlow in the suite) and each other backend runs in a
process of its own (tests/keras_backend_child.py, KERAS_BACKEND=jax or torch): the
same generated source, the same weights (random, batch-norm statistics measured on
the input as in tests/helpers.randomize_keras, written once by this process) and the
same input. Under test: V1 and V3-Small, an example with named feature outputs, the
example of the layer units (mixed convs split and joined with keras.ops, CondConv's
per-sample kernels, BlurPool's constant filter) and timm specs: MobileNetV4-Hybrid-M
(attention written with keras.ops), and timm's test EfficientNet (SiLU, sigmoid-
gated squeeze-excite, fused rows) with group norm (a GroupNormalization counting its
groups when built) and with EvoNorm-S0 (a layer of keras.ops) and a grouped
convolution; and a tiny MobileNetV5 (tests/specs/: RMSNorm, GELU-tanh, the fusion
neck) at two resolutions.

Bound: the suite's TOLERANCE on every output. The code and the weights are
identical and only the backends' kernels differ, yet how they round depends on the
CPU: a bound ten times stricter on logits held on one machine and failed on another
(V1's logits at 128 px, JAX vs torch: 1.005e-5 on an AVX-512 Xeon). The worst
differences seen are 1.9e-5 (MobileNetV4-Hybrid-M's attention at 128 px) and
1.03e-5 (the example's stride-32 feature map, JAX vs torch); each run prints its own.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import (
    ROOT,
    SPECS,
    TOLERANCE,
    build,
    difference,
    expects_pixels,
    random_images,
    randomize_keras,
)

BACKENDS = ("tensorflow", "jax", "torch")
CHILD = Path(__file__).with_name("keras_backend_child.py")
CHILD_TIMEOUT = 900  # seconds; a hung backend fails the test instead of CI
# JAX's child compiles each case with XLA's LLVM optimisation off: for two images a
# case, compiling is most of its work (the nine cases: 48 s at the default level,
# 22 s at 0). XLA's CPU fast-math stays off; the differences stayed as small as
# before (at most 8.6e-6 outside the hybrid model).
JAX_XLA_FLAGS = "--xla_backend_optimization_level=0"

# Each case is built and traced by every backend (JAX compiles it), so they are kept
# few and small: V1 (keras.applications' padding and layout), V3-Small (squeeze-
# excite, hard activations), the timm models at 128 px or smaller.
CASES = [
    (SPECS / "v1.yaml", ("resolution=128",)),
    (SPECS / "v3_small.yaml", ("resolution=128",)),
    (ROOT / "examples" / "detection_backbone.yaml", ("resolution=128",)),
    (ROOT / "examples" / "layer_units.yaml", ()),
    (SPECS / "timm" / "mobilenetv4_hybrid_medium.yaml", ("resolution=128",)),
    (SPECS / "timm" / "test_efficientnet_gn.yaml", ("resolution=64",)),
    (
        SPECS / "timm" / "test_efficientnet_evos.yaml",
        ("resolution=64", "stages.3.group_size=8"),
    ),
    # MobileNetV5's parts: RMSNorm, GELU-tanh, the fusion neck pooling (128) and
    # resizing bilinearly (96)
    (ROOT / "tests" / "specs" / "mobilenetv5_tiny.yaml", ()),
    (ROOT / "tests" / "specs" / "mobilenetv5_tiny.yaml", ("resolution=96",)),
]
CASE_IDS = [
    spec.stem + "".join(f"-{o}" for o in overrides) for spec, overrides in CASES
]


@pytest.fixture(scope="module")
def backend_outputs(tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """{backend: {"<case index>/<output name>": array}}: this process's backend's
    own, the others' from one process each."""
    import keras
    from keras_backend_child import outputs as outputs_of

    here = keras.backend.backend()
    workdir = tmp_path_factory.mktemp("keras_backends")
    outputs = {here: {}}
    for index, (spec, overrides) in enumerate(CASES):
        _, graph, model = build(spec, "keras", workdir, overrides)
        pixels = expects_pixels(graph)
        calibration = random_images(graph, seed=7, pixels=pixels)
        randomize_keras(model, calibration.transpose(0, 2, 3, 1), index, graph)
        np.savez(workdir / f"weights_{index}.npz", *model.get_weights())
        images = random_images(graph, seed=1, pixels=pixels).transpose(0, 2, 3, 1)
        images = np.ascontiguousarray(images)
        np.save(workdir / f"images_{index}.npy", images)
        outputs[here].update(outputs_of(model, images, index))
    cases = [{"spec": str(spec), "overrides": list(o)} for spec, o in CASES]
    (workdir / "cases.json").write_text(json.dumps(cases))
    for backend in (b for b in BACKENDS if b != here):
        env = dict(os.environ, KERAS_BACKEND=backend, XLA_FLAGS=JAX_XLA_FLAGS)
        done = subprocess.run(
            [sys.executable, str(CHILD), str(workdir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"{backend}:\n{done.stderr[-3000:]}"
        with np.load(workdir / f"outputs_{backend}.npz") as arrays:
            outputs[backend] = {key: arrays[key] for key in arrays.files}
    return outputs


def test_every_backend_ran_every_case(backend_outputs):
    names = {b: sorted(outputs) for b, outputs in backend_outputs.items()}
    assert sorted(names) == sorted(BACKENDS)
    assert names["jax"] == names["tensorflow"] == names["torch"]
    assert {key.split("/")[0] for key in names["tensorflow"]} == {
        str(i) for i in range(len(CASES))
    }


@pytest.mark.parametrize("index", range(len(CASES)), ids=CASE_IDS)
def test_backends_agree(backend_outputs, index, worst_differences, figures):
    keys = [k for k in backend_outputs["tensorflow"] if k.split("/")[0] == str(index)]
    assert keys
    worst = 0.0
    for key in keys:
        reference = backend_outputs["tensorflow"][key]
        # Outputs that are all ~0 would make the comparison meaningless.
        assert np.abs(reference).max() > 1e-2, key
        for a, b in itertools.combinations(BACKENDS, 2):
            diff = difference(backend_outputs[a][key], backend_outputs[b][key])
            worst_differences.append((f"keras {a} vs {b} {CASE_IDS[index]}", diff))
            assert diff <= TOLERANCE, f"{CASE_IDS[index]} {key}: {a} vs {b} {diff:.3g}"
            worst = max(worst, diff)
    figures.append(f"keras backends: {CASE_IDS[index]}: worst difference {worst:.2g}")
