"""Freshly built models start from their reference's initial weights: under each
conventions profile, every layer of the generated model is drawn from the same
family of distribution (normal or uniform) with the same standard deviation (within
5%) as the same layer of the reference library's own model, built here: torchvision
(torchvision profile), timm (timm profile) and keras.applications (keras_applications
profile). Samples are pooled over several fresh builds so that small layers count
enough values; batch norm starts at ones and zeros, layer scale at its constant."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import SPECS, build, keras_layers_in_ir_order, torch_param_modules
from mbcompile.backends.weights import param_ops
from reference_models import create, torchvision_model

STD_TOLERANCE = 0.05
# Kurtosis of a normal distribution is 3, of a uniform one 1.8; pooled samples of a
# few thousand values estimate it within about +-0.2.
KURTOSIS_TOLERANCE = 0.4
MIN_SAMPLES = 4000  # per layer, pooled over builds, for a layer to be compared


def kurtosis(values: np.ndarray) -> float:
    centred = values - values.mean()
    return float((centred**4).mean() / (centred**2).mean() ** 2)


def pooled(builds: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per layer, the values of all builds together."""
    return [
        np.concatenate([b[i].ravel() for b in builds]) for i in range(len(builds[0]))
    ]


def torch_kernels(model) -> list[np.ndarray]:
    """Conv and linear weights (and layer scales) in registration order."""
    from torch import nn

    kernels = []
    for module in torch_param_modules(model):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        weight = module.gamma if hasattr(module, "gamma") else module.weight
        kernels.append(weight.detach().numpy().copy())
    return kernels


def compare(ours: list[np.ndarray], theirs: list[np.ndarray], labels, figures) -> int:
    """Assert each layer's pooled std and family agree; return how many compared
    (and report the worst standard-deviation ratio among them)."""
    assert len(ours) == len(theirs)
    compared, worst = 0, 0.0
    for label, a, b in zip(labels, ours, theirs, strict=True):
        assert a.size == b.size, label
        if b.std() == 0:  # a constant: layer scale
            assert np.allclose(a, b), label
            continue
        if a.size < MIN_SAMPLES:
            continue
        ratio = a.std() / b.std()
        assert abs(ratio - 1) <= STD_TOLERANCE, f"{label}: std ratio {ratio:.3f}"
        assert abs(kurtosis(a) - kurtosis(b)) <= KURTOSIS_TOLERANCE, label
        compared += 1
        worst = max(worst, abs(ratio - 1))
    figures.append(
        f"init: {labels[0].rsplit(' ', 1)[0]}: {compared} layers compared, "
        f"worst |std ratio - 1| {worst:.3f}"
    )
    return compared


