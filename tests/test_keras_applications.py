"""Under keras_applications conventions our Keras models *are* keras.applications'.

For every network, at every alpha keras.applications accepts (and a non-224 and an
odd resolution), the reference model is built here with weights=None and compared
with ours: the same weighted layers (names, classes, weight shapes, order), so
`set_weights(reference.get_weights())` works, and then the same logits. Weight files
written from the reference (legacy `.h5` and Keras 3 `.weights.h5`) load into ours.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import (
    ROOT,
    SPECS,
    TOLERANCE,
    build,
    difference,
    keras_arrays,
    keras_weighted_layers,
    port_keras_to_torch,
    randomize_keras,
    run_torch,
)

# Max difference from keras.applications' logits, relative to the logit's size.
REFERENCE_TOLERANCE = 1e-5

APPLICATIONS = {
    "v1": "MobileNet",
    "v2": "MobileNetV2",
    "v3_large": "MobileNetV3Large",
    "v3_small": "MobileNetV3Small",
}

# (network, alpha, resolution, depth multiplier, also test weight files)
CASES = [("v1", a, 224, 1, a == 0.5) for a in (0.25, 0.5, 0.75, 1.0)]
CASES += [("v1", 0.5, 224, 2, False), ("v1", 1.0, 160, 1, False)]
CASES += [("v1", 0.75, 193, 1, False)]
CASES += [("v2", a, 224, 1, a == 0.35) for a in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)]
# 32 * 0.2796875 = 8.95: keras rounds the stem to 16 but would get 8 from int(8.95),
# so this alpha shows the stem is not truncated like the block outputs are.
CASES += [("v2", 0.2796875, 224, 1, False), ("v2", 1.0, 160, 1, False)]
CASES += [("v2", 0.75, 193, 1, False)]
for _name in ("v3_large", "v3_small"):
    CASES += [(_name, a, 224, 1, a == 0.75) for a in (0.75, 1.0, 1.25)]
    CASES += [(_name, 1.0, 160, 1, False), (_name, 0.75, 193, 1, False)]
CASE_IDS = [f"{n}-a{a}-r{r}" + (f"-dm{d}" if d > 1 else "") for n, a, r, d, _ in CASES]
# The default run keeps, per network, the case with weight files, the widths whose
# rounding differs (stem, width above 1) and an odd resolution; `pytest -m slow`
# runs them all (alpha 1.0 at 224 is also compared with torchvision and below).
DEFAULT_CASES = {
    "v1-a0.5-r224", "v1-a0.5-r224-dm2", "v1-a0.75-r193",
    "v2-a0.35-r224", "v2-a0.2796875-r224", "v2-a1.4-r224", "v2-a0.75-r193",
    "v3_large-a0.75-r224", "v3_large-a1.25-r224",
    "v3_small-a0.75-r224", "v3_small-a0.75-r193",
}  # fmt: skip
CASE_PARAMS = [
    pytest.param(*case, id=i, marks=() if i in DEFAULT_CASES else pytest.mark.slow)
    for case, i in zip(CASES, CASE_IDS, strict=True)
]


def reference_model(name: str, alpha: float, resolution: int, depth_multiplier=1):
    import keras

    kwargs = {
        "input_shape": (resolution, resolution, 3),
        "alpha": alpha,
        "weights": None,
        "include_top": True,
        "classifier_activation": None,
    }
    if name == "v1":
        kwargs["depth_multiplier"] = depth_multiplier
    if name.startswith("v3"):
        kwargs["include_preprocessing"] = True
    return getattr(keras.applications, APPLICATIONS[name])(**kwargs)


def ours(name, alpha, resolution, tmp_path, depth_multiplier=1):
    overrides = [
        "conventions=keras_applications",
        f"width_multiplier={alpha}",
        f"resolution={resolution}",
        f"depth_multiplier={depth_multiplier}",
    ]
    return build(SPECS / f"{name}.yaml", "keras", tmp_path, overrides)


def weighted_layers(model) -> list[tuple]:
    return [
        (layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
        for layer in keras_weighted_layers(model)
    ]


def images(name: str, resolution: int, seed: int) -> np.ndarray:
    """NHWC batch of 2: pixels in [0, 255] for V3 (it rescales), else ~N(0, 1)."""
    rng = np.random.default_rng(seed)
    shape = (2, resolution, resolution, 3)
    if name.startswith("v3"):
        return rng.uniform(0, 255, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def assert_close_to_reference(ours_logits, reference_logits, label, worst):
    """|ours - reference| <= 1e-5 * max(1, |reference|), logit by logit."""
    assert np.abs(reference_logits).max() > 1e-2, "logits too small to compare"
    diff = np.abs(ours_logits - reference_logits)
    bound = REFERENCE_TOLERANCE * np.maximum(1.0, np.abs(reference_logits))
    worst.append((f"vs keras.applications {label}", float(diff.max())))
    print(f"figure: {label}: max abs diff {diff.max():.3g}")
    assert (diff <= bound).all(), f"{label}: max abs diff {diff.max():.3g}"


@pytest.mark.parametrize("name,alpha,resolution,depth_multiplier,files", CASE_PARAMS)
def test_same_layers_weights_and_logits(
    name, alpha, resolution, depth_multiplier, files, tmp_path, worst_differences
):
    reference = reference_model(name, alpha, resolution, depth_multiplier)
    _, _, model = ours(name, alpha, resolution, tmp_path, depth_multiplier)
    assert weighted_layers(model) == weighted_layers(reference)

    randomize_keras(reference, images(name, resolution, seed=7), seed=resolution)
    model.set_weights(reference.get_weights())
    x = images(name, resolution, seed=1)
    label = f"{name} a{alpha} r{resolution} dm{depth_multiplier}"
    assert_close_to_reference(
        np.asarray(model(x, training=False)),
        np.asarray(reference(x, training=False)),
        label,
        worst_differences,
    )
    if files:
        _check_weight_files(name, reference, alpha, resolution, tmp_path)


def _check_weight_files(name, reference, alpha, resolution, tmp_path):
    """keras.applications-style files load into ours, by order and by name.

    keras.applications' own ImageNet files are legacy HDF5 written by whole-model
    saving and loaded by `load_weights` in topological order; `by_name=True` loads
    the same file by layer name. Keras 3 `.weights.h5` files address layers by class
    and position (`conv2d_3`), so they need the same order of each layer class.
    """
    legacy = tmp_path / "reference.h5"
    reference.save(legacy)  # legacy HDF5: the format of keras.applications' files
    native = tmp_path / "reference.weights.h5"
    reference.save_weights(native)
    expected = [keras_arrays(layer) for layer in keras_weighted_layers(reference)]
    for path, kwargs in ((legacy, {}), (legacy, {"by_name": True}), (native, {})):
        _, _, model = ours(name, alpha, resolution, tmp_path)
        model.load_weights(path, **kwargs)
        got = [keras_arrays(layer) for layer in keras_weighted_layers(model)]
        for want_layer, got_layer in zip(expected, got, strict=True):
            for want, have in zip(want_layer, got_layer, strict=True):
                np.testing.assert_array_equal(have, want)


@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_reference_is_the_measured_one(name):
    """The models built here are the ones tests/reference/ was measured from."""
    manifest = json.loads(
        (ROOT / "tests" / "reference" / "keras_applications_layers.json").read_text()
    )[APPLICATIONS[name]]
    expected = [
        (layer, kind, [tuple(s) for s in shapes])
        for layer, kind, shapes in manifest["layers"]
        if shapes
    ]
    assert weighted_layers(reference_model(name, 1.0, 224)) == expected


# (network, alpha, resolution): one per network at width 1.0 plus odd sizes/widths.
TORCH_CASES = [("v1", 1.0, 224), ("v2", 1.0, 224), ("v3_large", 1.0, 224)]
TORCH_CASES += [("v3_small", 1.0, 224), ("v2", 0.35, 193), ("v3_small", 0.75, 193)]


@pytest.mark.parametrize(
    "name,alpha,resolution",
    TORCH_CASES,
    ids=[f"{n}-a{a}-r{r}" for n, a, r in TORCH_CASES],
)
def test_torch_reproduces_keras_applications(
    name, alpha, resolution, tmp_path, worst_differences
):
    """PyTorch compiled with keras_applications conventions, given a keras.applications
    model's weights (ported by position with mbcompile.backends.weights), computes its logits."""
    reference = reference_model(name, alpha, resolution)
    randomize_keras(reference, images(name, resolution, seed=7), seed=resolution)
    overrides = [
        "conventions=keras_applications",
        f"width_multiplier={alpha}",
        f"resolution={resolution}",
    ]
    _, graph, torch_model = build(SPECS / f"{name}.yaml", "torch", tmp_path, overrides)
    port_keras_to_torch(graph, reference, torch_model)

    x = images(name, resolution, seed=1)
    want = np.asarray(reference(x, training=False))
    got = run_torch(torch_model, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    assert np.abs(want).max() > 1e-2
    diff = difference(want, got)
    label = f"{name} a{alpha} r{resolution}"
    worst_differences.append((f"torch vs keras.applications {label}", diff))
    print(f"figure: torch-with-keras.applications-weights {label}: {diff:.3g}")
    assert diff <= TOLERANCE, f"{label}: difference {diff:.3g}"


def test_fields_override_the_profile():
    """A single field on top of a profile changes that field only: truncating the
    V2 stem too (keras V1's habit) gives 8 channels at alpha 0.2796875, where
    keras.applications' V2 (checked above) has 16."""
    from mbcompile import compiler

    base = ["conventions=keras_applications", "width_multiplier=0.2796875"]
    variants = {}
    for extra in ([], ["conventions.width_rounding=truncate"]):
        loaded, graph = compiler.load_and_expand(SPECS / "v2.yaml", base + extra)
        variants[bool(extra)] = (loaded.spec.resolved_conventions(), graph)
    (plain, plain_graph), (truncated, truncated_graph) = variants[0], variants[1]
    assert plain.width_rounding == "truncate_stages"
    assert truncated.width_rounding == "truncate"
    assert {f: getattr(plain, f) for f in vars(plain) if f != "width_rounding"} == {
        f: getattr(truncated, f) for f in vars(truncated) if f != "width_rounding"
    }
    assert plain_graph.blocks[0].params.out_c == 16
    assert truncated_graph.blocks[0].params.out_c == 8
