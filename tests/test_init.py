"""Freshly built models start from their reference's initial weights: under each
conventions profile, every layer of the generated model is drawn from the same
family of distribution (normal or uniform) with the same standard deviation as the
same layer of the reference library's own model, built here: torchvision
(torchvision profile), timm (timm profile) and keras.applications (keras_applications
profile). Samples are pooled over several fresh builds so that small layers count
enough values; batch norm starts at ones and zeros, layer scale at its constant.

Every draw is seeded (each build its own seed), so a run is reproducible, and every
bound is computed from the sizes of the samples it compares: `SIGMAS` standard
errors of the statistic, so that two samples of one distribution stay within it
(the chance of one layer straying that far is about 2e-9) while a wrong scheme
(fan-in for fan-out, uniform for normal) lands many standard errors outside it, as
`test_a_wrong_scheme_is_caught` shows.

The default run compares a few models; `pytest -m timm_family tests/test_init.py`
compares every spec in specs/timm/ up to tests/timm_family.py's META_ABOVE
parameters (the larger ones extend efficientnet_b0 and draw as it does).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from helpers import (
    SPECS,
    build,
    import_source,
    keras_layers_in_ir_order,
    torch_param_modules,
)
from mbcompile import compiler
from mbcompile.backends.weights import param_ops
from reference_models import create, torchvision_model
from timm_family import META_ABOVE, names, spec_path

# Each bound is this many standard errors of the statistic it bounds.
SIGMAS = 6.0
# Layers with fewer values (pooled) are not compared: their bounds would be too wide
# to say anything.
MIN_SAMPLES = 1000


def kurtosis(values: np.ndarray) -> float:
    """E[(x - mean)^4] / E[(x - mean)^2]^2, in float64, by dot products (half the
    time of `**4`, which took ~10 s of this file's run)."""
    centred = values.ravel().astype(np.float64)
    centred -= centred.mean()
    squared = centred * centred
    return float(squared.size * np.dot(squared, squared) / squared.sum() ** 2)


def std_bound(ours: np.ndarray, theirs: np.ndarray) -> float:
    """How far |log(std ours / std theirs)| may reach for two samples of one
    distribution: the sample variance of n values has relative variance
    (kurtosis - 1) / n, so the log of the sample std has variance
    (kurtosis - 1) / (4 n); the two samples' variances add."""
    spread = (kurtosis(theirs) - 1) / 4 * (1 / ours.size + 1 / theirs.size)
    return SIGMAS * math.sqrt(spread)


def kurtosis_bound(ours: np.ndarray, theirs: np.ndarray) -> float:
    """How far the two sample kurtoses may differ: a normal sample's kurtosis has
    variance 24 / n (a uniform's less, about 1.3 / n)."""
    return SIGMAS * math.sqrt(24 / ours.size + 24 / theirs.size)


@dataclass
class Agreement:
    """Per-layer comparison of pooled initial values with the reference's."""

    compared: int = 0
    failures: list[str] = field(default_factory=list)
    worst: float = 0.0  # the largest |log std ratio| as a fraction of its bound


def agreement(ours: list[np.ndarray], theirs: list[np.ndarray], labels) -> Agreement:
    """Each layer's std and kurtosis against the reference's, within their bounds;
    constant layers (layer scale) must be equal."""
    assert len(ours) == len(theirs)
    found = Agreement()
    for label, a, b in zip(labels, ours, theirs, strict=True):
        assert a.size == b.size, label
        if b.std() == 0:  # a constant: layer scale
            if not np.allclose(a, b):
                found.failures.append(f"{label}: not the constant {b.flat[0]}")
            continue
        if a.size < MIN_SAMPLES:
            continue
        found.compared += 1
        log_ratio, bound = abs(math.log(a.std() / b.std())), std_bound(a, b)
        found.worst = max(found.worst, log_ratio / bound)
        if log_ratio > bound:
            found.failures.append(
                f"{label}: std ratio {a.std() / b.std():.3f}, bound "
                f"exp(±{bound:.3f}) for {a.size} values"
            )
        gap, bound = abs(kurtosis(a) - kurtosis(b)), kurtosis_bound(a, b)
        if gap > bound:
            found.failures.append(
                f"{label}: kurtosis {kurtosis(a):.2f} vs {kurtosis(b):.2f}, bound "
                f"±{bound:.2f} for {a.size} values"
            )
    return found


def check(ours, theirs, labels, figures, least: float) -> None:
    """Assert every compared layer agrees and at least `least` of them compared."""
    found = agreement(ours, theirs, labels)
    assert not found.failures, found.failures
    assert found.compared >= least * len(ours), (found.compared, len(ours))
    figures.append(
        f"init: {labels[0].rsplit(' ', 1)[0]}: {found.compared} layers compared, "
        f"worst |log std ratio| {found.worst:.2f} of its bound"
    )


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


@functools.cache
def reference_builds(library: str, reference: str, count: int) -> list[np.ndarray]:
    """Pooled kernels of `count` builds of torchvision's or timm's `reference`,
    shared by the tests that compare with them."""
    make = {"torchvision": torchvision_model, "timm": create}[library]
    return torch_builds(lambda: make(reference), count, seed=1000)


def torch_builds(make, count: int, seed: int) -> list[np.ndarray]:
    """Pooled kernels of `count` models from `make()`, build i seeded `seed + i`."""
    import torch

    builds = []
    for i in range(count):
        torch.manual_seed(seed + i)
        builds.append(torch_kernels(make()))
    return pooled(builds)


def ours_torch(spec, tmp_path, overrides=()):
    """A builder of the spec's generated PyTorch model (generated once)."""
    _, graph = compiler.load_and_expand(spec, list(overrides))
    module = import_source(compiler.generate(graph, "torch"), tmp_path, "torch")
    return module.build_model


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
    library = "timm" if spec.startswith("timm/") else "torchvision"
    theirs = reference_builds(library, reference, builds)
    ours = torch_builds(ours_torch(SPECS / spec, tmp_path), builds, seed=2000)
    labels = [f"torch {reference} kernel {i}" for i in range(len(ours))]
    check(ours, theirs, labels, figures, least=0.5)


def wrong_fan(model) -> None:
    """timm's scheme with the fan-in where it takes the fan-out."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            nn.init.normal_(module.weight, 0, (2.0 / fan_in) ** 0.5)


def wrong_family(model) -> None:
    """timm's standard deviations, drawn uniformly instead of normally."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            std = (2.0 / (kh * kw * module.out_channels // module.groups)) ** 0.5
            nn.init.uniform_(module.weight, -std * 3**0.5, std * 3**0.5)


@pytest.mark.parametrize("scheme", [wrong_fan, wrong_family], ids=lambda f: f.__name__)
def test_a_wrong_scheme_is_caught(scheme, tmp_path, figures):
    """The bounds are tight enough: a model initialised by a wrong scheme fails
    them, layer after layer, against the reference builds that the right scheme
    passes (test_torch_starts_as_its_reference)."""
    make = ours_torch(SPECS / "timm" / "efficientnet_b0.yaml", tmp_path)

    def wrong():
        model = make()
        scheme(model)
        return model

    theirs = reference_builds("timm", "efficientnet_b0", 6)
    labels = [f"kernel {i}" for i in range(len(theirs))]
    found = agreement(torch_builds(wrong, 6, seed=2000), theirs, labels)
    # Every conv whose fan-in differs from its fan-out (the expansions, projections
    # and squeeze-excite convs), or every conv compared (uniform's kurtosis is 1.8).
    assert len(found.failures) >= 0.3 * found.compared, found.failures
    statistic = "std ratio" if scheme is wrong_fan else "kurtosis"
    assert all(statistic in failure for failure in found.failures), found.failures
    figures.append(
        f"init: {scheme.__name__}: {len(found.failures)} of {found.compared} layers "
        f"of efficientnet_b0 caught ({statistic})"
    )


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
    import keras

    library = "timm" if spec.startswith("timm/") else "torchvision"
    theirs = reference_builds(library, reference, 4)
    builds = []
    for i in range(4):
        keras.utils.set_random_seed(3000 + i)
        _, graph, model = build(SPECS / spec, "keras", tmp_path)
        kernels = [
            np.asarray(layer.get_weights()[0])
            for op, layer in zip(
                param_ops(graph), keras_layers_in_ir_order(graph, model), strict=True
            )
            if op.kind != "bn"
        ]
        builds.append(kernels)
    labels = [f"keras vs torch {reference} kernel {i}" for i in range(len(theirs))]
    check(pooled(builds), theirs, labels, figures, least=0.3)


def test_keras_applications_profile_keeps_keras_defaults(tmp_path, figures):
    """Under keras_applications the generated Keras model is keras.applications'
    own MobileNetV3Small at initialisation, layer by layer, and the PyTorch model
    draws as Keras does (glorot-uniform)."""
    import keras
    import torch

    overrides = ["conventions=keras_applications"]
    make_torch = ours_torch(SPECS / "v3_small.yaml", tmp_path, overrides)
    theirs, ours_keras, ours_torch_kernels = [], [], []
    for i in range(4):
        keras.utils.set_random_seed(1000 + i)
        reference = keras.applications.MobileNetV3Small(weights=None)
        theirs.append(kernels(reference))
        keras.utils.set_random_seed(2000 + i)
        _, _, model = build(SPECS / "v3_small.yaml", "keras", tmp_path, overrides)
        ours_keras.append(kernels(model))
        torch.manual_seed(3000 + i)
        ours_torch_kernels.append(torch_kernels(make_torch()))
    non_bn = [
        i
        for i, layer in enumerate(weighted(reference))
        if not isinstance(layer, keras.layers.BatchNormalization)
    ]
    theirs = [pooled(theirs)[i] for i in non_bn]
    labels = [f"MobileNetV3Small layer {i}" for i in non_bn]
    ours_keras = [pooled(ours_keras)[i] for i in non_bn]
    check(ours_keras, theirs, ["keras " + label for label in labels], figures, 0.3)
    ours_torch_pooled = pooled(ours_torch_kernels)
    check(ours_torch_pooled, theirs, ["torch " + s for s in labels], figures, 0.3)


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
    one sequence: a correlation of 1), which the per-layer distributions above
    cannot see. The first n values of two independent kernels correlate by about
    1/sqrt(n); none may reach SIGMAS times that."""
    import keras

    keras.utils.set_random_seed(0)
    _, _, model = build(spec, "keras", tmp_path)
    # Batch norm and layer scale start constant.
    heads = [k.ravel() for k in kernels(model) if k.max() > k.min()]
    n = min(64, *(h.size for h in heads))
    assert n >= 32
    correlation = np.corrcoef(np.stack([h[:n] for h in heads]))
    np.fill_diagonal(correlation, 0.0)
    worst = np.unravel_index(np.abs(correlation).argmax(), correlation.shape)
    assert np.abs(correlation).max() < SIGMAS / n**0.5, (worst, correlation[worst])


# --------------------------------------------------------------- on demand: the family


def pytest_generate_tests(metafunc):
    """The family's specs up to META_ABOVE parameters, counted only when the
    on-demand marker is selected (counting compiles every spec)."""
    if "family_member" not in metafunc.fixturenames:
        return
    chosen = "timm_family" in (metafunc.config.option.markexpr or "")
    members = [n for n in names() if chosen and trainable(n) <= META_ABOVE]
    metafunc.parametrize("family_member", members)


def trainable(name: str) -> int:
    _, graph = compiler.load_and_expand(spec_path(name))
    return compiler.cost_report(graph).trainable_params


@pytest.mark.timm_family
def test_family_member_starts_as_timm(family_member, tmp_path, figures):
    """Every spec of the family against its timm model, pooled over three builds."""
    theirs = reference_builds("timm", family_member, 3)
    ours = torch_builds(ours_torch(spec_path(family_member), tmp_path), 3, seed=2000)
    labels = [f"torch {family_member} kernel {i}" for i in range(len(ours))]
    check(ours, theirs, labels, figures, least=0.3)