def test_batch_norm_starts_at_ones_and_zeros(tmp_path):
    from torch import nn

    for spec in (SPECS / "v2.yaml", SPECS / "timm" / "efficientnet_b0.yaml"):
        _, _, model = build(spec, "torch", tmp_path)
        norms = [
            m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        assert norms
        for norm in norms:
            assert (norm.weight == 1).all() and (norm.bias == 0).all()


@pytest.mark.parametrize(
    "spec,reference,builds",
    [
        ("v3_small.yaml", "mobilenet_v3_small", 12),
        ("v2.yaml", "mobilenet_v2", 6),
        ("timm/efficientnet_b0.yaml", "efficientnet_b0", 6),
        ("timm/mobilenetv4_hybrid_medium.yaml", "mobilenetv4_hybrid_medium", 3),
    ],
)
def test_torch_starts_as_its_reference(spec, reference, builds, tmp_path, figures):
    """The torch model against torchvision's or timm's, layer by layer (the
    state_dicts share their keys)."""
    make = create if spec.startswith("timm/") else torchvision_model
    theirs = pooled([torch_kernels(make(reference)) for _ in range(builds)])
    ours = pooled(
        [
            torch_kernels(build(SPECS / spec, "torch", tmp_path)[2])
            for _ in range(builds)
        ]
    )
    compared = compare(
        ours,
        theirs,
        [f"torch {reference} kernel {i}" for i in range(len(ours))],
        figures,
    )
    assert compared >= 0.5 * len(ours)


@pytest.mark.parametrize(
    "spec,reference",
    [
        ("v3_small.yaml", "mobilenet_v3_small"),
        ("timm/mobilenetv4_hybrid_medium.yaml", "mobilenetv4_hybrid_medium"),
    ],
)
def test_keras_starts_as_the_torch_reference(spec, reference, tmp_path, figures):
    """Under the torchvision and timm profiles the generated Keras model draws its
    kernels as the reference's PyTorch model does (Keras' fans differ from PyTorch's
    for depthwise convs; the generated initialisers make up for it)."""
    make = create if spec.startswith("timm/") else torchvision_model
    theirs = pooled([torch_kernels(make(reference)) for _ in range(4)])
    builds = []
    for _ in range(4):
        _, graph, model = build(SPECS / spec, "keras", tmp_path)
        kernels = [
            np.asarray(layer.get_weights()[0])
            for op, layer in zip(
                param_ops(graph), keras_layers_in_ir_order(graph, model), strict=True
            )
            if op.kind != "bn"
        ]
        builds.append(kernels)
    compared = compare(
        pooled(builds),
        theirs,
        [f"keras vs torch {reference} kernel {i}" for i in range(len(theirs))],
        figures,
    )
    assert compared >= 0.3 * len(theirs)


def test_keras_applications_profile_keeps_keras_defaults(tmp_path, figures):
    """Under keras_applications the generated Keras model is keras.applications'
    own MobileNetV3Small at initialisation, layer by layer, and the PyTorch model
    draws as Keras does (glorot-uniform)."""
    import keras

    overrides = ["conventions=keras_applications"]
    theirs, ours_keras, ours_torch = [], [], []
    for _ in range(4):
        reference = keras.applications.MobileNetV3Small(weights=None)
        theirs.append(kernels(reference))
        _, _, model = build(SPECS / "v3_small.yaml", "keras", tmp_path, overrides)
        ours_keras.append(kernels(model))
        _, _, torch_model = build(SPECS / "v3_small.yaml", "torch", tmp_path, overrides)
        ours_torch.append(torch_kernels(torch_model))
    non_bn = [
        i
        for i, layer in enumerate(weighted(reference))
        if not isinstance(layer, keras.layers.BatchNormalization)
    ]
    theirs = [pooled(theirs)[i] for i in non_bn]
    labels = [f"MobileNetV3Small layer {i}" for i in non_bn]
    assert compare(
        [pooled(ours_keras)[i] for i in non_bn],
        theirs,
        ["keras " + label for label in labels],
        figures,
    )
    assert compare(
        pooled(ours_torch), theirs, ["torch " + label for label in labels], figures
    )


def weighted(model) -> list:
    return [layer for layer in model.layers if layer.weights]


def kernels(model) -> list[np.ndarray]:
    return [np.asarray(layer.get_weights()[0]) for layer in weighted(model)]


@pytest.mark.parametrize(
    "spec",
    [SPECS / "v3_large.yaml", SPECS / "timm" / "mobilenetv4_hybrid_medium.yaml"],
    ids=lambda p: p.stem,
)
def test_keras_layers_draw_their_own_values(spec, tmp_path):
    """No two Keras layers start from the same random values. One Keras initialiser
    instance returns the same values at every call, so an initialiser shared between
    layers would start layers of one shape equal (and all others scaled copies of
    one sequence), which the per-layer distributions above cannot see. The first
    values of any two kernels must be uncorrelated (|r| of 64 independent normals
    exceeds 0.6 with probability ~1e-7)."""
    _, _, model = build(spec, "keras", tmp_path)
    # Batch norm and layer scale start constant.
    heads = [k.ravel() for k in kernels(model) if k.max() > k.min()]
    n = min(64, *(h.size for h in heads))
    assert n >= 32
    correlation = np.corrcoef(np.stack([h[:n] for h in heads]))
    np.fill_diagonal(correlation, 0.0)
    worst = np.unravel_index(np.abs(correlation).argmax(), correlation.shape)
    assert np.abs(correlation).max() < 0.6, (worst, correlation[worst])
